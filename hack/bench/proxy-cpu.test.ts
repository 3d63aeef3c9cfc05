import { describe, expect, it } from 'vitest'
import { cpuUsPerRequest, treeCpuSeconds } from './proxy-cpu.js'

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
