// Routing regimes of issue 9 on virtual time (hack/bench/virtual-fleet.ts): the real scheduler
// against the real simulated engines, deterministic and independent of how busy the machine is.
// Each compares the default profile with round-robin on the same seeded request sequence.

import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import type { SnapshotSchedulerPlugin } from '../../api/snapshot.js'
import {
  DECODE_BOUND,
  type EngineShape,
  PREFILL_BOUND,
  runVirtualFleet,
  ttftPercentile,
  type VirtualFleetOptions,
  type VirtualRequest,
} from '../../hack/bench/virtual-fleet.js'
import { generateWords } from '../../hack/sim/rng.js'
import { seeded } from './testkit.js'

const RR: readonly SnapshotSchedulerPlugin[] = [{ name: 'round-robin', weight: 1, args: {} }]
const WARMUP_MS = 2000

function poisson(rate: number, ms: number, r: () => number): number[] {
  const out: number[] = []
  for (let t = 0; ; ) {
    t += (-Math.log(1 - r()) / rate) * 1000
    if (t >= ms) return out
    out.push(t)
  }
}

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
  return poisson(rate, ms, r).map((at, k) => ({
    at,
    system: systems[Math.floor(r() * systems.length)] as string,
    user: generateWords(seed, `q${k}`, 60).join(''),
    maxTokens: out,
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

describe('routing regimes on virtual time (issue 9)', () => {
  it('decode-bound shared prefix: TTFT p90 not above round-robin', async () => {
    const ms = 16_000
    const rate = 0.7 * capacity(DECODE_BOUND, 4, 1560, 64)
    const requests = sharedPrefix(rate, ms, 64, 12)
    const base = { shape: DECODE_BOUND, pods: 4, requests }
    const rr = await run({ ...base, plugins: RR })
    const ours = await run(base)
    const p90 = (x: typeof rr) => ttftPercentile(x.results, 90, WARMUP_MS)
    console.log(
      'decode-bound',
      p90(rr),
      p90(ours),
      rr.prefixHitRate,
      ours.prefixHitRate,
      ours.perPod,
    )
    expect(p90(ours)).toBeLessThanOrEqual(p90(rr))
  }, 60_000)

  it('prefill-bound shared prefix: ≥ 5× lower TTFT p90 than round-robin', async () => {
    const ms = 12_000
    const rate = 0.7 * capacity(PREFILL_BOUND, 4, 1560, 16)
    const requests = sharedPrefix(rate, ms, 16, 10)
    const base = { shape: PREFILL_BOUND, pods: 4, requests }
    const rr = await run({ ...base, plugins: RR })
    const ours = await run(base)
    const p90 = (x: typeof rr) => ttftPercentile(x.results, 90, WARMUP_MS)
    console.log(
      'prefill-bound',
      p90(rr),
      p90(ours),
      rr.prefixHitRate,
      ours.prefixHitRate,
      ours.perPod,
    )
    expect(p90(ours) * 5).toBeLessThanOrEqual(p90(rr))
  }, 60_000)
})
