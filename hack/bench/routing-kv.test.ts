// The cache-pressure regime of `bench:routing --only kv` (routing-kv.ts) on virtual time
// (virtual-fleet.ts): the real scheduler and plugins against the real simulated engines, whose KV
// events reach every replica's kv-cache index through the wire decoder. Deterministic and
// independent of how busy the machine is.

import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { SCHEDULER_PLUGIN_NAMES, type SnapshotSchedulerPlugin } from '../../api/snapshot.js'
import { seeded } from '../../dataplane/scheduler/testkit.js'
import {
  DEFAULT_RATE,
  ENGINE,
  GROUPS,
  type Mode,
  OUT,
  profile,
  question,
  REPLICAS,
  system,
  USERS,
} from './routing-kv.js'
import { poissonTimes } from './routing-load.js'
import {
  type EngineShape,
  runVirtualFleet,
  ttftPercentile,
  type VirtualRequest,
  type VirtualRun,
} from './virtual-fleet.js'

const SHAPE: EngineShape = {
  maxNumSeqs: ENGINE.maxNumSeqs,
  blockSize: ENGINE.blockSize,
  numGpuBlocks: ENGINE.numGpuBlocks,
  prefillOverheadMs: ENGINE.prefillOverheadMs,
  prefillMsPerToken: ENGINE.prefillMsPerToken,
  decodeMsPerToken: ENGINE.decodeMsPerToken,
  batchSlowdown: ENGINE.batchSlowdown,
  loraLoadMs: 0,
  prefillInterference: ENGINE.prefillInterference,
}
const WARMUP_MS = 5000

/** routing-kv.ts's workload: groups × users drawn uniformly, Poisson arrivals. */
function workload(rate: number, ms: number, seed: number): VirtualRequest[] {
  const r = seeded(seed)
  return poissonTimes(rate, ms, r).map((at) => {
    const g = Math.floor(r() * GROUPS)
    const u = Math.floor(r() * USERS)
    return { at, system: system(g), user: question(g, u), maxTokens: OUT, tag: `g${g}` }
  })
}

function plugins(mode: Mode): SnapshotSchedulerPlugin[] {
  // Port 1: nothing listens there; the virtual fleet feeds the indexes itself.
  return profile(mode, 1).map((p) => {
    const name = SCHEDULER_PLUGIN_NAMES.find((n) => n === p.name)
    if (name === undefined) throw new Error(`unknown plugin ${p.name}`)
    // The profile's arguments are numbers and strings (SchedulerArgValue).
    return { name, weight: p.weight ?? 1, args: (p.args ?? {}) as SnapshotSchedulerPlugin['args'] }
  })
}

async function run(mode: Mode, replicas: number, seconds: number): Promise<VirtualRun> {
  return runVirtualFleet({
    shape: SHAPE,
    pods: 8,
    plugins: plugins(mode),
    replicas,
    requests: workload(DEFAULT_RATE, seconds * 1000, 14),
    kvEvents: {},
    advance: (ms) => vi.advanceTimersByTimeAsync(ms),
  })
}

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'], now: 1_700_000_000_000 })
})
afterEach(() => {
  vi.useRealTimers()
})

describe('bench:routing --only kv on virtual time', () => {
  it(`${REPLICAS} data-plane replicas: kv-cache (engine events) keeps its hit rate, prefix-cache (what each replica sent) goes stale`, async () => {
    // 20 s keeps the test cheap; KV_SECONDS=35 is the horizon of the figures in docs/kv-cache.md.
    const seconds = Number(process.env['KV_SECONDS'] ?? 20)
    const kv = await run('kv-cache', REPLICAS, seconds)
    const pc = await run('prefix-cache', REPLICAS, seconds)
    const summary = (r: VirtualRun) => {
      const measured = r.results.filter((x) => x.at >= WARMUP_MS)
      return {
        ok: r.results.every((x) => x.ok),
        mean: measured.reduce((t, x) => t + x.ttftMs, 0) / measured.length,
        p50: ttftPercentile(r.results, 50, WARMUP_MS),
        p75: ttftPercentile(r.results, 75, WARMUP_MS),
        p90: ttftPercentile(r.results, 90, WARMUP_MS),
        hit: r.prefixHitRate,
      }
    }
    const k = summary(kv)
    const p = summary(pc)
    expect(k.ok && p.ok).toBe(true)
    // Each replica's approximate index holds a third of what it would with all the traffic, so it
    // believes groups are still cached that the others' traffic evicted; events see them go.
    // (20 s: hit 57 % vs 25 %.)
    expect(k.hit - p.hit).toBeGreaterThan(0.2)
    // Misses queue behind misses on prefix-cache's pods (20 s: mean 243 vs 474 ms, p50 84 vs 406,
    // p90 555 vs 830). Issue 14's 2x on p90 needs the longer horizon (35 s: 406 vs 1059 ms, 2.6x);
    // over 15 measured seconds p90 sits on the few misses that queued.
    expect(p.mean).toBeGreaterThanOrEqual(1.5 * k.mean)
    expect(p.p50).toBeGreaterThanOrEqual(2 * k.p50)
    expect(p.p90).toBeGreaterThanOrEqual(1.4 * k.p90)
  }, 300_000)
})
