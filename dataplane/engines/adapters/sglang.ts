// SGLang (`--enable-metrics`). Scheduler gauges carry `dp_rank` under DP attention and tokenizer
// histograms/counters carry `is_streaming`/`cache_source`; all are aggregated away.

import type { ParsedMetrics } from '../prom-parser.js'
import {
  type AdapterState,
  assembleMetrics,
  type EngineAdapter,
  type ExtractResult,
  IntervalWindow,
} from '../view.js'
import {
  counterTotals,
  firstHistogram,
  firstIntLabel,
  maxOf,
  meanOf,
  ratioOf,
  samplesNamed,
  sumLabelOverRanks,
  sumOf,
} from './common.js'

/**
 * Queues whose requests wait for the engine besides the scheduler's main queue: grammar
 * compilation and the PD-disaggregation bootstrap/prealloc/transfer queues (zero on unified pods).
 * The prefill "inflight" queue is left out: those requests already ran and only ship their KV.
 */
const EXTRA_QUEUES = [
  'sglang:num_grammar_queue_reqs',
  'sglang:num_prefill_bootstrap_queue_reqs',
  'sglang:num_decode_prealloc_queue_reqs',
  'sglang:num_decode_transfer_queue_reqs',
] as const

const RANK_LABELS = ['dp_rank'] as const

function waiting(parsed: ParsedMetrics): number | undefined {
  const main = sumOf(parsed, 'sglang:num_queue_reqs')
  if (main === undefined) return undefined
  let total = main
  for (const q of EXTRA_QUEUES) total += sumOf(parsed, q) ?? 0
  return total
}

function kvUsage(parsed: ParsedMetrics): number | undefined {
  const usage = meanOf(parsed, 'sglang:token_usage')
  if (usage !== undefined) return usage
  return ratioOf(
    sumOf(parsed, 'sglang:kv_used_tokens'),
    sumOf(parsed, 'sglang:max_total_num_tokens'),
  )
}

function extract(parsed: ParsedMetrics, prev?: AdapterState): ExtractResult {
  const window = new IntervalWindow('SGLang', prev)
  // Older releases put page_size/num_pages in the labels of an info gauge.
  const cacheInfo = samplesNamed(parsed, 'sglang:cache_config_info')
  const metrics = assembleMetrics('SGLang', {
    waiting: waiting(parsed),
    running: sumOf(parsed, 'sglang:num_running_reqs'),
    kvCacheUsage: kvUsage(parsed),
    blockSize: maxOf(parsed, 'sglang:page_size') ?? firstIntLabel(cacheInfo, 'page_size'),
    numGpuBlocks:
      sumOf(parsed, 'sglang:num_pages') ?? sumLabelOverRanks(cacheInfo, 'num_pages', RANK_LABELS),
    ttftMeanSec: window.ratio(
      'ttft',
      firstHistogram(parsed, ['sglang:time_to_first_token_seconds']),
    ),
    // The per-token histogram was once called time_per_output_token_seconds.
    tpotMeanSec: window.ratio(
      'tpot',
      firstHistogram(parsed, [
        'sglang:inter_token_latency_seconds',
        'sglang:time_per_output_token_seconds',
      ]),
    ),
    // Cached over all prompt tokens, all cache tiers (device/host/storage) counted as hits.
    prefixCacheHitRate:
      window.ratio(
        'prefix',
        counterTotals(parsed, 'sglang:cached_tokens_total', 'sglang:prompt_tokens_total'),
      ) ?? meanOf(parsed, 'sglang:cache_hit_rate'),
    // SGLang exports LoRA slot counts only, not adapter names; an empty list would lie.
    lora: undefined,
  })
  return { metrics, state: window.state() }
}

export const sglangAdapter: EngineAdapter = {
  engine: 'SGLang',
  metricsPath: '/metrics',
  extract,
}
