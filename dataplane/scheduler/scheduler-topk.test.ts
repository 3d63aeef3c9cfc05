import { describe, expect, it } from 'vitest'
import { topK } from './scheduler.js'
import { seeded } from './testkit.js'

/** The selection topK replaced: each rank the first largest value not taken yet. */
function byScans(values: Float64Array, n: number, k: number): number[] {
  const out: number[] = []
  for (let r = 0; r < k; r++) {
    let best = -1
    for (let i = 0; i < n; i++) {
      if (out.includes(i)) continue
      if (best < 0 || (values[i] as number) > (values[best] as number)) best = i
    }
    if (best < 0) break
    out.push(best)
  }
  return out
}

describe('topK', () => {
  it('orders as rank-by-rank selection does: largest first, ties in index order', () => {
    const rnd = seeded(23)
    for (let t = 0; t < 5000; t++) {
      const n = Math.floor(rnd() * 70)
      const values = new Float64Array(n)
      // Few distinct values: many ties, as when several plugins abstain.
      for (let i = 0; i < n; i++) values[i] = Math.floor(rnd() * 6) / 2 - (rnd() < 0.05 ? 9 : 0)
      const k = Math.floor(rnd() * 6)
      expect(topK(values, n, k)).toEqual(byScans(values, n, k))
    }
    expect(topK(new Float64Array([1, 3, 3, 2]), 4, 3)).toEqual([1, 2, 3])
  })

  it('fills a kept array afresh each time (pick reuses one): nothing of a longer call left', () => {
    const kept: number[] = []
    const rnd = seeded(5)
    for (let t = 0; t < 2000; t++) {
      const n = Math.floor(rnd() * 70)
      const values = new Float64Array(n)
      for (let i = 0; i < n; i++) values[i] = Math.floor(rnd() * 6) / 2
      const k = Math.floor(rnd() * 6)
      expect(topK(values, n, k, kept)).toBe(kept)
      expect(kept).toEqual(byScans(values, n, k))
    }
  })
})
