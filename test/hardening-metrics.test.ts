// Label cardinality under hostile identities: 1,000 callers, each naming its own tenant (and some a
// tier the policy does not know) through trusted headers, call a priced external provider. The
// unauthenticated /metrics must stay bounded by the config (providers × models × policy tiers),
// and no label anywhere may carry a tenant — docs/auth-and-limits.md promises exactly that.
import { request } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type SimServer, startOpenAISim } from '../hack/providers-sim/index.js'
import { gatewayPolicy } from './helpers/filters.js'
import {
  type ProviderGateway,
  providerDoc,
  secretEntry,
  simpleRoute,
  startProviderGateway,
} from './helpers/providers.js'

const CALLERS = 1000
let sim: SimServer
let pg: ProviderGateway

beforeAll(async () => {
  sim = await startOpenAISim({ host: '127.0.0.150', flavor: 'openai', name: 'openai' })
  sim.keys.add('sk-openai-cardinality')
  pg = await startProviderGateway(
    [
      providerDoc('openai', {
        providerType: 'OpenAI',
        model: 'gpt-4o-mini',
        baseURL: `${sim.url}/v1`,
        auth: { secretRef: { name: 'openai-cred', key: 'api-key' } },
        pricing: { inputPerMillion: '0.15', outputPerMillion: '0.60' },
      }),
      simpleRoute('openai'),
      gatewayPolicy({
        authentication: { trustedHeaders: { sourceAddresses: ['127.0.0.0/8'] } },
        tiers: [{ name: 'free' }, { name: 'gold' }],
      }),
    ],
    { [secretEntry('openai-cred', 'api-key')]: 'sk-openai-cardinality' },
  )
})

afterAll(async () => {
  await pg?.close()
  await sim?.close()
})

function series(text: string, name: string): string[] {
  return text.split('\n').filter((l) => l.startsWith(`${name}{`))
}

describe('metrics label cardinality', () => {
  it('1,000 tenants produce a bounded number of provider series, none naming a tenant', async () => {
    const tiers = ['free', 'gold', 'platinum-unknown', undefined]
    let next = 0
    let ok = 0
    const worker = async (): Promise<void> => {
      while (next < CALLERS) {
        const i = next++
        const tier = tiers[i % tiers.length]
        const r = await request(`${pg.gw.url}/v1/chat/completions`, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            'x-user-id': `user-${i}`,
            'x-tenant-id': `tenant-${i}`,
            ...(tier !== undefined ? { 'x-tier': tier } : {}),
          },
          body: JSON.stringify({ model: 'openai', messages: [{ role: 'user', content: 'hi' }] }),
        })
        await r.body.text()
        if (r.statusCode === 200) ok++
      }
    }
    await Promise.all(Array.from({ length: 16 }, worker))
    expect(ok).toBe(CALLERS)

    const text = await (await request(`${pg.gw.url}/metrics`)).body.text()
    const tokens = series(text, 'infer_gateway_provider_tokens_total')
    const cost = series(text, 'infer_gateway_provider_cost_total')
    // One provider and model; tiers free, gold and none (unknown tiers are not tiers); input and
    // output tokens.
    expect(tokens.length).toBeGreaterThanOrEqual(2)
    expect(tokens.length).toBeLessThanOrEqual(3 * 3)
    expect(cost.length).toBeGreaterThanOrEqual(1)
    expect(cost.length).toBeLessThanOrEqual(3)
    expect(tokens.some((l) => l.includes('tier="gold"'))).toBe(true)
    // No sample of any metric carries a tenant, user or the unknown tier as a label value.
    const samples = text.split('\n').filter((l) => l !== '' && !l.startsWith('#'))
    expect(samples.filter((l) => /tenant|user-\d|platinum-unknown/.test(l))).toEqual([])
  }, 90_000)
})
