// Routing regimes of issue 9 on virtual time (hack/bench/virtual-fleet.ts): the real scheduler
// against the real simulated engines, deterministic and independent of how busy the machine is.
// Each compares the default profile with round-robin on the same seeded request sequence.

import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import type { SnapshotSchedulerPlugin } from '../../api/snapshot.js'
import { poissonTimes } from '../../hack/bench/routing-load.js'
import {
  DECODE_BOUND,
  type EngineShape,
  PREFILL_BOUND,
  runVirtualFleet,
  ttftPercentile,
  type VirtualFleetOptions,
  type VirtualRequest,
  type VirtualResult,
  type VirtualRun,
} from '../../hack/bench/virtual-fleet.js'
import { generateWords } from '../../hack/sim/rng.js'
import { DEFAULT_PROFILE } from './profile.js'
import { seeded } from './testkit.js'

const RR: readonly SnapshotSchedulerPlugin[] = [{ name: 'round-robin', weight: 1, args: {} }]
const LEAST_PENDING: readonly SnapshotSchedulerPlugin[] = [
  { name: 'least-pending', weight: 1, args: {} },
]
/** The default profile + fairness on the tenant header, as bench:routing's "default + fairness". */
const FAIR: readonly SnapshotSchedulerPlugin[] = [
  ...DEFAULT_PROFILE.plugins.map((p) => ({ name: p.name, weight: p.weight, args: p.args })),
  { name: 'fairness', weight: 0, args: { tenantHeader: 'x-tenant-id' } },
]
const WARMUP_MS = 2000

/** Fleet rate (req/s) with nothing cached: the 100 % load reference, as routing.ts computes it. */
function capacity(e: EngineShape, pods: number, prompt: number, out: number, scale = 1): number {
  const decode = out * e.decodeMsPerToken * (1 + (e.batchSlowdown * (e.maxNumSeqs - 1)) / 2)
  const sec = (scale * (e.prefillOverheadMs + prompt * e.prefillMsPerToken + decode)) / 1000
  return (pods * e.maxNumSeqs) / sec
}

/** 16 groups of a 1500-token system prompt + a 60-token question (the shared-prefix workload). */
function sharedPrefix(rate: number, ms: number, out: number, seed: number): VirtualRequest[] {
  const r = seeded(seed)
  const systems = Array.from(
    { length: 16 },
    (_, g) => `Group ${g} policy. ${generateWords(100 + g, 'system', 1500).join('')}`,
  )
  return poissonTimes(rate, ms, r).map((at, k) => ({
    at,
    system: systems[Math.floor(r() * systems.length)] as string,
    user: generateWords(seed, `q${k}`, 60).join(''),
    maxTokens: out,
  }))
}

async function run(o: Omit<VirtualFleetOptions, 'advance'>) {
  return runVirtualFleet({ ...o, advance: async (ms) => vi.advanceTimersByTime(ms) })
}

/** With admission (fairness): a queued request is granted through a promise, so microtasks run between timers. */
async function runQueued(o: Omit<VirtualFleetOptions, 'advance'>) {
  return runVirtualFleet({ ...o, advance: (ms) => vi.advanceTimersByTimeAsync(ms) })
}

beforeEach(() => {
  // setInterval: the fairness queue polls for capacity while requests wait.
  vi.useFakeTimers({
    toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'],
    now: 1_700_000_000_000,
  })
})
afterEach(() => {
  vi.useRealTimers()
})

function uniform(rate: number, ms: number, seed: number): VirtualRequest[] {
  const r = seeded(seed)
  return poissonTimes(rate, ms, r).map((at, k) => ({
    at,
    user: generateWords(seed, `u${k}`, 600).join(''),
    maxTokens: 16,
  }))
}

/** One tenant's distinct 400-token prompts (the two-tenant workload of bench:routing). */
function tenantLoad(tenant: string, rate: number, ms: number, seed: number): VirtualRequest[] {
  const r = seeded(seed)
  return poissonTimes(rate, ms, r).map((at, k) => ({
    at,
    user: generateWords(seed, `${tenant}${k}`, 400).join(''),
    maxTokens: 16,
    tag: tenant,
    headers: { 'x-tenant-id': tenant },
  }))
}

