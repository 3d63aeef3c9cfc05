// Choice or path? (issue 9, the uniform regime's 1-3 ms TTFT p90 gap to sglang-router.) When every
// prompt is distinct and of one length, an engine's TTFT is its queue wait plus a prefill that is
// the same for every request (the simulator's modelled GPU time): the "floor". What a client
// measures above the floor is then either queueing (the router's choice: it sent the request to an
// engine whose batch was full) or the path (the router's proxying, and the CPU the router takes
// from the engines and the client on the shared cores: timers firing late, chunks read late).
//
// Two views, both from what every deployment has: the client's TTFT minus the floor, per request;
// and each engine's own `/metrics` counters at the end of a run (vLLM's queue-time and TTFT
// histograms: their _sum and _count), which count the engine-side part only.
import { percentile } from './load.js'
import type { RequestResult } from './routing-load.js'

/** A histogram's `_sum` and `_count` in a Prometheus exposition, every series added up. */
export interface SumCount {
  readonly sum: number
  readonly count: number
}

/** Sum and count of histogram `name` in `text` (0/0 when absent). */
export function histogramSumCount(text: string, name: string): SumCount {
  let sum = 0
  let count = 0
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue
    const m = /^(\S+?)(?:\{[^}]*\})?\s+(\S+)/.exec(line)
    if (m === null) continue
    const v = Number(m[2])
    if (!Number.isFinite(v)) continue
    if (m[1] === `${name}_sum`) sum += v
    else if (m[1] === `${name}_count`) count += v
  }
  return { sum, count }
}

/** One engine's side of a run from its `/metrics` (vLLM exposition), over the whole run. */
export interface EngineSide {
  readonly requests: number
  /** Mean queue wait (admission - arrival), ms. */
  readonly queueMeanMs: number
  /** Total queue wait, ms: what the router's choices cost in waiting, all requests added up. */
  readonly queueTotalMs: number
  /** Mean engine-side TTFT (queue + prefill), ms. */
  readonly ttftMeanMs: number
}

export function engineSide(metricsText: string): EngineSide {
  const q = histogramSumCount(metricsText, 'vllm:request_queue_time_seconds')
  const t = histogramSumCount(metricsText, 'vllm:time_to_first_token_seconds')
  return {
    requests: t.count,
    queueMeanMs: q.count > 0 ? (q.sum / q.count) * 1000 : Number.NaN,
    queueTotalMs: q.sum * 1000,
    ttftMeanMs: t.count > 0 ? (t.sum / t.count) * 1000 : Number.NaN,
  }
}

/** The client's TTFT above the floor: its spread, and how many requests clearly queued. */
export interface AboveFloor {
  readonly n: number
  /** Requests more than `queuedMs` above the floor (they waited for a batch slot). */
  readonly queued: number
  readonly p10: number
  readonly p50: number
  readonly p75: number
  readonly p90: number
  readonly p99: number
  /** Median over the requests that did not queue: the path's own cost. */
  readonly pathP50: number
  /** p90 over the requests that did not queue. */
  readonly pathP90: number
}

/**
 * `queuedMs`: above this excess a request is counted as queued. A full batch frees a slot when one
 * of its 8 requests finishes, tens of ms apart at these loads, while the path adds a few ms.
 */
export function aboveFloor(
  rs: readonly RequestResult[],
  floorMs: number,
  queuedMs = 15,
): AboveFloor {
  const ex = rs
    .filter((r) => r.status === 200 && r.error === undefined && Number.isFinite(r.ttftMs))
    .map((r) => r.ttftMs - floorMs)
    .sort((a, b) => a - b)
  const path = ex.filter((x) => x <= queuedMs)
  return {
    n: ex.length,
    queued: ex.length - path.length,
    p10: percentile(ex, 10),
    p50: percentile(ex, 50),
    p75: percentile(ex, 75),
    p90: percentile(ex, 90),
    p99: percentile(ex, 99),
    pathP50: percentile(path, 50),
    pathP90: percentile(path, 90),
  }
}
