import { describe, expect, it } from 'vitest'
import { isValidRequestId, requestIdOf } from './request-id.js'

describe('request id', () => {
  it('keeps a valid client id', () => {
    expect(requestIdOf('req-123')).toBe('req-123')
    expect(requestIdOf('a1b2:c3/d4_e5.f6')).toBe('a1b2:c3/d4_e5.f6')
  })
  it('replaces missing, empty, too long or unsafe ids with a UUID', () => {
    const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
    for (const bad of [
      undefined,
      '',
      'x'.repeat(129),
      'has space',
      'quote"d',
      'back\\slash',
      'nl\nx',
      'é',
    ])
      expect(requestIdOf(bad)).toMatch(uuid)
    expect(isValidRequestId('x'.repeat(128))).toBe(true)
    expect(isValidRequestId('x'.repeat(129))).toBe(false)
  })
})
