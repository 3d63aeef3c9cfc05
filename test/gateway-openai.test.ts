// End to end with the official OpenAI SDK as the client: real gateway (standalone, hot-reloaded
// files), real HTTP on loopback, simulated engines behind it.
import { readFile } from 'node:fs/promises'
import OpenAI, { APIError } from 'openai'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { type Gateway, startGateway } from '../dataplane/gateway.js'
import { memoryLogger } from '../dataplane/log.js'
import { RoundRobinPicker } from '../dataplane/picker.js'
import { type SimHandle, type SimOptions, startSimulator } from '../hack/sim/index.js'
import { ConfigVolume, manifests, type RouteSpec, type ServerSpec } from './helpers/config.js'
import { until } from './helpers/until.js'

const sims: Record<string, SimHandle> = {}
let gw: Gateway
let vol: ConfigVolume
let client: OpenAI
const log = memoryLogger()

const SIMS: SimOptions[] = [
  {
    name: 'a',
    host: '127.0.0.10',
    port: 0,
    model: 'sim-model',
    metricsFormat: 'vllm',
    loras: ['lora-a'],
    maxLoras: 2,
    timeScale: 0.02,
  },
  {
    name: 'b',
    host: '127.0.0.11',
    port: 0,
    model: 'sim-model',
    metricsFormat: 'sglang',
    loras: ['lora-a'],
    maxLoras: 2,
    timeScale: 0.02,
  },
  {
    name: 'slow',
    host: '127.0.0.12',
    port: 0,
    model: 'sim-model',
    metricsFormat: 'tgi',
    timeScale: 0.02,
    failures: { stallMs: 3000 },
  },
  {
    name: 'd1',
    host: '127.0.0.13',
    port: 0,
    model: 'sim-model',
    metricsFormat: 'vllm',
    timeScale: 0.02,
  },
  {
    name: 'd2',
    host: '127.0.0.14',
    port: 0,
    model: 'sim-model',
    metricsFormat: 'vllm',
    timeScale: 0.02,
  },
  {
    name: 'cut',
    host: '127.0.0.15',
    port: 0,
    model: 'sim-model',
    metricsFormat: 'vllm',
    timeScale: 0.02,
    failures: { dropMidStream: 3 },
  },
  {
    name: 'x',
    host: '127.0.0.16',
    port: 0,
    model: 'model-x',
    metricsFormat: 'vllm',
    timeScale: 0.01,
  },
  {
    name: 'y',
    host: '127.0.0.17',
    port: 0,
    model: 'model-y',
    metricsFormat: 'vllm',
    timeScale: 0.01,
  },
]

function ep(name: string) {
  const s = sims[name]
  if (!s) throw new Error(`no sim ${name}`)
  return { name: `pod-${name}`, address: s.host, port: s.port }
}

function config(reloadWeights: [number, number]): string {
  const servers: ServerSpec[] = [
    { name: 'pool', model: 'sim-model', endpoints: [ep('a'), ep('b')] },
    { name: 'slow', endpoints: [ep('slow')], trafficPolicy: { timeout: '300ms' } },
    { name: 'empty', endpoints: [{ ...ep('a'), ready: false }] },
    {
      name: 'dying',
      model: 'sim-model',
      endpoints: [ep('d1'), ep('d2')],
      trafficPolicy: { retry: { attempts: 1, retryInterval: '10ms' } },
    },
    { name: 'cut', model: 'sim-model', endpoints: [ep('cut')] },
    { name: 'x', model: 'model-x', endpoints: [ep('x')] },
    { name: 'y', model: 'model-y', endpoints: [ep('y')] },
  ]
  const one = (name: string, model: string, server: string): RouteSpec => ({
    name,
    modelName: model,
    rules: [{ targetModels: [{ modelServerName: server }] }],
  })
  const routes: RouteSpec[] = [
    one('chat', 'chat-model', 'pool'),
    {
      name: 'lora',
      loraAdapters: ['lora-a'],
      rules: [{ targetModels: [{ modelServerName: 'pool' }] }],
    },
    one('slow', 'slow-model', 'slow'),
    one('empty', 'empty-model', 'empty'),
    one('dying', 'dying-model', 'dying'),
    one('cut', 'cut-model', 'cut'),
    {
      name: 'reload',
      modelName: 'reload-model',
      rules: [
        {
          targetModels: [
            { modelServerName: 'x', weight: reloadWeights[0] },
            { modelServerName: 'y', weight: reloadWeights[1] },
          ],
        },
      ],
    },
  ]
  return manifests(servers, routes)
}

beforeAll(async () => {
  for (const o of SIMS) sims[o.name] = await startSimulator(o)
  vol = await ConfigVolume.create({ 'gateway.yaml': config([100, 0]) })
  gw = await startGateway({
    config: { kind: 'manifests', paths: [vol.dir] },
    port: 0,
    maxBodyBytes: 64 * 1024,
    pollMs: 100,
    log,
    // The proxy's own retry path is under test here: a picker that does not scrape engines keeps
    // sending to the dying endpoint first, so retries must carry the requests (the scheduler's
    // passive ejection is tested in test/scheduling.test.ts).
    picker: new RoundRobinPicker(),
  })
  client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'unused', maxRetries: 0 })
})

