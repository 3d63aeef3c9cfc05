// Hugging Face TGI. No KV, prefix-cache, TTFT or LoRA metric exists, so KV usage and TTFT are the
// proxies the engine README describes; everything else is left undefined.

import type { ParsedMetrics } from '../prom-parser.js'
import {
  type AdapterState,
  assembleMetrics,
  type EngineAdapter,
  type ExtractResult,
  IntervalWindow,
} from '../view.js'
import { histogramTotals, labelOf, ratioOf, sumOf } from './common.js'

const prefill = (labels: Readonly<Record<string, string>>): boolean =>
  labelOf(labels, 'method') === 'prefill'

/**
 * TTFT ≈ mean queue time + mean prefill forward step, each an interval mean of its own
 * histogram. Undefined unless both are known: half an estimate would look optimistic.
 */
function ttft(parsed: ParsedMetrics, window: IntervalWindow): number | undefined {
  const queue = window.ratio('queue', histogramTotals(parsed, 'tgi_request_queue_duration'))
  const step = window.ratio(
    'prefill',
    histogramTotals(parsed, 'tgi_batch_forward_duration', prefill),
  )
  return queue !== undefined && step !== undefined ? queue + step : undefined
}

function extract(parsed: ParsedMetrics, prev?: AdapterState): ExtractResult {
  const window = new IntervalWindow('TGI', prev)
  const metrics = assembleMetrics('TGI', {
    waiting: sumOf(parsed, 'tgi_queue_size'),
    running: sumOf(parsed, 'tgi_batch_current_size'),
    // Token budget reserved by the running batch over the KV capacity found at warmup (v3
    // backend only). It overstates real use (prompt + max_new_tokens per request).
    kvCacheUsage: ratioOf(
      sumOf(parsed, 'tgi_batch_current_max_tokens'),
      sumOf(parsed, 'tgi_batch_max_total_tokens'),
    ),
    blockSize: undefined,
    numGpuBlocks: undefined,
    ttftMeanSec: ttft(parsed, window),
    // One observation per finished request: its mean time per token, i.e. a TPOT distribution.
    tpotMeanSec: window.ratio(
      'tpot',
      histogramTotals(parsed, 'tgi_request_mean_time_per_token_duration'),
    ),
    prefixCacheHitRate: undefined,
    lora: undefined,
  })
  return { metrics, state: window.state() }
}

export const tgiAdapter: EngineAdapter = {
  engine: 'TGI',
  metricsPath: '/metrics',
  extract,
}
