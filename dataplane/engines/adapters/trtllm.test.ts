import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { parsePrometheusText } from '../prom-parser.js'
import { trtllmAdapter } from './trtllm.js'

const fixture = (name: string): string =>
  readFileSync(new URL(`../testdata/${name}`, import.meta.url), 'utf8')

const parse = (text: string) => {
  const parsed = parsePrometheusText(text)
  expect(parsed.errors).toEqual([])
  return parsed
}

describe('trtllmAdapter', () => {
  it('scrapes /prometheus/metrics (its /metrics is JSON)', () => {
    expect(trtllmAdapter.engine).toBe('TensorRT-LLM')
    expect(trtllmAdapter.metricsPath).toBe('/prometheus/metrics')
  })

  it('maps the trtllm-serve fixture (gauges with pid, token-based hit rate)', () => {
    const { metrics } = trtllmAdapter.extract(parse(fixture('trtllm-serve-metrics-sample.txt')))
    expect(metrics).toEqual({
      waiting: 2,
      running: 3,
      missing: [],
      kvCacheUsage: 0.4100196035722065,
      blockSize: 32,
      numGpuBlocks: 22955,
      ttftMeanSec: 477.22917286189323 / 1839,
      tpotMeanSec: 22.142823801775304 / 1839,
      prefixCacheHitRate: 2.556608e6 / 7.527554e6,
      engineType: 'TensorRT-LLM',
    })
  })

  it('legacy un-prefixed families: latency only, load reported missing', () => {
    const legacy = [
      '# HELP time_to_first_token_seconds Histogram of time to first token in seconds.',
      '# TYPE time_to_first_token_seconds histogram',
      'time_to_first_token_seconds_sum{engine_type="undefined",model_name="undefined"} 12.5',
      'time_to_first_token_seconds_bucket{engine_type="undefined",le="+Inf",model_name="undefined"} 50.0',
      'time_to_first_token_seconds_count{engine_type="undefined",model_name="undefined"} 50.0',
      '# TYPE time_per_output_token_seconds histogram',
      'time_per_output_token_seconds_sum{engine_type="undefined",model_name="undefined"} 1.5',
      'time_per_output_token_seconds_count{engine_type="undefined",model_name="undefined"} 50.0',
      '# TYPE request_success_total counter',
      'request_success_total{engine_type="undefined",finished_reason="stop",model_name="undefined"} 50.0',
    ].join('\n')
    const { metrics } = trtllmAdapter.extract(parse(legacy))
    expect(metrics).toEqual({
      waiting: 0,
      running: 0,
      missing: ['waiting', 'running'],
      ttftMeanSec: 0.25,
      tpotMeanSec: 0.03,
      engineType: 'TensorRT-LLM',
    })
  })

  it('fallbacks: running from context+generation, KV from blocks, hit rate from block counters', () => {
    const { metrics } = trtllmAdapter.extract(
      parse(
        [
          'trtllm_num_requests_waiting{pid="1"} 1.0',
          'trtllm_num_context_requests{pid="1"} 2.0',
          'trtllm_num_generation_requests{pid="1"} 5.0',
          'trtllm_kv_cache_used_blocks{pid="1"} 30.0',
          'trtllm_kv_cache_max_blocks{pid="1"} 120.0',
          'trtllm_kv_cache_reused_blocks_total 25.0',
          'trtllm_kv_cache_missed_blocks_total 75.0',
          'trtllm_kv_cache_hit_rate{pid="1"} 0.9',
        ].join('\n'),
      ),
    )
    expect(metrics).toEqual({
      waiting: 1,
      running: 7,
      missing: [],
      kvCacheUsage: 0.25,
      numGpuBlocks: 120,
      prefixCacheHitRate: 0.25,
      engineType: 'TensorRT-LLM',
    })
    const gaugeOnly = trtllmAdapter.extract(parse('trtllm_kv_cache_hit_rate{pid="1"} 0.9'))
    expect(gaugeOnly.metrics.prefixCacheHitRate).toBe(0.9)
  })
})
