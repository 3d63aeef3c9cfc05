import { describe, expect, it } from 'vitest'
import { BenchUsageError, positiveArg } from './cli-args.js'

describe('positiveArg', () => {
  it('reads a positive number', () => {
    expect(positiveArg('rate', '500')).toBe(500)
    expect(positiveArg('seconds', '0.5')).toBe(0.5)
  })

  it('refuses zero, negatives, non-numbers and a missing value, naming the option', () => {
    for (const v of ['0', '-1', 'abc', undefined, 'Infinity']) {
      expect(() => positiveArg('windows', v)).toThrow(BenchUsageError)
    }
    expect(() => positiveArg('windows', 'x')).toThrow('--windows must be a positive number')
  })
})
