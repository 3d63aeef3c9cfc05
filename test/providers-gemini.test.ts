// Gemini end to end through its native API: OpenAI chat completions and embeddings from the
// `openai` SDK, translated to generateContent / streamGenerateContent?alt=sse / batchEmbedContents
// of a loopback simulator, and back (thought parts hidden, thinking tokens billed as output,
// safety stops as content_filter, a stream without a finish reason reported as cut).
import OpenAI, { APIError } from 'openai'
import type { ChatCompletionMessageParam } from 'openai/resources/chat/completions'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type SimServer, startGeminiSim } from '../hack/providers-sim/index.js'
import {
  type ProviderGateway,
  providerDoc,
  secretEntry,
  simpleRoute,
  startProviderGateway,
} from './helpers/providers.js'

const KEY = 'AIzaSy-test-0123456789'
let sim: SimServer
let pg: ProviderGateway
let client: OpenAI

type Sent = {
  contents: { role: string; parts: Record<string, unknown>[] }[]
  systemInstruction?: unknown
  generationConfig?: Record<string, unknown>
  tools?: unknown
  toolConfig?: unknown
}

beforeAll(async () => {
  sim = await startGeminiSim({ host: '127.0.0.60', name: 'gemini' })
  sim.keys.add(KEY)
  pg = await startProviderGateway(
    [
      providerDoc('gemini', {
        providerType: 'Gemini',
        model: 'gemini-2.5-flash',
        baseURL: sim.url,
        auth: { secretRef: { name: 'google', key: 'api-key' } },
      }),
      providerDoc('gemini-embed', {
        providerType: 'Gemini',
        model: 'gemini-embedding-001',
        baseURL: sim.url,
        auth: { secretRef: { name: 'google', key: 'api-key' } },
      }),
      providerDoc('gemini-badkey', {
        providerType: 'Gemini',
        baseURL: sim.url,
        auth: { secretRef: { name: 'google', key: 'stale' } },
      }),
      simpleRoute('gemini'),
      simpleRoute('gemini-embed'),
      simpleRoute('gemini-badkey'),
    ],
    { [secretEntry('google', 'api-key')]: KEY, [secretEntry('google', 'stale')]: 'AIzaSy-stale' },
  )
  client = new OpenAI({ baseURL: `${pg.gw.url}/v1`, apiKey: 'client-key', maxRetries: 0 })
})

afterAll(async () => {
  await pg?.close()
  await sim?.close()
})

function lastReq() {
  const r = sim.requests.at(-1)
  if (!r) throw new Error('no request')
  return { ...r, body: r.body as Sent }
}

describe('Gemini: generateContent', () => {
  it('translates roles, system instruction and generation config; hides thoughts; bills them', async () => {
    const r = await client.chat.completions.create({
      model: 'gemini',
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'hi' },
        { role: 'assistant', content: 'hello' },
        { role: 'user', content: 'how are you' },
      ],
      temperature: 0.3,
      top_p: 0.9,
      max_tokens: 100,
      seed: 7,
      stop: 'END',
      presence_penalty: 0.5,
    })
    expect(r.choices[0]?.message.content).toBe('Hello from gemini. You said: how are you')
    expect(r.choices[0]?.finish_reason).toBe('stop')
    expect(r.model).toBe('gemini-2.5-flash-001')
    // 3 thinking tokens are output tokens (Google bills them so).
    expect(r.usage).toMatchObject({
      prompt_tokens: 7,
      completion_tokens: 11,
      completion_tokens_details: { reasoning_tokens: 3 },
    })
    const req = lastReq()
    expect(req.path).toBe('/v1beta/models/gemini-2.5-flash:generateContent')
    expect(req.headers['x-goog-api-key']).toBe(KEY)
    expect(req.headers.authorization).toBeUndefined()
    expect(req.body.systemInstruction).toEqual({ parts: [{ text: 'Be brief.' }] })
    expect(req.body.contents.map((c) => c.role)).toEqual(['user', 'model', 'user'])
    expect(req.body.generationConfig).toEqual({
      temperature: 0.3,
      topP: 0.9,
      maxOutputTokens: 100,
      seed: 7,
      stopSequences: ['END'],
      presencePenalty: 0.5,
    })
  })

  it('n → candidateCount → choices; json_schema → responseJsonSchema', async () => {
    const r = await client.chat.completions.create({
      model: 'gemini',
      messages: [{ role: 'user', content: 'two please' }],
      n: 2,
      response_format: {
        type: 'json_schema',
        json_schema: { name: 'x', schema: { type: 'object', properties: {} } },
      },
    })
    expect(r.choices.map((c) => c.index)).toEqual([0, 1])
    expect(lastReq().body.generationConfig).toEqual({
      candidateCount: 2,
      responseMimeType: 'application/json',
      responseJsonSchema: { type: 'object', properties: {} },
    })
  })

  it('MAX_TOKENS → length; SAFETY → content_filter', async () => {
    const a = await client.chat.completions.create({
      model: 'gemini',
      messages: [{ role: 'user', content: 'abc' }],
      max_tokens: 2,
    })
    expect(a.choices[0]?.finish_reason).toBe('length')
    const b = await client.chat.completions.create({
      model: 'gemini',
      messages: [{ role: 'user', content: 'something forbidden' }],
    })
    expect(b.choices[0]?.finish_reason).toBe('content_filter')
  })

  it('function calling round trip (tool results answered by function name)', async () => {
    const tools = [
      {
        type: 'function' as const,
        function: {
          name: 'get_weather',
          parameters: { type: 'object', properties: { location: { type: 'string' } } },
        },
      },
    ]
    const messages: ChatCompletionMessageParam[] = [{ role: 'user', content: 'weather?' }]
    const first = await client.chat.completions.create({
      model: 'gemini',
      messages,
      tools,
      tool_choice: 'auto',
    })
    const choice = first.choices[0]
    const call = choice?.message.tool_calls?.[0]
    expect(choice?.finish_reason).toBe('tool_calls')
    expect(call?.type === 'function' ? call.function : undefined).toEqual({
      name: 'get_weather',
      arguments: '{"location":"Paris"}',
    })
    expect(lastReq().body.tools).toEqual([
      {
        functionDeclarations: [
          {
            name: 'get_weather',
            parametersJsonSchema: { type: 'object', properties: { location: { type: 'string' } } },
          },
        ],
      },
    ])
    expect(lastReq().body.toolConfig).toEqual({ functionCallingConfig: { mode: 'AUTO' } })
    if (!choice || !call) throw new Error('no call')
    messages.push(choice.message, { role: 'tool', tool_call_id: call.id, content: '18C' })
    const second = await client.chat.completions.create({ model: 'gemini', messages, tools })
    expect(second.choices[0]?.message.content).toBe('The tool said: {"result":"18C"}')
    expect(lastReq().body.contents.at(-1)).toEqual({
      role: 'user',
      parts: [
        { functionResponse: { name: 'get_weather', response: { result: '18C' }, id: call.id } },
      ],
    })
  })
})

