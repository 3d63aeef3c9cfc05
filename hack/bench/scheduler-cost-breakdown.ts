// `bench:scheduler-cost -- --breakdown`: where a decision's time goes, in numbers that hold on a
// busy machine. A single decision's wall time there is mostly other processes (load 12-20 on two
// cores: p99 in milliseconds, p50 moving ±20 % between runs), so each part is timed as the
// floor of many repetitions: the mean over a chunk of consecutive calls, the lowest chunk (and
// the 10th percentile) of hundreds. A chunk that ran without being preempted shows the code's own
// cost; comparing two builds by these floors finds differences of a few µs that p50 hides.
//
// - per plugin: its `score` alone over 25 requests (prompt hashes memoised), repeated;
// - hashing: the prompt's block hashes of fresh requests (JSON-parsed bodies, as the proxy
//   makes them), the shared prompt-hasher cache warm;
// - GC: how many timed decisions a garbage collection overlapped or came right after (caches
//   cold), and how many of the slowest 1 %;
// - heap: bytes a decision allocates (what makes young-generation collections come, and with
//   them the pauses that land inside decisions).

import { PerformanceObserver } from 'node:perf_hooks'
import { getHeapStatistics } from 'node:v8'
import type { PickContext } from '../../dataplane/picker.js'
import { requestBlocks } from '../../dataplane/scheduler/prompt-hasher.js'
import type { EndpointState } from '../../dataplane/scheduler/state.js'
import { request } from '../../dataplane/scheduler/testkit.js'
import type { Plugin } from '../../dataplane/scheduler/types.js'

/** Consecutive calls averaged into one chunk. */
export const CHUNK = 25

/** Lowest and 10th-percentile mean of consecutive chunks of `chunk` samples (in sample order). */
export function chunkFloor(
  samples: readonly number[],
  chunk = CHUNK,
): { min: number; p10: number } {
  const means: number[] = []
  for (let i = 0; i + chunk <= samples.length; i += chunk) {
    let s = 0
    for (let j = i; j < i + chunk; j++) s += samples[j] as number
    means.push(s / chunk)
  }
  if (means.length === 0) return { min: Number.NaN, p10: Number.NaN }
  means.sort((a, b) => a - b)
  return { min: means[0] as number, p10: means[Math.floor(means.length / 10)] as number }
}

/** The fastest chunk mean (µs per call) of `fn` over `reps` repetitions of `items`. */
export function floorOf<T>(items: readonly T[], reps: number, fn: (item: T) => void): number {
  let best = Number.POSITIVE_INFINITY
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now()
    for (const it of items) fn(it)
    const us = ((performance.now() - t0) * 1000) / items.length
    if (us < best) best = us
  }
  return best
}

/**
 * Per plugin that scores: the floor of its `score` over `ctxs` (requests made from them, at
 * `now` on the scheduler's clock).
 */
export function pluginFloors(
  plugins: readonly Plugin[],
  eps: readonly EndpointState[],
  ctxs: readonly PickContext[],
  now: number,
  reps = 200,
): { name: string; us: number }[] {
  const reqs = ctxs.map((c) => request(c, now))
  const out = new Float64Array(Math.max(64, eps.length))
  const rows: { name: string; us: number }[] = []
  for (const p of plugins) {
    const score = p.score
    if (score === undefined) continue
    // The first pass memoises each request's hashes; the repetitions time scoring alone.
    for (const r of reqs) score.call(p, r, eps, out)
    rows.push({ name: p.name, us: floorOf(reqs, reps, (r) => score.call(p, r, eps, out)) })
  }
  return rows
}

/** The floor of hashing fresh requests' prompts (a new batch of bodies per repetition). */
export function hashingFloor(
  make: () => PickContext,
  blockBytes: number,
  maxBlocks: number,
  reps = 40,
): number {
  let best = Number.POSITIVE_INFINITY
  for (let r = 0; r < reps; r++) {
    const reqs = Array.from({ length: CHUNK }, () => request(make(), 0))
    const us = floorOf(reqs, 1, (q) => requestBlocks(q, blockBytes, maxBlocks))
    if (us < best) best = us
  }
  return best
}

/**
 * Bytes of heap one call allocates: the median, over `n` calls, of the used heap's growth across
 * the call, less that of an empty call (the reading's own allocation). A collection inside a call
 * makes its reading negative or small; the median ignores the few that do. `prepare` makes each
 * call outside the reading, and the call returns what is to run after it (neither is counted).
 */
export function heapPerCall(n: number, prepare: () => () => () => void): number {
  const used = (): number => getHeapStatistics().used_heap_size
  const empty: number[] = []
  const grown: number[] = []
  for (let i = 0; i < n; i++) {
    const call = prepare()
    const e0 = used()
    const e1 = used()
    empty.push(e1 - e0)
    const t0 = used()
    const after = call()
    const t1 = used()
    grown.push(t1 - t0)
    after()
  }
  return median(grown) - median(empty)
}

/** The median of `xs` (NaN when empty). */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) return Number.NaN
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >>> 1
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2
}

