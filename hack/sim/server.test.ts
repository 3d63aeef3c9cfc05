import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type SimHandle, startSimulator } from './server.js'
import { postJson, postSse } from './testkit.js'
import { countTokens } from './tokenizer.js'

let sim: SimHandle

beforeAll(async () => {
  sim = await startSimulator({
    name: 'shapes',
    host: '127.0.0.2',
    port: 0,
    model: 'base-model',
    metricsFormat: 'vllm',
    seed: 7,
    timeScale: 0.05,
    loras: ['ad-1'],
    defaultMaxTokens: 6,
    embeddingDim: 32,
  })
})
afterAll(() => sim.close())

const chat = (over: Record<string, unknown> = {}) => ({
  model: 'base-model',
  messages: [
    { role: 'system', content: 'be brief' },
    { role: 'user', content: 'Tell me about caches.' },
  ],
  ...over,
})

type ChatCompletion = {
  id: string
  object: string
  model: string
  choices: Array<{
    index: number
    message: { role: string; content: string }
    finish_reason: string
  }>
  usage: {
    prompt_tokens: number
    completion_tokens: number
    total_tokens: number
    prompt_tokens_details: { cached_tokens: number }
  }
}

describe('non-streaming responses', () => {
  it('chat completion has the OpenAI shape, max_tokens output and consistent usage', async () => {
    const r = await postJson(`${sim.url}/v1/chat/completions`, chat({ max_tokens: 9 }))
    expect(r.status).toBe(200)
    const body = r.json as ChatCompletion
    expect(body.object).toBe('chat.completion')
    expect(body.id).toMatch(/^chatcmpl-/)
    expect(body.model).toBe('base-model')
    expect(body.choices).toHaveLength(1)
    expect(body.choices[0]?.message.role).toBe('assistant')
    expect(body.choices[0]?.finish_reason).toBe('length')
    expect(countTokens(body.choices[0]?.message.content ?? '')).toBe(9)
    expect(body.usage.completion_tokens).toBe(9)
    // '<|im_start|>system\nbe brief<|im_end|>\n' etc. through the simulator tokenizer.
    expect(body.usage.prompt_tokens).toBeGreaterThan(10)
    expect(body.usage.total_tokens).toBe(body.usage.prompt_tokens + 9)
    // A fresh engine has nothing cached yet.
    expect(body.usage.prompt_tokens_details.cached_tokens).toBe(0)
  })

  it('is deterministic for the same seed and prompt, and uses the default length without max_tokens', async () => {
    const a = (await postJson(`${sim.url}/v1/chat/completions`, chat())).json as ChatCompletion
    const b = (await postJson(`${sim.url}/v1/chat/completions`, chat())).json as ChatCompletion
    expect(a.choices[0]?.message.content).toBe(b.choices[0]?.message.content)
    expect(a.usage.completion_tokens).toBe(6)
    expect(a.choices[0]?.finish_reason).toBe('stop')
    const c = (await postJson(`${sim.url}/v1/chat/completions`, chat({ max_completion_tokens: 3 })))
      .json as ChatCompletion
    expect(c.usage.completion_tokens).toBe(3)
  })

  it('text completion', async () => {
    const r = await postJson(`${sim.url}/v1/completions`, {
      model: 'base-model',
      prompt: 'Once upon a time',
      max_tokens: 4,
    })
    expect(r.status).toBe(200)
    const body = r.json as {
      object: string
      choices: Array<{ text: string; finish_reason: string }>
      usage: { prompt_tokens: number }
    }
    expect(body.object).toBe('text_completion')
    expect(countTokens(body.choices[0]?.text ?? '')).toBe(4)
    expect(body.usage.prompt_tokens).toBe(4)
  })

  it('serves a known LoRA adapter under its own model name', async () => {
    const r = await postJson(
      `${sim.url}/v1/chat/completions`,
      chat({ model: 'ad-1', max_tokens: 2 }),
    )
    expect(r.status).toBe(200)
    expect((r.json as ChatCompletion).model).toBe('ad-1')
  })
})

describe('streaming responses', () => {
  it('chat stream: role chunk first, one chunk per token, finish_reason on the last, [DONE]', async () => {
    const r = await postSse(`${sim.url}/v1/chat/completions`, chat({ stream: true, max_tokens: 4 }))
    expect(r.status).toBe(200)
    expect(r.done).toBe(true)
    type Chunk = {
      object: string
      choices: Array<{ delta: { role?: string; content?: string }; finish_reason: string | null }>
      usage?: unknown
    }
    const ev = r.events as Chunk[]
    expect(ev).toHaveLength(5)
    for (const c of ev) expect(c.object).toBe('chat.completion.chunk')
    expect(ev[0]?.choices[0]?.delta.role).toBe('assistant')
    expect(ev.slice(1).map((c) => c.choices[0]?.finish_reason)).toEqual([
      null,
      null,
      null,
      'length',
    ])
    expect(ev.every((c) => c.usage === undefined)).toBe(true)
    const text = ev.map((c) => c.choices[0]?.delta.content ?? '').join('')
    const full = (await postJson(`${sim.url}/v1/chat/completions`, chat({ max_tokens: 4 })))
      .json as ChatCompletion
    expect(text).toBe(full.choices[0]?.message.content)
  })

  it('adds a usage-only chunk when stream_options.include_usage is true', async () => {
    const r = await postSse(`${sim.url}/v1/completions`, {
      model: 'base-model',
      prompt: 'count these five tokens',
      max_tokens: 3,
      stream: true,
      stream_options: { include_usage: true },
    })
    type Chunk = {
      object: string
      choices: Array<{ text: string; finish_reason: string | null }>
      usage?: { prompt_tokens: number; completion_tokens: number }
    }
    const ev = r.events as Chunk[]
    expect(ev).toHaveLength(4)
    for (const c of ev) expect(c.object).toBe('text_completion')
    expect(ev[2]?.choices[0]?.finish_reason).toBe('length')
    const last = ev[3]
    expect(last?.choices).toEqual([])
    expect(last?.usage).toMatchObject({ prompt_tokens: 4, completion_tokens: 3, total_tokens: 7 })
    expect(r.done).toBe(true)
  })
})

