import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { parsePrometheusText } from '../prom-parser.js'
import { tgiAdapter } from './tgi.js'

const fixture = (name: string): string =>
  readFileSync(new URL(`../testdata/${name}`, import.meta.url), 'utf8')

const parse = (text: string) => {
  const parsed = parsePrometheusText(text)
  expect(parsed.errors).toEqual([])
  return parsed
}

describe('tgiAdapter', () => {
  it('maps the fixture: queue/batch, reserved-token KV proxy, queue+prefill TTFT, TPOT', () => {
    expect(tgiAdapter.metricsPath).toBe('/metrics')
    const { metrics } = tgiAdapter.extract(parse(fixture('tgi-metrics-sample.txt')))
    expect(metrics).toEqual({
      waiting: 2,
      running: 3,
      missing: [],
      kvCacheUsage: 18576 / 45312,
      ttftMeanSec: 149.80096421591148 / 1842 + 369.4441379313493 / 1703,
      tpotMeanSec: 23.775231035723596 / 1842,
      engineType: 'TGI',
    })
    expect(metrics.kvCacheUsage).toBeCloseTo(0.41, 2)
  })

  it('without the v3 token capacity there is no KV proxy; without prefill timing no TTFT', () => {
    const { metrics } = tgiAdapter.extract(
      parse(
        [
          'tgi_queue_size 4',
          'tgi_batch_current_size 1',
          'tgi_batch_current_max_tokens 900',
          'tgi_request_queue_duration_sum 2',
          'tgi_request_queue_duration_count 4',
          'tgi_batch_forward_duration_sum{method="decode"} 7',
          'tgi_batch_forward_duration_count{method="decode"} 70',
        ].join('\n'),
      ),
    )
    expect(metrics).toEqual({ waiting: 4, running: 1, missing: [], engineType: 'TGI' })
  })

  it('TTFT estimate uses interval means of both histograms', () => {
    const text = (q: [number, number], p: [number, number]) =>
      [
        'tgi_queue_size 0',
        'tgi_batch_current_size 0',
        `tgi_request_queue_duration_sum ${q[0]}`,
        `tgi_request_queue_duration_count ${q[1]}`,
        `tgi_batch_forward_duration_sum{method="prefill"} ${p[0]}`,
        `tgi_batch_forward_duration_count{method="prefill"} ${p[1]}`,
        'tgi_batch_forward_duration_sum{method="decode"} 1000',
        'tgi_batch_forward_duration_count{method="decode"} 1',
      ].join('\n')
    const first = tgiAdapter.extract(parse(text([10, 10], [5, 10])))
    expect(first.metrics.ttftMeanSec).toBe(1.5)
    const second = tgiAdapter.extract(parse(text([14, 20], [6, 20])), first.state)
    expect(second.metrics.ttftMeanSec).toBeCloseTo(0.4 + 0.1, 12)
  })
})
