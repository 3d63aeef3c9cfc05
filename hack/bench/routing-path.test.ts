import { describe, expect, it } from 'vitest'
import type { RequestResult } from './routing-load.js'
import { aboveFloor, engineSide, histogramSumCount } from './routing-path.js'

const METRICS = `# HELP vllm:request_queue_time_seconds Histogram of time spent in WAITING phase for request.
# TYPE vllm:request_queue_time_seconds histogram
vllm:request_queue_time_seconds_bucket{le="0.3",model_name="m"} 9
vllm:request_queue_time_seconds_sum{model_name="m"} 0.05
vllm:request_queue_time_seconds_count{model_name="m"} 10
vllm:time_to_first_token_seconds_sum{model_name="m"} 3.3
vllm:time_to_first_token_seconds_count{model_name="m"} 10
vllm:time_to_first_token_seconds_sum{model_name="other"} 0.7
vllm:time_to_first_token_seconds_count{model_name="other"} 2
`

describe('histogramSumCount', () => {
  it('adds up every series of one histogram and ignores others and comments', () => {
    expect(histogramSumCount(METRICS, 'vllm:time_to_first_token_seconds')).toEqual({
      sum: 4,
      count: 12,
    })
    expect(histogramSumCount(METRICS, 'vllm:e2e_request_latency_seconds')).toEqual({
      sum: 0,
      count: 0,
    })
  })
})

describe('engineSide', () => {
  it('turns the sums into per-request means in ms', () => {
    const e = engineSide(METRICS)
    expect(e.requests).toBe(12)
    expect(e.queueMeanMs).toBeCloseTo(5, 9)
    expect(e.queueTotalMs).toBeCloseTo(50, 9)
    expect(e.ttftMeanMs).toBeCloseTo(333.333, 2)
  })
})

const req = (ttftMs: number, status = 200): RequestResult => ({
  tag: 'all',
  at: 0,
  status,
  ttftMs,
  e2eMs: ttftMs + 100,
  tpotMs: 10,
  pod: 'pod-0',
})

describe('aboveFloor', () => {
  it('splits queued requests from the path and leaves failed ones out', () => {
    const rs = [
      ...[1, 2, 3, 4, 5, 6, 7, 8].map((x) => req(300 + x)),
      req(300 + 40),
      req(300 + 90),
      req(Number.NaN),
      req(301, 503),
    ]
    const a = aboveFloor(rs, 300)
    expect(a.n).toBe(10)
    expect(a.queued).toBe(2)
    expect(a.p50).toBe(5)
    expect(a.p90).toBe(40)
    expect(a.pathP50).toBe(4)
    expect(a.pathP90).toBe(8)
  })
})
