import { describe, expect, it } from 'vitest'
import type { SnapshotPolicy } from '../../../api/snapshot.js'
import { memoryLogger } from '../../log.js'
import { staticSecrets } from '../secrets.js'
import { sha256Hex } from './api-keys.js'
import { Authenticator } from './authenticator.js'
import { JwtProvider } from './jwt.js'

function policy(auth: Partial<SnapshotPolicy['authentication']>): SnapshotPolicy {
  return {
    key: 'default/gw',
    authentication: { apiKeys: [], jwt: [], oauth2: [], ...auth },
    anonymous: { tenant: 'anon', tier: 'free' },
    defaultTier: 'free',
    tiers: [
      { name: 'free', key: 'subject', limits: [] },
      { name: 'gold', key: 'subject', limits: [] },
    ],
    rateLimit: {
      backend: 'local',
      failureMode: 'open',
      outputReservation: { default: 10, max: 100 },
      streamUsage: true,
      tokenizers: [],
    },
  }
}
const secrets = staticSecrets({ 'k.a': sha256Hex('key-a'), proxy: 'pp' })
const log = memoryLogger()
const deps = {
  secrets,
  log,
  jwtProvider: (c: SnapshotPolicy['authentication']['jwt'][number]) => new JwtProvider(c, log),
}
const req = (headers: Record<string, string>, remoteAddress = '10.0.0.9') => ({
  header: (n: string) => headers[n],
  remoteAddress,
})

describe('Authenticator', () => {
  const p = policy({
    apiKeys: [{ name: 'a', secretKey: 'k.a', tenant: 'ta', tier: 'platinum', roles: [] }],
    trustedHeaders: {
      sourceAddresses: ['10.0.0.1'],
      headers: {
        subject: 'x-user-id',
        tenant: 'x-tenant-id',
        tier: 'x-tier',
        roles: 'x-user-roles',
      },
    },
  })
  const a = new Authenticator(p, deps)

  it('identifies API keys; an unknown tier falls back to the default tier', async () => {
    expect(await a.authenticate(req({ authorization: 'Bearer key-a' }))).toMatchObject({
      subject: 'key:a',
      tier: 'free',
    })
  })

  it('gives callers without credentials the anonymous identity, per peer address', async () => {
    expect(await a.authenticate(req({}))).toMatchObject({
      method: 'anonymous',
      subject: 'anonymous:10.0.0.9',
      tenant: 'anon',
      tier: 'free',
    })
  })

  it('rejects bad and malformed credentials even when anonymous would do', async () => {
    await expect(a.authenticate(req({ authorization: 'Bearer nope' }))).rejects.toMatchObject({
      status: 401,
      code: 'invalid_api_key',
    })
    await expect(a.authenticate(req({ authorization: 'Basic x' }))).rejects.toMatchObject({
      code: 'invalid_authorization_header',
    })
    await expect(
      a.authenticate(req({ authorization: 'Bearer e30.e30.sig' })),
    ).rejects.toMatchObject({ code: 'invalid_token' })
  })

  it('prefers a trusted proxy identity and reports untrusted identity headers', async () => {
    let untrusted = 0
    const b = new Authenticator(p, { ...deps, onUntrustedHeaders: () => untrusted++ })
    expect(
      await b.authenticate(req({ 'x-user-id': 'u', 'x-tier': 'gold' }, '10.0.0.1')),
    ).toMatchObject({ subject: 'header:u', tier: 'gold' })
    expect(await b.authenticate(req({ 'x-user-id': 'u' }, '10.0.0.2'))).toMatchObject({
      method: 'anonymous',
    })
    expect(untrusted).toBe(1)
  })

  it('strips credentials and proxy headers before forwarding', () => {
    expect([...a.stripHeaders].sort()).toEqual([
      'authorization',
      'x-api-key',
      'x-tenant-id',
      'x-tier',
      'x-user-id',
      'x-user-roles',
    ])
  })

  it('ignores Authorization when no credential source is configured (SDKs always send one)', async () => {
    const c = new Authenticator(policy({}), deps)
    expect(c.enabled).toBe(false)
    expect(c.stripHeaders.size).toBe(0)
    expect(await c.authenticate(req({ authorization: 'Bearer sk-dummy' }))).toMatchObject({
      method: 'anonymous',
    })
  })
})
