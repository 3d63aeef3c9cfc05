// Model-aware scheduling end to end: the real data plane (standalone config, the default
// scheduler scraping /metrics) in front of simulated engines on 127.0.0.x. Which pod served a
// request is read from the simulator's `x-inference-pod` response header.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type Gateway, startGateway } from '../dataplane/gateway.js'
import { routingManifests, type SchedulerPluginSpec } from '../hack/bench/routing-config.js'
import { type SimHandle, startSimulator } from '../hack/sim/index.js'
import { ConfigVolume } from './helpers/config.js'
import { until } from './helpers/until.js'

const MODEL = 'sched-model'
const HOSTS = ['127.0.0.61', '127.0.0.62', '127.0.0.63', '127.0.0.64']
const SYSTEM = `You are the support assistant of an example company. ${'Answer politely, cite the policy section, and never invent facts. '.repeat(30)}`

let sims: SimHandle[] = []
let gw: Gateway
let vol: ConfigVolume

function config(plugins?: readonly SchedulerPluginSpec[]): string {
  return routingManifests({
    model: MODEL,
    endpoints: sims.map((s) => ({ name: s.name, address: s.host, port: s.port })),
    retries: 2,
    ...(plugins !== undefined ? { plugins } : {}),
  })
}

beforeAll(async () => {
  sims = await Promise.all(
    HOSTS.map((host, i) =>
      startSimulator({
        name: `pod-${i}`,
        host,
        port: 0,
        model: MODEL,
        metricsFormat: 'vllm',
        seed: i,
        maxNumSeqs: 4,
        numGpuBlocks: 512,
        // Slow enough that a burst is still in flight while it is being placed.
        decodeMsPerToken: 20,
      }),
    ),
  )
  vol = await ConfigVolume.create({ 'gateway.yaml': config() })
  gw = await startGateway({
    debugEndpoints: true,
    config: { kind: 'manifests', paths: [vol.dir] },
    port: 0,
    pollMs: 100,
    scheduler: { scrape: { intervalMs: 100 } },
  })
})

afterAll(async () => {
  await gw?.shutdown({ deadlineMs: 1000 })
  await Promise.all(sims.map((s) => s.close()))
  await vol?.remove()
})

interface Sent {
  status: number
  pod: string | null
  explain: string | null
}

async function send(content: string, headers: Record<string, string> = {}): Promise<Sent> {
  const res = await fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({
      model: MODEL,
      messages: [
        { role: 'system', content: SYSTEM },
        { role: 'user', content },
      ],
      max_tokens: 6,
    }),
  })
  await res.arrayBuffer()
  return {
    status: res.status,
    pod: res.headers.get('x-inference-pod'),
    explain: res.headers.get('x-infer-gateway-explain'),
  }
}

function counts(rs: readonly Sent[]): Map<string, number> {
  const m = new Map<string, number>()
  for (const r of rs) m.set(r.pod ?? '?', (m.get(r.pod ?? '?') ?? 0) + 1)
  return m
}

