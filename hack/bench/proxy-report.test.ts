import { describe, expect, it } from 'vitest'
import { checks, type Measured, type ProxyRun, render, windowTable } from './proxy-report.js'
import type { SlowStreamsResult } from './proxy-streams.js'
import type { LatencyWindow, WindowedLatency } from './proxy-windows.js'

/** One counted window whose figures are also the medians and the pooled ones. */
function one(p50Ms: number, p99Ms: number): WindowedLatency {
  const w: LatencyWindow = { requests: 1000, failed: 0, p50Ms, p99Ms, steal: 0.01, cpuWait: 0.2 }
  return { p50Ms, p99Ms, pooledP50Ms: p50Ms, pooledP99Ms: p99Ms, failed: 0, windows: [w] }
}

/** Three windows with these p99s (p50 1.0 each), pooled p99 given apart: median ≠ pooled. */
function three(p99s: readonly [number, number, number], pooledP99Ms: number): WindowedLatency {
  const windows = p99s.map((p99Ms, i) => ({
    requests: 1000,
    failed: 0,
    p50Ms: 1,
    p99Ms,
    steal: [0.004, 0.13, 0.02][i] ?? 0,
    cpuWait: [0.25, 0.6, Number.NaN][i] ?? 0,
  }))
  const sorted = [...p99s].sort((a, b) => a - b)
  return {
    p50Ms: 1,
    p99Ms: sorted[1] ?? 0,
    pooledP50Ms: 1.05,
    pooledP99Ms,
    failed: 0,
    windows,
  }
}

function m(
  key: Measured['key'],
  label: string,
  p50: number,
  p99: number,
  rps: number,
  ttfb50: number,
  ttfb99: number,
): Measured {
  return {
    key,
    label,
    fixed: one(p50, p99),
    max: { rps, failed: 0 },
    ttfb: one(ttfb50, ttfb99),
    peakRssMb: 100,
  }
}

const STREAMS: SlowStreamsResult = {
  count: 5000,
  opened: 5000,
  failed: 0,
  failures: '',
  endedEarly: 0,
  rampMs: 4000,
  holdChunks: 50000,
  holdMs: 15000,
  rssIdleMb: 90,
  rssMaxMb: 310,
  rssPeakMb: 320,
  rampLag: { p50Ms: 11, p99Ms: 40, maxMs: 60 },
  holdLag: { p50Ms: 10.5, p99Ms: 14, maxMs: 22 },
  inflightHeld: 5000,
  inflightAfter: 0,
  releaseMs: 500,
  rampCpuS: 9,
  holdCpuS: 4,
}

function run(over: Partial<ProxyRun> = {}): ProxyRun {
  return {
    command: 'npm run bench:proxy',
    rate: 500,
    warmupSeconds: 3,
    windows: 5,
    windowSeconds: 4,
    streamWindows: 5,
    streamWindowSeconds: 5,
    maxSeconds: 10,
    connections: 64,
    streamRate: 200,
    measured: [
      m('direct', 'direct', 0.2, 1.0, 10000, 0.5, 1.5),
      // added 0.2 / 0.8; ratio 0.30; ttfb 2.0 / 3.5
      m('ours', 'ours (1 worker)', 0.4, 1.8, 3000, 2.0, 3.5),
      // added 0.3; ratio 0.25
      m('sglang', 'sglang-router 0.3.2', 0.5, 1.3, 2500, 1.9, 3.4),
      // added 0.25; ratio 0.40; ttfb p50 1.5 → limit 1.8
      m('vllm', 'vllm-router 0.1.17', 0.45, 1.2, 4000, 1.5, 3.0),
    ],
    skipped: [{ key: 'oursN', label: 'ours (N workers)', reason: 'no --workers yet' }],
    streams: STREAMS,
    streamsSetup: 'slow engine.',
    machine: 'Measured somewhere.',
    smoke: false,
    ...over,
  }
}

const verdictOf = (r: ProxyRun, prefix: string) =>
  checks(r).find((c) => c.target.startsWith(prefix))?.verdict

