// Per-instance metrics in the exposition of the engine being impersonated. Names, HELP text,
// label sets, bucket bounds and number formats follow the fixtures under
// /work/shared/fixtures (vLLM v1 loggers.py, SGLang metrics_collector.py, TGI router), because the
// point of the simulator is to exercise the gateway's real scrapers.

import type { EngineGauges, EngineObserver, GenerationResult } from './engine.js'
import { Histogram, type Labels, labelText, pyFloat, rustFloat, sortedLabels } from './prom-text.js'

export type MetricsFormat = 'vllm' | 'sglang' | 'tgi'

export const METRICS_FORMATS: readonly MetricsFormat[] = ['vllm', 'sglang', 'tgi']

const VLLM_TTFT = [
  0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80,
  160, 640, 2560,
]
const VLLM_ITL = [
  0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80,
]
const VLLM_E2E = [
  0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60, 120, 240, 480, 960, 1920, 7680,
]
const SGL_TTFT = [0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40, 60, 80, 100, 200, 400]
const SGL_E2E = [...SGL_TTFT, 600, 1200, 1800, 2400]
const SGL_ITL = [
  0.002, 0.004, 0.006, 0.008, 0.01, 0.015, 0.02, 0.025, 0.03, 0.035, 0.04, 0.06, 0.08, 0.1, 0.2,
  0.4, 0.6, 0.8, 1, 2, 4, 6, 8,
]
const SGL_QUEUE = [
  0, 0.001, 0.005, 0.01, 0.05, 0.1, 0.2, 0.5, 1, 2, 3, 4, 5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90,
  100, 200, 300, 400, 500, 600, 700, 800, 900, 1000, 1200, 1400, 1600, 1800, 2000, 2500, 3000,
]

/** TGI: every `*_duration` histogram uses 0.0001·1.5^k, k = 1..35, computed by repeated multiply. */
function tgiDurationBuckets(): number[] {
  const out: number[] = []
  let v = 0.0001
  for (let k = 0; k < 35; k++) {
    v *= 1.5
    out.push(v)
  }
  return out
}

function tgiLinear(max: number): number[] {
  const out: number[] = []
  for (let k = 1; k <= 100; k++) out.push((max / 100) * k)
  return out
}

export interface MetricsIdentity {
  model: string
  format: MetricsFormat
  maxModelLen: number
  /** vLLM only exports lora_requests_info when LoRA is enabled. */
  loraEnabled: boolean
  /**
   * `process_start_time_seconds` (vLLM format): Unix seconds, 2 decimals (jiffies) as
   * prometheus_client's process collector reports it. Default: when this object is made, so a
   * restarted simulator reports a new start time, as a restarted engine process does.
   */
  startTimeSeconds?: number
}

type Streaming = 'true' | 'false'

/** Keeps the counters and histograms; gauges are read live from the engine at scrape time. */
export class SimMetrics implements EngineObserver {
  readonly id: MetricsIdentity
  private readonly ttft = new Map<Streaming, Histogram>()
  private readonly e2e = new Map<Streaming, Histogram>()
  private readonly itl: Histogram
  private readonly queue: Histogram
  private readonly tpot: Histogram
  private readonly inputLen: Histogram
  private readonly genLen: Histogram
  private readonly promptTokens = new Map<Streaming, number>()
  private readonly genTokens = new Map<Streaming, number>()
  private readonly requests = new Map<Streaming, number>()
  private readonly success = new Map<string, number>()
  private readonly failures = new Map<string, number>()
  private prefixQueries = 0
  private prefixHits = 0
  private abortedCount = 0
  private requestCount = 0
  /** Recent admissions' (queried, hit) for SGLang's windowed cache_hit_rate gauge. */
  private readonly recentPrefix: Array<[number, number]> = []
  /** vLLM keeps one lora_requests_info series per label combination ever seen; value = last time. */
  private readonly loraSeries = new Map<string, { running: string; waiting: string; ts: number }>()

  /** Unix seconds the "process" started (see MetricsIdentity.startTimeSeconds). */
  readonly startTimeSeconds: number

  constructor(id: MetricsIdentity) {
    this.id = id
    this.startTimeSeconds = id.startTimeSeconds ?? Math.round(Date.now() / 10) / 100
    const f = id.format
    this.itl = new Histogram(
      f === 'sglang' ? SGL_ITL : f === 'tgi' ? tgiDurationBuckets() : VLLM_ITL,
    )
    this.queue = new Histogram(
      f === 'sglang' ? SGL_QUEUE : f === 'tgi' ? tgiDurationBuckets() : VLLM_E2E,
    )
    this.tpot = new Histogram(tgiDurationBuckets())
    this.inputLen = new Histogram(tgiLinear(Math.max(1, id.maxModelLen - 1)))
    this.genLen = new Histogram(tgiLinear(id.maxModelLen))
  }

