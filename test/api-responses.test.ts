// POST /v1/responses end to end with the official openai SDK (client.responses.create, streamed
// and not): routed by model to a simulated vLLM engine and to an OpenAI provider simulator, the
// named event stream passed through, usage counted (access log, provider cost), rate limits
// applied; a TGI server and an Anthropic provider answer 400 unsupported_api.
import OpenAI, { BadRequestError, RateLimitError } from 'openai'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type SimServer, startAnthropicSim, startOpenAISim } from '../hack/providers-sim/index.js'
import { type SimHandle, startSimulator } from '../hack/sim/index.js'
import { gatewayPolicy, sha256 } from './helpers/filters.js'
import {
  type ProviderGateway,
  providerDoc,
  routeDoc,
  secretEntry,
  serverDocs,
  simpleRoute,
  startProviderGateway,
} from './helpers/providers.js'
import { json, startUpstream, type TestUpstream } from './helpers/upstream.js'

const KEY = 'sk-responses-client-0001'
let engine: SimHandle
let openai: SimServer
let anthropic: SimServer
let pg: ProviderGateway
let client: OpenAI
/** An engine version without the Responses API: 404 on /v1/responses. */
let old: TestUpstream

beforeAll(async () => {
  engine = await startSimulator({
    name: 'r',
    host: '127.0.0.202',
    port: 0,
    model: 'm',
    metricsFormat: 'vllm',
    timeScale: 0.01,
  })
  openai = await startOpenAISim({ host: '127.0.0.203', flavor: 'openai', name: 'gpt' })
  openai.keys.add('sk-openai-1')
  anthropic = await startAnthropicSim({ host: '127.0.0.204', name: 'claude' })
  anthropic.keys.add('sk-ant-1')
  old = await startUpstream('127.0.0.205', (_req, res) => json(res, 404, { detail: 'Not Found' }))
  const ep = [{ name: 'pod-r', address: engine.host, port: engine.port }]
  pg = await startProviderGateway(
    [
      ...serverDocs('vllm', ep, { model: 'm' }),
      ...serverDocs('tgi', ep, { model: 'm', inferenceEngine: 'TGI' }),
      routeDoc('engine', 'engine-model', [{ targetModels: [{ modelServerName: 'vllm' }] }]),
      routeDoc('tgi', 'tgi-model', [{ targetModels: [{ modelServerName: 'tgi' }] }]),
      routeDoc('old', 'old-model', [{ targetModels: [{ modelServerName: 'old' }] }]),
      ...serverDocs('old', [{ name: 'pod-old', address: old.host, port: old.port }], {
        model: 'm',
      }),
      providerDoc('gpt', {
        providerType: 'OpenAI',
        model: 'gpt-5-mini',
        baseURL: `${openai.url}/v1`,
        auth: { secretRef: { name: 'oa', key: 'k' } },
        pricing: { inputPerMillion: '1', outputPerMillion: '2' },
      }),
      providerDoc('claude', {
        providerType: 'Anthropic',
        baseURL: anthropic.url,
        auth: { secretRef: { name: 'an', key: 'k' } },
      }),
      simpleRoute('gpt'),
      simpleRoute('claude'),
      gatewayPolicy({
        authentication: {
          apiKeys: [{ name: 'c', secretKey: 'key.c', tenant: 't', tier: 'gold' }],
        },
        tiers: [{ name: 'gold' }],
      }),
    ],
    {
      'key.c': sha256(KEY),
      [secretEntry('oa', 'k')]: 'sk-openai-1',
      [secretEntry('an', 'k')]: 'sk-ant-1',
    },
  )
  client = new OpenAI({ baseURL: `${pg.gw.url}/v1`, apiKey: KEY, maxRetries: 0 })
})

afterAll(async () => {
  await pg?.close()
  await engine?.close()
  await openai?.close()
  await anthropic?.close()
  await old?.close()
})

const lastLine = (id: string) => pg.log.find((l) => l.request_id === id)

