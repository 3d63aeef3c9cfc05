// Issue 9's last target on virtual time (hack/bench/virtual-fleet.ts): 2 of 4 prefill-bound
// engines restarted under load, in the 8 s window of `npm run bench:routing -- --quick` (pod-1 at
// 35 %, pod-2 at 50 %, each down 1 s, the first 2 s not judged), TTFT p90 within 10 % of the
// fresh fleet's on the same request sequence.
//
// What is physically possible there: each group homed on a killed engine pays a cold prefill
// (~400 ms here) at its first request after the kill, and its requests arriving before that
// prefill can be ready wait for it. Counted from the fresh run's placement (floorSlow), that is
// 12-18 slow requests per seed (seeds 10-21) against 21-26 allowed (a tenth of the judged
// requests; asserted below for seeds 10-15): the target is reachable, with little room for
// anything else (a survivor that takes two displaced groups queues its own, and a group moved to
// the second engine to die moves twice). Seeds 10-21: 9 of 12 within 10 %, slow requests 266 in
// all (275 before the index learned its tokens per block, see below); before the re-homing with
// bounded load (predicted-latency #rehome): 6 of 12, 285 — seeds 10-15 gained most (2 → 5 of 6,
// 157 → 142), 16-21 not (4 of 6 both, 128 → 133): a real but modest gain, variance dominates.
// Seed 12 (188 ms) is the two-displaced-groups case: pod-3 took g9 and g11, both bursty.
// With one move of slack in #rehome (the test below): seeds 10-21 9 of 12 still, slow requests
// 257; 22-29 6 of 8 (was 3); the bench's sequence 70 ms (was 116), 28 slow requests for 23
// allowed. The p90 of one seed moves a lot with any change of placement (seed 11: 28 → 77 ms,
// seed 12: 188 → 80): judge by many seeds.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { poissonTimes } from '../../hack/bench/routing-load.js'
import {
  PREFILL_BOUND,
  runVirtualFleet,
  ttftPercentile,
  type VirtualFleetOptions,
  type VirtualRequest,
  type VirtualRun,
} from '../../hack/bench/virtual-fleet.js'
import { words } from '../../hack/bench/words.js'
import { createRng, generateWords } from '../../hack/sim/rng.js'
import { seeded } from './testkit.js'

const MS = 8000
const WARMUP_MS = 2000

/** 70 % of the fleet's rate with nothing cached (as routing.ts computes its 100 %). */
function rate(): number {
  const e = PREFILL_BOUND
  const decode = 16 * e.decodeMsPerToken * (1 + (e.batchSlowdown * (e.maxNumSeqs - 1)) / 2)
  const sec = (e.prefillOverheadMs + 1560 * e.prefillMsPerToken + decode) / 1000
  return (0.7 * 4 * e.maxNumSeqs) / sec
}

/** 16 groups of a 1500-token system prompt + a 60-token question, 16 output tokens. */
function sharedPrefix(seed: number): VirtualRequest[] {
  const r = seeded(seed)
  const systems = Array.from(
    { length: 16 },
    (_, g) => `Group ${g} policy. ${generateWords(100 + g, 'system', 1500).join('')}`,
  )
  return poissonTimes(rate(), MS, r).map((at, k) => {
    const g = Math.floor(r() * systems.length)
    return {
      at,
      system: systems[g] as string,
      user: generateWords(seed, `q${k}`, 60).join(''),
      maxTokens: 16,
      tag: `g${g}`,
    }
  })
}

const RESTARTS = [
  { pod: 1, at: 0.35 * MS, downMs: 1000 },
  { pod: 2, at: 0.5 * MS, downMs: 1000 },
]

/**
 * Judged requests that are slow (TTFT above `limit`) whatever the router, given the fresh run's
 * placement: for each restart, every group whose requests in the second before the kill all went
 * to the killed engine has its cache there only, so its first request after the kill is a cold
 * prefill (on a survivor, or on the engine back with an empty cache), and its requests arriving
 * before that prefill can be ready either wait for it or compute their own. Requests in flight at
 * the kill fail and are not judged, for us as for this count.
 */
function floorSlow(
  requests: readonly VirtualRequest[],
  fresh: VirtualRun,
  coldMs: number,
  limit: number,
): number {
  const slow = new Set<number>()
  for (const x of RESTARTS) {
    const pods = new Map<string, Set<string>>()
    for (const r of fresh.results) {
      if (r.tag === undefined || !r.ok || r.at >= x.at || r.at < x.at - 1000) continue
      pods.set(r.tag, (pods.get(r.tag) ?? new Set()).add(r.pod))
    }
    for (const [g, on] of pods) {
      if (on.size !== 1 || !on.has(`pod-${x.pod}`)) continue
      const after = requests.filter((q) => q.tag === g && q.at >= x.at)
      const first = after[0]
      if (first === undefined) continue
      for (const q of after) if (q === first || first.at + coldMs - q.at > limit) slow.add(q.at)
    }
  }
  return [...slow].filter((at) => at >= WARMUP_MS).length
}

