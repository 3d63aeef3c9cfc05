// Rate limits end to end with the local backend: a real gateway (standalone YAML, secrets dir),
// the engine simulator and a fixed-usage upstream behind it, the `openai` SDK as the client.
// Request and token limits per tier, per route (Kthena's shape) and per route × tier; reserve →
// settle with the engine's usage; streams that get usage injected (and hidden again) or are cut
// when they run past their output limit; OpenAI's 429 shape and x-ratelimit-* headers.
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import OpenAI, { APIError, RateLimitError } from 'openai'
import { request } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type Gateway, startGateway } from '../dataplane/gateway.js'
import { memoryLogger } from '../dataplane/log.js'
import { RoundRobinPicker } from '../dataplane/picker.js'
import { type SimHandle, startSimulator } from '../hack/sim/index.js'
import { promSum, scrapeProm } from '../hack/sim/testkit.js'
import { ConfigVolume } from './helpers/config.js'
import {
  endpoints,
  gatewayPolicy,
  modelRoute,
  modelServer,
  sha256,
  yamlDocs,
} from './helpers/filters.js'
import { json, startUpstream, type TestUpstream } from './helpers/upstream.js'

let sim: SimHandle
let echo: TestUpstream
let gw: Gateway
let vol: ConfigVolume
let secretsDir: string
const log = memoryLogger()

const KEYS = {
  req: 'sk-req-000000000001',
  budget: 'sk-budget-0000000002',
  out: 'sk-out-00000000000003',
  plain: 'sk-plain-000000000004',
  small: 'sk-small-000000000005',
  roomy: 'sk-roomy-000000000006',
} as const
type KeyName = keyof typeof KEYS

beforeAll(async () => {
  sim = await startSimulator({
    name: 'rl',
    host: '127.0.0.40',
    port: 0,
    model: 'sim-model',
    metricsFormat: 'vllm',
    timeScale: 0.005,
    defaultMaxTokens: 40,
  })
  echo = await startUpstream('127.0.0.41', (_req, res) =>
    json(res, 200, {
      id: 'x',
      object: 'chat.completion',
      created: 1,
      model: 'echo-model',
      choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }],
      usage: { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 },
    }),
  )
  secretsDir = await mkdtemp(join(tmpdir(), 'igw-rl-secrets-'))
  for (const [name, key] of Object.entries(KEYS))
    await writeFile(join(secretsDir, `key.${name}`), sha256(key))
  const tiers = {
    req: { rate: [{ requests: 3, per: 'minute' }] },
    budget: { budget: [{ tokens: 300, per: 'day' }] },
    out: { rate: [{ outputTokens: 30, per: 'hour' }] },
    plain: {},
    small: { rate: [{ tokens: 50, per: 'minute' }] },
    roomy: { rate: [{ tokens: 1_000_000, per: 'minute' }] },
  }
  const config = yamlDocs([
    modelServer('sim', 'sim-model', sim.port),
    endpoints('sim', sim.host, sim.port),
    modelServer('echo', 'echo-model', echo.port),
    endpoints('echo', echo.host, echo.port),
    modelRoute('sim', 'sim-model', 'sim'),
    modelRoute('echo', 'echo-model', 'echo'),
    // Kthena's shape: a limit for everyone calling the route.
    modelRoute('kthena', 'kthena-model', 'sim', {
      rateLimit: { inputTokensPerUnit: 60, unit: 'minute' },
    }),
    modelRoute('rt', 'rt-model', 'sim', {
      tierLimits: [{ tier: 'plain', rate: [{ requests: 2, per: 'hour' }] }],
    }),
    gatewayPolicy({
      authentication: {
        apiKeys: Object.keys(KEYS).map((name) => ({
          name,
          secretKey: `key.${name}`,
          tenant: `tenant-${name}`,
          tier: name,
        })),
      },
      tiers: Object.entries(tiers).map(([name, t]) => ({ name, ...t })),
      rateLimit: { outputTokens: { defaultReservation: 8, maxReservation: 4096 } },
    }),
  ])
  vol = await ConfigVolume.create({ 'gateway.yaml': config })
  gw = await startGateway({
    config: { kind: 'manifests', paths: [vol.dir] },
    port: 0,
    secretsDir,
    picker: new RoundRobinPicker(),
    log,
  })
})