afterAll(async () => {
  await gw?.shutdown({ deadlineMs: 1000 })
  await Promise.all(Object.values(sims).map((s) => s.close()))
  await vol?.remove()
})

const hello = [{ role: 'user' as const, content: 'Hello there, how are you today?' }]

describe('OpenAI API through the gateway', () => {
  it('chat completion (non-stream) with usage and the upstream model name', async () => {
    const { data, response } = await client.chat.completions
      .create({ model: 'chat-model', messages: hello, max_tokens: 7 })
      .withResponse()
    expect(data.object).toBe('chat.completion')
    expect(data.model).toBe('sim-model')
    expect(data.choices[0]?.message.content?.split(' ').length).toBe(7)
    expect(data.usage?.completion_tokens).toBe(7)
    expect(data.usage?.prompt_tokens).toBeGreaterThan(5)
    expect(response.headers.get('x-request-id')).toBeTruthy()
  })

  it('chat completion stream, with include_usage', async () => {
    const stream = await client.chat.completions.create({
      model: 'chat-model',
      messages: hello,
      max_tokens: 5,
      stream: true,
      stream_options: { include_usage: true },
    })
    const parts: string[] = []
    let usage: OpenAI.CompletionUsage | null | undefined
    let finish: string | null | undefined
    for await (const chunk of stream) {
      const choice = chunk.choices[0]
      if (choice?.delta.content) parts.push(choice.delta.content)
      if (choice?.finish_reason) finish = choice.finish_reason
      if (chunk.usage) usage = chunk.usage
    }
    expect(parts.join('').trim().split(/\s+/).length).toBe(5)
    expect(finish).toBe('length')
    expect(usage?.completion_tokens).toBe(5)
  })

  it('completions, stream and non-stream', async () => {
    const r = await client.completions.create({
      model: 'chat-model',
      prompt: 'Once upon a time',
      max_tokens: 4,
    })
    expect(r.object).toBe('text_completion')
    expect(r.usage?.completion_tokens).toBe(4)
    const s = await client.completions.create({
      model: 'chat-model',
      prompt: 'Once upon a time',
      max_tokens: 4,
      stream: true,
    })
    let text = ''
    for await (const c of s) text += c.choices[0]?.text ?? ''
    expect(text.trim().split(/\s+/).length).toBe(4)
  })

  it('embeddings', async () => {
    const r = await client.embeddings.create({
      model: 'chat-model',
      input: ['first text', 'second text'],
    })
    expect(r.data.length).toBe(2)
    expect(r.data[0]?.embedding.length).toBeGreaterThan(8)
    expect(r.data[0]?.embedding).not.toEqual(r.data[1]?.embedding)
  })

  it('a LoRA adapter name reaches the engine unchanged', async () => {
    const r = await client.chat.completions.create({
      model: 'lora-a',
      messages: hello,
      max_tokens: 2,
    })
    expect(r.model).toBe('lora-a')
  })

  it('lists exactly the models that routes expose', async () => {
    const ids: string[] = []
    for await (const m of client.models.list()) ids.push(m.id)
    expect(ids).toEqual([
      'chat-model',
      'cut-model',
      'dying-model',
      'empty-model',
      'lora-a',
      'reload-model',
      'slow-model',
    ])
  })
})

async function apiError(p: Promise<unknown>): Promise<APIError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  )
  if (!(e instanceof APIError)) throw new Error(`expected an APIError, got ${String(e)}`)
  return e
}

describe('gateway errors are OpenAI-shaped', () => {
  it('400 on malformed JSON', async () => {
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"model": "chat-model",',
    })
    expect(res.status).toBe(400)
    const body = (await res.json()) as { error: { code: string; type: string; message: string } }
    expect(body.error).toMatchObject({ code: 'invalid_json', type: 'invalid_request_error' })
  })

  it('400 when model is missing', async () => {
    const e = await apiError(client.chat.completions.create({ model: '', messages: hello }))
    expect(e).toBeInstanceOf(OpenAI.BadRequestError)
    expect(e.code).toBe('missing_model')
    expect(e.param).toBe('model')
  })

  it('404 for an unknown model', async () => {
    const e = await apiError(client.chat.completions.create({ model: 'gpt-nope', messages: hello }))
    expect(e).toBeInstanceOf(OpenAI.NotFoundError)
    expect(e.code).toBe('model_not_found')
    expect(e.message).toContain('gpt-nope')
  })

  it('413 for a body over the limit', async () => {
    const e = await apiError(
      client.chat.completions.create({
        model: 'chat-model',
        messages: [{ role: 'user', content: 'x'.repeat(80 * 1024) }],
      }),
    )
    expect(e.status).toBe(413)
    expect(e.code).toBe('request_too_large')
  })

  it('503 with Retry-After when no endpoint is ready', async () => {
    const e = await apiError(
      client.chat.completions.create({ model: 'empty-model', messages: hello }),
    )
    expect(e.status).toBe(503)
    expect(e.code).toBe('no_ready_endpoint')
    expect(e.headers?.get('retry-after')).toBe('1')
  })

  it('504 when the engine does not answer within the timeout', async () => {
    const e = await apiError(
      client.chat.completions.create({ model: 'slow-model', messages: hello }),
    )
    expect(e.status).toBe(504)
    expect(e.code).toBe('upstream_timeout')
  })
})

