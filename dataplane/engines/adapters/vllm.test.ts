import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { parsePrometheusText } from '../prom-parser.js'
import { vllmAdapter, vllmLoraInfo } from './vllm.js'

const fixture = (name: string): string =>
  readFileSync(new URL(`../testdata/${name}`, import.meta.url), 'utf8')

const parse = (text: string) => {
  const parsed = parsePrometheusText(text)
  expect(parsed.errors).toEqual([])
  return parsed
}

/** A v1 scrape of two DP engines with the given cumulative TTFT/ITL totals and prefix counters. */
function scrape(o: {
  ttft: [sum0: number, count0: number, sum1: number, count1: number]
  itl?: [sum: number, count: number]
  hits?: number
  queries?: number
}): string {
  const [s0, c0, s1, c1] = o.ttft
  const lines = [
    '# TYPE vllm:num_requests_waiting gauge',
    'vllm:num_requests_waiting{engine="0",model_name="m"} 1.0',
    'vllm:num_requests_waiting{engine="1",model_name="m"} 2.0',
    '# TYPE vllm:num_requests_running gauge',
    'vllm:num_requests_running{engine="0",model_name="m"} 4.0',
    'vllm:num_requests_running{engine="1",model_name="m"} 4.0',
    '# TYPE vllm:time_to_first_token_seconds histogram',
    `vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf",model_name="m"} ${c0}`,
    `vllm:time_to_first_token_seconds_count{engine="0",model_name="m"} ${c0}`,
    `vllm:time_to_first_token_seconds_sum{engine="0",model_name="m"} ${s0}`,
    `vllm:time_to_first_token_seconds_bucket{engine="1",le="+Inf",model_name="m"} ${c1}`,
    `vllm:time_to_first_token_seconds_count{engine="1",model_name="m"} ${c1}`,
    `vllm:time_to_first_token_seconds_sum{engine="1",model_name="m"} ${s1}`,
  ]
  if (o.itl !== undefined) {
    lines.push(
      '# TYPE vllm:inter_token_latency_seconds histogram',
      `vllm:inter_token_latency_seconds_sum{engine="0",model_name="m"} ${o.itl[0]}`,
      `vllm:inter_token_latency_seconds_count{engine="0",model_name="m"} ${o.itl[1]}`,
    )
  }
  if (o.hits !== undefined && o.queries !== undefined) {
    lines.push(
      '# TYPE vllm:prefix_cache_hits_total counter',
      `vllm:prefix_cache_hits_total{engine="0",model_name="m"} ${o.hits}`,
      '# TYPE vllm:prefix_cache_queries_total counter',
      `vllm:prefix_cache_queries_total{engine="0",model_name="m"} ${o.queries}`,
    )
  }
  return lines.join('\n')
}

