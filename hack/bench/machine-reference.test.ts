// The reference loop does the same work every call (its result depends on its rounds only), and
// its size follows the measured call's median. Timing itself is the bench's, not tested here.
import { describe, expect, it } from 'vitest'
import { fixedWork, perRoundUs, roundsFor } from './machine-reference.js'

describe('machine reference', () => {
  it('does the same work for the same rounds, more for more', () => {
    expect(fixedWork(3)).toBe(fixedWork(3))
    expect(fixedWork(4)).toBeGreaterThan(fixedWork(3))
    expect(fixedWork(0)).toBe(0)
  })

  it('sizes the loop to the target median', () => {
    expect(roundsFor(75, 2.5)).toBe(30)
    expect(roundsFor(76, 2.5)).toBe(30)
    expect(roundsFor(1, 2.5)).toBe(1)
    // Nothing measured: one round, not a division by zero.
    expect(roundsFor(75, 0)).toBe(1)
    expect(roundsFor(Number.NaN, 2.5)).toBe(1)
  })

  it('reads one round from the clock it is given', () => {
    // A clock that advances 0.016 ms per reading: each probe of 8 rounds reads 16 µs, 2 per round.
    let t = 0
    const clock = (): number => {
      t += 0.016
      return t
    }
    expect(perRoundUs(clock, 10)).toBeCloseTo(2, 9)
  })
})
