import { Registry } from 'prom-client'
import { describe, expect, it } from 'vitest'
import type { SnapshotPolicy, SnapshotRoute } from '../../../api/snapshot.js'
import { GatewayError } from '../../errors.js'
import { silentLogger } from '../../log.js'
import type { Identity } from '../identity.js'
import { FilterMetrics } from '../metrics.js'
import {
  BackendUnavailableError,
  type LimitOp,
  type RateLimitBackend,
  type ReserveResult,
} from './backend.js'
import { formatReset, RateLimiter } from './limiter.js'
import { LocalBackend } from './local.js'
import { TokenCounters } from './tokens.js'

class Recording implements RateLimitBackend {
  readonly kind = 'local' as const
  readonly inner = new LocalBackend()
  readonly reserved: LimitOp[][] = []
  readonly adjusted: LimitOp[][] = []
  down = false
  async reserve(ops: readonly LimitOp[]): Promise<ReserveResult> {
    this.reserved.push([...ops])
    if (this.down) throw new BackendUnavailableError('down')
    return this.inner.reserveSync(ops)
  }
  adjust(ops: readonly LimitOp[]): void {
    this.adjusted.push([...ops])
    if (!this.down) this.inner.adjust(ops)
  }
  async close(): Promise<void> {}
}

function policy(extra: Partial<SnapshotPolicy['rateLimit']> = {}): SnapshotPolicy {
  return {
    key: 'default/gw',
    authentication: { apiKeys: [], jwt: [], oauth2: [] },
    anonymous: { tenant: 'anonymous' },
    tiers: [
      {
        name: 'gold',
        key: 'subject',
        limits: [
          { metric: 'requests', amount: 2, periodMs: 60_000 },
          { metric: 'tokens', amount: 1000, calendar: 'day' },
        ],
      },
    ],
    rateLimit: {
      backend: 'local',
      failureMode: 'open',
      outputReservation: { default: 50, max: 500 },
      streamUsage: true,
      tokenizers: [{ match: { kind: 'prefix', value: '' }, charsPerToken: 1 }],
      ...extra,
    },
  }
}

const route: SnapshotRoute = {
  key: 'default/r',
  namespace: 'default',
  name: 'r',
  modelName: 'm',
  loraAdapters: [],
  creationTimestamp: '',
  rules: [],
  rateLimit: { unit: 'minute', inputTokensPerUnit: 100 },
  tierLimits: [
    {
      tier: 'gold',
      key: 'tenant',
      limits: [{ metric: 'outputTokens', amount: 300, periodMs: 3_600_000 }],
    },
  ],
}
const alice: Identity = {
  method: 'jwt',
  subject: 'jwt:i:{alice}',
  tenant: 't',
  tier: 'gold',
  roles: [],
  source: 'i',
}

function limiter(p: SnapshotPolicy = policy()) {
  const backend = new Recording()
  const l = new RateLimiter(p, {
    backendFor: () => backend,
    tokenizers: new TokenCounters(p.rateLimit.tokenizers, silentLogger),
    metrics: new FilterMetrics(new Registry()),
    log: silentLogger,
  })
  return { l, backend }
}
const body = (content: string, extra: Record<string, unknown> = {}) => ({
  model: 'm',
  messages: [{ role: 'user', content }],
  max_tokens: 10,
  ...extra,
})

