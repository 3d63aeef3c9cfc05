// Opaque OAuth2 access tokens, checked with the authorization server's RFC 7662 introspection
// endpoint (client_secret_basic). Answers are cached by the token's sha256 — never the token —
// and an active answer never outlives the token's `exp` nor the configured cache duration;
// inactive answers are remembered briefly so a bad token cannot make us call the server per
// request. Concurrent checks of one token share a single call.
import { LRUCache } from 'lru-cache'
import type { SnapshotIntrospection } from '../../../api/snapshot.js'
import type { Logger } from '../../log.js'
import { authErrors } from '../errors.js'
import type { Identity } from '../identity.js'
import { sha256Hex } from './api-keys.js'
import { identityFromClaims } from './claims.js'

type Answer =
  | { readonly active: true; readonly claims: Record<string, unknown> }
  | { readonly active: false }

export class Introspector {
  readonly config: SnapshotIntrospection
  private readonly authorization: string | undefined
  private readonly log: Logger
  private readonly cache = new LRUCache<string, Answer>({ max: 50_000 })
  private readonly inflight = new Map<string, Promise<Answer>>()
  /** Calls made to the endpoint (tests and metrics read it). */
  calls = 0

  constructor(config: SnapshotIntrospection, clientSecret: string | undefined, log: Logger) {
    this.config = config
    this.log = log
    // RFC 6749 §2.3.1: id and secret are form-urlencoded before base64.
    this.authorization =
      clientSecret === undefined
        ? undefined
        : `Basic ${Buffer.from(
            `${encodeURIComponent(config.clientId)}:${encodeURIComponent(clientSecret)}`,
          ).toString('base64')}`
  }

  /** Identity for an active token, or undefined when the server says it is not active. */
  async verify(
    token: string,
    tierOf: (t: string | undefined) => string | undefined,
  ): Promise<Identity | undefined> {
    const key = sha256Hex(token)
    let answer = this.cache.get(key)
    if (answer === undefined) {
      let p = this.inflight.get(key)
      if (p === undefined) {
        p = this.ask(token, key).finally(() => this.inflight.delete(key))
        this.inflight.set(key, p)
      }
      answer = await p
    }
    if (!answer.active) return undefined
    const exp = answer.claims['exp']
    if (typeof exp === 'number' && exp * 1000 <= Date.now()) return undefined
    const c = answer.claims
    const fallback =
      typeof c['client_id'] === 'string'
        ? c['client_id']
        : typeof c['username'] === 'string'
          ? c['username']
          : undefined
    return identityFromClaims('oauth2', this.config.name, c, this.config.claims, tierOf, fallback)
  }

  private async ask(token: string, key: string): Promise<Answer> {
    const c = this.config
    if (this.authorization === undefined) {
      throw authErrors.unavailable(`client secret of introspection provider ${c.name} is missing`)
    }
    let body: unknown
    this.calls++
    try {
      const res = await fetch(c.url, {
        method: 'POST',
        headers: {
          authorization: this.authorization,
          'content-type': 'application/x-www-form-urlencoded',
          accept: 'application/json',
        },
        body: new URLSearchParams({ token, token_type_hint: 'access_token' }).toString(),
        signal: AbortSignal.timeout(c.timeoutMs),
        redirect: 'error',
      })
      if (res.status !== 200) throw new Error(`HTTP ${res.status}`)
      body = await res.json()
    } catch (e) {
      this.log('error', 'token introspection failed', {
        provider: c.name,
        error: e instanceof Error ? e.message : String(e),
      })
      throw authErrors.unavailable(`token introspection (${c.name}) failed`)
    }
    const answer = this.judge(body)
    const now = Date.now()
    let ttl = c.negativeCacheMs
    if (answer.active) {
      const exp = answer.claims['exp']
      ttl = typeof exp === 'number' ? Math.min(c.cacheMs, exp * 1000 - now) : c.cacheMs
    }
    if (ttl > 0) this.cache.set(key, answer, { ttl })
    return answer
  }

  private judge(body: unknown): Answer {
    if (typeof body !== 'object' || body === null || Array.isArray(body)) return { active: false }
    const claims = body as Record<string, unknown>
    if (claims['active'] !== true) return { active: false }
    const c = this.config
    if (c.issuer !== undefined && claims['iss'] !== c.issuer) return { active: false }
    if (c.audiences !== undefined) {
      const aud = claims['aud']
      const list = Array.isArray(aud) ? aud : [aud]
      if (!list.some((a) => typeof a === 'string' && c.audiences?.includes(a)))
        return { active: false }
    }
    const nbf = claims['nbf']
    if (typeof nbf === 'number' && nbf * 1000 > Date.now()) return { active: false }
    return { active: true, claims }
  }
}