/** Decisions (start, end in ms) that a GC pause (start, duration in ms) overlapped. */
export function gcOverlaps(
  spans: readonly (readonly [number, number])[],
  gcs: readonly (readonly [number, number])[],
): boolean[] {
  const sorted = [...gcs].sort((a, b) => a[0] - b[0])
  return spans.map(([a, b]) => {
    for (const [s, d] of sorted) {
      if (s >= b) break
      if (s + d > a) return true
    }
    return false
  })
}

/**
 * Decisions (start, end in ms, in run order) that came right after a GC pause: one began between
 * the end of the previous decision and this one's start (the first decision counts pauses before
 * it). A scavenge moves the young objects and walks megabytes, so the next decision finds its
 * data out of the CPU's caches: GC makes a slow call there without overlapping it.
 */
export function gcBefore(
  spans: readonly (readonly [number, number])[],
  gcs: readonly (readonly [number, number])[],
): boolean[] {
  const starts = gcs.map((g) => g[0]).sort((a, b) => a - b)
  let j = 0
  let prevEnd = Number.NEGATIVE_INFINITY
  return spans.map(([a, b]) => {
    while (j < starts.length && (starts[j] as number) < prevEnd) j++
    const hit = j < starts.length && (starts[j] as number) < a
    prevEnd = b
    return hit
  })
}

/** Records GC pauses (start, duration, ms on the performance clock) until `stop`. */
export function watchGc(): { pauses: [number, number][]; stop: () => Promise<void> } {
  const pauses: [number, number][] = []
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) pauses.push([e.startTime, e.duration])
  })
  obs.observe({ entryTypes: ['gc'] })
  return {
    pauses,
    stop: async () => {
      // Entries are delivered asynchronously: let the last ones arrive.
      await new Promise((r) => setTimeout(r, 20))
      obs.disconnect()
    },
  }
}

/**
 * Per kind of decision: its share of all decisions, its share of those at or above `slow` (µs),
 * and its median (µs). `us` and `kinds` are in the same order; kinds in order of first appearance.
 */
export function slowShare(
  us: readonly number[],
  kinds: readonly string[],
  slow: number,
): { kind: string; share: number; slowShare: number; p50: number }[] {
  const all = new Map<string, number[]>()
  let slowN = 0
  const slowBy = new Map<string, number>()
  for (let i = 0; i < us.length && i < kinds.length; i++) {
    const k = kinds[i] as string
    const v = us[i] as number
    let xs = all.get(k)
    if (xs === undefined) {
      xs = []
      all.set(k, xs)
    }
    xs.push(v)
    if (v >= slow) {
      slowN++
      slowBy.set(k, (slowBy.get(k) ?? 0) + 1)
    }
  }
  const n = Math.min(us.length, kinds.length)
  return [...all].map(([kind, xs]) => ({
    kind,
    share: xs.length / n,
    slowShare: slowN === 0 ? 0 : (slowBy.get(kind) ?? 0) / slowN,
    p50: median(xs),
  }))
}

/**
 * Per-phase timing inside decisions (`--phases`): each plugin's filter, score and admit, and the
 * prompt hasher, wrapped so their µs add up per decision (the hasher's inside the plugin that
 * first asks for the request's hashes). Costs a clock read either side of each call, so the
 * decisions it times are a little slower than unwrapped ones.
 */
export class Phases {
  readonly names: string[] = []
  /** µs per decision, one row per phase (phase-major, decision order). */
  readonly rows: number[][] = []
  #cur: Float64Array = new Float64Array(0)

  /** Wraps `obj[method]` (an own property shadowing the prototype's) into phase `name`. */
  wrap(obj: object, method: string, name: string): void {
    const o = obj as Record<string, unknown>
    const f = o[method]
    if (typeof f !== 'function') return
    const at = this.names.length
    this.names.push(name)
    this.rows.push([])
    this.#cur = new Float64Array(this.names.length)
    const self = this
    o[method] = function (this: unknown, ...args: unknown[]): unknown {
      const t0 = performance.now()
      try {
        return (f as (...a: unknown[]) => unknown).apply(this, args)
      } finally {
        const cur = self.#cur
        cur[at] = (cur[at] as number) + (performance.now() - t0) * 1000
      }
    }
  }

  /** The decision just timed is over: its phases are kept, the next one starts at 0. */
  endDecision(): void {
    for (let i = 0; i < this.names.length; i++) {
      ;(this.rows[i] as number[]).push(this.#cur[i] as number)
      this.#cur[i] = 0
    }
  }

  /**
   * Median µs per phase over all decisions and over those at or above `slow` (`us`: run order).
   * Medians: on a busy machine a few preempted calls of milliseconds swamp any mean.
   */
  compare(us: readonly number[], slow: number): { name: string; all: number; slow: number }[] {
    return this.names.map((name, p) => {
      const xs = this.rows[p] as number[]
      const slowXs: number[] = []
      for (let i = 0; i < xs.length; i++)
        if ((us[i] as number) >= slow) slowXs.push(xs[i] as number)
      return { name, all: median(xs), slow: median(slowXs) }
    })
  }
}
