// JWT bearer tokens, verified with `jose` against a provider's keys: a JWKS URL (cached for
// `jwksCacheMs`; an unknown `kid` triggers a re-fetch at most once per `jwksCooldownMs`, so a
// flood of made-up kids cannot hammer the issuer), inline public keys, or the `jwks_uri` found
// through OIDC discovery. Checks: signature with an allow-listed asymmetric algorithm (so never
// `none`, and an HS256 token "signed" with an RSA public key finds no key to verify with),
// `iss` equal to the provider's, `aud` among its audiences, `exp` required, `nbf` and `iat`
// within the clock skew.
//
// Verified tokens are remembered by sha256 until they expire (at most 5 minutes), because a
// signature check costs far more than everything else on the request path.
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  type JSONWebKeySet,
  type JWTPayload,
  type JWTVerifyGetKey,
  jwtVerify,
} from 'jose'
import { LRUCache } from 'lru-cache'
import type { SnapshotJwtProvider } from '../../../api/snapshot.js'
import type { GatewayError } from '../../errors.js'
import type { Logger } from '../../log.js'
import { authErrors } from '../errors.js'
import type { Identity } from '../identity.js'
import { sha256Hex } from './api-keys.js'
import { identityFromClaims } from './claims.js'

const VERIFIED_CACHE_MAX_MS = 5 * 60_000

interface Verified {
  readonly payload: JWTPayload
}

export class JwtProvider {
  readonly config: SnapshotJwtProvider
  private readonly log: Logger
  private keys: JWTVerifyGetKey | undefined
  private discovering: Promise<JWTVerifyGetKey> | undefined
  private discoveryFailedAt = Number.NEGATIVE_INFINITY
  private readonly verified = new LRUCache<string, Verified>({ max: 10_000 })

  constructor(config: SnapshotJwtProvider, log: Logger) {
    this.config = config
    this.log = log
    if (config.jwksUri !== undefined) {
      this.keys = createRemoteJWKSet(new URL(config.jwksUri), {
        cacheMaxAge: config.jwksCacheMs,
        cooldownDuration: config.jwksCooldownMs,
        timeoutDuration: config.timeoutMs,
      })
    } else if (config.jwks !== undefined) {
      this.keys = createLocalJWKSet({ keys: config.jwks } as unknown as JSONWebKeySet)
    }
  }

  /** Verifies the token; throws a GatewayError (401, or 503 when keys cannot be fetched). */
  async verify(
    token: string,
    tierOf: (t: string | undefined) => string | undefined,
  ): Promise<Identity> {
    const now = Date.now()
    const digest = sha256Hex(token)
    let payload = this.verified.get(digest)?.payload
    if (payload === undefined) {
      payload = await this.verifyFresh(token, now)
      const exp = (payload.exp ?? 0) * 1000
      const ttl = Math.min(exp - now, VERIFIED_CACHE_MAX_MS)
      if (ttl > 0) this.verified.set(digest, { payload }, { ttl })
    } else if ((payload.exp ?? 0) * 1000 + this.config.clockSkewMs <= now) {
      throw authErrors.invalidToken('token_expired', 'the token has expired')
    }
    const id = identityFromClaims('jwt', this.config.name, payload, this.config.claims, tierOf)
    if (id === undefined) {
      throw authErrors.invalidToken(
        'invalid_token',
        `the token has no "${this.config.claims.subject}" claim`,
      )
    }
    return id
  }

  private async verifyFresh(token: string, now: number): Promise<JWTPayload> {
    const keys = await this.keySet()
    const c = this.config
    let payload: JWTPayload
    try {
      const r = await jwtVerify(token, keys, {
        issuer: c.issuer,
        audience: [...c.audiences],
        algorithms: [...c.algorithms],
        clockTolerance: c.clockSkewMs / 1000,
        requiredClaims: ['exp', 'iss', 'aud'],
        ...(c.maxTokenAgeMs !== undefined ? { maxTokenAge: c.maxTokenAgeMs / 1000 } : {}),
        currentDate: new Date(now),
      })
      payload = r.payload
    } catch (e) {
      throw jwtError(e)
    }
    // jose only checks `iat` against the clock when maxTokenAge is set; a token from the future
    // is as suspicious as one not yet valid.
    if (typeof payload.iat === 'number' && payload.iat * 1000 > now + c.clockSkewMs) {
      throw authErrors.invalidToken('token_not_yet_valid', 'the token was issued in the future')
    }
    return payload
  }

