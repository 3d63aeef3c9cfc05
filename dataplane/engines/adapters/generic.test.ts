import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { parsePrometheusText } from '../prom-parser.js'
import { genericAdapter } from './generic.js'

const fixture = (name: string): string =>
  readFileSync(new URL(`../testdata/${name}`, import.meta.url), 'utf8')

const parse = (text: string) => {
  const parsed = parsePrometheusText(text)
  expect(parsed.errors).toEqual([])
  return parsed
}

describe('genericAdapter', () => {
  it('maps llama.cpp by metric names', () => {
    const adapter = genericAdapter({
      waiting: 'llamacpp:requests_deferred',
      running: 'llamacpp:requests_processing',
    })
    expect(adapter.engine).toBe('Generic')
    expect(adapter.metricsPath).toBe('/metrics')
    const { metrics } = adapter.extract(parse(fixture('llamacpp-metrics-sample.txt')))
    expect(metrics).toEqual({ waiting: 2, running: 3, missing: [], engineType: 'Generic' })
  })

  it('maps gauges and histograms with DP aggregation and interval means', () => {
    const adapter = genericAdapter({
      waiting: 'q',
      running: 'r',
      kvCacheUsage: 'kv',
      ttft: 'ttft_seconds',
      tpot: 'tpot_seconds',
    })
    const text = (ttftSum: number, ttftCount: number) =>
      [
        'q{rank="0"} 1',
        'q{rank="1"} 2',
        'r{rank="0"} 3',
        'kv{rank="0"} 0.5',
        'kv{rank="1"} 0.7',
        '# TYPE ttft_seconds histogram',
        `ttft_seconds_sum{rank="0"} ${ttftSum}`,
        `ttft_seconds_count{rank="0"} ${ttftCount}`,
        '# TYPE tpot_seconds summary',
        'tpot_seconds{quantile="0.5"} 0.01',
        'tpot_seconds_sum 2',
        'tpot_seconds_count 100',
      ].join('\n')
    const first = adapter.extract(parse(text(4, 8)))
    expect(first.metrics).toEqual({
      waiting: 3,
      running: 3,
      missing: [],
      kvCacheUsage: 0.6,
      ttftMeanSec: 0.5,
      tpotMeanSec: 0.02,
      engineType: 'Generic',
    })
    const second = adapter.extract(parse(text(5, 18)), first.state)
    expect(second.metrics.ttftMeanSec).toBeCloseTo(0.1, 12)
    // TPOT unchanged: the previous interval value is carried.
    expect(second.metrics.tpotMeanSec).toBe(0.02)
  })

  it('with no mapping every signal is absent and load is reported missing', () => {
    const { metrics } = genericAdapter().extract(parse(fixture('vllm-metrics-sample.txt')))
    expect(metrics).toEqual({
      waiting: 0,
      running: 0,
      missing: ['waiting', 'running'],
      engineType: 'Generic',
    })
  })
})
