import { describe, expect, it } from 'vitest'
import { winningPlugin } from './pick-reason.js'

describe('winningPlugin', () => {
  it('names the plugin with the largest share of the lead over the runner-up', () => {
    // 3 candidates; plugin a favours 0 a little, plugin b favours 0 a lot over 2 (the runner-up).
    const rows = Float64Array.from([0.5, 0.1, 0.4, 0.9, 0.0, 0.2])
    const total = Float64Array.from([1.4, 0.1, 0.6])
    expect(winningPlugin(['a', 'b'], rows, 3, total, 0)).toBe('b')
  })
  it('is "single" with one candidate and "tie" when no score separates the top two', () => {
    expect(winningPlugin(['a'], Float64Array.from([1]), 1, Float64Array.from([1]), 0)).toBe(
      'single',
    )
    const rows = Float64Array.from([0.5, 0.5])
    expect(winningPlugin(['a'], rows, 2, Float64Array.from([0.5, 0.5]), 1)).toBe('tie')
  })
})
