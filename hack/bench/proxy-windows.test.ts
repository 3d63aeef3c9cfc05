import { describe, expect, it } from 'vitest'
import {
  cpuWaitShare,
  fmtShare,
  latencyWindow,
  PressureParseError,
  pooledQuantiles,
  pressureSomeTotalUs,
  summariseWindows,
  summaryText,
  windowText,
} from './proxy-windows.js'

const quiet = { steal: 0.025, cpuWait: 0.3 }

/** 1..n ms, ascending. */
const ramp = (n: number, offset = 0): number[] =>
  Array.from({ length: n }, (_, i) => offset + i + 1)

describe('latencyWindow', () => {
  it('takes nearest-rank p50 and p99 of the sorted latencies and keeps failures and steal', () => {
    const w = latencyWindow(ramp(200), 3, quiet)
    // 200 samples: p50 is the 100th, p99 the 198th.
    expect(w).toEqual({
      requests: 200,
      failed: 3,
      p50Ms: 100,
      p99Ms: 198,
      steal: 0.025,
      cpuWait: 0.3,
    })
  })

  it('is NaN, not zero, for a window with no successful request', () => {
    const w = latencyWindow([], 5, quiet)
    expect(w.requests).toBe(0)
    expect(w.p99Ms).toBeNaN()
  })
})

describe('pooledQuantiles', () => {
  it('merges the windows before taking the quantiles', () => {
    // 100 fast (1..100) and 100 slow (1001..1100): pooled p99 falls in the slow window.
    const q = pooledQuantiles([ramp(100), ramp(100, 1000)])
    expect(q).toEqual({ p50Ms: 100, p99Ms: 1098 })
  })
})

describe('summariseWindows', () => {
  const win = (p50Ms: number, p99Ms: number, failed = 0, steal = 0) => ({
    requests: 1000,
    failed,
    p50Ms,
    p99Ms,
    steal,
    cpuWait: 0.3,
  })

  it("uses the median of the windows' p50 and p99, one slow window does not move it", () => {
    const s = summariseWindows([win(1.8, 3.9), win(2.1, 15.3, 2, 0.13), win(1.9, 4.2, 1)], {
      p50Ms: 1.95,
      p99Ms: 9.7,
    })
    expect(s.p50Ms).toBe(1.9)
    expect(s.p99Ms).toBe(4.2)
    expect(s.pooledP99Ms).toBe(9.7)
    expect(s.pooledP50Ms).toBe(1.95)
    expect(s.failed).toBe(3)
    expect(s.windows.map((w) => w.p99Ms)).toEqual([3.9, 15.3, 4.2])
  })

  it('averages the middle two of an even number of windows', () => {
    const s = summariseWindows([win(1, 3), win(2, 5), win(3, 4), win(4, 10)], {
      p50Ms: 2,
      p99Ms: 9,
    })
    expect(s.p50Ms).toBe(2.5)
    expect(s.p99Ms).toBe(4.5)
  })
})

describe('CPU pressure', () => {
  const psi = (someUs: number) =>
    `some avg10=61.35 avg60=79.26 avg300=65.54 total=${someUs}\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n`

  it('reads the "some" total, not the "full" one', () => {
    expect(pressureSomeTotalUs(psi(6547330395))).toBe(6547330395)
  })

  it('refuses text without a "some" line with a typed error', () => {
    expect(() => pressureSomeTotalUs('full avg10=0.00 total=0')).toThrow(PressureParseError)
  })

  it('gives the share of the elapsed time that some task waited', () => {
    // 1.5 s of waiting over a 5 s window.
    expect(cpuWaitShare(1_000_000, 2_500_000, 5000)).toBe(0.3)
    expect(cpuWaitShare(Number.NaN, 2_500_000, 5000)).toBeNaN()
    expect(cpuWaitShare(0, 0, 0)).toBeNaN()
  })
})

describe('text', () => {
  it('prints a share as a percentage, n/a when unknown', () => {
    expect(fmtShare(0.1304)).toBe('13.0 %')
    expect(fmtShare(0.456, 0)).toBe('46 %')
    expect(fmtShare(Number.NaN)).toBe('n/a')
  })

  it('prints a window and a summary with the median first and the pooled beside it', () => {
    expect(windowText(latencyWindow(ramp(200), 2, { steal: 0.004, cpuWait: 0.456 }))).toBe(
      'p50 100.000 p99 198.000 ms, 200 timed, 2 failed, machine steal 0.4 %, CPU wait 46 %',
    )
    const s = summariseWindows(
      [latencyWindow(ramp(100), 0, quiet), latencyWindow(ramp(100, 1000), 0, quiet)],
      pooledQuantiles([ramp(100), ramp(100, 1000)]),
    )
    expect(summaryText(s)).toBe(
      'median of 2 windows p50 550.000 p99 599.000 ms (window p99s 99.00 1099.00); pooled p50 100.000 p99 1098.000 ms; 0 failed',
    )
  })
})
