import { createHash } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { ADJUST_SCRIPT, RESERVE_SCRIPT, scriptSha } from './redis-scripts.js'

describe('redis scripts', () => {
  it('are addressed by the sha1 Redis computes for SCRIPT LOAD', () => {
    expect(scriptSha(RESERVE_SCRIPT)).toBe(createHash('sha1').update(RESERVE_SCRIPT).digest('hex'))
    expect(scriptSha(RESERVE_SCRIPT)).not.toBe(scriptSha(ADJUST_SCRIPT))
  })
  it("use Redis' clock and only declared keys (valid on Redis Cluster)", () => {
    for (const s of [RESERVE_SCRIPT, ADJUST_SCRIPT]) {
      expect(s).toContain("redis.call('TIME')")
      // Every key a call touches comes from KEYS[...], never built inside the script.
      for (const m of s.matchAll(/redis\.call\('(?:GET|SET|HSET|HMGET|PEXPIRE|DEL)', ([^,)]+)/g)) {
        expect(m[1]).toMatch(/^(KEYS\[|marker$)/)
      }
    }
  })
})
