// TensorRT-LLM's trtllm-serve. Its Prometheus text is at /prometheus/metrics (its /metrics is a
// JSON list of iteration stats, drained on read). Gauges carry a `pid` label, summed away.
// Releases before NVIDIA/TensorRT-LLM#12545 exported five un-prefixed families only (no queue or
// KV metric), so those are read as fallbacks for the latency histograms.

import type { ParsedMetrics } from '../prom-parser.js'
import {
  type AdapterState,
  assembleMetrics,
  type EngineAdapter,
  type ExtractResult,
  IntervalWindow,
} from '../view.js'
import { counterTotals, firstHistogram, maxOf, meanOf, ratioOf, sumOf } from './common.js'

function running(parsed: ParsedMetrics): number | undefined {
  const total = sumOf(parsed, 'trtllm_num_requests_running')
  if (total !== undefined) return total
  const context = sumOf(parsed, 'trtllm_num_context_requests')
  const generation = sumOf(parsed, 'trtllm_num_generation_requests')
  if (context === undefined && generation === undefined) return undefined
  return (context ?? 0) + (generation ?? 0)
}

function kvUsage(parsed: ParsedMetrics): number | undefined {
  return (
    meanOf(parsed, 'trtllm_kv_cache_utilization') ??
    ratioOf(
      sumOf(parsed, 'trtllm_kv_cache_used_blocks'),
      sumOf(parsed, 'trtllm_kv_cache_max_blocks'),
    )
  )
}

/**
 * Token-based hit rate first, comparable with vLLM's hits/queries; then the block counters
 * (reused over reused + missed); then the engine's own block hit-rate gauge.
 */
function hitRate(parsed: ParsedMetrics, window: IntervalWindow): number | undefined {
  const tokens = window.ratio(
    'prefix',
    counterTotals(parsed, 'trtllm_prompt_cached_tokens_total', 'trtllm_prompt_tokens_total'),
  )
  if (tokens !== undefined) return tokens
  const reused = sumOf(parsed, 'trtllm_kv_cache_reused_blocks_total')
  const missed = sumOf(parsed, 'trtllm_kv_cache_missed_blocks_total')
  const blocks = window.ratio(
    'prefixBlocks',
    reused !== undefined && missed !== undefined
      ? { numerator: reused, denominator: reused + missed }
      : undefined,
  )
  return blocks ?? meanOf(parsed, 'trtllm_kv_cache_hit_rate')
}

function extract(parsed: ParsedMetrics, prev?: AdapterState): ExtractResult {
  const window = new IntervalWindow('TensorRT-LLM', prev)
  const metrics = assembleMetrics('TensorRT-LLM', {
    waiting: sumOf(parsed, 'trtllm_num_requests_waiting'),
    running: running(parsed),
    kvCacheUsage: kvUsage(parsed),
    blockSize: maxOf(parsed, 'trtllm_kv_cache_tokens_per_block'),
    numGpuBlocks: sumOf(parsed, 'trtllm_kv_cache_max_blocks'),
    ttftMeanSec: window.ratio(
      'ttft',
      firstHistogram(parsed, ['trtllm_time_to_first_token_seconds', 'time_to_first_token_seconds']),
    ),
    // Per-request TPOT histogram, same name in the legacy un-prefixed set.
    tpotMeanSec: window.ratio(
      'tpot',
      firstHistogram(parsed, [
        'trtllm_time_per_output_token_seconds',
        'time_per_output_token_seconds',
      ]),
    ),
    prefixCacheHitRate: hitRate(parsed, window),
    lora: undefined,
  })
  return { metrics, state: window.state() }
}

export const trtllmAdapter: EngineAdapter = {
  engine: 'TensorRT-LLM',
  metricsPath: '/prometheus/metrics',
  extract,
}
