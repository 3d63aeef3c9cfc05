import { describe, expect, it } from 'vitest'
import {
  chunkFloor,
  gcBefore,
  gcOverlaps,
  heapPerCall,
  median,
  Phases,
  slowShare,
} from './scheduler-cost-breakdown.js'

describe('chunkFloor', () => {
  it('averages consecutive chunks and reports the lowest and the 10th percentile', () => {
    // 20 chunks of 2: means 1, 2, ..., 20 in a shuffled order; one preempted sample inflates one.
    const means = [7, 3, 12, 1, 20, 5, 9, 2, 15, 4, 18, 6, 11, 8, 14, 10, 17, 13, 19, 16]
    const samples = means.flatMap((m) => [m - 0.5, m + 0.5])
    samples[4] = 5000
    const f = chunkFloor(samples, 2)
    expect(f.min).toBe(1)
    // Sorted means: 1, 2, 3, ... with 12 → 2506 (the preempted chunk) moved last; index 2 is 3.
    expect(f.p10).toBe(3)
  })

  it('ignores a trailing partial chunk, and has no floor without a whole chunk', () => {
    expect(chunkFloor([4, 6, 1], 2).min).toBe(5)
    expect(chunkFloor([1, 2], 3).min).toBeNaN()
  })
})

describe('gcOverlaps', () => {
  it('marks the decisions a pause overlapped, whatever order the pauses arrive in', () => {
    const spans: [number, number][] = [
      [0, 1],
      [2, 3],
      [4, 5],
      [6, 7],
    ]
    // A pause inside the 2nd, one starting before the 4th and running into it, one between.
    const pauses: [number, number][] = [
      [5.5, 0.6],
      [2.2, 0.1],
      [3.5, 0.2],
    ]
    expect(gcOverlaps(spans, pauses)).toEqual([false, true, false, true])
    expect(gcOverlaps(spans, [])).toEqual([false, false, false, false])
  })
})

describe('gcBefore', () => {
  it('marks the decisions a pause came before, since the previous one ended', () => {
    const spans: [number, number][] = [
      [1, 2],
      [3, 4],
      [5, 6],
      [7, 8],
    ]
    // One before the first, one inside the 2nd (an overlap: not before the 3rd), one between the
    // 3rd and the 4th; unsorted.
    const pauses: [number, number][] = [
      [6.5, 0.1],
      [0.2, 0.1],
      [3.5, 0.1],
    ]
    expect(gcBefore(spans, pauses)).toEqual([true, false, false, true])
    expect(gcBefore(spans, [])).toEqual([false, false, false, false])
    // A pause after the last decision marks none.
    expect(gcBefore(spans, [[9, 1]])).toEqual([false, false, false, false])
  })
})

describe('heapPerCall', () => {
  it('reads what a call allocates, not what it prepares or does after', () => {
    let keep: unknown
    // 100,000 doubles: 800,000 bytes of elements, allocated inside the reading.
    const big = heapPerCall(41, () => {
      const before = new Array<number>(50_000).fill(0.5)
      return () => {
        keep = new Array<number>(100_000).fill(1.5)
        return () => {
          keep = [before, new Array<number>(50_000).fill(2.5)]
        }
      }
    })
    expect(big).toBeGreaterThan(780_000)
    expect(big).toBeLessThan(840_000)
    const none = heapPerCall(41, () => () => () => {})
    expect(Math.abs(none)).toBeLessThan(1024)
    // The finisher ran after each timed call (as a request is sent and completed after its
    // decision): the last value kept is its pair, not the call's 100,000-element array.
    expect(Array.isArray(keep) && keep.length).toBe(2)
  })
})

describe('median', () => {
  it('takes the middle value, or the mean of the middle two', () => {
    expect(median([5, 1, 3])).toBe(3)
    expect(median([4, 1, 3, 2])).toBe(2.5)
    expect(median([])).toBeNaN()
  })
})

describe('slowShare', () => {
  it('gives each kind its share of all calls, of the slow ones, and its median', () => {
    const us = [10, 50, 12, 60, 11, 14, 90]
    const kinds = ['a', 'b', 'a', 'b', 'a', 'c', 'c']
    const rows = slowShare(us, kinds, 50)
    expect(rows).toEqual([
      { kind: 'a', share: 3 / 7, slowShare: 0, p50: 11 },
      { kind: 'b', share: 2 / 7, slowShare: 2 / 3, p50: 55 },
      { kind: 'c', share: 2 / 7, slowShare: 1 / 3, p50: 52 },
    ])
  })
})

describe('Phases', () => {
  it('adds each wrapped call to its phase and compares slow decisions by median', () => {
    const ph = new Phases()
    const calls: number[] = []
    const obj = {
      base: 10,
      work(x: number): number {
        calls.push(x)
        return this.base + x
      },
    }
    ph.wrap(obj, 'work', 'work')
    ph.wrap(obj, 'absent', 'absent')
    expect(ph.names).toEqual(['work'])
    // The wrapper keeps `this` and the result; a decision with no call records 0.
    expect(obj.work(1)).toBe(11)
    expect(obj.work(2)).toBe(12)
    ph.endDecision()
    ph.endDecision()
    expect(calls).toEqual([1, 2])
    const rows = ph.rows[0] as number[]
    expect(rows.length).toBe(2)
    expect(rows[0]).toBeGreaterThan(0)
    expect(rows[1]).toBe(0)
    // Decision 0 is the slow one: its phase time is the slow median; all = median of both.
    const cmp = ph.compare([100, 1], 50)
    expect(cmp).toEqual([{ name: 'work', all: (rows[0] as number) / 2, slow: rows[0] }])
  })
})
