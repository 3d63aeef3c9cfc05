import { describe, expect, it } from 'vitest'
import { ruleFallbackSchema } from './fallback-schema.js'

describe('ruleFallbackSchema', () => {
  it('needs exactly one target kind per entry and known conditions', () => {
    expect(
      ruleFallbackSchema.safeParse({ targets: [{ modelServerName: 'a' }], on: ['5xx'] }).success,
    ).toBe(true)
    expect(
      ruleFallbackSchema.safeParse({
        targets: [{ modelServerName: 'a', externalModelProviderName: 'b' }],
      }).success,
    ).toBe(false)
    expect(ruleFallbackSchema.safeParse({ targets: [{}] }).success).toBe(false)
    expect(ruleFallbackSchema.safeParse({ targets: [] }).success).toBe(false)
    expect(
      ruleFallbackSchema.safeParse({ targets: [{ modelServerName: 'a' }], on: ['timeout'] })
        .success,
    ).toBe(false)
    expect(
      ruleFallbackSchema.safeParse({ targets: [{ modelServerName: 'a' }], on: [] }).success,
    ).toBe(false)
  })
})
