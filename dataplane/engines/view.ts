// The engine-neutral view of one endpoint's load, and the interval arithmetic behind its latency
// and hit-rate fields. Engines export cumulative histograms and counters; a scheduler wants what
// happened since the last scrape, so every adapter keeps the previous scrape's totals in an
// AdapterState that the caller hands back on the next scrape of the same endpoint.

import type { InferenceEngine } from '../../api/snapshot.js'
import type { ParsedMetrics } from './prom-parser.js'

export interface LoraInfo {
  maxLora?: number
  running: string[]
  waiting: string[]
}

/**
 * Whether requests may be queued for want of a LoRA adapter slot rather than of a batch slot: an
 * adapter is waiting that is not running while the running adapters fill every slot (`max_lora`).
 * vLLM then skips those requests until one of the running adapters drains, so `waiting > 0` does
 * not mean the batch is full and `running` is not its limit.
 */
export function adapterBound(m: Pick<EngineMetrics, 'lora'>): boolean {
  const l = m.lora
  if (l?.maxLora === undefined || l.running.length < l.maxLora) return false
  for (const a of l.waiting) if (!l.running.includes(a)) return true
  return false
}

/** Load signals the view cannot leave undefined; listed in `missing` when the engine did not export them. */
export type RequiredSignal = 'waiting' | 'running'

export interface EngineMetrics {
  /** Requests queued in the engine (summed over data-parallel ranks). 0 when listed in `missing`. */
  waiting: number
  /** Requests being executed (summed over data-parallel ranks). 0 when listed in `missing`. */
  running: number
  /**
   * `waiting`/`running` the engine did not export (disabled stats, legacy TRT-LLM, an unmapped
   * generic engine). A missing family means "unknown", not 0, so a scheduler should fall back to
   * its own in-flight counts for these instead of reading the zero.
   */
  missing: RequiredSignal[]
  /** Fraction 0..1 (mean over data-parallel ranks). */
  kvCacheUsage?: number
  /** Tokens per KV block (page). */
  blockSize?: number
  /** KV blocks (pages) in the whole endpoint: summed over data-parallel ranks. */
  numGpuBlocks?: number
  /** Interval means from histogram `_sum`/`_count` deltas between two scrapes. */
  ttftMeanSec?: number
  tpotMeanSec?: number
  /** 0..1; interval rate where counters exist, else the engine's own gauge. */
  prefixCacheHitRate?: number
  /**
   * Interval mean of prompt tokens per finished request (Δ prompt tokens / Δ finished requests).
   * With the prompt text the router saw, it tells how many engine tokens a character is, so the
   * prefix index can size its per-endpoint table to what the engine's KV cache really holds.
   */
  promptTokensPerRequest?: number
  lora?: LoraInfo
  engineType: InferenceEngine
}

/** Two cumulative series whose ratio of deltas is a signal (histogram sum/count, hits/queries). */
export interface CumulativePair {
  readonly numerator: number
  readonly denominator: number
  /** The value reported for this pair on that scrape; carried while nothing new is observed. */
  readonly last?: number
}

/** What an adapter needs from the previous scrape of the same endpoint. Treat as opaque. */
export interface AdapterState {
  readonly engine: InferenceEngine
  readonly pairs: ReadonlyMap<string, CumulativePair>
}

export interface ExtractResult {
  readonly metrics: EngineMetrics
  readonly state: AdapterState
}

export interface EngineAdapter {
  readonly engine: InferenceEngine
  /** Path to scrape: `/metrics`, or `/prometheus/metrics` for trtllm-serve. */
  readonly metricsPath: string
  extract(parsed: ParsedMetrics, prev?: AdapterState): ExtractResult
}

/**
 * Interval ratio of two cumulative series, e.g. TTFT mean = Δsum / Δcount.
 *
 * - First scrape (no previous totals): the cumulative ratio, the best estimate there is.
 * - Either series went down (engine restart, counter reset): start over with the cumulative ratio
 *   since the restart, as Prometheus' rate() does.
 * - No new observations (Δdenominator = 0): keep the previous value. An idle endpoint's latency is
 *   "as last seen", not unknown; flapping to unknown on every quiet second would make scores jitter.
 */