afterAll(async () => {
  await gw?.shutdown({ deadlineMs: 1000 })
  await sim?.close()
  await echo?.close()
  await vol?.remove()
  if (secretsDir) await rm(secretsDir, { recursive: true, force: true })
})

const client = (k: KeyName) =>
  new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: KEYS[k], maxRetries: 0, timeout: 10_000 })

const ask = (model: string, extra: Record<string, unknown> = {}) => ({
  model,
  messages: [{ role: 'user' as const, content: 'Say something short about rate limits.' }],
  max_tokens: 5,
  ...extra,
})

async function metric(name: string, labels: Record<string, string>): Promise<number> {
  return promSum(await scrapeProm(`${gw.url}/metrics`), name, labels)
}

describe('request limits', () => {
  it('admits up to the limit with x-ratelimit-* headers, then RateLimitError with Retry-After', async () => {
    const c = client('req')
    for (const remaining of [2, 1, 0]) {
      const { response } = await c.chat.completions.create(ask('echo-model')).withResponse()
      expect(response.headers.get('x-ratelimit-limit-requests')).toBe('3')
      expect(response.headers.get('x-ratelimit-remaining-requests')).toBe(String(remaining))
      expect(response.headers.get('x-ratelimit-reset-requests')).toMatch(
        /^\d+(\.\d)?s$|^\d+m[\d.]+s$/,
      )
    }
    const e = await c.chat.completions.create(ask('echo-model')).catch((x: unknown) => x)
    expect(e).toBeInstanceOf(RateLimitError)
    const r = e as RateLimitError
    expect(r.status).toBe(429)
    expect(r.code).toBe('rate_limit_exceeded')
    expect(r.type).toBe('rate_limit_error')
    expect(r.message).toContain('tier req')
    // One request back at 3/minute takes at most 20 s (less the time these requests took), and the
    // two headers say the same wait: seconds rounded up from the milliseconds.
    const retryAfter = Number(r.headers?.get('retry-after'))
    const retryAfterMs = Number(r.headers?.get('retry-after-ms'))
    expect(retryAfter).toBeGreaterThanOrEqual(1)
    expect(retryAfter).toBeLessThanOrEqual(20)
    expect(retryAfter).toBe(Math.ceil(retryAfterMs / 1000))
    expect(r.headers?.get('x-ratelimit-remaining-requests')).toBe('0')
    expect(
      await metric('infer_gateway_ratelimit_decisions_total', { tier: 'req', result: 'limited' }),
    ).toBe(1)
  })

  it('applies per route × tier limits', async () => {
    const c = client('plain')
    await c.chat.completions.create(ask('rt-model'))
    await c.chat.completions.create(ask('rt-model'))
    const e = await c.chat.completions.create(ask('rt-model')).catch((x: unknown) => x)
    expect(e).toBeInstanceOf(RateLimitError)
    expect((e as RateLimitError).message).toContain('tier plain on route default/rt')
    // The same tier elsewhere is not limited.
    expect((await c.chat.completions.create(ask('sim-model'))).id).toBeTruthy()
  })
})