describe('validation (vLLM-like)', () => {
  const post = (path: string, body: string) =>
    fetch(`${sim.url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body,
    })

  it.each([
    ['bad JSON', '/v1/chat/completions', '{"model":', 400, 'invalid_json'],
    ['missing messages', '/v1/chat/completions', '{"model":"base-model"}', 400, 'missing_messages'],
    ['empty messages', '/v1/chat/completions', '{"messages":[]}', 400, 'invalid_messages'],
    [
      'bad max_tokens',
      '/v1/chat/completions',
      '{"messages":[{"role":"user","content":"x"}],"max_tokens":0}',
      400,
      'invalid_parameter',
    ],
    [
      'stream_options without stream',
      '/v1/completions',
      '{"prompt":"x","stream_options":{"include_usage":true}}',
      400,
      'invalid_parameter',
    ],
    ['missing prompt', '/v1/completions', '{}', 400, 'missing_prompt'],
    [
      'unknown model',
      '/v1/chat/completions',
      '{"model":"nope","messages":[{"role":"user","content":"x"}]}',
      404,
      'model_not_found',
    ],
    [
      'too long',
      '/v1/completions',
      '{"prompt":"x","max_tokens":100000}',
      400,
      'context_length_exceeded',
    ],
  ])('%s', async (_name, path, body, status, code) => {
    const res = await post(path, body)
    expect(res.status).toBe(status)
    const json = (await res.json()) as { error: { message: string; type: string; code: string } }
    expect(json.error.code).toBe(code)
    expect(typeof json.error.message).toBe('string')
    expect(json.error.type).toBe(status === 404 ? 'not_found_error' : 'invalid_request_error')
    if (code === 'model_not_found')
      expect(json.error.message).toBe('The model `nope` does not exist.')
  })

  it('unknown route is a JSON 404', async () => {
    const res = await fetch(`${sim.url}/v2/nothing`)
    expect(res.status).toBe(404)
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('route_not_found')
  })
})

describe('other endpoints', () => {
  it('GET /v1/models lists the base model and adapters', async () => {
    const res = await fetch(`${sim.url}/v1/models`)
    const body = (await res.json()) as {
      object: string
      data: Array<{ id: string; parent: string | null; object: string }>
    }
    expect(body.object).toBe('list')
    expect(body.data.map((m) => [m.id, m.parent])).toEqual([
      ['base-model', null],
      ['ad-1', 'base-model'],
    ])
  })

  it('POST /v1/embeddings returns deterministic unit vectors of the configured (or requested) dimension', async () => {
    const r1 = await postJson(`${sim.url}/v1/embeddings`, {
      model: 'base-model',
      input: ['alpha beta', 'gamma'],
    })
    const r2 = await postJson(`${sim.url}/v1/embeddings`, { input: 'alpha beta', dimensions: 8 })
    type Emb = {
      object: string
      data: Array<{ index: number; embedding: number[] }>
      usage: { prompt_tokens: number }
    }
    const a = r1.json as Emb
    expect(r1.status).toBe(200)
    expect(a.object).toBe('list')
    expect(a.data.map((d) => d.index)).toEqual([0, 1])
    expect(a.data[0]?.embedding).toHaveLength(32)
    expect(Math.hypot(...(a.data[0]?.embedding ?? []))).toBeCloseTo(1, 6)
    expect(a.usage.prompt_tokens).toBe(3)
    expect((r2.json as Emb).data[0]?.embedding).toHaveLength(8)
    const again = (await postJson(`${sim.url}/v1/embeddings`, { input: ['alpha beta', 'gamma'] }))
      .json as Emb
    expect(again.data).toEqual(a.data)
    const b64 = (
      await postJson(`${sim.url}/v1/embeddings`, { input: 'gamma', encoding_format: 'base64' })
    ).json as {
      data: Array<{ embedding: string }>
    }
    const decoded = new Float32Array(
      Uint8Array.from(Buffer.from(b64.data[0]?.embedding ?? '', 'base64')).buffer,
    )
    expect(decoded).toHaveLength(32)
    expect(decoded[0]).toBeCloseTo(a.data[1]?.embedding[0] ?? Number.NaN, 6)
  })

  it('GET /health answers 200 and the pod header names the instance', async () => {
    const res = await fetch(`${sim.url}/health`)
    expect(res.status).toBe(200)
    expect(res.headers.get('x-inference-pod')).toBe('shapes')
  })
})