describe('POST /v1/responses', () => {
  it('engine: non-streamed answer with usage in the access log', async () => {
    const r = await client.responses.create(
      { model: 'engine-model', input: 'hello engine', max_output_tokens: 6 },
      { headers: { 'x-request-id': 'resp-engine-1' } },
    )
    expect(r.object).toBe('response')
    expect(r.output_text.trim().split(/\s+/)).toHaveLength(6)
    const line = lastLine('resp-engine-1')
    expect(line).toMatchObject({
      path: '/v1/responses',
      status: 200,
      server: 'default/vllm',
      completion_tokens: 6,
      prompt_tokens: r.usage?.input_tokens,
    })
  })

  it('engine: the named event stream passes through, usage counted', async () => {
    const stream = await client.responses.create(
      { model: 'engine-model', input: 'stream please', max_output_tokens: 4, stream: true },
      { headers: { 'x-request-id': 'resp-engine-2' } },
    )
    const types: string[] = []
    let usage: OpenAI.Responses.ResponseUsage | undefined
    for await (const ev of stream) {
      types.push(ev.type)
      if (ev.type === 'response.incomplete' || ev.type === 'response.completed')
        usage = ev.response.usage ?? undefined
    }
    expect(types[0]).toBe('response.created')
    expect(types.filter((t) => t === 'response.output_text.delta')).toHaveLength(4)
    expect(types.at(-1)).toBe('response.incomplete')
    // The stream's end is recorded when the body ends: wait for the line.
    for (let i = 0; i < 50 && lastLine('resp-engine-2') === undefined; i++)
      await new Promise((r) => setTimeout(r, 20))
    expect(lastLine('resp-engine-2')).toMatchObject({
      stream: true,
      completion_tokens: 4,
      prompt_tokens: usage?.input_tokens,
    })
  })

  it('OpenAI provider: passed through with the provider model, streamed and not, costed', async () => {
    const r = await client.responses.create(
      { model: 'gpt', input: 'hi provider' },
      { headers: { 'x-request-id': 'resp-gpt-1' } },
    )
    expect(r.output_text).toBe('Hello from gpt. You said: hi provider')
    const sent = openai.requests.at(-1)
    expect(sent?.path).toBe('/v1/responses')
    const body = (sent?.body ?? {}) as Record<string, unknown>
    expect(body['model']).toBe('gpt-5-mini')
    expect(body['stream_options']).toBeUndefined()
    expect(lastLine('resp-gpt-1')).toMatchObject({
      provider: 'default/gpt',
      prompt_tokens: 2,
      completion_tokens: 7,
      cost: (2 * 1 + 7 * 2) / 1e6,
    })
    const stream = await client.responses.create(
      { model: 'gpt', input: 'stream it', stream: true },
      { headers: { 'x-request-id': 'resp-gpt-2' } },
    )
    let text = ''
    let done = false
    for await (const ev of stream) {
      if (ev.type === 'response.output_text.delta') text += ev.delta
      if (ev.type === 'response.completed') done = true
    }
    expect(text).toBe('Hello from gpt. You said: stream it')
    expect(done).toBe(true)
    for (let i = 0; i < 50 && lastLine('resp-gpt-2') === undefined; i++)
      await new Promise((r) => setTimeout(r, 20))
    expect(lastLine('resp-gpt-2')).toMatchObject({ stream: true, completion_tokens: 7 })
  })

  it('TGI servers, engines without the endpoint and Anthropic providers: 400 unsupported_api', async () => {
    for (const model of ['tgi-model', 'old-model', 'claude']) {
      const e = await client.responses.create({ model, input: 'x' }).catch((x: unknown) => x)
      expect(e).toBeInstanceOf(BadRequestError)
      expect((e as BadRequestError).code).toBe('unsupported_api')
    }
  })
})

describe('POST /v1/responses under rate limits', () => {
  let limited: ProviderGateway
  beforeAll(async () => {
    const ep = [{ name: 'pod-r', address: engine.host, port: engine.port }]
    limited = await startProviderGateway(
      [
        ...serverDocs('vllm', ep, { model: 'm' }),
        routeDoc('engine', 'engine-model', [{ targetModels: [{ modelServerName: 'vllm' }] }]),
        gatewayPolicy({
          authentication: {
            apiKeys: [{ name: 'c', secretKey: 'key.c', tenant: 't', tier: 'small' }],
          },
          tiers: [{ name: 'small', rate: [{ outputTokens: 10, per: 'hour' }] }],
          rateLimit: { outputTokens: { defaultReservation: 1, maxReservation: 100 } },
        }),
      ],
      { 'key.c': sha256(KEY) },
    )
  })
  afterAll(async () => {
    await limited?.close()
  })

  it('the output tokens a Responses answer used count against the tier', async () => {
    const c = new OpenAI({ baseURL: `${limited.gw.url}/v1`, apiKey: KEY, maxRetries: 0 })
    const a = await c.responses.create({ model: 'engine-model', input: 'a', max_output_tokens: 6 })
    expect(a.usage?.output_tokens).toBe(6)
    // 6 of 10 used: a request reserving 6 more no longer fits.
    const e = await c.responses
      .create({ model: 'engine-model', input: 'b', max_output_tokens: 6 })
      .catch((x: unknown) => x)
    expect(e).toBeInstanceOf(RateLimitError)
    const ok = await c.responses.create({ model: 'engine-model', input: 'c', max_output_tokens: 3 })
    expect(ok.usage?.output_tokens).toBe(3)
  })
})