/**
 * The very requests of `npm run bench:routing -- --quick`'s shared-prefix scenario (routing.ts:
 * createRng(10), the same draws in the same order, pseudo-words of ~6 characters a token).
 */
function benchSequence(): VirtualRequest[] {
  const r = createRng(10)
  const systems = Array.from(
    { length: 16 },
    (_, g) => `Group ${g} policy. ${words(1500, createRng(100 + g))}`,
  )
  return poissonTimes(rate(), MS, r).map((at) => {
    const g = Math.floor(r() * 16)
    return { at, system: systems[g] as string, user: words(60, r), maxTokens: 16, tag: `g${g}` }
  })
}

/**
 * Cold prefills (the group's 1500-token system prompt not found) of requests sent to another pod
 * than their group's previous request while that pod was up all along (it did not restart in
 * between, before this request's first token, so its engine still held the group). Hits on a
 * second pod (a spill under load that cached the group there too) are not counted.
 */
function needlessMoves(run: VirtualRun, fromMs = 0): string[] {
  const last = new Map<string, { pod: string; at: number }>()
  const out: string[] = []
  for (const x of [...run.results].sort((a, b) => a.at - b.at)) {
    if (!x.ok || x.tag === undefined) continue
    const prev = last.get(x.tag)
    if (prev !== undefined && prev.pod !== x.pod && x.cachedTokens < 1000 && x.at >= fromMs) {
      // Killed before this request's first token: a request sent just before the kill is
      // refused or cut there and retried on the group's re-home.
      const died = RESTARTS.some(
        (k) => `pod-${k.pod}` === prev.pod && k.at > prev.at && k.at <= x.at + x.ttftMs,
      )
      if (!died) out.push(`${x.tag} ${prev.pod} -> ${x.pod} at ${Math.round(x.at)} ms`)
    }
    last.set(x.tag, { pod: x.pod, at: x.at })
  }
  return out
}

async function run(o: Omit<VirtualFleetOptions, 'advance'>) {
  return runVirtualFleet({ ...o, advance: async (ms) => vi.advanceTimersByTime(ms) })
}

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'], now: 1_700_000_000_000 })
})
afterEach(() => {
  vi.useRealTimers()
})

