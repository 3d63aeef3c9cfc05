// The pool hands out each byte once, refills when the next take would run past its end, and keeps
// takes whole (a take never straddles a refill).
import { describe, expect, it } from 'vitest'
import { RANDOM_POOL, takeRandom } from './random-pool.js'

describe('takeRandom', () => {
  it('hands out consecutive, non-overlapping ranges and refills at the end', () => {
    const starts: number[] = []
    for (let i = 0; i < 600; i++) starts.push(takeRandom(16))
    for (const s of starts) expect(s + 16).toBeLessThanOrEqual(RANDOM_POOL.length)
    // Within one fill each take follows the previous; a refill starts again at 0.
    let refills = 0
    for (let i = 1; i < starts.length; i++) {
      const prev = starts[i - 1] as number
      const cur = starts[i] as number
      if (cur === 0) refills++
      else expect(cur).toBe(prev + 16)
    }
    expect(refills).toBeGreaterThanOrEqual(2)
    // A take that would not fit is moved to a fresh fill, whole: leave 8 bytes, ask for 16.
    expect(takeRandom(RANDOM_POOL.length - 8)).toBe(0)
    expect(takeRandom(8)).toBe(RANDOM_POOL.length - 8)
    takeRandom(RANDOM_POOL.length - 8)
    expect(takeRandom(16)).toBe(0)
  })
})
