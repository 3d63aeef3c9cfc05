// vLLM: v1 metric names first, v0 names as fallbacks (the reference router reads v1 only).

import type { ParsedMetrics } from '../prom-parser.js'
import {
  type AdapterState,
  assembleMetrics,
  type EngineAdapter,
  type ExtractResult,
  IntervalWindow,
  type LoraInfo,
} from '../view.js'
import {
  counterTotals,
  firstHistogram,
  firstIntLabel,
  firstOf,
  intLabel,
  labelOf,
  meanOf,
  samplesNamed,
  sumLabelOverRanks,
  sumOf,
} from './common.js'

/** Data-parallel rank label of vLLM v1 (one series per engine core). */
const RANK_LABELS = ['engine'] as const

function splitAdapters(list: string | undefined): string[] {
  if (list === undefined) return []
  const out: string[] = []
  for (const part of list.split(',')) {
    const name = part.trim()
    if (name !== '') out.push(name)
  }
  return out
}

/**
 * `vllm:lora_requests_info` is a gauge whose value is the time it was last set; old label
 * combinations stay exported, so the series with the largest value is the current state.
 */
export function vllmLoraInfo(parsed: ParsedMetrics): LoraInfo | undefined {
  let best: { value: number; labels: Readonly<Record<string, string>> } | undefined
  for (const s of samplesNamed(parsed, 'vllm:lora_requests_info')) {
    if (Number.isNaN(s.value)) continue
    if (best === undefined || s.value > best.value) best = { value: s.value, labels: s.labels }
  }
  if (best === undefined) return undefined
  const info: LoraInfo = {
    running: splitAdapters(labelOf(best.labels, 'running_lora_adapters')),
    waiting: splitAdapters(labelOf(best.labels, 'waiting_lora_adapters')),
  }
  const maxLora = intLabel(best.labels, 'max_lora')
  if (maxLora !== undefined) info.maxLora = maxLora
  return info
}

function extract(parsed: ParsedMetrics, prev?: AdapterState): ExtractResult {
  const window = new IntervalWindow('vLLM', prev)
  const cacheInfo = samplesNamed(parsed, 'vllm:cache_config_info')
  const hitRate =
    window.ratio(
      'prefix',
      counterTotals(parsed, 'vllm:prefix_cache_hits_total', 'vllm:prefix_cache_queries_total'),
    ) ??
    // v0 exported a ready-made rate instead of the two counters.
    meanOf(parsed, 'vllm:gpu_prefix_cache_hit_rate')
  const metrics = assembleMetrics('vLLM', {
    waiting: sumOf(parsed, 'vllm:num_requests_waiting'),
    running: sumOf(parsed, 'vllm:num_requests_running'),
    // Both are fractions despite the `_perc` suffix; v0 called it gpu_cache_usage_perc.
    kvCacheUsage: firstOf(
      parsed,
      ['vllm:kv_cache_usage_perc', 'vllm:gpu_cache_usage_perc'],
      meanOf,
    ),
    blockSize: firstIntLabel(cacheInfo, 'block_size'),
    numGpuBlocks: sumLabelOverRanks(cacheInfo, 'num_gpu_blocks', RANK_LABELS),
    ttftMeanSec: window.ratio('ttft', firstHistogram(parsed, ['vllm:time_to_first_token_seconds'])),
    // v1's per-token histogram; v0 (and v1 as a deprecated alias) used time_per_output_token.
    tpotMeanSec: window.ratio(
      'tpot',
      firstHistogram(parsed, [
        'vllm:inter_token_latency_seconds',
        'vllm:time_per_output_token_seconds',
      ]),
    ),
    prefixCacheHitRate: hitRate,
    // Both counters move as requests finish (aborted ones count as finished, without tokens).
    promptTokensPerRequest: window.ratio(
      'prompt',
      counterTotals(parsed, 'vllm:prompt_tokens_total', 'vllm:request_success_total'),
    ),
    lora: vllmLoraInfo(parsed),
  })
  return { metrics, state: window.state() }
}

export const vllmAdapter: EngineAdapter = {
  engine: 'vLLM',
  metricsPath: '/metrics',
  extract,
}
