import { describe, expect, it } from 'vitest'
import { cpuUsPerRequest, statCpuSeconds, treeCpuSeconds } from './proxy-cpu.js'

describe('statCpuSeconds', () => {
  it('adds utime and stime after a command name holding spaces and parentheses', () => {
    const stat =
      '4242 (node (a) b) S 1 4242 4242 0 -1 4194560 5000 0 0 0 1234 567 0 0 20 0 11 0 100 0 0'
    expect(statCpuSeconds(stat)).toBeCloseTo(18.01, 6)
  })
  it('is NaN for a line without the fields', () => {
    expect(statCpuSeconds('garbage')).toBeNaN()
    expect(statCpuSeconds('1 (x) S 1 2')).toBeNaN()
  })
})

describe('treeCpuSeconds', () => {
  it('reads this process: it grows while the process burns CPU', async () => {
    const before = await treeCpuSeconds(process.pid)
    // Spin until the kernel's 10 ms tick has charged us at least once more.
    let after = before
    while (after <= before) {
      for (let i = 0; i < 1e6; i++) Math.sqrt(i)
      after = await treeCpuSeconds(process.pid)
    }
    expect(after).toBeGreaterThan(before)
  })
})

describe('cpuUsPerRequest', () => {
  it('divides the CPU used by the requests served', () => {
    expect(cpuUsPerRequest(1.5, 2.5, 5000)).toBeCloseTo(200, 6)
    expect(cpuUsPerRequest(1, 2, 0)).toBeNaN()
  })
})