/** bench:routing's multi-LoRA regime: 8 adapters, 300-token distinct prompts, 2 slots per pod. */
async function multiLora(load: number, seed: number, timeScale = 2.5): Promise<VirtualRun> {
  const r = seeded(seed)
  const loras = Array.from({ length: 8 }, (_, i) => `adapter-${i}`)
  const requests = poissonTimes(load * capacity(PREFILL_BOUND, 4, 300, 16, 2.5), MS, r).map(
    (at, k) => ({
      at,
      user: generateWords(seed, `l${k}`, 300).join(''),
      maxTokens: 16,
      lora: loras[Math.floor(r() * loras.length)] as string,
    }),
  )
  return run({ shape: PREFILL_BOUND, pods: 4, timeScale, loras, maxLoras: 2, requests })
}

function e2eP90(rs: readonly VirtualResult[]): number {
  const xs = rs
    .filter((r) => r.ok && r.at >= WARMUP_MS)
    .map((r) => r.e2eMs)
    .sort((a, b) => a - b)
  return xs[Math.ceil(0.9 * xs.length) - 1] as number
}

const p90 = (x: VirtualRun) => ttftPercentile(x.results, 90, WARMUP_MS)
// The window of `npm run bench:routing -- --quick`: 8 s of arrivals, the first 2 s not judged.
const MS = 8000

