import { describe, expect, it } from 'vitest'
import { eventName } from './events.js'

describe('eventName', () => {
  it('is <object>.<hex time><seq>, unique within a millisecond, a valid DNS subdomain', () => {
    const a = eventName('chat', 0x18f00000000)
    const b = eventName('chat', 0x18f00000000)
    expect(a).toMatch(/^chat\.18f00000000[0-9a-f]{4}$/)
    expect(a).not.toBe(b)
    const long = eventName('x'.repeat(253))
    expect(long.length).toBeLessThanOrEqual(253)
    expect(long).toMatch(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/)
  })
})