  private async keySet(): Promise<JWTVerifyGetKey> {
    if (this.keys !== undefined) return this.keys
    if (this.discovering === undefined) {
      // After a failed discovery, wait a cooldown before asking the issuer again.
      if (Date.now() - this.discoveryFailedAt < this.config.jwksCooldownMs)
        throw authErrors.unavailable(`OIDC discovery for ${this.config.name} failed recently`)
      this.discovering = this.discover().finally(() => {
        this.discovering = undefined
      })
    }
    return this.discovering
  }

  private async discover(): Promise<JWTVerifyGetKey> {
    const c = this.config
    const url = `${c.issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`
    try {
      const res = await fetch(url, {
        signal: AbortSignal.timeout(c.timeoutMs),
        redirect: 'error',
        headers: { accept: 'application/json' },
      })
      if (res.status !== 200) throw new Error(`HTTP ${res.status}`)
      const doc = (await res.json()) as { issuer?: unknown; jwks_uri?: unknown }
      // OIDC Discovery §4.3: the document must name the issuer it was fetched for.
      if (doc.issuer !== c.issuer) throw new Error('discovery document names another issuer')
      if (typeof doc.jwks_uri !== 'string' || !/^https?:\/\//.test(doc.jwks_uri))
        throw new Error('discovery document has no http(s) jwks_uri')
      this.keys = createRemoteJWKSet(new URL(doc.jwks_uri), {
        cacheMaxAge: c.jwksCacheMs,
        cooldownDuration: c.jwksCooldownMs,
        timeoutDuration: c.timeoutMs,
      })
      this.log('info', 'OIDC discovery done', { provider: c.name, jwks_uri: doc.jwks_uri })
      return this.keys
    } catch (e) {
      this.discoveryFailedAt = Date.now()
      this.log('error', 'OIDC discovery failed', {
        provider: c.name,
        error: e instanceof Error ? e.message : String(e),
      })
      throw authErrors.unavailable(`OIDC discovery for ${c.name} failed`)
    }
  }
}

/** jose's error codes → the 401 (or 503) the client gets. Messages never quote the token. */
export function jwtError(e: unknown): GatewayError {
  const code = typeof e === 'object' && e !== null && 'code' in e ? String(e.code) : ''
  const claimName =
    typeof e === 'object' && e !== null && 'claim' in e ? String(e.claim) : undefined
  switch (code) {
    case 'ERR_JWT_EXPIRED':
      return authErrors.invalidToken('token_expired', 'the token has expired')
    case 'ERR_JWT_CLAIM_VALIDATION_FAILED':
      if (claimName === 'nbf')
        return authErrors.invalidToken('token_not_yet_valid', 'the token is not valid yet')
      return authErrors.invalidToken(
        'invalid_token_claims',
        `the token's "${claimName ?? 'unknown'}" claim is missing or not accepted`,
      )
    case 'ERR_JOSE_ALG_NOT_ALLOWED':
      return authErrors.invalidToken('invalid_token', 'the token algorithm is not allowed')
    case 'ERR_JWKS_NO_MATCHING_KEY':
    case 'ERR_JWKS_MULTIPLE_MATCHING_KEYS':
      return authErrors.invalidToken('invalid_token', 'no key of the issuer matches the token')
    case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED':
      return authErrors.invalidToken('invalid_token', 'the token signature is invalid')
    case 'ERR_JWS_INVALID':
    case 'ERR_JWT_INVALID':
    case 'ERR_JOSE_NOT_SUPPORTED':
    case 'ERR_JWK_INVALID':
      return authErrors.invalidToken('invalid_token', 'the token is malformed')
    case 'ERR_JWKS_TIMEOUT':
      return authErrors.unavailable('the issuer keys could not be fetched in time')
    default:
      // Fetch failures and bad JWKS documents: the issuer is at fault, not the client.
      return authErrors.unavailable('the issuer keys could not be fetched')
  }
}
