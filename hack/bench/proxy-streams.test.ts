import { describe, expect, it } from 'vitest'
import {
  describeReasons,
  eventLoopDelay,
  failureReason,
  gaugeSum,
  listenDrops,
} from './proxy-streams.js'

// As prom-client 15 prints its default metrics (plus one of the gateway's own gauges).
const METRICS = `# HELP nodejs_eventloop_lag_seconds Lag of event loop in seconds.
# TYPE nodejs_eventloop_lag_seconds gauge
nodejs_eventloop_lag_seconds 0.004
# HELP nodejs_eventloop_lag_max_seconds The maximum recorded event loop delay.
# TYPE nodejs_eventloop_lag_max_seconds gauge
nodejs_eventloop_lag_max_seconds 0.031
# HELP nodejs_eventloop_lag_p50_seconds The 50th percentile of the recorded event loop delays.
# TYPE nodejs_eventloop_lag_p50_seconds gauge
nodejs_eventloop_lag_p50_seconds 0.010125
# HELP nodejs_eventloop_lag_p99_seconds The 99th percentile of the recorded event loop delays.
# TYPE nodejs_eventloop_lag_p99_seconds gauge
nodejs_eventloop_lag_p99_seconds 0.018
# HELP infer_gateway_inflight_requests Requests currently being proxied.
# TYPE infer_gateway_inflight_requests gauge
infer_gateway_inflight_requests 4998
`

describe('eventLoopDelay', () => {
  it('reads the prom-client lag gauges in ms', () => {
    const d = eventLoopDelay(METRICS)
    expect(d?.p50Ms).toBeCloseTo(10.125, 6)
    expect(d?.p99Ms).toBeCloseTo(18, 6)
    expect(d?.maxMs).toBeCloseTo(31, 6)
  })

  it('takes the worst process when several report (one sample per worker)', () => {
    const text = METRICS.replace(
      'nodejs_eventloop_lag_p99_seconds 0.018',
      'nodejs_eventloop_lag_p99_seconds{worker="1"} 0.018\nnodejs_eventloop_lag_p99_seconds{worker="2"} 0.027',
    )
    expect(eventLoopDelay(text)?.p99Ms).toBeCloseTo(27, 6)
  })

  it('is undefined when default metrics are off', () => {
    expect(eventLoopDelay('infer_gateway_inflight_requests 3\n')).toBeUndefined()
  })
})

describe('gaugeSum', () => {
  it('reads a gauge and is NaN when it is missing', () => {
    expect(gaugeSum(METRICS, 'infer_gateway_inflight_requests')).toBe(4998)
    expect(Number.isNaN(gaugeSum(METRICS, 'nope'))).toBe(true)
  })
})

describe('describeReasons', () => {
  it('lists reasons by count, most frequent first', () => {
    const m = new Map([
      ['ECONNRESET', 1],
      ['status 503 too_many_connections', 7],
    ])
    expect(describeReasons(m)).toBe('status 503 too_many_connections×7, ECONNRESET×1')
    expect(describeReasons(new Map())).toBe('')
  })
})

describe('failureReason', () => {
  it('names the status, code and message of the gateway error body', () => {
    const body = JSON.stringify({
      error: {
        message: 'upstream timed out: connect to sim-0',
        type: 'server_error',
        code: 'upstream_timeout',
        param: null,
      },
    })
    expect(failureReason(504, body)).toBe(
      'status 504 upstream_timeout (upstream timed out: connect to sim-0)',
    )
  })

  it('keeps the status alone for a body that is not the JSON error', () => {
    expect(failureReason(502, '<html>bad gateway</html>')).toBe('status 502')
    expect(failureReason(503, '{"error":{"code":"gateway_draining"}}')).toBe(
      'status 503 gateway_draining',
    )
  })
})

describe('listenDrops', () => {
  // The shape of /proc/net/netstat: a header and a value line per group (shortened).
  const NETSTAT = [
    'TcpExt: SyncookiesSent TW ListenOverflows ListenDrops TCPHPHits',
    'TcpExt: 0 15 63 71 232',
    'IpExt: InNoRoutes InTruncatedPkts',
    'IpExt: 0 0',
  ].join('\n')

  it('reads ListenOverflows and ListenDrops by name', () => {
    expect(listenDrops(NETSTAT)).toEqual({ overflows: 63, drops: 71 })
  })

  it('is undefined without a TcpExt group', () => {
    expect(listenDrops('IpExt: InNoRoutes\nIpExt: 0\n')).toBeUndefined()
  })
})
