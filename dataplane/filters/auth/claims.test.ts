import { describe, expect, it } from 'vitest'
import { claim, identityFromClaims, roleList } from './claims.js'

describe('claims', () => {
  it('finds claims by name first, then by dotted path', () => {
    const c = { 'https://x.test/tenant': 't1', org: { id: 'o1', deep: { v: 2 } } }
    expect(claim(c, 'https://x.test/tenant')).toBe('t1')
    expect(claim(c, 'org.id')).toBe('o1')
    expect(claim(c, 'org.deep.v')).toBe(2)
    expect(claim(c, 'org.nope.v')).toBeUndefined()
  })
  it('reads roles from arrays or space-separated strings', () => {
    expect(roleList(['a', 1, 'b'])).toEqual(['a', 'b'])
    expect(roleList('read  write')).toEqual(['read', 'write'])
    expect(roleList(undefined)).toEqual([])
  })
  it('maps claims to an identity; a tenant-less provider is its own tenant', () => {
    const tierOf = (t: string | undefined) => (t === 'gold' ? t : 'free')
    expect(
      identityFromClaims(
        'jwt',
        'idp',
        { sub: 'u', plan: 'gold', exp: 10, r: 'x y' },
        { subject: 'sub', tier: 'plan', roles: 'r' },
        tierOf,
      ),
    ).toEqual({
      method: 'jwt',
      subject: 'jwt:idp:u',
      tenant: 'idp',
      tier: 'gold',
      roles: ['x', 'y'],
      source: 'idp',
      expiresAt: 10_000,
    })
    expect(identityFromClaims('oauth2', 'as', {}, { subject: 'sub' }, tierOf)).toBeUndefined()
    expect(
      identityFromClaims('oauth2', 'as', {}, { subject: 'sub' }, tierOf, 'client-1')?.subject,
    ).toBe('oauth2:as:client-1')
  })
})