describe('checks', () => {
  it('judges each issue target from the ratios of one run', () => {
    const r = run()
    expect(verdictOf(r, 'ours (1 worker): added p50')).toBe('pass') // 0.2 ≤ 0.25
    expect(verdictOf(r, 'ours (1 worker): added p99')).toBe('pass') // 0.8 ≤ 1
    expect(verdictOf(r, 'ours (1 worker): max throughput')).toBe('pass') // 0.30 ≥ 0.25
    expect(verdictOf(r, 'ours (N workers): max throughput')).toBe('n/a')
    expect(verdictOf(r, 'ours (1 worker): stream TTFB p50')).toBe('fail') // 2.0 > 1.8
    expect(verdictOf(r, 'ours (1 worker): stream TTFB p99')).toBe('pass') // 3.5 ≤ 4
    expect(verdictOf(r, '5000 concurrent streams: gateway RSS')).toBe('pass')
    expect(verdictOf(r, '5000 concurrent streams: event-loop')).toBe('pass')
  })

  it('fails a target the numbers miss', () => {
    const r = run({
      measured: [
        m('direct', 'direct', 0.2, 1.0, 10000, 0.5, 1.5),
        m('ours', 'ours (1 worker)', 0.6, 2.5, 2000, 1.0, 5),
        m('sglang', 'sglang-router 0.3.2', 0.5, 1.3, 2500, 1.9, 3.4),
        m('vllm', 'vllm-router 0.1.17', 0.45, 1.2, 4000, 1.5, 3.0),
      ],
      streams: { ...STREAMS, rssPeakMb: 450, holdLag: { p50Ms: 12, p99Ms: 25, maxMs: 40 } },
    })
    expect(verdictOf(r, 'ours (1 worker): added p50')).toBe('fail')
    expect(verdictOf(r, 'ours (1 worker): added p99')).toBe('fail')
    expect(verdictOf(r, 'ours (1 worker): max throughput')).toBe('fail') // 0.20 < 0.25
    expect(verdictOf(r, 'ours (1 worker): stream TTFB p50')).toBe('pass') // 1.0 ≤ 1.8
    expect(verdictOf(r, 'ours (1 worker): stream TTFB p99')).toBe('fail')
    expect(verdictOf(r, '5000 concurrent streams: gateway RSS')).toBe('fail')
    expect(verdictOf(r, '5000 concurrent streams: event-loop')).toBe('fail')
  })

  it('judges N workers against vllm-router when the row exists', () => {
    const r = run({
      measured: [...run().measured, m('oursN', 'ours (2 workers)', 0.3, 0.9, 4500, 1.2, 2.0)],
      skipped: [],
    })
    expect(verdictOf(r, 'ours (2 workers): max throughput')).toBe('pass') // 0.45 ≥ 0.40
    expect(verdictOf(r, 'ours (2 workers): added p50')).toBe('pass')
  })

  it("judges p99 by the median of the windows' p99 and prints the pooled p99 beside it", () => {
    const base = run()
    const ours = base.measured.find((x) => x.key === 'ours')
    const direct = base.measured.find((x) => x.key === 'direct')
    if (ours === undefined || direct === undefined) throw new Error('fixture')
    // Stream p99s 3.0 / 3.8 / 9.0: median 3.8 ≤ 4, pooled 7.0 > 4 — the median decides.
    // Non-stream p99s 1.5 / 1.7 / 6.0 against direct's one window of 1.0: added 0.7 by the
    // median, 3.0 pooled.
    const r = run({
      measured: [
        { ...direct },
        { ...ours, fixed: three([1.5, 6.0, 1.7], 4.0), ttfb: three([3.0, 9.0, 3.8], 7.0) },
        ...base.measured.filter((x) => x.key === 'sglang' || x.key === 'vllm'),
      ],
    })
    const ttfb = checks(r).find((c) => c.target.startsWith('ours (1 worker): stream TTFB p99'))
    expect(ttfb).toEqual({
      target: "ours (1 worker): stream TTFB p99 ≤ 4 ms (median of 3 windows' p99)",
      measured: '3.800 ms (pooled: 7.000)',
      verdict: 'pass',
    })
    const add = checks(r).find((c) => c.target.startsWith('ours (1 worker): added p99'))
    expect(add).toEqual({
      target: "ours (1 worker): added p99 at 500 req/s ≤ 1 ms (median of 3 windows' p99)",
      measured: '0.700 ms (pooled: 3.000)',
      verdict: 'pass',
    })
  })

  it('says n/a with the reason when a peer was skipped', () => {
    const r = run({
      measured: run().measured.filter((x) => x.key !== 'vllm'),
      skipped: [{ key: 'vllm', label: 'vllm-router 0.1.17', reason: 'pip failed' }],
    })
    const c = checks(r).find((x) => x.target.startsWith('ours (1 worker): added p50'))
    expect(c).toEqual({
      target: "ours (1 worker): added p50 at 500 req/s ≤ vllm-router's (one window's p50)",
      measured: 'vllm-router 0.1.17 skipped',
      verdict: 'n/a',
    })
  })

  it('fails the stream targets when not every stream opened', () => {
    const r = run({ streams: { ...STREAMS, opened: 4000, failed: 1000 } })
    expect(verdictOf(r, '5000 concurrent streams: gateway RSS')).toBe('fail')
    expect(verdictOf(r, '5000 concurrent streams: event-loop')).toBe('fail')
  })

  it('is n/a for event-loop delay when /metrics has no lag gauges', () => {
    const r = run({ streams: { ...STREAMS, holdLag: undefined } })
    expect(verdictOf(r, '5000 concurrent streams: event-loop')).toBe('n/a')
  })
})