describe('RateLimiter', () => {
  it('reserves every scope once with Cluster-safe keys, and settles with the usage', async () => {
    const { l, backend } = limiter()
    const a = await l.admit({
      route,
      identity: alice,
      api: 'chat',
      model: 'm',
      body: body('hello'),
    })
    // 'hello' = 5 chars at 1 char/token + 4 per message + 3 priming.
    expect(a?.inputReserved).toBe(12)
    const ops = backend.reserved[0] ?? []
    expect(ops.map((o) => [o.key.replace(/d\d{8}$/, 'd<day>'), o.cost])).toEqual([
      ['igw:{r%7Cdefault%2Fr}:in:60000', 12],
      ['igw:{k%7Cgold%7Cs%7Cjwt%3Ai%3A%7Balice%7D}:rq:60000', 1],
      ['igw:{k%7Cgold%7Cs%7Cjwt%3Ai%3A%7Balice%7D}:tok:d<day>', 22],
      ['igw:{rt%7Cdefault%2Fr%7Cgold%7Ct%7Ct}:out:3600000', 10],
    ])
    // One hash tag per scope, and never a brace from the subject inside it.
    for (const o of ops) expect(o.key.match(/[{}]/g)).toEqual(['{', '}'])
    expect(a?.headers).toMatchObject({
      'x-ratelimit-limit-requests': '2',
      'x-ratelimit-remaining-requests': '1',
      'x-ratelimit-limit-tokens': '100',
      'x-ratelimit-remaining-tokens': '88',
    })
    a?.settle({ status: 200, usage: { promptTokens: 20, completionTokens: 4 } })
    expect(backend.adjusted[0]?.map((o) => o.cost)).toEqual([8, 2, -6])
    // Settling twice changes nothing.
    a?.settle({ status: 200, usage: { promptTokens: 20, completionTokens: 4 } })
    expect(backend.adjusted).toHaveLength(1)
  })

  it('refunds tokens of a request that failed, keeping the request counted', async () => {
    const { l, backend } = limiter()
    const a = await l.admit({ route, identity: alice, api: 'chat', model: 'm', body: body('x') })
    a?.settle({ status: 502 })
    expect(backend.adjusted[0]?.map((o) => o.cost)).toEqual([-8, -18, -10])
  })

  it('refuses with 429, the binding limit named, Retry-After and x-ratelimit headers', async () => {
    const { l } = limiter()
    const req = { route, identity: alice, api: 'chat' as const, model: 'm', body: body('x') }
    await l.admit(req)
    await l.admit(req)
    const e = await l.admit(req).catch((x: unknown) => x)
    expect(e).toBeInstanceOf(GatewayError)
    const g = e as GatewayError
    expect(g.status).toBe(429)
    expect(g.code).toBe('rate_limit_exceeded')
    expect(g.message).toContain(
      'tier gold on requests per minute: limit 2, available 0, requested 1',
    )
    expect(Number(g.headers['retry-after'])).toBe(30)
    expect(g.headers['x-ratelimit-remaining-requests']).toBe('0')
  })

  it('names a request too large for a limit and tells clients not to retry', async () => {
    const { l } = limiter()
    const e = (await l
      .admit({ route, identity: alice, api: 'chat', model: 'm', body: body('y'.repeat(150)) })
      .catch((x: unknown) => x)) as GatewayError
    expect(e.message).toContain('Request too large for model default/r')
    expect(e.headers['x-should-retry']).toBe('false')
    expect(e.headers['retry-after']).toBeUndefined()
  })

  it('fails open (admit, charge later) or closed (503) when the store is down', async () => {
    const open = limiter()
    open.backend.down = true
    const a = await open.l.admit({
      route,
      identity: alice,
      api: 'chat',
      model: 'm',
      body: body('x'),
    })
    expect(a).toBeDefined()
    expect(a?.headers).toEqual({})
    expect(open.backend.adjusted[0]?.map((o) => o.cost)).toEqual([8, 1, 18, 10])
    const closed = limiter(policy({ failureMode: 'closed' }))
    closed.backend.down = true
    await expect(
      closed.l.admit({ route, identity: alice, api: 'chat', model: 'm', body: body('x') }),
    ).rejects.toMatchObject({ status: 503, code: 'rate_limit_unavailable' })
  })

  it('asks for stream usage only when the client did not', async () => {
    const { l } = limiter()
    const a = await l.admit({
      route,
      identity: alice,
      api: 'chat',
      model: 'm',
      body: body('x', { stream: true }),
    })
    expect(a?.injectUsage).toBe(true)
    expect(a?.streamFilter()).toBeDefined()
    const b = await l.admit({
      route,
      identity: { ...alice, subject: 'other' },
      api: 'chat',
      model: 'm',
      body: body('x', { stream: true, stream_options: { include_usage: true } }),
    })
    expect(b?.injectUsage).toBe(false)
  })

  it('applies nothing to a route without limits for a tier without limits', async () => {
    const { l } = limiter()
    const plain = {
      ...route,
      rateLimit: undefined,
      tierLimits: undefined,
    } as unknown as SnapshotRoute
    expect(l.applies(plain, { ...alice, tier: 'silver' })).toBe(false)
  })
})

describe('formatReset', () => {
  it("speaks OpenAI's format", () => {
    expect(formatReset(20)).toBe('20ms')
    expect(formatReset(1000)).toBe('1s')
    expect(formatReset(8640)).toBe('8.7s')
    expect(formatReset(360_000)).toBe('6m0s')
    expect(formatReset(3_723_000)).toBe('1h2m3s')
  })
})