describe('Gemini: streamGenerateContent', () => {
  it('SSE (CRLF frames, no sentinel) becomes OpenAI chunks ending in [DONE]', async () => {
    const stream = await client.chat.completions.create({
      model: 'gemini',
      messages: [{ role: 'user', content: 'stream it' }],
      stream: true,
      stream_options: { include_usage: true },
    })
    let text = ''
    let finish = ''
    const usage: unknown[] = []
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? ''
      finish = chunk.choices[0]?.finish_reason ?? finish
      if (chunk.usage) usage.push(chunk.usage)
    }
    expect(text).toBe('Hello from gemini. You said: stream it')
    expect(finish).toBe('stop')
    expect(usage).toHaveLength(1)
    const req = lastReq()
    expect(req.path).toBe('/v1beta/models/gemini-2.5-flash:streamGenerateContent')
    expect(req.query.get('alt')).toBe('sse')
  })

  it('a stream that ends without a finish reason is reported as cut', async () => {
    sim.cutAfter = 2
    try {
      const stream = await client.chat.completions.create({
        model: 'gemini',
        messages: [{ role: 'user', content: 'a long answer please' }],
        stream: true,
      })
      const err = await (async () => {
        for await (const _ of stream) {
          // drain
        }
      })().catch((e) => e)
      expect(err).toBeInstanceOf(APIError)
      expect(err.message).toContain('before')
    } finally {
      sim.cutAfter = null
    }
  })
})

describe('Gemini: embeddings and errors', () => {
  it('embeddings through batchEmbedContents, base64 as the SDK asks', async () => {
    const r = await client.embeddings.create({
      model: 'gemini-embed',
      input: ['abc', 'de'],
      dimensions: 3,
    })
    expect(r.data.map((d) => d.embedding.length)).toEqual([3, 3])
    expect(r.data[0]?.embedding[0]).toBeCloseTo(0.03, 5)
    const req = sim.requests.at(-1)
    expect(req?.path).toBe('/v1beta/models/gemini-embedding-001:batchEmbedContents')
  })

  it("Gemini's 400 API_KEY_INVALID is the gateway's credential: 502", async () => {
    const err = await client.chat.completions
      .create({ model: 'gemini-badkey', messages: [{ role: 'user', content: 'x' }] })
      .catch((e) => e)
    expect([err.status, err.code]).toEqual([502, 'provider_credentials_rejected'])
  })

  it('429 stays 429; unsupported parameters are 400', async () => {
    sim.failNext(429, 1, '2')
    const a = await client.chat.completions
      .create({ model: 'gemini', messages: [{ role: 'user', content: 'x' }] })
      .catch((e) => e)
    expect([a.status, a.headers.get('retry-after')]).toEqual([429, '2'])
    for (const extra of [{ logprobs: true }, { parallel_tool_calls: false }]) {
      const b = await client.chat.completions
        .create({ model: 'gemini', messages: [{ role: 'user', content: 'x' }], ...extra })
        .catch((e) => e)
      expect([b.status, b.code, b.param]).toEqual([
        400,
        'unsupported_parameter',
        Object.keys(extra)[0],
      ])
    }
  })
})