describe('render', () => {
  it('prints ratios to direct and to each peer, skips and the smoke warning', () => {
    const text = render(run({ smoke: true }))
    expect(text).toContain('**Smoke run**')
    expect(text).toContain('Reproduce: `npm run bench:proxy`')
    // ours: added 0.200 / 0.800, ratio 3000/10000
    expect(text).toContain(
      '| ours (1 worker) | 0.400 / 1.800 | **0.200 / 0.800** | 3000 | **0.30** |',
    )
    // ours ÷ vllm: added p50 0.2/0.25, p99 0.8/0.2, throughput 0.30/0.40
    expect(text).toContain('| ours (1 worker) ÷ vllm-router 0.1.17 | 0.80× / 4.00× | 0.75× |')
    expect(text).toContain('- ours (N workers): skipped — no --workers yet')
    expect(text).toContain(
      "| ours (1 worker): stream TTFB p50 ≤ 1.2× vllm-router's (one window's p50) | 2.000 vs 1.800 ms (pooled: 2.000 vs 1.800) | **fail** |",
    )
  })

  it('prints CPU per request and its ratio to each peer; n/a where it was not measured', () => {
    const base = run()
    const withCpu = (key: Measured['key'], us: number | undefined) => {
      const x = base.measured.find((e) => e.key === key)
      if (x === undefined) throw new Error(key)
      return us === undefined ? x : { ...x, cpuUsPerRequest: us }
    }
    const text = render(
      run({
        measured: [
          withCpu('direct', 400),
          withCpu('ours', 900),
          withCpu('sglang', undefined),
          withCpu('vllm', 600),
        ],
      }),
    )
    // Column order: …, stream TTFB, CPU µs/req, peak RSS, errors.
    expect(text).toContain('| 2.000 / 3.500 | 900 | 100 | 0 / 0 / 0 |')
    expect(text).toContain('| 1.900 / 3.400 | n/a | 100 | 0 / 0 / 0 |')
    // ours ÷ vllm: 900 / 600; ÷ sglang: not measured.
    expect(text).toContain('| 0.80× / 4.00× | 0.75× | 1.33× / 1.17× | 1.50× | 1.00× |')
    expect(text).toMatch(/ours \(1 worker\) ÷ sglang-router 0\.3\.2 \|[^\n]*\| n\/a \| 1\.00× \|/)
  })

  it('prints the slow streams: why they failed, SYNs dropped, the gateway CPU per stream and chunk', () => {
    const text = render(
      run({
        streams: {
          ...STREAMS,
          opened: 4900,
          failed: 100,
          failures: 'status 504 upstream_timeout (upstream timed out: connect to sim-0)×100',
          rampListenDrops: { overflows: 297, drops: 297 },
        },
      }),
    )
    expect(text).toContain(
      '(100 failed: status 504 upstream_timeout (upstream timed out: connect to sim-0)×100, 0 ended early; 297 SYNs dropped',
    )
    // 9 s over 4900 opened; 4 s over 50000 chunks.
    expect(text).toContain('9.0 s over the ramp (1.84 ms per stream opened')
    expect(text).toContain('4.0 s over the hold (80 µs per chunk delivered)')
  })
})

describe('windowTable', () => {
  it("gives each window's p99 with its steal and CPU wait, then the medians and the pooled figures", () => {
    const base = run().measured
    const ours = base.find((x) => x.key === 'ours')
    const direct = base.find((x) => x.key === 'direct')
    if (ours === undefined || direct === undefined) throw new Error('fixture')
    const text = windowTable(
      [direct, { ...ours, ttfb: three([3.0, 9.0, 3.8], 7.0) }],
      (m) => m.ttfb,
    )
    expect(text.split('\n')[0]).toBe(
      '| target | window 1 p99 (steal / CPU wait) | window 2 p99 (steal / CPU wait) | window 3 p99 (steal / CPU wait) | median of windows p50 / p99 | pooled p50 / p99 | failed |',
    )
    expect(text).toContain(
      '| ours (1 worker) | 3.00 (0.4 % / 25 %) | 9.00 (13.0 % / 60 %) | 3.80 (2.0 % / n/a) | 1.000 / 3.800 | 1.050 / 7.000 | 0 |',
    )
    // direct ran one window: the missing ones are dashes, not zeros.
    expect(text).toContain(
      '| direct | 1.50 (1.0 % / 20 %) | — | — | 0.500 / 1.500 | 0.500 / 1.500 | 0 |',
    )
  })
})

describe('render, the method', () => {
  it('says the warm-up is not counted and how many windows of how long each phase ran', () => {
    const text = render(run())
    expect(text).toContain('after a warm-up of 3 s per target at the same rate that is not counted')
    expect(text).toContain('vegeta at 500 req/s, 5 windows of 4 s per target')
    expect(text).toContain('at 200 req/s, 5 windows of 5 s per target')
    expect(text).toContain('Stream time to first byte at 200 req/s, by window:')
  })

  it('says when there was no warm-up', () => {
    expect(render(run({ warmupSeconds: 0 }))).toContain('with no warm-up')
  })
})