export function intervalRatio(
  current: { readonly numerator: number; readonly denominator: number },
  prev: CumulativePair | undefined,
): number | undefined {
  const { numerator: num, denominator: den } = current
  if (prev === undefined || num < prev.numerator || den < prev.denominator) {
    return den > 0 ? num / den : undefined
  }
  const dDen = den - prev.denominator
  if (dDen > 0) return (num - prev.numerator) / dDen
  return prev.last
}

/**
 * Collects the pairs of one scrape and computes their interval ratios against the previous state.
 * State from another engine's adapter is ignored so a changed `engine` on a server cannot mix
 * unrelated series.
 */
export class IntervalWindow {
  readonly #engine: InferenceEngine
  readonly #prev: ReadonlyMap<string, CumulativePair> | undefined
  readonly #next = new Map<string, CumulativePair>()

  constructor(engine: InferenceEngine, prev: AdapterState | undefined) {
    this.#engine = engine
    this.#prev = prev !== undefined && prev.engine === engine ? prev.pairs : undefined
  }

  /**
   * The interval ratio for `key`; undefined when the series are absent (the pair is then dropped,
   * so its reappearance counts as a first scrape).
   */
  ratio(
    key: string,
    current: { readonly numerator: number; readonly denominator: number } | undefined,
  ): number | undefined {
    if (
      current === undefined ||
      !Number.isFinite(current.numerator) ||
      !Number.isFinite(current.denominator)
    ) {
      return undefined
    }
    const value = intervalRatio(current, this.#prev?.get(key))
    const pair: CumulativePair =
      value === undefined || !Number.isFinite(value)
        ? { numerator: current.numerator, denominator: current.denominator }
        : { numerator: current.numerator, denominator: current.denominator, last: value }
    this.#next.set(key, pair)
    return pair.last
  }

  state(): AdapterState {
    return { engine: this.#engine, pairs: this.#next }
  }
}

/** Signals an adapter found; undefined = not exported by this engine/version. */
export interface MetricParts {
  waiting: number | undefined
  running: number | undefined
  kvCacheUsage: number | undefined
  blockSize: number | undefined
  numGpuBlocks: number | undefined
  ttftMeanSec: number | undefined
  tpotMeanSec: number | undefined
  prefixCacheHitRate: number | undefined
  /** Only where the engine exports both counters (vLLM). */
  promptTokensPerRequest?: number | undefined
  lora: LoraInfo | undefined
}

function clamp01(v: number): number {
  return Math.min(1, Math.max(0, v))
}

function finite(v: number | undefined): v is number {
  return v !== undefined && Number.isFinite(v)
}

/**
 * Builds the view from an adapter's findings: fills the required counts (recording which were
 * missing), drops non-finite values, and clamps fractions to 0..1 because scorers compute
 * `1 - usage` and a rounding overshoot must not produce a negative score.
 */
export function assembleMetrics(engineType: InferenceEngine, parts: MetricParts): EngineMetrics {
  const missing: RequiredSignal[] = []
  if (!finite(parts.waiting)) missing.push('waiting')
  if (!finite(parts.running)) missing.push('running')
  const m: EngineMetrics = {
    waiting: finite(parts.waiting) ? Math.max(0, parts.waiting) : 0,
    running: finite(parts.running) ? Math.max(0, parts.running) : 0,
    missing,
    engineType,
  }
  if (finite(parts.kvCacheUsage)) m.kvCacheUsage = clamp01(parts.kvCacheUsage)
  if (finite(parts.blockSize) && parts.blockSize > 0) m.blockSize = parts.blockSize
  if (finite(parts.numGpuBlocks) && parts.numGpuBlocks > 0) m.numGpuBlocks = parts.numGpuBlocks
  if (finite(parts.ttftMeanSec) && parts.ttftMeanSec >= 0) m.ttftMeanSec = parts.ttftMeanSec
  if (finite(parts.tpotMeanSec) && parts.tpotMeanSec >= 0) m.tpotMeanSec = parts.tpotMeanSec
  if (finite(parts.prefixCacheHitRate)) m.prefixCacheHitRate = clamp01(parts.prefixCacheHitRate)
  if (finite(parts.promptTokensPerRequest) && parts.promptTokensPerRequest > 0) {
    m.promptTokensPerRequest = parts.promptTokensPerRequest
  }
  if (parts.lora !== undefined) m.lora = parts.lora
  return m
}