describe('engines restarted under load, quick window (issue 9)', () => {
  it('TTFT p90 within 10 % of fresh: reachable (floor under a tenth), met on the bench seed and 4 of 6 seeds', async () => {
    const within: Record<number, boolean> = {}
    for (const seed of [10, 11, 12, 13, 14, 15]) {
      const requests = sharedPrefix(seed)
      const base = { shape: PREFILL_BOUND, pods: 4, requests }
      const fresh = await run(base)
      const restarted = await run({ ...base, restarts: RESTARTS })
      const f = ttftPercentile(fresh.results, 90, WARMUP_MS)
      const r = ttftPercentile(restarted.results, 90, WARMUP_MS)
      within[seed] = r <= 1.1 * f
      // The target is physically reachable: the floor stays under the tenth a p90 leaves.
      const judged = restarted.results.filter((x) => x.ok && x.at >= WARMUP_MS).length
      const cold = Math.min(
        ...fresh.results.filter((x) => x.ok && x.cachedTokens === 0).map((x) => x.ttftMs),
      )
      const floor = floorSlow(requests, fresh, cold, 1.1 * f)
      expect(floor).toBeGreaterThan(5)
      expect(floor).toBeLessThanOrEqual(Math.floor(0.1 * judged))
      // Only streams cut by the kills fail.
      const failed = restarted.results.filter((x) => !x.ok).length
      expect(failed).toBeLessThan(12)
    }
    // Before #rehome: seed 10 at 5.0x fresh, 2 of 6 within.
    expect(within[10]).toBe(true)
    expect(Object.values(within).filter(Boolean).length).toBeGreaterThanOrEqual(4)
  }, 120_000)

  // The moves of the first restart's groups leave the survivors hosting most groups; those the
  // second restart displaces are the chance to even the fleet again, by sending them mostly to
  // the pod back empty from the first. With strictly one move per survivor at a time (before
  // MOVES_SLACK in predicted-latency #rehome), room in the KV cache could not weigh, the
  // survivors kept two thirds of the groups, and a burst on one of them queued its own: seeds
  // 40-49 within 10 % 3 of 10 (30-49: 11 of 20, slow requests 433); with one move of slack
  // 8 of 10 (30-49: 17 of 20, 371). Rate-weighting the moves (a hot group's prefill draws more
  // waiting requests) was tried on top: 30-49 18 of 20 but 396 slow, seeds 10-29 no better.
  //
  // What the slow requests are (seeds 10-49 and the bench sequence, 41 runs; scratch analysis,
  // limit 1.1x fresh p90): 811 slow for 939 allowed, of which ~350 cold prefills of displaced
  // groups, 345 requests of those groups arriving while that prefill ran on the same pod (waiting
  // is faster than any other pod: each would pay its own ~400 ms prefill there) and 113 queued on
  // a survivor. Every cold prefill was one a kill forced: none moved back to the restarted pod
  // while its new pod still held it, none sent to a pod back empty while warm elsewhere (asserted
  // below for seeds 40-49 and the bench sequence); 21 were a group moved onto pod-2 before pod-2
  // was killed (its second forced move: no router can know which engine dies next).
  // The move bound: 0 moves of slack 22 of 41 within 10 % (925 slow), 1 (kept) 32 (811), 2 32
  // (822), unbounded 33 (811), slack only for pods with room 30 (854): no lever left there.
  it('after the second restart the fleet evens out again: seeds 40-49 mostly within 10 %', async () => {
    const p90s: string[] = []
    const moves: string[] = []
    let within = 0
    for (let seed = 40; seed < 50; seed++) {
      const requests = sharedPrefix(seed)
      const base = { shape: PREFILL_BOUND, pods: 4, requests }
      const f = ttftPercentile((await run(base)).results, 90, WARMUP_MS)
      const restarted = await run({ ...base, restarts: RESTARTS })
      const r = ttftPercentile(restarted.results, 90, WARMUP_MS)
      p90s.push(`${seed}: ${Math.round(r)} vs ${Math.round(f)}`)
      if (r <= 1.1 * f) within++
      // From the first kill on, each cold prefill is one a kill forced: no group leaves a pod that
      // still holds it (seed 48 has one such move at 0.5 s, in the warm-up, before any kill),
      // but for copies the engine evicted first (below).
      for (const m of needlessMoves(restarted, RESTARTS[0]?.at)) moves.push(`seed ${seed}: ${m}`)
    }
    // With hot-group copies (predicted-latency #replicate) a group has two homes and the engines'
    // caches hold more groups: the older home, no longer used, is evicted by the engine before
    // the prefix index drops it, and a request sent back there finds a few blocks only (seed 48:
    // g9 at 7.9 s, seed 49: g6 at 6.1 s, 464 of 1520 tokens; none without copies). With re-warms
    // (plugins/rewarm.ts) the survivors take the lost groups at once and hold more of them: 3
    // (seed 40: g8 at 5.0 s and g10 at 6.2 s, seed 47: g10 at 5.4 s, each placed as a prefix no
    // pod held: the index no longer listed them on pod-0).
    expect(moves.length, moves.join('; ')).toBeLessThanOrEqual(3)
    expect(within, p90s.join(', ')).toBeGreaterThanOrEqual(7)
  }, 120_000)

  // Hot groups copied by shadow requests (predicted-latency #replicate, `hotCopyTheta` 1; sent as
  // the proxy sends them, serve/shadow.ts): a group whose own rate × a cold prefill reaches one
  // request gets a second warm copy on its next rendezvous pod, made by the prompt with one output
  // token, no client waiting. A kill then finds most hot groups warm elsewhere. Seeds 10-49 and
  // the bench sequence (41 runs): within 10 % of fresh 38 of 41, 570 slow requests, mean
  // restart/fresh 1.01 (without copies 32 of 41, 811, 1.21); fresh p90 28 ms either way; 7-22
  // shadows a run, none dropped. These are the seeds where a kill cost most without copies.
  it('hot groups copied by shadow requests: within 10 % where the kills cost most without them', async () => {
    const off = [
      {
        name: 'predicted-latency',
        weight: 6,
        args: { hotCopyTheta: 0 },
      },
      { name: 'lora-affinity', weight: 4, args: {} },
      { name: 'session-affinity', weight: 4, args: {} },
      { name: 'gpu-aware', weight: 2, args: {} },
    ] as const
    const cases: [string, VirtualRequest[]][] = [
      ['bench', benchSequence()],
      ['11', sharedPrefix(11)],
      ['12', sharedPrefix(12)],
      ['23', sharedPrefix(23)],
      ['27', sharedPrefix(27)],
    ]
    const lines: string[] = []
    for (const [name, requests] of cases) {
      const base = { shape: PREFILL_BOUND, pods: 4, requests }
      const fresh = await run(base)
      const restarted = await run({ ...base, restarts: RESTARTS })
      const f = ttftPercentile(fresh.results, 90, WARMUP_MS)
      const r = ttftPercentile(restarted.results, 90, WARMUP_MS)
      lines.push(`${name}: ${Math.round(r)} vs ${Math.round(f)}`)
      expect(r, lines.join(', ')).toBeLessThanOrEqual(1.1 * f)
      // Copies were made, within the bound, and the fleet still serves: only cut streams fail.
      expect(restarted.shadows.sent).toBeGreaterThan(3)
      expect(restarted.shadows.dropped).toBe(0)
      expect(restarted.results.filter((x) => !x.ok).length).toBeLessThan(12)
      // Without the copies the same kills cost far more (2.5x fresh and up on these two).
      if (name === 'bench' || name === '12') {
        const without = await run({ ...base, restarts: RESTARTS, plugins: off })
        expect(without.shadows.sent).toBe(0)
        expect(ttftPercentile(without.results, 90, WARMUP_MS)).toBeGreaterThan(2 * f)
      }
    }
  }, 120_000)

  // Re-warms (plugins/rewarm.ts, sent as the proxy sends them): each group the kill left with no
  // live pod gets its prefix computed on its re-home as soon as the kill is seen, instead of at
  // its next request. Seeds 10-49 and the bench sequence (hack/bench/virtual-sweep.test.ts,
  // RESTART_CLASSIFY=1): 482 → 347 requests over 100 ms, within 10 % of fresh 40 → 41 of 41.
  // Here the bench sequence and seeds 10-19: fewer slow requests by more than 15 %; none sent
  // when no shadows are (the EPP: Envoy sends the requests).
  it('re-warms of the lost groups: fewer slow requests than without', async () => {
    const cases: VirtualRequest[][] = [benchSequence()]
    for (let seed = 10; seed < 20; seed++) cases.push(sharedPrefix(seed))
    const slow = (r: VirtualRun): number =>
      r.results.filter((x) => x.ok && x.at >= WARMUP_MS && x.ttftMs > 100).length
    let on = 0
    let off = 0
    let rewarms = 0
    for (const requests of cases) {
      const base = { shape: PREFILL_BOUND, pods: 4, requests, restarts: RESTARTS }
      const with_ = await run(base)
      on += slow(with_)
      rewarms += with_.shadows.rewarms
      off += slow(await run({ ...base, rewarm: false }))
    }
    expect(rewarms).toBeGreaterThan(cases.length)
    expect(on, `slow with ${on}, without ${off}`).toBeLessThan(0.85 * off)
    const epp = await run({
      shape: PREFILL_BOUND,
      pods: 4,
      requests: benchSequence(),
      restarts: RESTARTS,
      shadows: false,
    })
    expect(epp.shadows).toEqual({ sent: 0, dropped: 0, rewarms: 0 })
  }, 120_000)

  // The real bench's own sequence replayed here gives what the real run showed (a traced quiet
  // run: TTFT p90 181 ms, 35 slow of 239; here before this fix 168 ms, 33 of 233): the harness
  // and the real fleet agree; the seeds above are simply kinder. Of its slow requests, the
  // fresh-placement floor is 19 (pod-1 held 6 of the 16 groups when it was killed), 6 more come
  // from two of those groups re-homed on pod-2, which is killed next, and the rest were groups
  // moved off a pod whose engine still held them: the prefix index sized its tables assuming 4
  // characters a token (1024 of its blocks for 1024 engine blocks), this text runs at ~6, so it
  // dropped groups at two thirds of the real cache and placed their next request cold elsewhere
  // (g15 at 5.1 s and 6.5 s here; g11 at 5.5 s and g3 at 5.6 s in the real trace). The index now
  // learns the engine tokens its blocks stand for (prefix-cache #learn): p90 116 ms, 29 slow.
  // Knife-edge: the real bench kills ~63 ms before its nominal times (its restart timers start
  // before the load's clock); with the kills 63 or 100 ms earlier here, p90 is 62 ms, 27 slow.
  it("the bench's own sequence: no group leaves a pod that still holds it", async () => {
    const requests = benchSequence()
    const restarted = await run({ shape: PREFILL_BOUND, pods: 4, requests, restarts: RESTARTS })
    // One such move is the hot-group copies' known cost (the test above): since copies wait until
    // the engines are seen not to stall requests behind other prefills (predicted-latency
    // prefillInterference), they are made at other times, and g0's request at 6.4 s went to a
    // pod the index believed held it and found 784 of 1520 tokens (the engine had evicted the
    // rest); before that change none.
    const moves = needlessMoves(restarted)
    expect(moves.length, moves.join('; ')).toBeLessThanOrEqual(1)
    // Not vacuous: every group came back after the kills, and the two killed engines served again.
    expect(restarted.perPod['pod-1']).toBeGreaterThan(20)
    expect(restarted.perPod['pod-2']).toBeGreaterThan(20)
  }, 60_000)
})
