// The paired interval: a gap that every resample keeps is resolved, a gap that the choice of
// requests explains is not, and requests failed in either run do not pair.
import { describe, expect, it } from 'vitest'
import { pairedPercentileDiff } from './paired-diff.js'

const keyed = (xs: readonly number[]): Map<number, number> => new Map(xs.map((x, i) => [i, x]))

describe('pairedPercentileDiff', () => {
  it('resolves a constant shift: every resample sees it', () => {
    const base = Array.from({ length: 400 }, (_, i) => 300 + ((i * 37) % 100))
    const d = pairedPercentileDiff(keyed(base.map((x) => x + 5)), keyed(base), 90)
    expect(d.diff).toBe(5)
    expect(d.lo).toBe(5)
    expect(d.hi).toBe(5)
    expect(d.pairs).toBe(400)
  })

  it('straddles zero when the two differ only by noise per request', () => {
    // B is A with each request's value moved up or down by up to 3: no shift of the whole.
    const a = Array.from({ length: 400 }, (_, i) => 300 + ((i * 37) % 100))
    const b = a.map((x, i) => x + (((i * 13) % 7) - 3))
    const d = pairedPercentileDiff(keyed(a), keyed(b), 90)
    expect(d.lo).toBeLessThan(0)
    expect(d.hi).toBeGreaterThan(0)
    // The same data, the same interval.
    expect(pairedPercentileDiff(keyed(a), keyed(b), 90)).toEqual(d)
  })

  it('pairs only requests answered in both', () => {
    const a = new Map([
      [1, 10],
      [2, Number.NaN],
      [3, 30],
      [4, 40],
    ])
    const b = new Map([
      [1, 11],
      [2, 20],
      [3, 31],
    ])
    const d = pairedPercentileDiff(a, b, 50)
    expect(d.pairs).toBe(2)
    expect(d.diff).toBe(-1)
  })
})
