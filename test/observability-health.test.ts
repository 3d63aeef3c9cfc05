// Health transitions on /metrics: an engine that keeps answering 500 is ejected (counter by reason,
// the endpoint's ejected gauge at 1), and once it answers again it is readmitted (counter, gauge 0).
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { type Gateway, startGateway } from '../dataplane/gateway.js'
import { type SimHandle, startSimulator } from '../hack/sim/index.js'
import { type PromSample, promSum, scrapeProm } from '../hack/sim/testkit.js'
import { ConfigVolume, manifests } from './helpers/config.js'

let sim: SimHandle
let gw: Gateway
let vol: ConfigVolume

const scrape = (): Promise<PromSample[]> => scrapeProm(`${gw.url}/metrics`)

async function ask(): Promise<number> {
  const res = await fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      model: 'm',
      messages: [{ role: 'user', content: 'hi' }],
      max_tokens: 2,
    }),
  })
  await res.arrayBuffer()
  return res.status
}

beforeAll(async () => {
  sim = await startSimulator({
    name: 'flaky',
    host: '127.0.0.63',
    port: 0,
    model: 'm',
    metricsFormat: 'vllm',
    timeScale: 0.01,
    failures: { forceStatus: 500 },
  })
  vol = await ConfigVolume.create({
    'gateway.yaml': manifests(
      [
        {
          name: 'pool',
          model: 'm',
          endpoints: [{ name: 'p', address: sim.host, port: sim.port }],
          trafficPolicy: { retry: { attempts: 1, retryInterval: '10ms' } },
        },
      ],
      [{ name: 'r', modelName: 'm', rules: [{ targetModels: [{ modelServerName: 'pool' }] }] }],
    ),
  })
  gw = await startGateway({
    config: { kind: 'manifests', paths: [vol.dir] },
    port: 0,
    // Long enough that the gauge still reads 1 when scraped on a busy machine.
    scheduler: { health: { baseEjectionMs: 3_000 } },
  })
})

afterAll(async () => {
  await gw?.shutdown({ deadlineMs: 1000 })
  await sim?.close()
  await vol?.remove()
})

describe('ejections and readmissions on /metrics', () => {
  it('counts an ejection episode and the readmission', async () => {
    let m = await scrape()
    expect(promSum(m, 'infer_gateway_endpoint_ejections_total')).toBe(0)
    // Five failed answers in a row eject the endpoint (DEFAULT_HEALTH.consecutiveFailures).
    for (let i = 0; i < 6; i++) expect(await ask()).toBe(500)
    m = await scrape()
    const ej = m.filter((x) => x.name === 'infer_gateway_endpoint_ejections_total')
    expect(ej.map((x) => [x.labels['reason'], x.value])).toEqual([['5xx', 1]])
    expect(promSum(m, 'infer_gateway_endpoint_ejected')).toBe(1)
    expect(promSum(m, 'infer_gateway_endpoint_readmissions_total')).toBe(0)
    sim.setFailures({ forceStatus: null })
    // Its only endpoint: panic mode still sends to it, and successful trials readmit it.
    m = await vi.waitFor(
      async () => {
        await ask()
        const now = await scrape()
        if (promSum(now, 'infer_gateway_endpoint_readmissions_total') === 0)
          throw new Error('not readmitted yet')
        return now
      },
      { timeout: 15_000, interval: 100 },
    )
    expect(promSum(m, 'infer_gateway_endpoint_readmissions_total')).toBe(1)
    expect(promSum(m, 'infer_gateway_endpoint_ejected')).toBe(0)
    expect(promSum(m, 'infer_gateway_endpoint_ejections_total')).toBe(1)
  }, 30_000)
})
