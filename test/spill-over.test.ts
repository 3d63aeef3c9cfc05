// Spill-over end to end: one simulated engine pod (8 batch slots, each request ~2 s) behind the
// real scheduler (it assumes 8 slots until the engine shows its limit), an OpenAI provider simulator as the rule's fallback with `on: [saturated]`,
// `saturation: {maxQueuePerEndpoint: 0, tiers: [gold]}`. A burst of 16 gold requests: those that
// arrive once the pod's 8 slots are taken go to the provider (access log `spilled`, fallback
// metric, provider tokens and cost); a free-tier burst all queues on the pod.
import OpenAI from 'openai'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { AccessLogEntry } from '../dataplane/access-log.js'
import { type Gateway, startGateway } from '../dataplane/gateway.js'
import { type SimServer, startOpenAISim } from '../hack/providers-sim/index.js'
import { type SimHandle, startSimulator } from '../hack/sim/index.js'
import { parseProm, promSum } from '../hack/sim/testkit.js'
import { ConfigVolume } from './helpers/config.js'
import { gatewayPolicy, sha256 } from './helpers/filters.js'
import { providerDoc, routeDoc, secretEntry, serverDocs, yaml } from './helpers/providers.js'

const GOLD = 'sk-gold-000000000001'
const FREE = 'sk-free-000000000002'
let engine: SimHandle
let provider: SimServer
let gw: Gateway
let config: ConfigVolume
let secrets: ConfigVolume
const log: (AccessLogEntry & Record<string, unknown>)[] = []

beforeAll(async () => {
  engine = await startSimulator({
    name: 'spill',
    host: '127.0.0.210',
    port: 0,
    model: 'm',
    metricsFormat: 'vllm',
    maxNumSeqs: 8,
    timeScale: 1,
    // ~2 s a request: a burst is still in flight when its last request arrives, however slowly
    // a busy machine delivers it.
    decodeMsPerToken: 100,
  })
  provider = await startOpenAISim({ host: '127.0.0.211', flavor: 'openai', name: 'overflow' })
  provider.keys.add('sk-provider-1')
  config = await ConfigVolume.create({
    'gateway.yaml': yaml([
      ...serverDocs('pool', [{ name: 'pod-0', address: engine.host, port: engine.port }], {
        model: 'm',
      }),
      providerDoc('overflow', {
        providerType: 'OpenAI',
        model: 'gpt-overflow',
        baseURL: `${provider.url}/v1`,
        auth: { secretRef: { name: 'p', key: 'k' } },
        pricing: { inputPerMillion: '1', outputPerMillion: '4' },
      }),
      routeDoc('chat', 'chat-model', [
        {
          targetModels: [{ modelServerName: 'pool' }],
          fallback: {
            targets: [{ externalModelProviderName: 'overflow' }],
            on: ['saturated'],
            saturation: { maxQueuePerEndpoint: 0, tiers: ['gold'] },
          },
        },
      ]),
      gatewayPolicy({
        authentication: {
          apiKeys: [
            { name: 'gold', secretKey: 'key.gold', tenant: 'a', tier: 'gold' },
            { name: 'free', secretKey: 'key.free', tenant: 'b', tier: 'free' },
          ],
        },
        tiers: [{ name: 'gold' }, { name: 'free' }],
      }),
    ]),
  })
  secrets = await ConfigVolume.create({
    'key.gold': sha256(GOLD),
    'key.free': sha256(FREE),
    [secretEntry('p', 'k')]: 'sk-provider-1',
  })
  gw = await startGateway({
    config: { kind: 'manifests', paths: [config.dir] },
    secretsDir: secrets.dir,
    port: 0,
    allowPrivateProviderAddresses: true,
    accessLog: (e) => log.push(e as AccessLogEntry & Record<string, unknown>),
  })
})

afterAll(async () => {
  await gw?.shutdown({ drainDelayMs: 0, deadlineMs: 2000 })
  await config?.remove()
  await secrets?.remove()
  await engine?.close()
  await provider?.close()
})

async function burst(key: string, tag: string, n: number): Promise<void> {
  const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: key, maxRetries: 0 })
  const all = Array.from({ length: n }, (_, i) =>
    client.chat.completions.create(
      {
        model: 'chat-model',
        messages: [{ role: 'user', content: `${tag} request ${i}` }],
        max_tokens: 20,
      },
      { headers: { 'x-request-id': `${tag}-${i}` } },
    ),
  )
  const answers = await Promise.all(all)
  for (const a of answers) expect(a.choices[0]?.message.content).toBeTruthy()
}

const lines = (tag: string) => log.filter((l) => l.request_id.startsWith(`${tag}-`))

describe('spill-over to a provider when the pool is saturated', () => {
  it('a gold burst past the pod’s slots spills the overflow; the pod keeps what it can run', async () => {
    await burst(GOLD, 'gold', 16)
    const gold = lines('gold')
    expect(gold).toHaveLength(16)
    const spilled = gold.filter((l) => l['spilled'] === true)
    const kept = gold.filter((l) => l['spilled'] !== true)
    // The first 8 fill the pod's batch; what arrives after that would have waited.
    expect(kept.length).toBeGreaterThanOrEqual(8)
    expect(spilled.length).toBeGreaterThanOrEqual(4)
    for (const l of kept) expect(l).toMatchObject({ server: 'default/pool', status: 200 })
    for (const l of spilled)
      expect(l).toMatchObject({
        status: 200,
        provider: 'default/overflow',
        upstream_model: 'gpt-overflow',
        spill_reason: 'queue',
        fallbacks: [
          { target: 'server:default/pool', reason: 'saturated', code: 'server_saturated' },
        ],
      })
    // Counted and costed like any provider request.
    expect(spilled.every((l) => typeof l['cost'] === 'number' && (l['cost'] as number) > 0)).toBe(
      true,
    )
    const text = await (await fetch(`${gw.url}/metrics`)).text()
    expect(
      promSum(parseProm(text), 'infer_gateway_fallbacks_total', {
        reason: 'saturated',
        from: 'server:default/pool',
        to: 'provider:default/overflow',
      }),
    ).toBe(spilled.length)
    expect(provider.requests.length).toBe(spilled.length)
  })

  it('the free tier is not in the list: its burst queues on the pod, nothing spills', async () => {
    const before = provider.requests.length
    await burst(FREE, 'free', 12)
    const free = lines('free')
    expect(free).toHaveLength(12)
    for (const l of free) {
      expect(l['spilled']).toBeUndefined()
      expect(l).toMatchObject({ server: 'default/pool', status: 200, tier: 'free' })
    }
    expect(provider.requests.length).toBe(before)
  })
})
