import { Registry } from 'prom-client'
import { describe, expect, it } from 'vitest'
import { compileSnapshot } from '../../api/compile.js'
import type { RoutingSnapshot } from '../../api/snapshot.js'
import { silentLogger } from '../log.js'
import { sha256Hex } from './auth/api-keys.js'
import { OPEN_IDENTITY } from './identity.js'
import { Filters } from './index.js'

const API = 'networking.matrixinfer.ai/v1alpha1'
const server = {
  apiVersion: API,
  kind: 'ModelServer',
  metadata: { name: 's' },
  spec: {
    inferenceEngine: 'vLLM',
    workloadSelector: { matchLabels: { a: 'b' } },
    workloadPort: { port: 8000 },
  },
}
const route = (name: string, spec: Record<string, unknown> = {}) => ({
  apiVersion: API,
  kind: 'ModelRoute',
  metadata: { name },
  spec: { modelName: name, rules: [{ targetModels: [{ modelServerName: 's' }] }], ...spec },
})
const policy = (spec: Record<string, unknown>) => ({
  apiVersion: API,
  kind: 'GatewayPolicy',
  metadata: { name: 'gw' },
  spec,
})

function snap(routes: unknown[], policies: unknown[] = []): RoutingSnapshot {
  const r = compileSnapshot({ servers: [server], routes, endpoints: {}, version: 1, policies })
  return r.snapshot
}

class Secrets {
  private readonly m = new Map<string, string>()
  private readonly cbs: (() => void)[] = []
  get(k: string) {
    return this.m.get(k)
  }
  set(k: string, v: string) {
    this.m.set(k, v)
    for (const cb of this.cbs) cb()
  }
  onChange(cb: () => void) {
    this.cbs.push(cb)
    return () => {}
  }
}
const req = (headers: Record<string, string> = {}) => ({
  header: (n: string) => headers[n],
  remoteAddress: '10.1.1.1',
})

describe('Filters', () => {
  it('does nothing without a policy or limits', async () => {
    const f = new Filters({ registry: new Registry(), log: silentLogger })
    f.onSnapshot(snap([route('m')]))
    expect(f.active).toBe(false)
    expect(await f.authenticate(req())).toBe(OPEN_IDENTITY)
    expect(f.stripHeaders.size).toBe(0)
  })

  it('is active for a route limit alone (Kthena shape, no policy)', () => {
    const f = new Filters({ registry: new Registry(), log: silentLogger })
    f.onSnapshot(snap([route('m', { rateLimit: { inputTokensPerUnit: 10, unit: 'minute' } })]))
    expect(f.active).toBe(true)
  })

  it('refuses callers without credentials before the body when no route allows anonymous', async () => {
    const registry = new Registry()
    const f = new Filters({ registry, log: silentLogger })
    f.onSnapshot(
      snap(
        [route('m')],
        [policy({ authentication: { apiKeys: [{ name: 'k', secretKey: 'k', tenant: 't' }] } })],
      ),
    )
    await expect(f.authenticate(req())).rejects.toMatchObject({
      status: 401,
      code: 'missing_credentials',
    })
    expect(await registry.getSingleMetricAsString('infer_gateway_auth_total')).toContain(
      'infer_gateway_auth_total{method="none",result="missing"} 1',
    )
    f.onSnapshot(
      snap(
        [route('m'), route('open', { authorization: { allowAnonymous: true } })],
        [policy({ authentication: { apiKeys: [{ name: 'k', secretKey: 'k', tenant: 't' }] } })],
      ),
    )
    expect((await f.authenticate(req())).method).toBe('anonymous')
  })

  it('rebuilds when the mounted secrets change (a key appears, then is revoked)', async () => {
    const secrets = new Secrets()
    const f = new Filters({ registry: new Registry(), log: silentLogger, secrets })
    f.onSnapshot(
      snap(
        [route('m')],
        [policy({ authentication: { apiKeys: [{ name: 'k', secretKey: 'e', tenant: 't' }] } })],
      ),
    )
    await expect(f.authenticate(req({ 'x-api-key': 'abc' }))).rejects.toMatchObject({ status: 401 })
    secrets.set('e', sha256Hex('abc'))
    expect((await f.authenticate(req({ 'x-api-key': 'abc' }))).subject).toBe('key:k')
    secrets.set('e', sha256Hex('rotated'))
    await expect(f.authenticate(req({ 'x-api-key': 'abc' }))).rejects.toMatchObject({ status: 401 })
  })

  it("keeps one Redis client per distinct store: the policy's and each Kthena route's own", async () => {
    const f = new Filters({ registry: new Registry(), log: silentLogger })
    f.onSnapshot(
      snap(
        [
          route('a', {
            rateLimit: {
              inputTokensPerUnit: 1,
              unit: 'second',
              global: { redis: { address: '127.0.0.1:1' } },
            },
          }),
          route('b', {
            rateLimit: {
              inputTokensPerUnit: 1,
              unit: 'second',
              global: { redis: { address: '127.0.0.1:1' } },
            },
          }),
        ],
        [
          policy({
            tiers: [{ name: 't', rate: [{ requests: 1, per: 'second' }] }],
            rateLimit: { backend: 'redis', redis: { address: '127.0.0.1:2' } },
          }),
        ],
      ),
    )
    expect(f.redisBackends).toHaveLength(2)
    await f.close()
  })

  it('limits LoRA-only routes (Kthena cannot) and keeps counters across a reload', async () => {
    const f = new Filters({ registry: new Registry(), log: silentLogger })
    const lora = (limit: number) =>
      snap([
        {
          ...route('lora'),
          spec: {
            loraAdapters: ['sql-lora'],
            rules: [{ targetModels: [{ modelServerName: 's' }] }],
            rateLimit: { inputTokensPerUnit: limit, unit: 'hour' },
          },
        },
      ])
    const body = { model: 'sql-lora', prompt: 'x'.repeat(180) } // 30 tokens by the estimate
    const admit = async (s: RoutingSnapshot) => {
      f.onSnapshot(s)
      const r = s.routes[0]
      if (r === undefined) throw new Error('no route')
      return f.admit({
        route: r,
        identity: OPEN_IDENTITY,
        api: 'completions',
        model: 'sql-lora',
        body,
      })
    }
    expect((await admit(lora(100)))?.headers['x-ratelimit-remaining-tokens']).toBe('70')
    // A reload that changes the limit keeps what was used.
    expect((await admit(lora(80)))?.headers['x-ratelimit-remaining-tokens']).toBe('40')
    expect((await admit(lora(80)))?.headers['x-ratelimit-remaining-tokens']).toBe('10')
    await expect(admit(lora(80))).rejects.toMatchObject({ status: 429 })
  })

  it('shows only the models a caller may call', async () => {
    const f = new Filters({ registry: new Registry(), log: silentLogger })
    const s = snap(
      [route('m', { authorization: { tiers: ['gold'] } })],
      [policy({ tiers: [{ name: 'gold' }] })],
    )
    f.onSnapshot(s)
    const r = s.routes[0]
    expect(f.visible({ ...OPEN_IDENTITY, method: 'jwt', tier: 'gold' }, r, 'm')).toBe(true)
    expect(f.visible({ ...OPEN_IDENTITY, method: 'jwt' }, r, 'm')).toBe(false)
    expect(f.visible(OPEN_IDENTITY, undefined, 'm')).toBe(false)
  })
})
