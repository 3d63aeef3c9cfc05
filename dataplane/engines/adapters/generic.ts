// An engine the gateway has no adapter for, described by metric names. Gauges named here are
// aggregated like the built-in adapters (counts summed, KV usage averaged over series) and the
// latency names are histogram (or summary) families read through `_sum`/`_count` interval means.

import type { ParsedMetrics } from '../prom-parser.js'
import {
  type AdapterState,
  assembleMetrics,
  type EngineAdapter,
  type ExtractResult,
  IntervalWindow,
} from '../view.js'
import { histogramTotals, meanOf, sumOf } from './common.js'

export interface GenericMapping {
  /** Gauge of queued requests. */
  readonly waiting?: string
  /** Gauge of running requests. */
  readonly running?: string
  /** Gauge holding a 0..1 fraction. */
  readonly kvCacheUsage?: string
  /** Histogram family (without `_sum`/`_count`) of time to first token, in seconds. */
  readonly ttft?: string
  /** Histogram family of time per output token, in seconds. */
  readonly tpot?: string
}

/**
 * Without a mapping every signal is absent: waiting/running come back in `missing`, so the
 * scheduler falls back to its own counters instead of trusting invented zeros.
 */
export function genericAdapter(mapping: GenericMapping = {}): EngineAdapter {
  const gauge = (
    parsed: ParsedMetrics,
    name: string | undefined,
    pick: typeof sumOf,
  ): number | undefined => (name === undefined ? undefined : pick(parsed, name))
  const hist = (parsed: ParsedMetrics, name: string | undefined) =>
    name === undefined ? undefined : histogramTotals(parsed, name)

  const extract = (parsed: ParsedMetrics, prev?: AdapterState): ExtractResult => {
    const window = new IntervalWindow('Generic', prev)
    const metrics = assembleMetrics('Generic', {
      waiting: gauge(parsed, mapping.waiting, sumOf),
      running: gauge(parsed, mapping.running, sumOf),
      kvCacheUsage: gauge(parsed, mapping.kvCacheUsage, meanOf),
      blockSize: undefined,
      numGpuBlocks: undefined,
      ttftMeanSec: window.ratio('ttft', hist(parsed, mapping.ttft)),
      tpotMeanSec: window.ratio('tpot', hist(parsed, mapping.tpot)),
      prefixCacheHitRate: undefined,
      lora: undefined,
    })
    return { metrics, state: window.state() }
  }
  return { engine: 'Generic', metricsPath: '/metrics', extract }
}