describe('model-aware scheduling through the gateway', () => {
  it('keeps a shared-prefix burst on one pod (recorded at dispatch) and the engine hits its cache', async () => {
    const before = sims.map((s) => s.stats())
    const burst = await Promise.all(Array.from({ length: 8 }, (_, i) => send(`Question ${i}?`)))
    expect(burst.every((r) => r.status === 200)).toBe(true)
    const c = counts(burst)
    // All eight were in flight together: affinity came from dispatch-time recording.
    expect(c.size).toBe(1)
    const pod = [...c.keys()][0] as string
    // A second wave of the same prefix fills the same, now warm, pod up to its batch limit (4,
    // learned while the burst queued there); predicted-latency may send the rest elsewhere when
    // waiting for a slot costs more than the prefill the cache saves.
    const wave = await Promise.all(Array.from({ length: 6 }, (_, i) => send(`Follow-up ${i}?`)))
    const w = counts(wave)
    expect(w.get(pod) ?? 0).toBeGreaterThanOrEqual(4)
    for (const [other, n] of w) if (other !== pod) expect(n).toBeLessThan(w.get(pod) ?? 0)
    const sim = sims.find((s) => s.name === pod) as SimHandle
    const i = sims.indexOf(sim)
    const hits = sim.stats().prefixHitTokens - (before[i]?.prefixHitTokens ?? 0)
    const queried = sim.stats().prefixQueryTokens - (before[i]?.prefixQueryTokens ?? 0)
    expect(hits / queried).toBeGreaterThan(0.5)
  })

  it('spreads a burst of unrelated prompts over all pods', async () => {
    const res = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        fetch(`${gw.url}/v1/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({
            model: MODEL,
            prompt: `Unrelated prompt number ${i} ${'x'.repeat(i)}`,
            max_tokens: 6,
          }),
        }).then(async (r) => {
          await r.arrayBuffer()
          return { status: r.status, pod: r.headers.get('x-inference-pod'), explain: null }
        }),
      ),
    )
    expect(res.every((r) => r.status === 200)).toBe(true)
    const c = counts(res)
    expect(c.size).toBe(4)
    // Not dealt out exactly 3 each: prompts nobody has cached go by weighted rendezvous among the
    // pods with room (so replicas agree on where a new prefix goes), which spreads them in
    // proportion to headroom rather than strictly evenly.
    expect(Math.max(...c.values())).toBeLessThanOrEqual(5)
  })

  it('explains a decision on request and lists endpoints on /debug/endpoints', async () => {
    const r = await send('Explain yourself', { 'x-infer-gateway-explain': '1' })
    expect(r.explain).toMatch(/^server=default\/pool profile=default pick=pod-\d/)
    expect(r.explain).toContain(`pick=${r.pod}`)
    expect(r.explain).toMatch(/predicted-latency [\d.]+x6/)
    const plain = await send('No explanation wanted')
    expect(plain.explain).toBeNull()
    await until(async () => {
      const d = (await (await fetch(`${gw.url}/debug/endpoints`)).json()) as {
        endpoints: { name: string; scrape: { fresh: boolean }; engine: unknown }[]
      }
      return (
        d.endpoints.length === 4 && d.endpoints.every((e) => e.scrape.fresh && e.engine !== null)
      )
    })
    const d = (await (await fetch(`${gw.url}/debug/endpoints`)).json()) as {
      scrape: { enabled: boolean; intervalMs: number }
      servers: Record<string, { profile: string; endpoints: string[] }>
    }
    expect(d.scrape).toMatchObject({ enabled: true, intervalMs: 100 })
    expect(d.servers['default/pool']?.endpoints).toHaveLength(4)
  })

  it('applies a new scheduler profile on reload', async () => {
    await vol.update({ 'gateway.yaml': config([{ name: 'round-robin' }]) })
    await until(async () =>
      ((await send('rr?', { 'x-infer-gateway-explain': '1' })).explain ?? '').includes(
        'profile=custom',
      ),
    )
    const rr = []
    for (let i = 0; i < 8; i++)
      rr.push(await send(`round robin ${i}`, { 'x-infer-gateway-explain': '1' }))
    // Same prefix, yet spread evenly: the prefix plugin is gone from this profile.
    expect([...counts(rr).values()]).toEqual([2, 2, 2, 2])
    expect(rr[0]?.explain).toContain('round-robin 1x1')
    await vol.update({ 'gateway.yaml': config() })
    await until(async () =>
      ((await send('back?', { 'x-infer-gateway-explain': '1' })).explain ?? '').includes(
        'profile=default',
      ),
    )
  })

  it('fairness admission: queues at the limit, 429 queue_full / 503 queue_timeout with Retry-After, places released', async () => {
    await vol.update({
      'gateway.yaml': config([
        { name: 'least-pending' },
        {
          name: 'fairness',
          args: { maxInFlightPerEndpoint: 1, maxQueue: 2, queueTimeout: '250ms', headroom: 0 },
        },
      ]),
    })
    await until(async () =>
      ((await send('fair?', { 'x-infer-gateway-explain': '1' })).explain ?? '').includes(
        'profile=custom',
      ),
    )
    const burst = await Promise.all(
      Array.from({ length: 12 }, async (_, i) => {
        const res = await fetch(`${gw.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-tenant-id': `t${i % 3}` },
          body: JSON.stringify({
            model: MODEL,
            messages: [{ role: 'user', content: `burst ${i}` }],
            max_tokens: 20,
          }),
        })
        const body = (await res.json()) as { error?: { code: string } }
        return {
          status: res.status,
          code: body.error?.code,
          retryAfter: res.headers.get('retry-after'),
        }
      }),
    )
    const ok = burst.filter((r) => r.status === 200)
    const full = burst.filter((r) => r.status === 429)
    const timedOut = burst.filter((r) => r.status === 503)
    // 4 pods × 1 place run at once, 2 wait (then time out or get a place), the rest are refused.
    expect(ok.length).toBeGreaterThanOrEqual(4)
    expect(full.length).toBeGreaterThanOrEqual(6)
    expect(full.every((r) => r.code === 'queue_full' && r.retryAfter === '1')).toBe(true)
    expect(timedOut.every((r) => r.code === 'queue_timeout' && r.retryAfter === '1')).toBe(true)
    expect(ok.length + full.length + timedOut.length).toBe(12)
    // Every admitted request gave its place back when it finished.
    const d = (await (await fetch(`${gw.url}/debug/endpoints`)).json()) as {
      servers: Record<string, { state: { fairness: { queued: number; reserved: number } } }>
    }
    expect(d.servers['default/pool']?.state.fairness).toMatchObject({ queued: 0, reserved: 0 })
    await vol.update({ 'gateway.yaml': config() })
    await until(async () =>
      ((await send('back?', { 'x-infer-gateway-explain': '1' })).explain ?? '').includes(
        'profile=default',
      ),
    )
  })

  it('ejects a dead endpoint and keeps serving with zero failed requests', async () => {
    const dead = sims[3] as SimHandle
    await dead.close()
    const results: Sent[] = []
    // Sequential waves of distinct prompts, so every wave is spread over all pods, dead one included.
    for (let w = 0; w < 6; w++) {
      results.push(
        ...(await Promise.all(
          Array.from({ length: 4 }, (_, i) =>
            send(`after death ${w}-${i} ${'y'.repeat(w * 4 + i)}`),
          ),
        )),
      )
    }
    expect(results.filter((r) => r.status !== 200)).toEqual([])
    expect(results.some((r) => r.pod === dead.name)).toBe(false)
    const failures = await gw.metrics.upstreamFailures.get()
    const refused = failures.values
      .filter(
        (v) => v.labels['server'] === 'default/pool' && v.labels['reason'] === 'connect-failure',
      )
      .reduce((n, v) => n + v.value, 0)
    // Ejected after at most a couple of refused connections (or earlier, by failed scrapes).
    expect(refused).toBeLessThanOrEqual(2)
    const d = (await (await fetch(`${gw.url}/debug/endpoints`)).json()) as {
      endpoints: { name: string; ejected: boolean; lastEjection?: { reason: string } }[]
    }
    const view = d.endpoints.find((e) => e.name === dead.name)
    expect(view?.ejected).toBe(true)
    expect(['connect', 'scrape']).toContain(view?.lastEjection?.reason)
  })
})