describe('routing regimes on virtual time (issue 9)', () => {
  it('decode-bound shared prefix: TTFT p90 ≥ 10 % below round-robin, E2E p90 not above', async () => {
    const requests = sharedPrefix(0.7 * capacity(DECODE_BOUND, 4, 1560, 64), MS, 64, 12)
    const base = { shape: DECODE_BOUND, pods: 4, requests }
    const rr = await run({ ...base, plugins: RR })
    const ours = await run(base)
    // Before calibration ignored queueing it could not see, the batch limit was shared between
    // pods and full batches were told apart by their requests' ages: 720 ms vs 588 ms.
    // A margin, not a tie: 466 vs 588 ms here (0.79). On 20 seeds (10-29) the default is below
    // round-robin on 5, equal on 13 and above on 2 (13: 467 vs 438, 25: 197 vs 170); on the 13
    // ties both p90s are one cold prefill (170 ms): at 70 % 1-10 % of the judged requests are
    // their group's first (a cold prefill for any router), and the rest of the p90's 10 % fills
    // with requests sent cold rather than queued behind a full batch.
    expect(p90(ours)).toBeLessThanOrEqual(0.9 * p90(rr))
    expect(e2eP90(ours.results)).toBeLessThanOrEqual(e2eP90(rr.results))
    expect(ours.results.every((r) => r.ok)).toBe(true)
  }, 60_000)

  it('decode-bound at 90 %: TTFT p90 within 5 % of round-robin or below where queues form', async () => {
    // Bursts queue behind full batches. Seeds 14 and 21 lost 16 % and 29 % to round-robin while a
    // slot's time left was counted from its request's dispatch: a request that had queued itself
    // looked nearly done, and affinity stacked more behind it (388 vs 334, 444 vs 343 ms). From
    // its admission (EndpointModel.admits): 345 vs 334 and 255 vs 343. On seeds 10-29 the default
    // was above round-robin on 7 before and 3 after (each by ≤ 3 %).
    for (const seed of [14, 21]) {
      const requests = sharedPrefix(0.9 * capacity(DECODE_BOUND, 4, 1560, 64), MS, 64, seed)
      const base = { shape: DECODE_BOUND, pods: 4, requests }
      const rr = await run({ ...base, plugins: RR })
      const ours = await run(base)
      expect(p90(ours)).toBeLessThanOrEqual(1.05 * p90(rr))
    }
  }, 60_000)

  it('prefill-bound shared prefix: ≥ 5× lower TTFT p90 than round-robin', async () => {
    const requests = sharedPrefix(0.7 * capacity(PREFILL_BOUND, 4, 1560, 16), MS, 16, 10)
    const base = { shape: PREFILL_BOUND, pods: 4, requests }
    const rr = await run({ ...base, plugins: RR })
    const ours = await run(base)
    expect(p90(ours) * 5).toBeLessThanOrEqual(p90(rr))
    // Client requests' hits: the engines also count the prompts of the shadow requests that
    // copy hot groups (each a miss by design; 3 points of the engines' rate here).
    expect(ours.clientPrefixHitRate).toBeGreaterThan(rr.clientPrefixHitRate + 0.3)
    expect(ours.prefixHitRate).toBeGreaterThan(rr.prefixHitRate + 0.25)
  }, 60_000)

  it('prefill-bound shared prefix, 3 replicas that never talk: prefix hit within 5 points of one replica, TTFT p90 within 15 %', async () => {
    // Each replica sees every third request and scrapes the same engines. Before a prefix nobody
    // held went to its rendezvous home, each replica placed a group's first request by its own
    // load view and calibration: 79.2 % vs 85.1 % prefix hit, p90 72 vs 28 ms (seed 10).
    const requests = sharedPrefix(0.7 * capacity(PREFILL_BOUND, 4, 1560, 16), MS, 16, 10)
    const base = { shape: PREFILL_BOUND, pods: 4, requests }
    const one = await run(base)
    const three = await run({ ...base, replicas: 3 })
    expect(three.prefixHitRate).toBeGreaterThanOrEqual(one.prefixHitRate - 0.05)
    expect(p90(three)).toBeLessThanOrEqual(1.15 * p90(one))
    expect(three.results.every((r) => r.ok)).toBe(true)
  }, 60_000)

  // The real bench's 3-replica p90 moved between +8 % and +18 % of one replica's from run to run
  // (50 vs 42 ms, quiet). Not routing: with no HTTP, seeds 10-25 and the bench's own sequence all
  // give 3 replicas the same p90 as one (28 ms; prefix hit 0.6-3.5 points lower, at most 12 of
  // ~230 judged requests above 1.15x one replica's p90, a p90 allows 23). The real gap was the
  // balancer's extra hop (p50 +3 ms as well); bench:routing now judges the replicas against one
  // replica behind the same balancer. Seed 12 is the worst seen (4 groups' first requests split).
  it('3 replicas: the same TTFT p90 as one on other seeds too (the worst seen included)', async () => {
    const ratios: string[] = []
    for (const seed of [12, 20]) {
      const requests = sharedPrefix(0.7 * capacity(PREFILL_BOUND, 4, 1560, 16), MS, 16, seed)
      const base = { shape: PREFILL_BOUND, pods: 4, requests }
      const one = await run(base)
      const three = await run({ ...base, replicas: 3 })
      ratios.push(`${seed}: ${p90(three).toFixed(0)} vs ${p90(one).toFixed(0)}`)
      expect(p90(three), ratios.join(', ')).toBeLessThanOrEqual(1.15 * p90(one))
      expect(three.prefixHitRate).toBeGreaterThanOrEqual(one.prefixHitRate - 0.05)
    }
  }, 60_000)

  it('prefill-bound, 2 of 4 engines restarted under load: TTFT p90 within 10 % of fresh', async () => {
    // 16 s, restarts at 35 % and 50 % of it; the 8 s window of --quick (tighter: the forced
    // recomputation is a larger share of the judged requests) is regimes-restart.test.ts.
    const ms = 16_000
    const requests = sharedPrefix(0.7 * capacity(PREFILL_BOUND, 4, 1560, 16), ms, 16, 10)
    const base = { shape: PREFILL_BOUND, pods: 4, requests }
    const fresh = await run(base)
    const restarted = await run({
      ...base,
      restarts: [
        { pod: 1, at: 0.35 * ms, downMs: 1000 },
        { pod: 2, at: 0.5 * ms, downMs: 1000 },
      ],
    })
    expect(p90(restarted)).toBeLessThanOrEqual(1.1 * p90(fresh))
    // Streams cut by the restarts fail; nothing else does.
    const failed = restarted.results.filter((r) => !r.ok).length
    expect(failed).toBeGreaterThan(0)
    expect(failed).toBeLessThan(15)
  }, 60_000)

  it('uniform prompts: TTFT p90 within 5 % of round-robin', async () => {
    const requests = uniform(0.7 * capacity(PREFILL_BOUND, 4, 600, 16, 2), MS, 20)
    const base = { shape: PREFILL_BOUND, pods: 4, timeScale: 2, requests }
    const rr = await run({ ...base, plugins: RR })
    const ours = await run(base)
    expect(p90(ours)).toBeLessThanOrEqual(1.05 * p90(rr))
  }, 60_000)

  it("uniform prompts at 70 %: every policy's TTFT p90 is the prefill floor, so none can beat another", async () => {
    // The floor: one request alone on an idle fleet (no queue, no batch to share). At 70 % no
    // request of any policy waits (8 slots per pod rarely all busy), so p90 = floor for all and
    // bench:routing's 2 ms differences between routers here (334 vs 332) are HTTP noise, not
    // routing. Least-pending (join-shortest-queue) gains nothing either: there is no queue.
    for (const seed of [20]) {
      const requests = uniform(0.7 * capacity(PREFILL_BOUND, 4, 600, 16, 2), MS, seed)
      const base = { shape: PREFILL_BOUND, pods: 4, timeScale: 2 }
      const alone = await run({
        ...base,
        requests: [{ ...(requests[0] as VirtualRequest), at: 0 }],
      })
      const floor = (alone.results[0] as VirtualResult).ttftMs
      expect(floor).toBeGreaterThan(0)
      for (const plugins of [RR, undefined, LEAST_PENDING]) {
        const x = await run({ ...base, requests, ...(plugins ? { plugins } : {}) })
        expect(p90(x)).toBeCloseTo(floor, 0)
      }
    }
  }, 60_000)

  it('multi-LoRA: ≥ 95 % of requests land where their adapter is loaded', async () => {
    const ours = await multiLora(0.7, 30)
    expect(ours.adapterHitRate).toBeGreaterThanOrEqual(0.95)
  }, 60_000)

  it("multi-LoRA: no collapse on the seeds where a burst at an adapter's pod set off evictions", async () => {
    // bench:routing's adapter hit moved between 87.9 % and 98.7 % from run to run. On virtual time
    // it is bimodal: at 70 % 14 of seeds 30-49 had only the 8 first loads (97 %), 6 collapsed
    // (83-94 %); at 80 % 14 of 20 collapsed. Each collapse began with a burst queueing at an
    // adapter's pod while the others had free batch slots: predicted-latency, blind to adapters,
    // sent the request to one whose adapter slots were both busy, where it waited ~2 s for one
    // to drain, evicted it, and the evicted adapter's next request did the same elsewhere. With
    // the adapter in the prediction (a load, an eviction's reload, a drain): 0.7 → 97.0 % mean,
    // 1 of 20 below 95 % (seed 47, 94.5 %); 0.8 → 97.5 %, 0.9 → 97.5 %, none below.
    // A slow machine (the quiet batch's 87.9 %): engines 20 % slower than the offered rate
    // assumes (time scale 3 for 2.5), 17 of 20 seeds below 95 % before (mean 93.1 %), none after
    // (96.9 %). Before: 93.8, 91.5 (70 %), 87.3 % (80 %), 92.9 % (slow); after: 97.3, 96.9, 97.1,
    // 97.2 %.
    for (const [load, seed, scale] of [
      [0.7, 31, 2.5],
      [0.7, 42, 2.5],
      [0.8, 38, 2.5],
      [0.7, 30, 3],
    ] as const) {
      const ours = await multiLora(load, seed, scale)
      expect(
        ours.adapterHitRate,
        `load ${load} seed ${seed} scale ${scale}`,
      ).toBeGreaterThanOrEqual(0.95)
    }
  }, 60_000)

  it('two tenants, quick window: with fairness the light tenant TTFT p90 within 20 % of alone, the heavy one pays at most 25 %', async () => {
    // bench:routing's two-tenant regime: distinct 400-token prompts, heavy at 80 % of capacity,
    // light at 10 %, time scale 2.5. Before a heavy tenant was kept out of the headroom (it took
    // it whenever it had no backlog, and a light request that then had to queue could leave the
    // queue only once the whole headroom was free again): light 352 ms vs 286 alone (+23 %).
    // A headroom of two places instead of one: light 286, heavy 678 vs 496 without fairness.
    const cap = capacity(PREFILL_BOUND, 4, 400, 16, 2.5)
    const base = { shape: PREFILL_BOUND, pods: 4, timeScale: 2.5 }
    const light = tenantLoad('light', 0.1 * cap, MS, 41)
    const both = [...light, ...tenantLoad('heavy', 0.8 * cap, MS, 42)].sort((a, b) => a.at - b.at)
    const alone = await run({ ...base, requests: light })
    const fair = await runQueued({ ...base, plugins: FAIR, requests: both })
    const unfair = await run({ ...base, requests: both })
    const p90Of = (x: VirtualRun, tenant: string) =>
      ttftPercentile(
        x.results.filter((r) => r.tag === tenant),
        90,
        WARMUP_MS,
      )
    // The heavy tenant does delay the light one without fairness (the regime is contended).
    expect(p90Of(unfair, 'light')).toBeGreaterThan(1.2 * p90Of(alone, 'light'))
    expect(p90Of(fair, 'light')).toBeLessThan(1.2 * p90Of(alone, 'light'))
    expect(p90Of(fair, 'heavy')).toBeLessThanOrEqual(1.25 * p90Of(unfair, 'heavy'))
    expect(fair.results.every((r) => r.ok)).toBe(true)
  }, 60_000)
})
