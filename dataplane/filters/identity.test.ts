import { describe, expect, it } from 'vitest'
import { OPEN_IDENTITY, tierLabel } from './identity.js'

describe('identity', () => {
  it('labels metrics by tier only, `none` without one', () => {
    expect(tierLabel(undefined)).toBe('none')
    expect(tierLabel(OPEN_IDENTITY)).toBe('none')
    expect(tierLabel({ ...OPEN_IDENTITY, tier: 'gold' })).toBe('gold')
  })
})
