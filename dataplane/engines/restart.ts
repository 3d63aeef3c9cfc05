// Engine restart detection from two scrapes of the same endpoint. A container restart keeps the
// pod's address, so nothing in the snapshot changes, yet the engine behind it lost its KV cache
// and loaded LoRA adapters: whatever the gateway remembers about that endpoint's cache is wrong.
// Two signals, both read from what a real engine exposes on /metrics:
//
// - `process_start_time_seconds` changed (prometheus_client's process collector: vLLM with one
//   API server; absent from SGLang's multiprocess registry and from TGI).
// - A counter went backwards: a counter only resets when the process that owns it starts over.
//   Each counter family is summed over its series (a family's `_created` samples are timestamps and
//   left out; histograms and summaries contribute their `_count`), so a series that first appears
//   between two scrapes never looks like a reset, and one family is enough to notice.

import type { ParsedMetrics } from './prom-parser.js'

export type RestartSignal = 'start_time' | 'counter_reset'

/** What one scrape says about the engine process's identity and progress. Treat as opaque. */
export interface ProcessFingerprint {
  readonly startTime: number | undefined
  /** Family name → sum of its monotonic samples. */
  readonly totals: ReadonlyMap<string, number>
}

const START_TIME = 'process_start_time_seconds'
/** Start times are reported with jiffy resolution; anything below this is formatting noise. */
const START_TIME_EPSILON_S = 0.05

export function fingerprint(parsed: ParsedMetrics): ProcessFingerprint {
  let startTime: number | undefined
  const totals = new Map<string, number>()
  for (const f of parsed.families.values()) {
    if (f.name === START_TIME) {
      // Several processes (data-parallel ranks) may each report one: the newest is the signal.
      for (const s of f.samples) {
        if (Number.isFinite(s.value) && (startTime === undefined || s.value > startTime)) {
          startTime = s.value
        }
      }
      continue
    }
    const counter = f.type === 'counter'
    if (!counter && f.type !== 'histogram' && f.type !== 'summary') continue
    let sum = 0
    let n = 0
    for (const s of f.samples) {
      if (counter ? s.name.endsWith('_created') : !s.name.endsWith('_count')) continue
      if (!Number.isFinite(s.value)) continue
      sum += s.value
      n++
    }
    if (n > 0) totals.set(f.name, sum)
  }
  return { startTime, totals }
}

/** Did the engine restart between `prev` and `next`? Undefined when nothing says so. */
export function restartBetween(
  prev: ProcessFingerprint | undefined,
  next: ProcessFingerprint,
): RestartSignal | undefined {
  if (prev === undefined) return undefined
  if (
    prev.startTime !== undefined &&
    next.startTime !== undefined &&
    Math.abs(next.startTime - prev.startTime) > START_TIME_EPSILON_S
  ) {
    return 'start_time'
  }
  for (const [name, total] of next.totals) {
    const before = prev.totals.get(name)
    // Relative slack: a float sum of large counters may differ in its last bits between scrapes.
    if (before !== undefined && total < before - Math.abs(before) * 1e-12) return 'counter_reset'
  }
  return undefined
}
