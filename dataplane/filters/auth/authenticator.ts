// Who is calling: the policy's identity sources, tried in a fixed order.
// 1. Trusted headers, when the policy trusts a proxy and the request comes from it (otherwise the
//    headers are ignored and stripped).
// 2. The presented credential (`x-api-key`, else `Authorization: Bearer`): a configured API key
//    (by hash); else a JWT whose `iss` names a provider; else OAuth2 introspection.
// 3. No credential: the anonymous identity; whether that is enough is the route's decision.
// A credential that is presented but not accepted is a 401 even where anonymous access is allowed:
// a client that thinks it is authenticated must learn that it is not.
import { decodeJwt } from 'jose'
import type { SnapshotPolicy } from '../../../api/snapshot.js'
import type { Logger } from '../../log.js'
import { authErrors } from '../errors.js'
import type { Identity } from '../identity.js'
import type { SecretLookup } from '../secrets.js'
import { ApiKeyTable } from './api-keys.js'
import { looksLikeJwt, presentedCredential } from './credentials.js'
import { Introspector } from './introspection.js'
import type { JwtProvider } from './jwt.js'
import { TrustedHeaders } from './trusted-headers.js'

export interface AuthRequest {
  readonly header: (name: string) => string | undefined
  /** The TCP peer (for trusted-header sources). */
  readonly remoteAddress: string | undefined
}

export interface AuthenticatorDeps {
  readonly secrets: SecretLookup
  readonly log: Logger
  /** JWT providers are kept across reloads (their key caches): one per distinct config. */
  readonly jwtProvider: (cfg: SnapshotPolicy['authentication']['jwt'][number]) => JwtProvider
  /** Called when identity headers arrived from an untrusted source. */
  readonly onUntrustedHeaders?: () => void
}

export class Authenticator {
  private readonly policy: SnapshotPolicy
  private readonly deps: AuthenticatorDeps
  private readonly keys: ApiKeyTable
  private readonly jwtByIssuer: ReadonlyMap<string, JwtProvider>
  private readonly introspectors: readonly Introspector[]
  private readonly trusted: TrustedHeaders | undefined
  private readonly tiers: ReadonlySet<string>
  /** Some source accepts credentials from clients (keys, JWT, OAuth2). */
  readonly acceptsCredentials: boolean
  /** Some source can identify a caller at all. */
  readonly enabled: boolean
  /** Request headers that must not reach engines. */
  readonly stripHeaders: ReadonlySet<string>

  constructor(policy: SnapshotPolicy, deps: AuthenticatorDeps) {
    this.policy = policy
    this.deps = deps
    this.tiers = new Set(policy.tiers.map((t) => t.name))
    const a = policy.authentication
    this.keys = new ApiKeyTable(a.apiKeys, deps.secrets, this.tierOf)
    for (const p of this.keys.problems) {
      // Names only: the entry's content is never logged.
      deps.log('error', 'API key unusable', { key: p.key, entry: p.entry, problem: p.problem })
    }
    this.jwtByIssuer = new Map(a.jwt.map((j) => [j.issuer, deps.jwtProvider(j)]))
    this.introspectors = a.oauth2.map((o) => {
      const secret = deps.secrets.get(o.clientSecretKey)
      if (secret === undefined)
        deps.log('error', 'introspection client secret missing', {
          provider: o.name,
          entry: o.clientSecretKey,
        })
      return new Introspector(o, secret, deps.log)
    })
    if (a.trustedHeaders !== undefined) {
      const entry = a.trustedHeaders.sharedSecret?.secretKey
      const secret = entry === undefined ? undefined : deps.secrets.get(entry)
      if (entry !== undefined && secret === undefined)
        deps.log('error', 'trusted-proxy shared secret missing; trusting no proxy', { entry })
      this.trusted = new TrustedHeaders(a.trustedHeaders, secret)
    }
    this.acceptsCredentials = a.apiKeys.length > 0 || a.jwt.length > 0 || a.oauth2.length > 0
    this.enabled = this.acceptsCredentials || this.trusted !== undefined
    this.stripHeaders = new Set([
      ...(this.acceptsCredentials ? ['authorization', 'x-api-key'] : []),
      ...(this.trusted?.headerNames ?? []),
    ])
  }

  /** A tier the policy defines, else the policy's default tier. */
  readonly tierOf = (tier: string | undefined): string | undefined =>
    tier !== undefined && this.tiers.has(tier) ? tier : this.policy.defaultTier

  anonymous(remoteAddress: string | undefined): Identity {
    const tier = this.tierOf(this.policy.anonymous.tier)
    return {
      method: 'anonymous',
      // Per peer address, so subject-keyed limits throttle each anonymous client on its own.
      subject: `anonymous:${remoteAddress ?? 'unknown'}`,
      tenant: this.policy.anonymous.tenant,
      ...(tier !== undefined ? { tier } : {}),
      roles: [],
      source: 'anonymous',
    }
  }

  /** The caller's identity (anonymous when none was presented); throws a 401/503 GatewayError. */
  async authenticate(req: AuthRequest): Promise<Identity> {
    if (this.trusted !== undefined) {
      const r = this.trusted.check(req.header, req.remoteAddress, this.tierOf)
      if (r.kind === 'identity') return r.identity
      if (r.kind === 'untrusted') this.deps.onUntrustedHeaders?.()
    }
    // Without a credential source, an Authorization header is not ours (SDKs always send one).
    if (!this.acceptsCredentials) return this.anonymous(req.remoteAddress)
    const p = presentedCredential(req.header)
    if (p.kind === 'none') return this.anonymous(req.remoteAddress)
    if (p.kind === 'malformed') throw authErrors.malformedAuthorization()
    const token = p.value
    const key = this.keys.authenticate(token)
    if (key !== undefined) return key
    if (looksLikeJwt(token) && this.jwtByIssuer.size > 0) {
      let iss: unknown
      try {
        iss = decodeJwt(token).iss
      } catch {
        iss = undefined
      }
      const provider = typeof iss === 'string' ? this.jwtByIssuer.get(iss) : undefined
      if (provider !== undefined) return provider.verify(token, this.tierOf)
      if (this.introspectors.length === 0)
        throw authErrors.invalidToken('invalid_token', 'the token is not from a trusted issuer')
    }
    for (const i of this.introspectors) {
      const id = await i.verify(token, this.tierOf)
      if (id !== undefined) return id
    }
    if (looksLikeJwt(token))
      throw authErrors.invalidToken('invalid_token', 'the token is not from a trusted issuer')
    // Not a key we know, nor a token the authorization server calls active: to an OpenAI client
    // both are "a bad API key".
    throw authErrors.invalidApiKey()
  }
}
