// Issue 9's last target on virtual time (hack/bench/virtual-fleet.ts): 2 of 4 prefill-bound
// engines restarted under load, in the 8 s window of `npm run bench:routing -- --quick` (pod-1 at
// 35 %, pod-2 at 50 %, each down 1 s, the first 2 s not judged), TTFT p90 within 10 % of the
// fresh fleet's on the same request sequence.
//
// What is physically possible there: each group homed on a killed engine pays a cold prefill
// (~400 ms here) at its first request after the kill, and its requests arriving before that
// prefill can be ready wait for it. Counted from the fresh run's placement, that is 13-18 slow
// requests per seed (seeds 10-21) against 21-26 allowed (a tenth of the judged requests): the
// target is reachable, with little room for anything else (a survivor that takes two displaced
// groups queues its own, and a group moved to the second engine to die moves twice). Seeds 10-21
// at this commit: 9 of 12 within 10 %, slow requests 275 in all; before the re-homing with
// bounded load (predicted-latency #rehome): 6 of 12, 285 — seeds 10-15 gained most (2 → 5 of 6,
// 157 → 142), 16-21 not (4 of 6 both, 128 → 133): a real but modest gain, variance dominates.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import {
  PREFILL_BOUND,
  runVirtualFleet,
  ttftPercentile,
  type VirtualFleetOptions,
  type VirtualRequest,
} from '../../hack/bench/virtual-fleet.js'
import { generateWords } from '../../hack/sim/rng.js'
import { seeded } from './testkit.js'

const MS = 8000
const WARMUP_MS = 2000

function poisson(rate: number, ms: number, r: () => number): number[] {
  const out: number[] = []
  for (let t = 0; ; ) {
    t += (-Math.log(1 - r()) / rate) * 1000
    if (t >= ms) return out
    out.push(t)
  }
}

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
  return poisson(rate(), MS, r).map((at, k) => ({
    at,
    system: systems[Math.floor(r() * systems.length)] as string,
    user: generateWords(seed, `q${k}`, 60).join(''),
    maxTokens: 16,
  }))
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
  it('TTFT p90 within 10 % of fresh: the bench seed, and 4 of 6 seeds', async () => {
    const within: Record<number, boolean> = {}
    for (const seed of [10, 11, 12, 13, 14, 15]) {
      const base = { shape: PREFILL_BOUND, pods: 4, requests: sharedPrefix(seed) }
      const fresh = await run(base)
      const restarted = await run({
        ...base,
        restarts: [
          { pod: 1, at: 0.35 * MS, downMs: 1000 },
          { pod: 2, at: 0.5 * MS, downMs: 1000 },
        ],
      })
      const f = ttftPercentile(fresh.results, 90, WARMUP_MS)
      const r = ttftPercentile(restarted.results, 90, WARMUP_MS)
      within[seed] = r <= 1.1 * f
      // Only streams cut by the kills fail.
      const failed = restarted.results.filter((x) => !x.ok).length
      expect(failed).toBeLessThan(12)
    }
    // Before #rehome: seed 10 at 5.0x fresh, 2 of 6 within.
    expect(within[10]).toBe(true)
    expect(Object.values(within).filter(Boolean).length).toBeGreaterThanOrEqual(4)
  }, 120_000)
})
