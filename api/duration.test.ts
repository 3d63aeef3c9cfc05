import { describe, expect, it } from 'vitest'
import { DURATION_PATTERN, DurationError, parseDuration } from './duration.js'

describe('parseDuration', () => {
  it.each([
    ['500ms', 500],
    ['30s', 30_000],
    ['1m30s', 90_000],
    ['1h', 3_600_000],
    ['2h45m', 9_900_000],
    ['1.5s', 1_500],
    ['.5s', 500],
    ['0', 0],
    ['0s', 0],
    ['250us', 0.25],
    ['1000000ns', 1],
  ])('%s → %d ms', (s, ms) => {
    expect(parseDuration(s)).toBeCloseTo(ms, 9)
  })

  it.each(['', '10', 's', '1d', '-1s', '1 s', '1s ', '1m-30s', '0ms0', 'abc', '1.2.3s'])(
    'rejects %j with a typed error',
    (s) => {
      expect(() => parseDuration(s)).toThrow(DurationError)
      try {
        parseDuration(s)
      } catch (err) {
        expect((err as DurationError).code).toBe('DURATION_INVALID')
      }
    },
  )

  it('rejects absurdly large durations', () => {
    expect(() => parseDuration(`${'9'.repeat(30)}h`)).toThrow(/too large/)
  })

  it('pattern agrees with the parser', () => {
    const re = new RegExp(DURATION_PATTERN)
    for (const ok of ['1h2m3s4ms', '0', '10us']) expect(re.test(ok)).toBe(true)
    for (const bad of ['1x', '-5s', '']) expect(re.test(bad)).toBe(false)
  })
})