describe('token limits', () => {
  it("keeps Kthena's per-route input-token limit working (shared by every caller)", async () => {
    const long = 'lorem ipsum dolor sit amet '.repeat(6)
    let ok = 0
    let limited: RateLimitError | undefined
    for (let i = 0; i < 10 && limited === undefined; i++) {
      const who = i % 2 === 0 ? 'plain' : 'roomy'
      try {
        await client(who).chat.completions.create(
          ask('kthena-model', { messages: [{ role: 'user', content: long }] }),
        )
        ok++
      } catch (e) {
        if (!(e instanceof RateLimitError)) throw e
        limited = e
      }
    }
    expect(ok).toBeGreaterThanOrEqual(1)
    expect(ok).toBeLessThan(10)
    expect(limited?.message).toContain('model default/kthena')
    expect(limited?.message).toContain('input tokens per minute')
  })

  it('settles with the engine usage: reservations of max_tokens come back', async () => {
    // Each request reserves its input + 100 output tokens against a 300-token daily budget but
    // uses 4 (the upstream's usage): without settling, the third would be refused.
    const c = client('budget')
    for (let i = 0; i < 12; i++) {
      const { response } = await c.chat.completions
        .create(ask('echo-model', { max_tokens: 100 }))
        .withResponse()
      expect(response.status).toBe(200)
    }
    expect(
      await metric('infer_gateway_tier_tokens_total', { tier: 'budget', type: 'output' }),
    ).toBe(12)
    // Run the budget out with the simulator (real usage): a 429 insufficient_quota until midnight.
    let used = 12 * 4
    let quota: RateLimitError | undefined
    for (let i = 0; i < 40 && quota === undefined; i++) {
      try {
        const r = await c.chat.completions.create(ask('sim-model', { max_tokens: 10 }))
        used += r.usage?.total_tokens ?? 0
      } catch (e) {
        if (!(e instanceof RateLimitError)) throw e
        quota = e
      }
    }
    expect(quota?.code).toBe('insufficient_quota')
    expect(quota?.message).toMatch(/daily budget of 300 tokens/)
    expect(used).toBeLessThanOrEqual(300)
    expect(used).toBeGreaterThan(300 - 60)
    // The wait ends at the next UTC midnight by the gateway's own clock (its Date header, whole
    // seconds): answer time + Retry-After lands on a day boundary, whatever this machine's load.
    const retryAfter = Number(quota?.headers?.get('retry-after'))
    const answeredS = Date.parse(quota?.headers?.get('date') ?? '') / 1000
    const endsS = answeredS + retryAfter
    expect(retryAfter).toBeGreaterThan(0)
    expect(Math.abs(endsS - Math.round(endsS / 86_400) * 86_400)).toBeLessThanOrEqual(1)
  })

  it('refuses a request that can never fit, telling the SDK not to retry', async () => {
    const r = await request(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${KEYS.small}` },
      body: JSON.stringify(ask('sim-model', { max_tokens: 100 })),
    })
    expect(r.statusCode).toBe(429)
    expect(r.headers['x-should-retry']).toBe('false')
    expect(r.headers['retry-after']).toBeUndefined()
    const body = (await r.body.json()) as { error: { message: string } }
    expect(body.error.message).toMatch(
      /Request too large .* needs \d+ tokens but the limit is 50 per minute/,
    )
  })
})

describe('streams', () => {
  it('asks the engine for usage and hides the usage chunk from a client that did not ask', async () => {
    const before = await metric('infer_gateway_tier_tokens_total', {
      tier: 'roomy',
      type: 'output',
    })
    const stream = await client('roomy').chat.completions.create({
      ...ask('sim-model', { max_tokens: 6 }),
      stream: true,
    })
    let text = ''
    for await (const chunk of stream) {
      expect(chunk.choices.length).toBeGreaterThan(0)
      expect(chunk.usage ?? undefined).toBeUndefined()
      text += chunk.choices[0]?.delta.content ?? ''
    }
    expect(text.length).toBeGreaterThan(0)
    // Settled with the engine's count (the usage chunk the gateway asked for).
    expect(await metric('infer_gateway_tier_tokens_total', { tier: 'roomy', type: 'output' })).toBe(
      before + 6,
    )
  })

  it('passes the usage chunk to a client that asked for it', async () => {
    const stream = await client('roomy').chat.completions.create({
      ...ask('sim-model', { max_tokens: 6 }),
      stream: true,
      stream_options: { include_usage: true },
    })
    const chunks = []
    for await (const chunk of stream) chunks.push(chunk)
    const last = chunks.at(-1)
    expect(last?.choices).toEqual([])
    expect(last?.usage?.completion_tokens).toBe(6)
  })

  it('ends a stream that runs past its output-token limit with an error event', async () => {
    // 30 output tokens per hour, 8 reserved up front (no max_tokens); the engine wants to write 40.
    const { max_tokens: _, ...noMax } = ask('sim-model')
    const stream = await client('out').chat.completions.create({ ...noMax, stream: true })
    let tokens = 0
    const err = await (async () => {
      for await (const chunk of stream) if (chunk.choices[0]?.delta.content) tokens++
    })().catch((e: unknown) => e)
    expect(err).toBeInstanceOf(APIError)
    expect((err as APIError).message).toContain('output token rate limit')
    expect(tokens).toBeGreaterThanOrEqual(20)
    expect(tokens).toBeLessThanOrEqual(30)
    expect(await metric('infer_gateway_ratelimit_stream_cuts_total', { tier: 'out' })).toBe(1)
    // The output budget is spent (at most 6 of 30 left): the next request waits.
    const e = await client('out')
      .chat.completions.create(ask('sim-model', { max_tokens: 10 }))
      .catch((x: unknown) => x)
    expect(e).toBeInstanceOf(RateLimitError)
  })
})
