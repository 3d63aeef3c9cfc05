import { describe, expect, it } from 'vitest'
import {
  nodeThreads,
  parseSchedstat,
  runNs,
  sampleThreads,
  statNice,
  type ThreadSample,
  threadDeltas,
} from './thread-cpu.js'

const t = (tid: number, pid: number, nice: number, run: number, wait = 0, slices = 0) =>
  ({ pid, tid, nice, runNs: run, waitNs: wait, slices }) satisfies ThreadSample

describe('thread-cpu', () => {
  it('parses a stat line whose name holds spaces and parentheses, and a schedstat line', () => {
    const stat = '4242 (node (x) y) S 1 4242 4242 0 -1 4194304 10 0 0 0 5 6 0 0 39 19 11 0'
    expect(statNice(stat)).toBe(19)
    expect(parseSchedstat('123456 789 42\n')).toEqual({ runNs: 123456, waitNs: 789, slices: 42 })
  })

  it.runIf(process.platform === 'linux')('reads this process: its main thread runs', async () => {
    let x = 0
    for (let i = 0; i < 1e6; i++) x += Math.sqrt(i)
    expect(x).toBeGreaterThan(0)
    const s = await sampleThreads([process.pid])
    const main = s.find((x) => x.tid === process.pid)
    expect(main?.runNs).toBeGreaterThan(0)
    expect(main?.slices).toBeGreaterThan(0)
    expect(Number.isInteger(main?.nice)).toBe(true)
  })

  it('splits deltas into main threads, reniced threads and the rest; new threads count from 0', () => {
    const before = [t(10, 10, 0, 1000, 50, 3), t(11, 10, 0, 500), t(12, 10, 19, 100)]
    const after = [
      t(10, 10, 0, 4000, 80, 7),
      t(11, 10, 0, 900),
      t(12, 10, 19, 700),
      t(13, 10, 0, 250), // started in between
      t(20, 20, 5, 300, 1, 1), // another process's main thread, at its own nice
    ]
    const d = threadDeltas(before, after)
    expect(nodeThreads(d)).toEqual({
      main: { runNs: 3300, waitNs: 31, slices: 5 },
      reniced: { runNs: 600, count: 1 },
      otherRunNs: 650,
    })
    expect(runNs(d)).toBe(4550)
  })
})
