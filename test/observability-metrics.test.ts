// The series a dashboard needs, scraped from a running data plane: router-measured TTFT (first
// token), TPOT and E2E per model/route/target; per-endpoint requests, errors and in-flight (gone
// when the endpoint leaves the config); scheduler decisions and pick reasons; engine gauges from
// scrapes. And token counting for every stream: the client that did not ask for usage gets none,
// but `infer_gateway_tokens_total` counts its tokens (no GatewayPolicy here).
import OpenAI from 'openai'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type Gateway, startGateway } from '../dataplane/gateway.js'
import { type SimHandle, startSimulator } from '../hack/sim/index.js'
import { type PromSample, promSum, scrapeProm } from '../hack/sim/testkit.js'
import { ConfigVolume, manifests, type ServerSpec } from './helpers/config.js'
import { until } from './helpers/until.js'

let a: SimHandle
let b: SimHandle
let gw: Gateway
let vol: ConfigVolume
let client: OpenAI

const ep = (s: SimHandle, name: string) => ({ name, address: s.host, port: s.port })

function config(endpoints: ServerSpec['endpoints']): string {
  return manifests(
    [{ name: 'pool', model: 'sim-model', endpoints }],
    [
      {
        name: 'chat',
        modelName: 'chat-model',
        rules: [{ targetModels: [{ modelServerName: 'pool' }] }],
      },
    ],
  )
}

const scrape = (): Promise<PromSample[]> => scrapeProm(`${gw.url}/metrics`)

beforeAll(async () => {
  const common = { port: 0, model: 'sim-model', metricsFormat: 'vllm' as const, timeScale: 0.05 }
  a = await startSimulator({ name: 'a', host: '127.0.0.60', ...common })
  b = await startSimulator({ name: 'b', host: '127.0.0.61', ...common })
  vol = await ConfigVolume.create({ 'gateway.yaml': config([ep(a, 'pod-a'), ep(b, 'pod-b')]) })
  gw = await startGateway({ config: { kind: 'manifests', paths: [vol.dir] }, port: 0, pollMs: 100 })
  client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'unused', maxRetries: 0 })
})

afterAll(async () => {
  await gw?.shutdown({ deadlineMs: 1000 })
  await Promise.all([a?.close(), b?.close()])
  await vol?.remove()
})

const hello = [{ role: 'user' as const, content: 'Tell me about the weather today please.' }]

describe('metrics a dashboard needs', () => {
  it('counts the tokens of streams whose client did not ask for usage, and strips the usage event', async () => {
    let streamed = 0
    for (let i = 0; i < 3; i++) {
      const stream = await client.chat.completions.create({
        model: 'chat-model',
        messages: hello,
        max_tokens: 6,
        stream: true,
      })
      for await (const chunk of stream) {
        // The client asked for no usage: it sees no usage-only chunk and no usage anywhere.
        expect(chunk.choices.length).toBe(1)
        expect(chunk.usage ?? undefined).toBeUndefined()
        if (chunk.choices[0]?.delta.content) streamed++
      }
    }
    expect(streamed).toBe(18)
    const plain = await client.chat.completions.create({
      model: 'chat-model',
      messages: hello,
      max_tokens: 4,
    })
    expect(plain.usage?.completion_tokens).toBe(4)
    const m = await scrape()
    expect(promSum(m, 'infer_gateway_tokens_total', { model: 'chat-model', type: 'output' })).toBe(
      22,
    )
    expect(
      promSum(m, 'infer_gateway_tokens_total', { model: 'chat-model', type: 'input' }),
    ).toBeGreaterThan(4 * 5)
  })

  it('has TTFT (first token), TPOT and E2E by model, route and target', async () => {
    const m = await scrape()
    const l = { model: 'chat-model', route: 'default/chat', target: 'server:default/pool' }
    expect(promSum(m, 'infer_gateway_time_to_first_token_seconds_count', l)).toBe(4)
    expect(promSum(m, 'infer_gateway_e2e_request_duration_seconds_count', l)).toBe(4)
    // TPOT: the three streams (6 tokens each), not the plain answer.
    expect(promSum(m, 'infer_gateway_time_per_output_token_seconds_count', l)).toBe(3)
    const ttft = promSum(m, 'infer_gateway_time_to_first_token_seconds_sum', l)
    const e2e = promSum(m, 'infer_gateway_e2e_request_duration_seconds_sum', l)
    expect(ttft).toBeGreaterThan(0)
    expect(ttft).toBeLessThan(e2e)
  })

  it('has per-endpoint requests and in-flight, scheduler decisions and engine gauges', async () => {
    let m = await scrape()
    const a1 = { server: 'default/pool', upstream_host: `${a.host}:${a.port}` }
    const b1 = { server: 'default/pool', upstream_host: `${b.host}:${b.port}` }
    expect(
      promSum(m, 'infer_gateway_endpoint_requests_total', { ...a1, status_class: '2xx' }) +
        promSum(m, 'infer_gateway_endpoint_requests_total', { ...b1, status_class: '2xx' }),
    ).toBe(4)
    expect(
      promSum(m, 'infer_gateway_scheduler_decision_duration_seconds_count', {
        server: 'default/pool',
      }),
    ).toBe(4)
    expect(promSum(m, 'infer_gateway_scheduler_picks_total', { server: 'default/pool' })).toBe(4)
    const inflight = m.filter((x) => x.name === 'infer_gateway_endpoint_inflight_requests')
    expect(inflight.map((x) => x.labels['upstream_host']).sort()).toEqual(
      [a1.upstream_host, b1.upstream_host].sort(),
    )
    expect(inflight.every((x) => x.value === 0)).toBe(true)
    // Engine numbers arrive with the scheduler's scrapes (every 200 ms).
    await until(async () => {
      m = await scrape()
      return m.filter((x) => x.name === 'infer_gateway_engine_kv_cache_usage_ratio').length === 2
    })
    expect(m.filter((x) => x.name === 'infer_gateway_engine_waiting_requests').length).toBe(2)
    expect(m.filter((x) => x.name === 'infer_gateway_engine_running_requests').length).toBe(2)
    expect(promSum(m, 'infer_gateway_endpoint_ejected')).toBe(0)
    expect(promSum(m, 'infer_gateway_endpoint_ejections_total')).toBe(0)
  })

  it('removes the series of an endpoint that left the config', async () => {
    await vol.update({ 'gateway.yaml': config([ep(a, 'pod-a')]) })
    const gone = `${b.host}:${b.port}`
    await until(async () => {
      const m = await scrape()
      return !m.some((x) => x.labels['upstream_host'] === gone)
    })
    const m = await scrape()
    expect(m.some((x) => x.labels['upstream_host'] === `${a.host}:${a.port}`)).toBe(true)
  })
})
