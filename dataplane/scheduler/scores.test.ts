import { describe, expect, it } from 'vitest'
import { filterKept, inverseMinMax, keepMarked } from './scores.js'

describe('filterKept', () => {
  it('returns the same array when nothing is removed, else what filter returns', () => {
    const xs = [1, 2, 3, 4, 5]
    expect(filterKept(xs, (x) => x > 0)).toBe(xs)
    for (const cut of [(x: number) => x !== 1, (x: number) => x % 2 === 0, (x: number) => x < 5]) {
      const kept = filterKept(xs, cut)
      expect(kept).not.toBe(xs)
      expect(kept).toEqual(xs.filter(cut))
    }
    expect(filterKept(xs, () => false)).toEqual([])
    expect(filterKept([], () => false)).toEqual([])
  })
})

describe('inverseMinMax', () => {
  it('scores the cheapest 1 and the dearest 0, and all 1 when equal', () => {
    const out = new Float64Array(3)
    inverseMinMax([2, 4, 3], 3, out)
    expect(Array.from(out)).toEqual([1, 0, 0.5])
    inverseMinMax([7, 7, 7], 3, out)
    expect(Array.from(out)).toEqual([1, 1, 1])
  })
})

describe('keepMarked', () => {
  it('returns the same array when every mark is 1, else the marked ones in order', () => {
    const xs = ['a', 'b', 'c', 'd', 'e']
    expect(keepMarked(xs, Uint8Array.of(1, 1, 1, 1, 1), 5)).toBe(xs)
    expect(keepMarked(xs, Uint8Array.of(0, 1, 0, 1, 1), 3)).toEqual(['b', 'd', 'e'])
    expect(keepMarked(xs, Uint8Array.of(1, 0, 0, 0, 0), 1)).toEqual(['a'])
    expect(keepMarked(xs, Uint8Array.of(0, 0, 0, 0, 0), 0)).toEqual([])
    // Marks past xs (a scratch longer than the list, left from a longer call) are not read.
    expect(keepMarked(['a', 'b'], Uint8Array.of(0, 1, 1, 1), 1)).toEqual(['b'])
  })
})
