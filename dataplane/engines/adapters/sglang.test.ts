import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { parsePrometheusText } from '../prom-parser.js'
import { sglangAdapter } from './sglang.js'

const fixture = (name: string): string =>
  readFileSync(new URL(`../testdata/${name}`, import.meta.url), 'utf8')

const parse = (text: string) => {
  const parsed = parsePrometheusText(text)
  expect(parsed.errors).toEqual([])
  return parsed
}

describe('sglangAdapter', () => {
  it('maps the fixture: queue, usage, pages, TTFT over is_streaming, ITL, cached-token rate', () => {
    expect(sglangAdapter.metricsPath).toBe('/metrics')
    const { metrics } = sglangAdapter.extract(parse(fixture('sglang-metrics-sample.txt')))
    expect(metrics).toEqual({
      waiting: 2,
      running: 3,
      missing: [],
      kvCacheUsage: 0.41,
      blockSize: 1,
      numGpuBlocks: 41216,
      ttftMeanSec: (160.3800390000895 + 644.6566113395672) / (369 + 1473),
      tpotMeanSec: 6440.998385686099 / 594627,
      prefixCacheHitRate: 3.254883e6 / (1.769311e6 + 6.971633e6),
      engineType: 'SGLang',
    })
    expect(metrics.ttftMeanSec).toBeCloseTo(0.437045, 6)
    expect(metrics.prefixCacheHitRate).toBeCloseTo(0.372372, 6)
  })

  it('DP attention: request gauges summed over dp_rank, usage averaged, pages summed', () => {
    const { metrics } = sglangAdapter.extract(
      parse(
        [
          'sglang:num_queue_reqs{dp_rank="0",model_name="m"} 2.0',
          'sglang:num_queue_reqs{dp_rank="1",model_name="m"} 5.0',
          'sglang:num_grammar_queue_reqs{dp_rank="0",model_name="m"} 1.0',
          'sglang:num_decode_prealloc_queue_reqs{dp_rank="1",model_name="m"} 2.0',
          'sglang:num_prefill_inflight_queue_reqs{dp_rank="1",model_name="m"} 9.0',
          'sglang:num_running_reqs{dp_rank="0",model_name="m"} 3.0',
          'sglang:num_running_reqs{dp_rank="1",model_name="m"} 4.0',
          'sglang:token_usage{dp_rank="0",model_name="m"} 0.2',
          'sglang:token_usage{dp_rank="1",model_name="m"} 0.6',
          'sglang:page_size{dp_rank="0",model_name="m"} 16.0',
          'sglang:page_size{dp_rank="1",model_name="m"} 16.0',
          'sglang:num_pages{dp_rank="0",model_name="m"} 100.0',
          'sglang:num_pages{dp_rank="1",model_name="m"} 100.0',
        ].join('\n'),
      ),
    )
    expect(metrics).toEqual({
      waiting: 10, // 2 + 5 queued, + 1 grammar, + 2 decode prealloc; inflight is not waiting
      running: 7,
      missing: [],
      kvCacheUsage: 0.4,
      blockSize: 16,
      numGpuBlocks: 200,
      engineType: 'SGLang',
    })
  })

  it('older releases: cache_config_info labels, time_per_output_token, gauges as fallbacks', () => {
    const { metrics } = sglangAdapter.extract(
      parse(
        [
          'sglang:num_queue_reqs{model_name="m"} 1.0',
          'sglang:num_running_reqs{model_name="m"} 2.0',
          'sglang:kv_used_tokens{model_name="m"} 250.0',
          'sglang:max_total_num_tokens{model_name="m"} 1000.0',
          'sglang:cache_config_info{model_name="m",num_pages="64",page_size="64"} 1.0',
          'sglang:cache_hit_rate{model_name="m"} 0.33',
          '# TYPE sglang:time_per_output_token_seconds histogram',
          'sglang:time_per_output_token_seconds_sum{model_name="m"} 2.0',
          'sglang:time_per_output_token_seconds_count{model_name="m"} 40.0',
        ].join('\n'),
      ),
    )
    expect(metrics).toEqual({
      waiting: 1,
      running: 2,
      missing: [],
      kvCacheUsage: 0.25,
      blockSize: 64,
      numGpuBlocks: 64,
      tpotMeanSec: 0.05,
      prefixCacheHitRate: 0.33,
      engineType: 'SGLang',
    })
  })

  it('interval TTFT and hit rate across two scrapes', () => {
    const text = (ttftSum: number, ttftCount: number, cached: number, prompt: number) =>
      [
        'sglang:num_queue_reqs 0',
        'sglang:num_running_reqs 0',
        `sglang:time_to_first_token_seconds_sum{is_streaming="true"} ${ttftSum}`,
        `sglang:time_to_first_token_seconds_count{is_streaming="true"} ${ttftCount}`,
        'sglang:time_to_first_token_seconds_sum{is_streaming="false"} 1',
        'sglang:time_to_first_token_seconds_count{is_streaming="false"} 1',
        `sglang:cached_tokens_total{cache_source="device"} ${cached}`,
        'sglang:cached_tokens_total{cache_source="host"} 0',
        `sglang:prompt_tokens_total ${prompt}`,
      ].join('\n')
    const first = sglangAdapter.extract(parse(text(9, 9, 10, 100)))
    expect(first.metrics.ttftMeanSec).toBe(1)
    expect(first.metrics.prefixCacheHitRate).toBe(0.1)
    const second = sglangAdapter.extract(parse(text(12, 19, 70, 200)), first.state)
    expect(second.metrics.ttftMeanSec).toBeCloseTo(0.3, 12)
    expect(second.metrics.prefixCacheHitRate).toBeCloseTo(0.6, 12)
  })
})
