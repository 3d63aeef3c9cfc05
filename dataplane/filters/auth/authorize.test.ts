import { describe, expect, it } from 'vitest'
import type { Identity } from '../identity.js'
import { authorize } from './authorize.js'

const user: Identity = {
  method: 'jwt',
  subject: 'jwt:i:u',
  tenant: 't1',
  tier: 'gold',
  roles: ['dev'],
  source: 'i',
}
const anon: Identity = {
  method: 'anonymous',
  subject: 'anonymous:1.2.3.4',
  tenant: 'anonymous',
  roles: [],
  source: 'anonymous',
}

describe('authorize', () => {
  it('lets everyone through a route without rules', () => {
    expect(authorize(anon, undefined, 'm')).toBeUndefined()
    expect(authorize(user, undefined, 'm')).toBeUndefined()
  })
  it('answers 401 to anonymous callers unless the route allows them', () => {
    expect(authorize(anon, { allowAnonymous: false }, 'm')?.status).toBe(401)
    expect(authorize(anon, { allowAnonymous: true, tiers: ['gold'] }, 'm')).toBeUndefined()
  })
  it('answers 403 when tier, tenant or roles do not match', () => {
    expect(
      authorize(
        user,
        { allowAnonymous: false, tiers: ['gold'], tenants: ['t1'], roles: ['x', 'dev'] },
        'm',
      ),
    ).toBeUndefined()
    expect(authorize(user, { allowAnonymous: false, tiers: ['free'] }, 'm')?.status).toBe(403)
    expect(authorize(user, { allowAnonymous: false, tenants: ['t2'] }, 'm')?.status).toBe(403)
    const e = authorize(user, { allowAnonymous: false, roles: ['admin'] }, 'm')
    expect(e?.code).toBe('model_not_allowed')
    expect(e?.type).toBe('permission_error')
  })
  it("enforces an API key's model list everywhere", () => {
    const key: Identity = { ...user, method: 'api-key', models: new Set(['a']) }
    expect(authorize(key, undefined, 'a')).toBeUndefined()
    expect(authorize(key, undefined, 'b')?.status).toBe(403)
  })
})
