import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { exportJWK, generateKeyPair, SignJWT } from 'jose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { SnapshotJwtProvider } from '../../../api/snapshot.js'
import { GatewayError } from '../../errors.js'
import { silentLogger } from '../../log.js'
import { JwtProvider, jwtError } from './jwt.js'

let server: Server
let url = ''
let fetches = 0
let status = 200
const keys: Record<string, unknown>[] = []
let priv: Awaited<ReturnType<typeof generateKeyPair>>['privateKey']

beforeAll(async () => {
  const pair = await generateKeyPair('ES256', { extractable: true })
  priv = pair.privateKey
  keys.push({ ...(await exportJWK(pair.publicKey)), kid: 'e1', alg: 'ES256' })
  server = createServer((_req, res) => {
    fetches++
    res.writeHead(status, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ keys }))
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks`
})
afterAll(() => new Promise<void>((r) => server.close(() => r())))

function provider(extra: Partial<SnapshotJwtProvider> = {}): JwtProvider {
  return new JwtProvider(
    {
      name: 'p',
      issuer: 'iss',
      audiences: ['aud'],
      jwksUri: url,
      algorithms: ['ES256'],
      clockSkewMs: 1000,
      claims: { subject: 'sub', tier: 'tier' },
      jwksCacheMs: 60_000,
      jwksCooldownMs: 60_000,
      timeoutMs: 1000,
      ...extra,
    },
    silentLogger,
  )
}
const tierOf = (t: string | undefined) => t
const now = () => Math.floor(Date.now() / 1000)
const sign = (claims: Record<string, unknown>, kid = 'e1') =>
  new SignJWT({ iss: 'iss', aud: 'aud', sub: 'u', exp: now() + 60, ...claims })
    .setProtectedHeader({ alg: 'ES256', kid })
    .sign(priv)

describe('JwtProvider', () => {
  it('verifies, maps claims, and remembers a verified token', async () => {
    const p = provider()
    const t = await sign({ tier: 'gold' })
    const before = fetches
    expect(await p.verify(t, tierOf)).toMatchObject({
      subject: 'jwt:p:u',
      tier: 'gold',
      tenant: 'p',
    })
    expect(await p.verify(t, tierOf)).toMatchObject({ subject: 'jwt:p:u' })
    expect(fetches - before).toBe(1)
  })

  it('honours the clock skew for exp', async () => {
    const p = provider({ clockSkewMs: 5000 })
    expect((await p.verify(await sign({ exp: now() - 2 }), tierOf)).subject).toBe('jwt:p:u')
    await expect(p.verify(await sign({ exp: now() - 30 }), tierOf)).rejects.toMatchObject({
      code: 'token_expired',
    })
  })

  it('does not re-fetch for unknown kids within the cooldown', async () => {
    const p = provider()
    await p.verify(await sign({}), tierOf)
    const before = fetches
    for (let i = 0; i < 3; i++)
      await expect(p.verify(await sign({}, `nope-${i}`), tierOf)).rejects.toMatchObject({
        status: 401,
      })
    expect(fetches).toBe(before)
  })

  it('answers 503 (not 401) when the issuer cannot serve its keys', async () => {
    status = 500
    try {
      await expect(provider().verify(await sign({}), tierOf)).rejects.toMatchObject({
        status: 503,
        code: 'authentication_unavailable',
      })
    } finally {
      status = 200
    }
  })

  it('works with inline keys, without any fetch', async () => {
    const before = fetches
    const p = new JwtProvider(
      {
        name: 'inline',
        issuer: 'iss',
        audiences: ['aud'],
        jwks: keys as never,
        algorithms: ['ES256'],
        clockSkewMs: 0,
        claims: { subject: 'sub' },
        jwksCacheMs: 0,
        jwksCooldownMs: 0,
        timeoutMs: 1000,
      },
      silentLogger,
    )
    expect((await p.verify(await sign({}), tierOf)).source).toBe('inline')
    expect(fetches).toBe(before)
  })

  it('maps every jose error to a stable code', () => {
    const e = (code: string, claim?: string) =>
      jwtError(Object.assign(new Error('x'), { code, claim }))
    expect(e('ERR_JWT_EXPIRED').code).toBe('token_expired')
    expect(e('ERR_JWT_CLAIM_VALIDATION_FAILED', 'nbf').code).toBe('token_not_yet_valid')
    expect(e('ERR_JWT_CLAIM_VALIDATION_FAILED', 'aud').code).toBe('invalid_token_claims')
    expect(e('ERR_JWS_SIGNATURE_VERIFICATION_FAILED').code).toBe('invalid_token')
    expect(e('ERR_JWKS_TIMEOUT').status).toBe(503)
    expect(jwtError(new TypeError('fetch failed'))).toBeInstanceOf(GatewayError)
  })
})
