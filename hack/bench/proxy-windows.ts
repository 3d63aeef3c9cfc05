// bench:proxy measures each target in several short windows, interleaved with the other targets,
// after an uncounted warm-up. A single long window read mostly the machine at that moment (CPU
// steal on the shared VM put p99s anywhere from 3.3 to 15 ms, docs/proxy-cost.md "The tail") and a
// fresh process's first seconds, which are the slowest for every target. The median of the
// windows' p99 is the figure the verdicts use: one window hit by a burst of steal moves it less
// than it moves the p99 of all requests pooled, which is kept beside it. Pure: numbers in, numbers
// and text out, so the summaries are unit-tested.
import { percentile } from './load.js'
import { median } from './tracing-paired.js'

/** One counted window of one target. */
export interface LatencyWindow {
  /** Requests timed (successful ones). */
  readonly requests: number
  readonly failed: number
  readonly p50Ms: number
  readonly p99Ms: number
  /** Share of the machine's CPU time stolen by the hypervisor over the window (NaN: unknown). */
  readonly steal: number
  /**
   * Share of the window's wall time in which some runnable task on the machine waited for a CPU
   * (/proc/pressure/cpu "some"; NaN: unknown). Steal misses other work inside this VM; this sees
   * it, and also the benchmark's own processes competing for the two cores, so it is never 0.
   */
  readonly cpuWait: number
}

/** A target's figures over its counted windows. */
export interface WindowedLatency {
  /** Median over the windows of each window's p50: the figure the verdicts use. */
  readonly p50Ms: number
  /** Median over the windows of each window's p99: the figure the verdicts use. */
  readonly p99Ms: number
  /** p50 of every counted request pooled. */
  readonly pooledP50Ms: number
  /** p99 of every counted request pooled. */
  readonly pooledP99Ms: number
  /** Failed requests over all counted windows. */
  readonly failed: number
  /** In the order they ran. */
  readonly windows: readonly LatencyWindow[]
}

/** A window's figures from its latencies (ascending, ms), failures and steal share. */
export function latencyWindow(
  sortedMs: readonly number[],
  failed: number,
  machine: { readonly steal: number; readonly cpuWait: number },
): LatencyWindow {
  return {
    requests: sortedMs.length,
    failed,
    p50Ms: percentile(sortedMs, 50),
    p99Ms: percentile(sortedMs, 99),
    steal: machine.steal,
    cpuWait: machine.cpuWait,
  }
}

export class PressureParseError extends Error {
  override readonly name = 'PressureParseError'
  readonly code = 'PROXY_PRESSURE_PARSE'
}

/** The cumulative "some" stall time, µs, of a /proc/pressure/cpu reading. */
export function pressureSomeTotalUs(text: string): number {
  const m = /^some\b.*\btotal=(\d+)/m.exec(text)
  if (m === null) throw new PressureParseError(`no "some … total=" line in: ${text.slice(0, 120)}`)
  return Number(m[1])
}

/** Share of `elapsedMs` that two "some" totals (µs) say a task waited for a CPU; NaN if unknown. */
export function cpuWaitShare(beforeUs: number, afterUs: number, elapsedMs: number): number {
  if (!(elapsedMs > 0) || !Number.isFinite(beforeUs) || !Number.isFinite(afterUs)) return Number.NaN
  return (afterUs - beforeUs) / 1000 / elapsedMs
}

/** p50 and p99 of several windows' latencies (each ascending, ms) taken as one sample. */
export function pooledQuantiles(samples: readonly (readonly number[])[]): {
  readonly p50Ms: number
  readonly p99Ms: number
} {
  const all = samples.flat().sort((a, b) => a - b)
  return { p50Ms: percentile(all, 50), p99Ms: percentile(all, 99) }
}

/**
 * The summary of a target's windows; `pooled` is the p50/p99 of all their requests together
 * (pooledQuantiles, or vegeta's report over every window's results).
 */
export function summariseWindows(
  windows: readonly LatencyWindow[],
  pooled: { readonly p50Ms: number; readonly p99Ms: number },
): WindowedLatency {
  return {
    p50Ms: median(windows.map((w) => w.p50Ms)),
    p99Ms: median(windows.map((w) => w.p99Ms)),
    pooledP50Ms: pooled.p50Ms,
    pooledP99Ms: pooled.p99Ms,
    failed: windows.reduce((a, w) => a + w.failed, 0),
    windows,
  }
}

/** "3.2 %", or "n/a" when the share is unknown. */
export function fmtShare(share: number, digits = 1): string {
  return Number.isFinite(share) ? `${(share * 100).toFixed(digits)} %` : 'n/a'
}

/** One window as printed while the benchmark runs. */
export function windowText(w: LatencyWindow): string {
  return `p50 ${w.p50Ms.toFixed(3)} p99 ${w.p99Ms.toFixed(3)} ms, ${w.requests} timed${w.failed > 0 ? `, ${w.failed} failed` : ''}, machine steal ${fmtShare(w.steal)}, CPU wait ${fmtShare(w.cpuWait, 0)}`
}

/** A target's summary as printed: the median of the windows first, the pooled figures beside. */
export function summaryText(s: WindowedLatency): string {
  const p99s = s.windows.map((w) => w.p99Ms.toFixed(2)).join(' ')
  return `median of ${s.windows.length} windows p50 ${s.p50Ms.toFixed(3)} p99 ${s.p99Ms.toFixed(3)} ms (window p99s ${p99s}); pooled p50 ${s.pooledP50Ms.toFixed(3)} p99 ${s.pooledP99Ms.toFixed(3)} ms; ${s.failed} failed`
}
