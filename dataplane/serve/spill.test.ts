import { describe, expect, it } from 'vitest'
import type { Identity } from '../filters/identity.js'
import { saturatedError, spillOf, spillsTier } from './spill.js'

const who = (tier?: string) => ({ tier }) as unknown as Identity

describe('spill-over decision', () => {
  it('passes the TTFT bound first, then the queue bound; at the bound is not past it', () => {
    const sat = { ttftMs: 800, maxQueuePerEndpoint: 2 }
    expect(spillOf(sat, { ttftMs: 800, queuePerEndpoint: 2 })).toBeUndefined()
    expect(spillOf(sat, { ttftMs: 801.4, queuePerEndpoint: 5 })).toEqual({
      reason: 'predicted_ttft',
      detail: 'predicted time to first token 801 ms > 800 ms',
    })
    expect(spillOf(sat, { ttftMs: 10, queuePerEndpoint: 2.5 })).toEqual({
      reason: 'queue',
      detail: '2.5 requests waiting per endpoint > 2',
    })
    // A picker that does not predict TTFT: only the queue bound can apply.
    expect(spillOf({ ttftMs: 1 }, { queuePerEndpoint: 9 })).toBeUndefined()
    expect(spillOf(sat, undefined)).toBeUndefined()
  })

  it('spills every caller without tiers, else only the listed tiers', () => {
    expect(spillsTier({ ttftMs: 1 }, undefined)).toBe(true)
    expect(spillsTier({ ttftMs: 1, tiers: ['gold'] }, who('gold'))).toBe(true)
    expect(spillsTier({ ttftMs: 1, tiers: ['gold'] }, who('free'))).toBe(false)
    expect(spillsTier({ ttftMs: 1, tiers: ['gold'] }, who(undefined))).toBe(false)
    expect(spillsTier({ ttftMs: 1, tiers: ['gold'] }, undefined)).toBe(false)
  })

  it('is a 503 server_saturated with Retry-After when nothing else serves', () => {
    const e = saturatedError('ns/pool', { reason: 'queue', detail: 'x' })
    expect([e.status, e.code, e.headers['retry-after']]).toEqual([503, 'server_saturated', '1'])
  })
})
