import { describe, expect, it } from 'vitest'
import { cpuBetween, statCpuTicks, treeCpu } from './proc-cpu.js'

describe('proc-cpu', () => {
  it('reads utime + stime after a command name holding spaces and parentheses', () => {
    const stat =
      '4242 (node (x) y) S 1 4242 4242 0 -1 4194560 1000 0 0 0 153 47 0 0 20 0 11 0 100 0 0'
    expect(statCpuTicks(stat)).toBe(200)
    expect(statCpuTicks('garbage')).toBeNaN()
  })

  it('sums CPU per role between two readings; a process born in between counts from 0', () => {
    const before = new Map([
      [1, { role: 'gateway', seconds: 2 }],
      [2, { role: 'gateway', seconds: 1 }],
    ])
    const after = new Map([
      [1, { role: 'gateway', seconds: 2.5 }],
      [2, { role: 'gateway', seconds: 1.25 }],
      [3, { role: 'fleet', seconds: 0.5 }],
    ])
    expect(Object.fromEntries(cpuBetween(before, after))).toEqual({ gateway: 0.75, fleet: 0.5 })
  })

  it.runIf(process.platform === 'linux')('finds this process in its own tree', async () => {
    const m = await treeCpu(process.pid, (cmd, pid) => (pid === process.pid ? 'self' : cmd))
    expect(m.get(process.pid)?.role).toBe('self')
    expect(m.get(process.pid)?.seconds).toBeGreaterThan(0)
  })
})
