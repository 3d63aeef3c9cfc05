// The global (Redis) backend behind a real gateway: limits shared through a real redis-server,
// and what happens when Redis goes away — fail closed answers 503, fail open admits and charges
// later, both logged and counted — and comes back (nothing lost: the charges made meanwhile land).
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { request } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type Gateway, startGateway } from '../dataplane/gateway.js'
import { memoryLogger } from '../dataplane/log.js'
import { RoundRobinPicker } from '../dataplane/picker.js'
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
import { type RedisServer, startRedis } from './helpers/redis-server.js'
import { json, startUpstream, type TestUpstream } from './helpers/upstream.js'

const KEY = 'sk-redis-test-0001'
const REDIS_PASSWORD = 'redis-pass-5e6f7a8b'
let redis: RedisServer
let echo: TestUpstream
let secretsDir: string
const gws: Record<
  'open' | 'closed',
  { gw: Gateway; vol: ConfigVolume; log: ReturnType<typeof memoryLogger> }
> = {} as never

async function gateway(mode: 'open' | 'closed') {
  const vol = await ConfigVolume.create({
    'gateway.yaml': yamlDocs([
      modelServer('echo', 'echo-model', echo.port),
      endpoints('echo', echo.host, echo.port),
      modelRoute('echo', 'echo-model', 'echo'),
      gatewayPolicy({
        authentication: { apiKeys: [{ name: 'k', secretKey: 'key', tenant: 't', tier: 'std' }] },
        // A separate tier per gateway: each counts its own callers.
        tiers: [{ name: 'std', key: 'tier', rate: [{ requests: 1000, per: 'day' }] }],
        rateLimit: {
          backend: 'redis',
          redis: {
            address: redis.address,
            passwordSecretKey: 'redis.password',
            keyPrefix: `igw-${mode}`,
            timeout: '100ms',
          },
          failureMode: mode,
        },
      }),
    ]),
  })
  const log = memoryLogger()
  const gw = await startGateway({
    config: { kind: 'manifests', paths: [vol.dir] },
    port: 0,
    secretsDir,
    picker: new RoundRobinPicker(),
    log,
  })
  gws[mode] = { gw, vol, log }
}

beforeAll(async () => {
  redis = await startRedis()
  // Redis with a password: the gateway reads it from the secrets dir.
  const { Redis } = await import('ioredis')
  const admin = new Redis({ host: redis.host, port: redis.port })
  await admin.config('SET', 'requirepass', REDIS_PASSWORD)
  await admin.config('REWRITE').catch(() => {})
  admin.disconnect()
  echo = await startUpstream('127.0.0.51', (_req, res) =>
    json(res, 200, {
      id: 'x',
      object: 'chat.completion',
      created: 1,
      model: 'echo-model',
      choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }],
      usage: { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 },
    }),
  )
  secretsDir = await mkdtemp(join(tmpdir(), 'igw-rr-secrets-'))
  await writeFile(join(secretsDir, 'key'), sha256(KEY))
  await writeFile(join(secretsDir, 'redis.password'), `${REDIS_PASSWORD}\n`)
  await gateway('open')
  await gateway('closed')
})

afterAll(async () => {
  for (const g of Object.values(gws)) {
    await g.gw.shutdown({ deadlineMs: 1000 })
    await g.vol.remove()
  }
  await echo?.close()
  await redis?.stop()
  if (secretsDir) await rm(secretsDir, { recursive: true, force: true })
})

async function call(mode: 'open' | 'closed') {
  const r = await request(`${gws[mode].gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` },
    body: JSON.stringify({
      model: 'echo-model',
      messages: [{ role: 'user', content: 'hi' }],
      max_tokens: 4,
    }),
  })
  const body = (await r.body.json()) as { error?: { code: string } }
  return { status: r.statusCode, headers: r.headers, body }
}

async function metric(mode: 'open' | 'closed', name: string, labels: Record<string, string> = {}) {
  return promSum(await scrapeProm(`${gws[mode].gw.url}/metrics`), name, labels)
}

describe('Redis backend behind the gateway', () => {
  it('counts in Redis (authenticating with the password from the secrets dir)', async () => {
    const r1 = await call('closed')
    const r2 = await call('closed')
    expect(r1.status).toBe(200)
    expect(r1.headers['x-ratelimit-remaining-requests']).toBe('999')
    expect(r2.headers['x-ratelimit-remaining-requests']).toBe('998')
    expect((await call('open')).headers['x-ratelimit-remaining-requests']).toBe('999')
  })

  it('fails closed with 503 or open with 200 while Redis is down, logged and counted', async () => {
    await redis.kill()
    const closed = await call('closed')
    expect(closed.status).toBe(503)
    expect(closed.body.error?.code).toBe('rate_limit_unavailable')
    expect(closed.headers['retry-after']).toBe('1')
    for (let i = 0; i < 5; i++) expect((await call('open')).status).toBe(200)
    expect(
      await metric('closed', 'infer_gateway_ratelimit_backend_errors_total', { op: 'reserve' }),
    ).toBeGreaterThan(0)
    expect(await metric('open', 'infer_gateway_ratelimit_fail_open_total')).toBe(5)
    expect(await metric('open', 'infer_gateway_ratelimit_pending_adjustments')).toBeGreaterThan(0)
    expect(
      gws.closed.log.records.some((r) => r.level === 'error' && r.msg.includes('reserve failed')),
    ).toBe(true)
    for (const g of Object.values(gws)) {
      expect(JSON.stringify(g.log.records)).not.toContain(REDIS_PASSWORD)
    }
  })

  it('loses nothing: charges made while Redis was away land once it is back', async () => {
    await redis.start()
    const backend = gws.open.gw.filters.redisBackends[0]
    expect(backend).toBeDefined()
    expect(await backend?.drain(5_000)).toBe(true)
    expect(await metric('open', 'infer_gateway_ratelimit_pending_adjustments')).toBe(0)
    // Kept across the hard restart (append-only file): 1 before the outage + 5 admitted during
    // it (charged now, exactly once) + this one.
    expect((await call('open')).headers['x-ratelimit-remaining-requests']).toBe('993')
    const closed = await call('closed')
    expect(closed.status).toBe(200)
    // The refused request during the outage was never charged.
    expect(closed.headers['x-ratelimit-remaining-requests']).toBe('997')
  })
})
