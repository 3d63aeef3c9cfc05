import { describe, expect, it } from 'vitest'
import { isValidRequestId, newUuid, requestIdOf } from './request-id.js'

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
  it('makes version 4 UUIDs, each new, across refills of its random pool', () => {
    // Version nibble 4, variant bits 10 (8, 9, a or b), as crypto.randomUUID.
    const v4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/
    const seen = new Set<string>()
    // 600 ids: the pool (256 ids) is refilled twice.
    for (let i = 0; i < 600; i++) {
      const id = newUuid()
      expect(id).toMatch(v4)
      seen.add(id)
    }
    expect(seen.size).toBe(600)
    // The variant's two possible top bits and the digits' spread: a fixed byte would show here.
    const variants = new Set([...seen].map((id) => id[19]))
    expect(variants.size).toBe(4)
  })
})
