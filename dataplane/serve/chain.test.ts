// The chain walk without a network: decisions whose targets fail before any I/O (no ready
// endpoint, no credential, an API the provider lacks) show the ordering, skipping and accounting
// rules. Paths that talk HTTP are covered end to end in test/providers-*.test.ts.
import { describe, expect, it } from 'vitest'
import { DEFAULT_RETRY, DEFAULT_TIMEOUTS, type SnapshotProvider } from '../../api/snapshot.js'
import { endpoint, route, server } from '../../test/helpers/snapshot.js'
import type { AccessLogEntry } from '../access-log.js'
import { staticSecrets } from '../filters/secrets.js'
import { fetchInbound } from '../inbound.js'
import { silentLogger } from '../log.js'
import { GatewayMetrics } from '../metrics.js'
import { RoundRobinPicker } from '../picker.js'
import { ProviderCredentials } from '../providers/credentials.js'
import { ProviderTransport } from '../providers/transport.js'
import { UpstreamPool } from '../proxy/upstream-pool.js'
import type { ChainDecision, RouteTarget } from '../router.js'
import { serveChain } from './chain.js'
import { Outcome } from './outcome.js'

function provider(name: string, type: SnapshotProvider['type'] = 'OpenAI'): SnapshotProvider {
  return {
    key: `default/${name}`,
    namespace: 'default',
    name,
    type,
    baseURL: 'https://provider.invalid/v1',
    insecureSkipVerify: false,
    credential: {
      scheme: 'Bearer',
      header: 'authorization',
      secretFile: `provider_default_${name}_k`,
      secretRef: { name, key: 'k' },
    },
    headers: {},
    trafficPolicy: { timeouts: DEFAULT_TIMEOUTS, retry: DEFAULT_RETRY },
  }
}

const empty = server('empty', [{ ...endpoint('e0', '127.0.0.1', 1), ready: false }])
const r = route('r', {
  modelName: 'm',
  rules: [{ name: 'x', targets: [{ server: empty.key, weight: 1 }] }],
})

async function run(targets: RouteTarget[], path = '/v1/chat/completions') {
  const log: AccessLogEntry[] = []
  const metrics = new GatewayMetrics()
  const d: ChainDecision = {
    route: r,
    rule: r.rules[0] ?? { name: 'x', targets: [] },
    isLora: false,
    targets,
    fallbackOn: new Set(['no-ready-endpoints', '5xx', '429', 'connect-failure']),
    plain: false,
  }
  const body = {
    model: 'm',
    ...(path === '/v1/completions'
      ? { prompt: 'p' }
      : { messages: [{ role: 'user', content: 'x' }] }),
  }
  const raw = new TextEncoder().encode(JSON.stringify(body))
  const out = new Outcome(
    { metrics, accessLog: (e) => log.push(e) },
    'req-1',
    path,
    path === '/v1/completions' ? 'completions' : 'chat',
    performance.now(),
  )
  out.model = 'm'
  out.modelLabel = 'm'
  const res = await serveChain(
    d,
    {
      path,
      api: path === '/v1/completions' ? 'completions' : 'chat',
      model: 'm',
      body,
      raw,
      inbound: fetchInbound(new Request('http://gw/v1', { method: 'POST', body: raw })),
    },
    out,
    {
      pool: new UpstreamPool(),
      picker: new RoundRobinPicker(),
      metrics,
      transport: new ProviderTransport(),
      credentials: new ProviderCredentials(staticSecrets({}), silentLogger),
      random: () => 0,
    },
  )
  const inflight = (await metrics.inflight.get()).values[0]?.value
  return { res, log, metrics, inflight, body: (await res.json()) as { error: { code: string } } }
}

const srv = (s = empty): RouteTarget => ({ kind: 'server', server: s, upstreamModel: 'm' })
const prov = (p: SnapshotProvider): RouteTarget => ({
  kind: 'provider',
  provider: p,
  upstreamModel: 'gpt',
})

describe('serveChain', () => {
  it('walks the chain on availability failures and answers with the last one', async () => {
    const out = await run([srv(), prov(provider('a')), prov(provider('b'))])
    expect(out.res.status).toBe(503)
    expect(out.body.error.code).toBe('provider_credentials_unavailable')
    expect(out.inflight).toBe(0)
    expect(out.log).toHaveLength(1)
    expect(out.log[0]).toMatchObject({
      status: 503,
      provider: 'default/b',
      fallbacks: [
        { target: 'server:default/empty', reason: 'no-ready-endpoints', code: 'no_ready_endpoint' },
        {
          target: 'provider:default/a',
          reason: 'no-ready-endpoints',
          code: 'provider_credentials_unavailable',
        },
      ],
    })
    const m = await out.metrics.fallbacks.get()
    expect(m.values.map((v) => [v.labels['from'], v.labels['to'], v.value])).toEqual([
      ['server:default/empty', 'provider:default/a', 1],
      ['provider:default/a', 'provider:default/b', 1],
    ])
  })

  it('an unsupported weighted pick is a 400; an unsupported fallback is skipped', async () => {
    const first = await run([prov(provider('c', 'Anthropic'))], '/v1/completions')
    expect([first.res.status, first.body.error.code]).toEqual([400, 'unsupported_api'])
    const skipped = await run([srv(), prov(provider('c', 'Anthropic'))], '/v1/completions')
    expect([skipped.res.status, skipped.body.error.code]).toEqual([503, 'no_ready_endpoint'])
    expect(
      (skipped.log[0] as { fallbacks?: { reason: string }[] }).fallbacks?.map((f) => f.reason),
    ).toEqual(['no-ready-endpoints', 'unsupported'])
  })
})