describe('vllmAdapter', () => {
  it('scrapes /metrics', () => {
    expect(vllmAdapter.engine).toBe('vLLM')
    expect(vllmAdapter.metricsPath).toBe('/metrics')
  })

  it('maps the v1 fixture: DP engines summed/averaged, cache config, newest LoRA series', () => {
    const { metrics, state } = vllmAdapter.extract(parse(fixture('vllm-metrics-sample.txt')))
    expect(metrics).toEqual({
      waiting: 3, // 3.0 + 0.0 over engine 0/1
      running: 12, // 7.0 + 5.0
      missing: [],
      kvCacheUsage: (0.6312 + 0.4187) / 2,
      blockSize: 16,
      numGpuBlocks: 19208,
      // First scrape: cumulative mean of both engines' histograms summed.
      ttftMeanSec: (58.2 + 16.19999999999999) / (100 + 100),
      prefixCacheHitRate: (1.261568e6 + 998400) / (1.843712e6 + 1.602048e6),
      lora: { maxLora: 4, running: ['food-review-1', 'food-review-2'], waiting: [] },
      engineType: 'vLLM',
    })
    expect(metrics.ttftMeanSec).toBeCloseTo(0.372, 12)
    expect(metrics.prefixCacheHitRate).toBeCloseTo(0.655869, 6)
    expect(state.engine).toBe('vLLM')
    expect(state.pairs.get('ttft')).toEqual({
      numerator: 58.2 + 16.19999999999999,
      denominator: 200,
      last: (58.2 + 16.19999999999999) / 200,
    })
  })

  it('maps the llm-d simulator fixture (single engine, ITL histogram, empty newest LoRA)', () => {
    const { metrics } = vllmAdapter.extract(
      parse(fixture('llm-d-inference-sim-metrics-sample.txt')),
    )
    expect(metrics).toEqual({
      waiting: 0,
      running: 0,
      missing: [],
      kvCacheUsage: 0,
      blockSize: 16,
      numGpuBlocks: 1024,
      ttftMeanSec: 0.595 / 3,
      tpotMeanSec: 3.4169999999999963 / 168,
      prefixCacheHitRate: 16 / 302,
      promptTokensPerRequest: 302 / 3,
      // The 1.755700912e+09 series (no adapters) is newer than the food-review-1 one.
      lora: { maxLora: 2, running: [], waiting: [] },
      engineType: 'vLLM',
    })
  })

  it('computes interval means from the deltas of a second scrape', () => {
    const first = vllmAdapter.extract(
      parse(scrape({ ttft: [10, 20, 30, 20], itl: [4, 100], hits: 50, queries: 100 })),
    )
    expect(first.metrics.ttftMeanSec).toBe(1) // (10 + 30) / 40
    expect(first.metrics.tpotMeanSec).toBe(0.04)
    expect(first.metrics.prefixCacheHitRate).toBe(0.5)

    // Engine 0: +10 requests taking 2 s in all; engine 1: +30 requests taking 6 s in all.
    const second = vllmAdapter.extract(
      parse(scrape({ ttft: [12, 30, 36, 50], itl: [5, 150], hits: 140, queries: 200 })),
      first.state,
    )
    expect(second.metrics.ttftMeanSec).toBeCloseTo(8 / 40, 12)
    expect(second.metrics.tpotMeanSec).toBeCloseTo(1 / 50, 12)
    expect(second.metrics.prefixCacheHitRate).toBeCloseTo(0.9, 12)

    // Nothing new: the last interval values stay.
    const idle = vllmAdapter.extract(
      parse(scrape({ ttft: [12, 30, 36, 50], itl: [5, 150], hits: 140, queries: 200 })),
      second.state,
    )
    expect(idle.metrics.ttftMeanSec).toBeCloseTo(0.2, 12)
    expect(idle.metrics.prefixCacheHitRate).toBeCloseTo(0.9, 12)

    // Pod restarted: counters dropped, so the new cumulative values are the interval.
    const restarted = vllmAdapter.extract(
      parse(scrape({ ttft: [3, 2, 0, 0], itl: [1, 10], hits: 1, queries: 4 })),
      idle.state,
    )
    expect(restarted.metrics.ttftMeanSec).toBe(1.5)
    expect(restarted.metrics.tpotMeanSec).toBe(0.1)
    expect(restarted.metrics.prefixCacheHitRate).toBe(0.25)
  })

  it('prompt tokens per finished request: interval ratio of the two counters, summed over labels', () => {
    const text = (prompt: number, ok: number, aborted: number) =>
      [
        '# TYPE vllm:prompt_tokens_total counter',
        `vllm:prompt_tokens_total{engine="0",model_name="m"} ${prompt}`,
        '# TYPE vllm:request_success_total counter',
        `vllm:request_success_total{engine="0",finished_reason="length",model_name="m"} ${ok}`,
        `vllm:request_success_total{engine="0",finished_reason="abort",model_name="m"} ${aborted}`,
      ].join('\n')
    const first = vllmAdapter.extract(parse(text(16_000, 9, 1)))
    expect(first.metrics.promptTokensPerRequest).toBe(1600)
    // +5 requests of 1000 tokens since: the interval, not the cumulative mean (1400).
    const second = vllmAdapter.extract(parse(text(21_000, 14, 1)), first.state)
    expect(second.metrics.promptTokensPerRequest).toBe(1000)
    // Absent without the counters.
    expect(vllmAdapter.extract(parse(scrape({ ttft: [1, 1, 1, 1] }))).metrics).not.toHaveProperty(
      'promptTokensPerRequest',
    )
  })

  it('falls back to v0 names (gpu_cache_usage_perc, time_per_output_token, hit-rate gauge)', () => {
    const { metrics } = vllmAdapter.extract(
      parse(
        [
          'vllm:num_requests_waiting{model_name="m"} 5.0',
          'vllm:num_requests_running{model_name="m"} 2.0',
          'vllm:gpu_cache_usage_perc{model_name="m"} 0.25',
          'vllm:gpu_prefix_cache_hit_rate{model_name="m"} 0.125',
          '# TYPE vllm:time_per_output_token_seconds histogram',
          'vllm:time_per_output_token_seconds_sum{model_name="m"} 3.0',
          'vllm:time_per_output_token_seconds_count{model_name="m"} 60.0',
          'vllm:cache_config_info{block_size="32",num_gpu_blocks="None"} 1.0',
        ].join('\n'),
      ),
    )
    expect(metrics).toEqual({
      waiting: 5,
      running: 2,
      missing: [],
      kvCacheUsage: 0.25,
      blockSize: 32,
      tpotMeanSec: 0.05,
      prefixCacheHitRate: 0.125,
      engineType: 'vLLM',
    })
  })

  it('prefers v1 names when both generations are exported', () => {
    const { metrics } = vllmAdapter.extract(
      parse(
        [
          'vllm:kv_cache_usage_perc 0.75',
          'vllm:gpu_cache_usage_perc 0.25',
          'vllm:inter_token_latency_seconds_sum 1',
          'vllm:inter_token_latency_seconds_count 10',
          'vllm:time_per_output_token_seconds_sum 9',
          'vllm:time_per_output_token_seconds_count 10',
        ].join('\n'),
      ),
    )
    expect(metrics.kvCacheUsage).toBe(0.75)
    expect(metrics.tpotMeanSec).toBe(0.1)
  })

  it('sums num_gpu_blocks over data-parallel engines, each engine counted once', () => {
    const { metrics } = vllmAdapter.extract(
      parse(
        [
          'vllm:cache_config_info{block_size="16",engine="0",num_gpu_blocks="1000"} 1.0',
          'vllm:cache_config_info{block_size="16",engine="1",num_gpu_blocks="1200"} 1.0',
          'vllm:cache_config_info{block_size="16",engine="1",num_gpu_blocks="1200",x="dup"} 1.0',
        ].join('\n'),
      ),
    )
    expect(metrics.blockSize).toBe(16)
    expect(metrics.numGpuBlocks).toBe(2200)
  })

  it('reports absent load gauges as missing (e.g. --disable-log-stats)', () => {
    const { metrics } = vllmAdapter.extract(parse('vllm:cache_config_info{block_size="16"} 1'))
    expect(metrics).toEqual({
      waiting: 0,
      running: 0,
      missing: ['waiting', 'running'],
      blockSize: 16,
      engineType: 'vLLM',
    })
  })
})

describe('vllmLoraInfo', () => {
  it('picks the largest-valued series, splits and trims lists, skips NaN', () => {
    const info = vllmLoraInfo(
      parse(
        [
          'vllm:lora_requests_info{max_lora="8",running_lora_adapters="old",waiting_lora_adapters=""} 100',
          'vllm:lora_requests_info{max_lora="8",running_lora_adapters="a, b,,c",waiting_lora_adapters="d"} 300',
          'vllm:lora_requests_info{max_lora="8",running_lora_adapters="nan",waiting_lora_adapters=""} NaN',
          'vllm:lora_requests_info{max_lora="8",running_lora_adapters="mid",waiting_lora_adapters=""} 200',
        ].join('\n'),
      ),
    )
    expect(info).toEqual({ maxLora: 8, running: ['a', 'b', 'c'], waiting: ['d'] })
  })

  it('is undefined without the family and omits an unparsable max_lora', () => {
    expect(vllmLoraInfo(parse('x 1'))).toBeUndefined()
    expect(vllmLoraInfo(parse('vllm:lora_requests_info{running_lora_adapters="a"} 1'))).toEqual({
      running: ['a'],
      waiting: [],
    })
  })
})