  private ttftBounds(): readonly number[] {
    return this.id.format === 'sglang'
      ? SGL_TTFT
      : this.id.format === 'tgi'
        ? tgiDurationBuckets()
        : VLLM_TTFT
  }

  private e2eBounds(): readonly number[] {
    return this.id.format === 'sglang'
      ? SGL_E2E
      : this.id.format === 'tgi'
        ? tgiDurationBuckets()
        : VLLM_E2E
  }

  private hist(
    map: Map<Streaming, Histogram>,
    key: Streaming,
    bounds: readonly number[],
  ): Histogram {
    let h = map.get(key)
    if (h === undefined) {
      h = new Histogram(bounds)
      map.set(key, h)
    }
    return h
  }

  // --- EngineObserver -------------------------------------------------------------------------

  prefix(queriedTokens: number, hitTokens: number): void {
    this.prefixQueries += queriedTokens
    this.prefixHits += hitTokens
    this.recentPrefix.push([queriedTokens, hitTokens])
    if (this.recentPrefix.length > 32) this.recentPrefix.shift()
  }

  firstToken(ttftSeconds: number, queueSeconds: number, streaming: boolean): void {
    this.hist(this.ttft, streaming ? 'true' : 'false', this.ttftBounds()).observe(ttftSeconds)
    this.queue.observe(queueSeconds)
  }

  interToken(seconds: number): void {
    this.itl.observe(seconds)
  }

  finished(r: GenerationResult, streaming: boolean): void {
    const k: Streaming = streaming ? 'true' : 'false'
    this.hist(this.e2e, k, this.e2eBounds()).observe(r.e2eMs / 1000)
    this.promptTokens.set(k, (this.promptTokens.get(k) ?? 0) + r.promptTokens)
    this.genTokens.set(k, (this.genTokens.get(k) ?? 0) + r.completionTokens)
    this.requests.set(k, (this.requests.get(k) ?? 0) + 1)
    this.success.set(r.finishReason, (this.success.get(r.finishReason) ?? 0) + 1)
    const decodeTokens = Math.max(1, r.completionTokens - 1)
    this.tpot.observe((r.e2eMs - r.ttftMs) / 1000 / decodeTokens)
    this.inputLen.observe(r.promptTokens)
    this.genLen.observe(r.completionTokens)
  }

  aborted(): void {
    this.abortedCount++
  }

  // --- request-level counters from the HTTP layer ---------------------------------------------

  /** Every inference request that reached the engine front end (TGI's tgi_request_count). */
  requestReceived(): void {
    this.requestCount++
  }

  /** A failed request; `kind` is TGI's `err` label (validation, overloaded, generation, …). */
  requestFailed(kind: string): void {
    this.failures.set(kind, (this.failures.get(kind) ?? 0) + 1)
  }

  totals(): {
    prefixQueries: number
    prefixHits: number
    promptTokens: number
    generationTokens: number
    aborted: number
  } {
    let prompt = 0
    let gen = 0
    for (const v of this.promptTokens.values()) prompt += v
    for (const v of this.genTokens.values()) gen += v
    return {
      prefixQueries: this.prefixQueries,
      prefixHits: this.prefixHits,
      promptTokens: prompt,
      generationTokens: gen,
      aborted: this.abortedCount,
    }
  }

  render(g: EngineGauges, nowSeconds: number): string {
    if (this.id.format === 'sglang') return this.renderSglang(g)
    if (this.id.format === 'tgi') return this.renderTgi(g)
    return this.renderVllm(g, nowSeconds)
  }

  // --- vLLM v1 ----------------------------------------------------------------------------------