describe('resilience', () => {
  it('retries on a dying endpoint: zero failed requests', async () => {
    await sims['d1']?.close()
    const results = await Promise.allSettled(
      Array.from({ length: 12 }, () =>
        client.chat.completions.create({ model: 'dying-model', messages: hello, max_tokens: 2 }),
      ),
    )
    expect(results.filter((r) => r.status === 'rejected')).toEqual([])
    const failures = await gw.metrics.upstreamFailures.get()
    expect(
      failures.values.find(
        (v) => v.labels['server'] === 'default/dying' && v.labels['reason'] === 'connect-failure',
      )?.value,
    ).toBeGreaterThan(0)
  })

  it('a stream cut mid-way surfaces as an error to the SDK, never a clean finish', async () => {
    const stream = await client.chat.completions.create({
      model: 'cut-model',
      messages: hello,
      max_tokens: 20,
      stream: true,
    })
    const seen: string[] = []
    const err = await (async () => {
      for await (const c of stream) seen.push(c.choices[0]?.delta.content ?? '')
    })().then(
      () => undefined,
      (e: unknown) => e,
    )
    expect(err).toBeInstanceOf(APIError)
    expect(String((err as APIError).message)).toContain('upstream closed the stream')
    expect(seen.length).toBeGreaterThan(0)
  })
})

describe('hot reload', () => {
  it('swaps config under load with zero failed requests, and the new weights take effect', async () => {
    let stop = false
    let ok = 0
    const failures: unknown[] = []
    const worker = async () => {
      while (!stop) {
        try {
          const s = await client.chat.completions.create({
            model: 'reload-model',
            messages: hello,
            max_tokens: 3,
            stream: true,
          })
          for await (const _ of s) {
            // drain
          }
          ok++
        } catch (e) {
          failures.push(e)
        }
      }
    }
    const workers = Array.from({ length: 4 }, worker)
    for (let i = 0; i < 8; i++) {
      await vol.update({ 'gateway.yaml': config(i % 2 === 0 ? [0, 100] : [100, 0]) })
      await new Promise((r) => setTimeout(r, 150))
    }
    await vol.update({ 'gateway.yaml': config([0, 100]) })
    await new Promise((r) => setTimeout(r, 400))
    stop = true
    await Promise.all(workers)
    expect(failures).toEqual([])
    expect(ok).toBeGreaterThan(20)
    // The last file takes effect once the watcher has read it (a loaded machine may take longer
    // than the 400 ms above): from then on every answer comes from model-y.
    const answered = async (): Promise<string[]> => {
      const models = new Set<string>()
      for (let i = 0; i < 10; i++)
        models.add(
          (
            await client.chat.completions.create({
              model: 'reload-model',
              messages: hello,
              max_tokens: 1,
            })
          ).model,
        )
      return [...models]
    }
    await until(async () => (await answered()).join() === 'model-y', 10_000, 'the last config')
    expect(await answered()).toEqual(['model-y'])
  })

  it('rejects a bad file with file, line and field, keeps serving the last good config, counts the failure', async () => {
    const before =
      (await gw.metrics.reloads.get()).values.find((v) => v.labels['result'] === 'failure')
        ?.value ?? 0
    const good = config([0, 100])
    const bad = good.replace('"weight": 100', '"weight": 250')
    expect(bad).not.toBe(good)
    await vol.update({ 'gateway.yaml': bad })
    await vi.waitFor(
      async () => {
        const after =
          (await gw.metrics.reloads.get()).values.find((v) => v.labels['result'] === 'failure')
            ?.value ?? 0
        expect(after).toBe(before + 1)
      },
      { timeout: 15_000, interval: 50 },
    )
    const rec = log.records.find((r) => r.level === 'error' && r.msg.includes('weight'))
    const lineOf250 = bad.split('\n').findIndex((l) => l.includes('"weight": 250')) + 1
    expect(rec?.msg).toMatch(
      new RegExp(
        `gateway\\.yaml:${lineOf250}:\\d+: spec\\.rules\\[0\\]\\.targetModels\\[1\\]\\.weight`,
      ),
    )
    const r = await client.chat.completions.create({
      model: 'reload-model',
      messages: hello,
      max_tokens: 1,
    })
    expect(r.model).toBe('model-y')
    const text = await (await fetch(`${gw.url}/metrics`)).text()
    expect(text).toMatch(/infer_gateway_config_reloads_total\{result="failure"\} [1-9]/)
    expect(await readFile(`${vol.dir}/gateway.yaml`, 'utf8')).toContain('250')
  })
})
