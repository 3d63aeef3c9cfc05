import { describe, expect, it } from 'vitest'
import { TrustedHeaders } from './trusted-headers.js'

const headers = {
  subject: 'x-user-id',
  tenant: 'x-tenant-id',
  tier: 'x-tier',
  roles: 'x-user-roles',
}
const tierOf = (t: string | undefined) => (t === 'gold' ? t : undefined)
const h = (o: Record<string, string>) => (n: string) => o[n]

describe('TrustedHeaders', () => {
  it('trusts identity headers only from listed addresses (IPv4, mapped IPv4, IPv6)', () => {
    const t = new TrustedHeaders({ sourceAddresses: ['10.0.0.0/8', '::1'], headers }, undefined)
    const req = h({ 'x-user-id': 'u1', 'x-tier': 'gold', 'x-user-roles': 'a,b c' })
    expect(t.check(req, '10.1.2.3', tierOf)).toEqual({
      kind: 'identity',
      identity: {
        method: 'trusted-header',
        subject: 'header:u1',
        tenant: 'trusted-proxy',
        tier: 'gold',
        roles: ['a', 'b', 'c'],
        source: 'trusted-headers',
      },
    })
    expect(t.check(req, '::ffff:10.9.9.9', tierOf).kind).toBe('identity')
    expect(t.check(req, '::1', tierOf).kind).toBe('identity')
    expect(t.check(req, '11.0.0.1', tierOf).kind).toBe('untrusted')
    expect(t.check(req, undefined, tierOf).kind).toBe('untrusted')
    expect(t.check(h({}), '11.0.0.1', tierOf).kind).toBe('absent')
  })

  it('requires the shared secret when one is configured, and fails closed without its entry', () => {
    const cfg = {
      sourceAddresses: [],
      sharedSecret: { header: 'x-proxy-secret', secretKey: 's' },
      headers,
    }
    const t = new TrustedHeaders(cfg, 's3cret')
    expect(
      t.check(h({ 'x-user-id': 'u', 'x-proxy-secret': 's3cret' }), '1.2.3.4', tierOf).kind,
    ).toBe('identity')
    expect(
      t.check(h({ 'x-user-id': 'u', 'x-proxy-secret': 's3cre' }), '1.2.3.4', tierOf).kind,
    ).toBe('untrusted')
    expect(t.check(h({ 'x-user-id': 'u' }), '1.2.3.4', tierOf).kind).toBe('untrusted')
    const missing = new TrustedHeaders(cfg, undefined)
    expect(
      missing.check(h({ 'x-user-id': 'u', 'x-proxy-secret': '' }), '1.2.3.4', tierOf).kind,
    ).toBe('untrusted')
    expect(t.headerNames).toContain('x-proxy-secret')
  })

  it('does not invent a user from attributes alone', () => {
    const t = new TrustedHeaders({ sourceAddresses: ['127.0.0.1'], headers }, undefined)
    expect(t.check(h({ 'x-tier': 'gold' }), '127.0.0.1', tierOf).kind).toBe('absent')
  })
})