  private renderVllm(g: EngineGauges, now: number): string {
    const base: Labels = [
      ['engine', '0'],
      ['model_name', this.id.model],
    ]
    const out: string[] = []
    const family = (name: string, type: string, help: string) => {
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`)
    }
    const sample = (name: string, labels: Labels, v: number) => {
      out.push(`${name}${labelText(sortedLabels(labels))} ${pyFloat(v)}`)
    }
    const sum = (m: Map<Streaming, number>) => (m.get('true') ?? 0) + (m.get('false') ?? 0)
    // vLLM serves prometheus_client's default registry (one API server process), whose process
    // collector comes first. SGLang's multiprocess registry and TGI's Rust exporter have none.
    family(
      'process_start_time_seconds',
      'gauge',
      'Start time of the process since unix epoch in seconds.',
    )
    sample('process_start_time_seconds', [], this.startTimeSeconds)
    family('vllm:num_requests_running', 'gauge', 'Number of requests in model execution batches.')
    sample('vllm:num_requests_running', base, g.running)
    family('vllm:num_requests_waiting', 'gauge', 'Number of requests waiting to be processed.')
    sample('vllm:num_requests_waiting', base, g.waiting)
    family('vllm:kv_cache_usage_perc', 'gauge', 'KV-cache usage. 1 means 100 percent usage.')
    sample('vllm:kv_cache_usage_perc', base, g.kvUsage)
    family(
      'vllm:prefix_cache_queries_total',
      'counter',
      'Prefix cache queries, in terms of number of queried tokens.',
    )
    sample('vllm:prefix_cache_queries_total', base, this.prefixQueries)
    family(
      'vllm:prefix_cache_hits_total',
      'counter',
      'Prefix cache hits, in terms of number of cached tokens.',
    )
    sample('vllm:prefix_cache_hits_total', base, this.prefixHits)
    family('vllm:prompt_tokens_total', 'counter', 'Number of prefill tokens processed.')
    sample('vllm:prompt_tokens_total', base, sum(this.promptTokens))
    family('vllm:generation_tokens_total', 'counter', 'Number of generation tokens processed.')
    sample('vllm:generation_tokens_total', base, sum(this.genTokens))
    family('vllm:request_success_total', 'counter', 'Count of successfully processed requests.')
    for (const reason of ['stop', 'length'] as const) {
      sample(
        'vllm:request_success_total',
        [...base, ['finished_reason', reason]],
        this.success.get(reason) ?? 0,
      )
    }
    sample('vllm:request_success_total', [...base, ['finished_reason', 'abort']], this.abortedCount)
    if (this.id.loraEnabled) {
      const running = g.runningLoras.join(',')
      const waiting = g.waitingLoras.join(',')
      const key = `${running}|${waiting}`
      this.loraSeries.set(key, { running, waiting, ts: now })
      if (this.loraSeries.size > 16) {
        const oldest = this.loraSeries.keys().next()
        if (oldest.done !== true) this.loraSeries.delete(oldest.value)
      }
      family('vllm:lora_requests_info', 'gauge', 'Running stats on lora requests.')
      for (const s of this.loraSeries.values()) {
        sample(
          'vllm:lora_requests_info',
          [
            ['max_lora', String(g.maxLoras)],
            ['running_lora_adapters', s.running],
            ['waiting_lora_adapters', s.waiting],
          ],
          s.ts,
        )
      }
    }
    family('vllm:cache_config_info', 'gauge', 'Information of the LLMEngine CacheConfig')
    sample(
      'vllm:cache_config_info',
      [
        ['block_size', String(g.blockSize)],
        ['cache_dtype', 'auto'],
        ['enable_prefix_caching', 'True'],
        ['gpu_memory_utilization', '0.9'],
        ['num_cpu_blocks', '0'],
        ['num_gpu_blocks', String(g.kv.totalBlocks)],
        ['prefix_caching_hash_algo', 'sha256'],
      ],
      1,
    )
    const hist = (
      name: string,
      help: string,
      h: Histogram | undefined,
      bounds: readonly number[],
    ) => {
      family(name, 'histogram', help)
      const hh = h ?? new Histogram(bounds)
      for (const [le, c] of hh.buckets())
        sample(`${name}_bucket`, [...base, ['le', pyFloat(le)]], c)
      sample(`${name}_count`, base, hh.count)
      sample(`${name}_sum`, base, hh.sum)
    }
    hist(
      'vllm:time_to_first_token_seconds',
      'Histogram of time to first token in seconds.',
      merge(this.ttft, VLLM_TTFT),
      VLLM_TTFT,
    )
    hist(
      'vllm:inter_token_latency_seconds',
      'Histogram of inter-token latency in seconds.',
      this.itl,
      VLLM_ITL,
    )
    hist(
      'vllm:e2e_request_latency_seconds',
      'Histogram of e2e request latency in seconds.',
      merge(this.e2e, VLLM_E2E),
      VLLM_E2E,
    )
    hist(
      'vllm:request_queue_time_seconds',
      'Histogram of time spent in WAITING phase for request.',
      this.queue,
      VLLM_E2E,
    )
    return `${out.join('\n')}\n`
  }

  // --- SGLang -----------------------------------------------------------------------------------

  private renderSglang(g: EngineGauges): string {
    const model = this.id.model
    const sched: Labels = [
      ['engine_type', 'unified'],
      ['model_name', model],
      ['moe_ep_rank', '0'],
      ['pp_rank', '0'],
      ['tp_rank', '0'],
    ]
    const out: string[] = []
    const family = (name: string, type: string, help: string) => {
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`)
    }
    const sample = (name: string, labels: Labels, v: number) => {
      out.push(`${name}${labelText(sortedLabels(labels))} ${pyFloat(v)}`)
    }
    // Multiprocess-mode histogram layout: _sum, cumulative _bucket…, _count.
    const histSamples = (name: string, labels: Labels, h: Histogram) => {
      sample(`${name}_sum`, labels, h.sum)
      for (const [le, c] of h.buckets())
        sample(`${name}_bucket`, [...labels, ['le', pyFloat(le)]], c)
      sample(`${name}_count`, labels, h.count)
    }
    family('sglang:queue_time_seconds', 'histogram', 'Histogram of queueing time in seconds.')
    histSamples('sglang:queue_time_seconds', sched, this.queue)
    // Tokenizer-side families carry is_streaming and appear only once a label value was used.
    const streamingHist = (name: string, help: string, m: Map<Streaming, Histogram>) => {
      if (m.size === 0) return
      family(name, 'histogram', help)
      for (const k of ['false', 'true'] as const) {
        const h = m.get(k)
        if (h !== undefined)
          histSamples(
            name,
            [
              ['is_streaming', k],
              ['model_name', model],
            ],
            h,
          )
      }
    }
    streamingHist(
      'sglang:time_to_first_token_seconds',
      'Histogram of time to first token in seconds.',
      this.ttft,
    )
    streamingHist(
      'sglang:e2e_request_latency_seconds',
      'Histogram of End-to-end request latency in seconds',
      this.e2e,
    )
    if (this.itl.count > 0) {
      family(
        'sglang:inter_token_latency_seconds',
        'histogram',
        'Histogram of inter-token latency in seconds.',
      )
      histSamples('sglang:inter_token_latency_seconds', [['model_name', model]], this.itl)
    }
    const streamingCounter = (name: string, help: string, m: Map<Streaming, number>) => {
      if (m.size === 0) return
      family(name, 'counter', help)
      for (const k of ['false', 'true'] as const) {
        const v = m.get(k)
        if (v !== undefined)
          sample(
            name,
            [
              ['is_streaming', k],
              ['model_name', model],
            ],
            v,
          )
      }
    }
    streamingCounter(
      'sglang:prompt_tokens_total',
      'Number of prefill tokens processed.',
      this.promptTokens,
    )
    streamingCounter(
      'sglang:generation_tokens_total',
      'Number of generation tokens processed.',
      this.genTokens,
    )
    if (this.prefixHits > 0) {
      family(
        'sglang:cached_tokens_total',
        'counter',
        'Number of cached prompt tokens by source (device/host/storage).',
      )
      sample(
        'sglang:cached_tokens_total',
        [
          ['cache_source', 'device'],
          ['model_name', model],
        ],
        this.prefixHits,
      )
    }
    streamingCounter('sglang:num_requests_total', 'Number of requests processed.', this.requests)
    family('sglang:num_aborted_requests_total', 'counter', 'Number of requests aborted.')
    sample('sglang:num_aborted_requests_total', [['model_name', model]], this.abortedCount)
    const bs = g.blockSize
    const total = g.kv.totalBlocks * bs
    const used = g.kv.usedBlocks * bs
    const evictable = g.kv.cachedFreeBlocks * bs
    let q = 0
    let hit = 0
    for (const [a, b] of this.recentPrefix) {
      q += a
      hit += b
    }
    const gauge = (name: string, help: string, v: number) => {
      family(name, 'gauge', help)
      sample(name, sched, v)
    }
    gauge('sglang:num_running_reqs', 'The number of running requests.', g.running)
    gauge('sglang:num_queue_reqs', 'The number of requests in the waiting queue.', g.waiting)
    gauge(
      'sglang:num_grammar_queue_reqs',
      'The number of requests in the grammar waiting queue.',
      0,
    )
    gauge('sglang:cache_hit_rate', 'The prefix cache hit rate.', q === 0 ? 0 : hit / q)
    gauge('sglang:decode_sum_seq_lens', 'The sum of all sequence lengths in decode.', g.seqLenSum)
    gauge('sglang:token_usage', 'The token usage.', g.kvUsage)
    gauge('sglang:full_token_usage', 'The token usage for full attention layers.', g.kvUsage)
    gauge('sglang:num_used_tokens', 'The number of used tokens.', used)
    gauge(
      'sglang:kv_available_tokens',
      'Number of free token slots in the KV cache pool.',
      total - used - evictable,
    )
    gauge(
      'sglang:kv_evictable_tokens',
      'Number of evictable (radix-cached) token slots in the KV cache pool.',
      evictable,
    )
    gauge(
      'sglang:kv_used_tokens',
      'Number of actively used token slots in the KV cache pool.',
      used,
    )
    gauge(
      'sglang:max_total_num_tokens',
      'Maximum total number of tokens in the KV cache pool.',
      total,
    )
    gauge('sglang:page_size', 'KV cache page size in tokens.', bs)
    gauge('sglang:num_pages', 'Number of KV cache pages.', g.kv.totalBlocks)
    gauge('sglang:context_len', 'Maximum context length.', this.id.maxModelLen)
    return `${out.join('\n')}\n`
  }

  // --- TGI --------------------------------------------------------------------------------------

  private renderTgi(g: EngineGauges): string {
    const out: string[] = []
    // Rust exporter: HELP only for described names, labels in call order, `le` last, blank line after each family.
    const family = (name: string, type: string, help: string | null, lines: string[]) => {
      if (help !== null) out.push(`# HELP ${name} ${help}`)
      out.push(`# TYPE ${name} ${type}`, ...lines, '')
    }
    const line = (name: string, labels: Labels, v: number) =>
      `${name}${labelText(labels)} ${rustFloat(v)}`
    const histLines = (name: string, h: Histogram) => [
      ...h.buckets().map(([le, c]) => line(`${name}_bucket`, [['le', rustFloat(le)]], c)),
      line(`${name}_sum`, [], h.sum),
      line(`${name}_count`, [], h.count),
    ]
    let success = 0
    for (const v of this.success.values()) success += v
    family('tgi_request_count', 'counter', 'Total number of requests', [
      line('tgi_request_count', [], this.requestCount),
    ])
    family('tgi_request_success', 'counter', 'Number of successful requests', [
      line('tgi_request_success', [], success),
    ])
    if (this.failures.size > 0) {
      family(
        'tgi_request_failure',
        'counter',
        null,
        [...this.failures].map(([err, v]) => line('tgi_request_failure', [['err', err]], v)),
      )
    }
    family('tgi_queue_size', 'gauge', 'Current queue size', [line('tgi_queue_size', [], g.waiting)])
    family('tgi_batch_current_size', 'gauge', 'Current batch size', [
      line('tgi_batch_current_size', [], g.running),
    ])
    family('tgi_batch_current_max_tokens', 'gauge', 'Maximum tokens for the current batch', [
      line('tgi_batch_current_max_tokens', [], g.reservedTokens),
    ])
    family('tgi_batch_max_total_tokens', 'gauge', null, [
      line('tgi_batch_max_total_tokens', [], g.kv.totalBlocks * g.blockSize),
    ])
    // Histograms are registered on first use in the Rust exporter: absent until a request finished.
    const e2e = merge(this.e2e, tgiDurationBuckets())
    if (e2e !== undefined && e2e.count > 0) {
      family(
        'tgi_request_duration',
        'histogram',
        'Request duration',
        histLines('tgi_request_duration', e2e),
      )
      family(
        'tgi_request_queue_duration',
        'histogram',
        'Request queue duration',
        histLines('tgi_request_queue_duration', this.queue),
      )
      family(
        'tgi_request_mean_time_per_token_duration',
        'histogram',
        'Mean time per token per request',
        histLines('tgi_request_mean_time_per_token_duration', this.tpot),
      )
      family(
        'tgi_request_input_length',
        'histogram',
        'Input token length per request',
        histLines('tgi_request_input_length', this.inputLen),
      )
      family(
        'tgi_request_generated_tokens',
        'histogram',
        'Generated tokens per request',
        histLines('tgi_request_generated_tokens', this.genLen),
      )
    }
    return `${out.join('\n')}\n`
  }
}

/** Sum the is_streaming variants into one histogram (vLLM and TGI have no such label). */
function merge(m: Map<Streaming, Histogram>, bounds: readonly number[]): Histogram | undefined {
  if (m.size === 0) return undefined
  const h = new Histogram(bounds)
  for (const part of m.values()) {
    h.sum += part.sum
    h.count += part.count
    for (let i = 0; i < h.counts.length; i++)
      h.counts[i] = (h.counts[i] ?? 0) + (part.counts[i] ?? 0)
  }
  return h
}
