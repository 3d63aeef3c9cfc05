// The filters in front of routing: authentication (who is calling), authorization (may they call
// this model) and rate limits (may they call it now). One `Filters` lives as long as the data
// plane; each snapshot (and each change of the mounted secrets) builds a fresh runtime from the
// policy, while what must survive a reload survives: local counters, Redis connections, JWKS
// caches, loaded tokenizers.
import { createHash } from 'node:crypto'
import type { Registry } from 'prom-client'
import type {
  RoutingSnapshot,
  SnapshotAuthorization,
  SnapshotJwtProvider,
  SnapshotPolicy,
  SnapshotRoute,
} from '../../api/snapshot.js'
import { GatewayError } from '../errors.js'
import type { Logger } from '../log.js'
import { statusClass } from '../metrics.js'
import { Authenticator, type AuthRequest } from './auth/authenticator.js'
import { authorize } from './auth/authorize.js'
import { JwtProvider } from './auth/jwt.js'
import { authErrors } from './errors.js'
import { type Identity, OPEN_IDENTITY, tierLabel } from './identity.js'
import { FilterMetrics } from './metrics.js'
import type { RateLimitBackend } from './ratelimit/backend.js'
import { type Admission, type AdmitRequest, RateLimiter } from './ratelimit/limiter.js'
import { LocalBackend } from './ratelimit/local.js'
import { RedisBackend } from './ratelimit/redis.js'
import { TokenCounters } from './ratelimit/tokens.js'
import type { SecretLookup } from './secrets.js'

export type { AuthRequest } from './auth/authenticator.js'
export type { Identity } from './identity.js'
export type { Admission } from './ratelimit/limiter.js'

export interface FiltersOptions {
  readonly registry: Registry
  readonly log: Logger
  readonly secrets?: SecretLookup & { onChange?(cb: () => void): () => void }
  /** Where `local` counters live (default: this process; `--workers N`: the primary's). */
  readonly localBackend?: RateLimitBackend
}

const REQUIRE_IDENTITY: SnapshotAuthorization = { allowAnonymous: false }
const NO_SECRETS: SecretLookup = { get: () => undefined }

interface Runtime {
  readonly snapshot: RoutingSnapshot | undefined
  readonly authenticator: Authenticator | undefined
  readonly limiter: RateLimiter
  /** Route rule when the route has none of its own. */
  readonly defaultAuthorization: SnapshotAuthorization | undefined
  /** Some route admits anonymous callers (else a request without credentials fails early). */
  readonly anyAnonymous: boolean
  /** Anything to do at all. */
  readonly active: boolean
  readonly stripHeaders: ReadonlySet<string>
}

function authErrorResult(e: GatewayError): string {
  if (e.status === 503) return 'unavailable'
  if (e.code === 'missing_credentials') return 'missing'
  if (e.code === 'token_expired') return 'expired'
  if (e.code === 'token_not_yet_valid') return 'not_yet_valid'
  return 'invalid'
}

export class Filters {
  readonly metrics: FilterMetrics
  private readonly opts: FiltersOptions
  private readonly secrets: SecretLookup
  private readonly local: RateLimitBackend
  private readonly redis = new Map<string, RedisBackend>()
  private readonly jwt = new Map<string, JwtProvider>()
  private rt: Runtime
  private readonly unsubscribe: (() => void) | undefined

  constructor(opts: FiltersOptions) {
    this.opts = opts
    this.local = opts.localBackend ?? new LocalBackend()
    this.metrics = new FilterMetrics(opts.registry)
    this.secrets = opts.secrets ?? NO_SECRETS
    this.rt = this.build(undefined)
    this.unsubscribe = opts.secrets?.onChange?.(() => {
      this.opts.log('info', 'secrets changed; rebuilding authentication')
      this.rt = this.build(this.rt.snapshot)
    })
  }

  /** A new snapshot went live. */
  onSnapshot(snapshot: RoutingSnapshot): void {
    this.rt = this.build(snapshot)
  }

  get active(): boolean {
    return this.rt.active
  }

  /** Request headers never forwarded upstream (credentials, trusted identity headers). */
  get stripHeaders(): ReadonlySet<string> {
    return this.rt.stripHeaders
  }

  /** Who is calling (before the body is read). Throws the 401/503 to answer with. */
  async authenticate(req: AuthRequest): Promise<Identity> {
    const rt = this.rt
    const a = rt.authenticator
    if (a === undefined || !a.enabled) {
      this.metrics.authCounted('none', 'success')
      return a?.anonymous(req.remoteAddress) ?? OPEN_IDENTITY
    }
    const started = performance.now()
    try {
      const id = await a.authenticate(req)
      if (id.method === 'anonymous' && !rt.anyAnonymous) throw authErrors.missingCredentials()
      this.metrics.authCounted(id.method, 'success')
      return id
    } catch (e) {
      if (e instanceof GatewayError) this.metrics.authCounted('none', authErrorResult(e))
      throw e
    } finally {
      this.metrics.authSeconds.observe((performance.now() - started) / 1000)
    }
  }

  /** May the identity call the model on this route? Throws the 401/403 to answer with. */
  authorize(identity: Identity, route: SnapshotRoute, model: string): void {
    const rule = route.authorization ?? this.rt.defaultAuthorization
    const err = authorize(identity, rule, model)
    if (err === undefined) return
    this.metrics.authCounted(identity.method, err.status === 403 ? 'forbidden' : 'missing')
    throw err
  }

  /** Reserve the request against its limits; undefined when none apply. Throws 429/503. */
  async admit(req: AdmitRequest): Promise<Admission | undefined> {
    const limiter = this.rt.limiter
    if (!limiter.applies(req.route, req.identity)) return undefined
    const started = performance.now()
    try {
      return await limiter.admit(req)
    } finally {
      this.metrics.ratelimitSeconds.observe((performance.now() - started) / 1000)
    }
  }

  /** Counts the finished request by tier. */
  observe(identity: Identity | undefined, status: number): void {
    this.metrics.tierRequest(tierLabel(identity), statusClass(status))
  }

  /** The models this caller may see in /v1/models. */
  visible(identity: Identity, route: SnapshotRoute | undefined, model: string): boolean {
    if (route === undefined) return false
    return (
      authorize(identity, route.authorization ?? this.rt.defaultAuthorization, model) === undefined
    )
  }

  async close(): Promise<void> {
    this.unsubscribe?.()
    await this.local.close()
    await Promise.all([...this.redis.values()].map((b) => b.close()))
    this.redis.clear()
  }

  // ---------------------------------------------------------------------------------------------

  private build(snapshot: RoutingSnapshot | undefined): Runtime {
    const policy = snapshot?.policy
    const log = this.opts.log
    const usedJwt = new Set<string>()
    const authenticator =
      policy === undefined
        ? undefined
        : new Authenticator(policy, {
            secrets: this.secrets,
            log,
            jwtProvider: (cfg) => {
              const k = JSON.stringify(cfg)
              usedJwt.add(k)
              return this.jwtProvider(k, cfg)
            },
            onUntrustedHeaders: () => this.metrics.untrustedHeaders.inc(),
          })
    for (const k of this.jwt.keys()) if (!usedJwt.has(k)) this.jwt.delete(k)

    const usedRedis = new Set<string>()
    const tokenizers = new TokenCounters(policy?.rateLimit.tokenizers ?? [], log)
    const limiter = new RateLimiter(policy, {
      backendFor: (address) => {
        const b = this.backendFor(policy, address)
        if (b instanceof RedisBackend) usedRedis.add(this.redisKey(policy, address))
        return b
      },
      tokenizers,
      metrics: this.metrics,
      log,
    })
    const routes = snapshot?.routes ?? []
    // Resolve every route's plan now: opens the Redis connections it needs before traffic comes.
    const tiers = [undefined, ...(policy?.tiers ?? []).map((t) => t.name)]
    for (const r of routes)
      for (const t of tiers) limiter.applies(r, { ...OPEN_IDENTITY, ...(t ? { tier: t } : {}) })
    this.retireRedis(usedRedis)
    const models = new Set<string>()
    for (const r of routes) {
      if (r.modelName !== undefined) models.add(r.modelName)
      for (const l of r.loraAdapters) models.add(l)
    }
    tokenizers.warm(models)

    const defaultAuthorization =
      policy?.defaultAuthorization ?? (authenticator?.enabled ? REQUIRE_IDENTITY : undefined)
    const anyAnonymous =
      routes.length === 0 ||
      routes.some((r) => {
        const rule = r.authorization ?? defaultAuthorization
        return rule === undefined || rule.allowAnonymous
      })
    const active =
      authenticator?.enabled === true ||
      (policy?.tiers ?? []).some((t) => t.limits.length > 0) ||
      routes.some(
        (r) =>
          r.rateLimit !== undefined || r.authorization !== undefined || r.tierLimits !== undefined,
      )
    return {
      snapshot,
      authenticator,
      limiter,
      defaultAuthorization,
      anyAnonymous,
      active,
      stripHeaders: authenticator?.stripHeaders ?? new Set(),
    }
  }

  private jwtProvider(key: string, cfg: SnapshotJwtProvider): JwtProvider {
    let p = this.jwt.get(key)
    if (p === undefined) {
      p = new JwtProvider(cfg, this.opts.log)
      this.jwt.set(key, p)
    }
    return p
  }

  private redisKey(policy: SnapshotPolicy | undefined, address: string | undefined): string {
    const r = policy?.rateLimit.redis
    const password =
      r?.passwordSecretKey === undefined ? '' : (this.secrets.get(r.passwordSecretKey) ?? '')
    return [
      address ?? r?.address ?? '',
      address === undefined ? (r?.db ?? 0) : 0,
      address === undefined ? (r?.cluster ?? false) : false,
      r?.keyPrefix ?? 'igw',
      r?.timeoutMs ?? 100,
      createHash('sha256').update(password).digest('hex'),
    ].join('|')
  }

  private backendFor(
    policy: SnapshotPolicy | undefined,
    address: string | undefined,
  ): RateLimitBackend {
    const r = policy?.rateLimit.redis
    // A Kthena route's own Redis, else the policy's backend.
    if (address === undefined && (policy?.rateLimit.backend !== 'redis' || r === undefined))
      return this.local
    const key = this.redisKey(policy, address)
    let b = this.redis.get(key)
    if (b === undefined) {
      const password =
        r?.passwordSecretKey === undefined ? undefined : this.secrets.get(r.passwordSecretKey)
      b = new RedisBackend({
        address: address ?? r?.address ?? '',
        ...(password !== undefined && address === undefined ? { password } : {}),
        db: address === undefined ? (r?.db ?? 0) : 0,
        cluster: address === undefined ? (r?.cluster ?? false) : false,
        keyPrefix: r?.keyPrefix ?? 'igw',
        timeoutMs: r?.timeoutMs ?? 100,
        log: this.opts.log,
        onError: (op) => this.metrics.backendErrors.inc({ backend: 'redis', op }),
        onPending: (n) => this.metrics.pending.set({ backend: 'redis' }, n),
      })
      this.redis.set(key, b)
    }
    return b
  }

  /** Closes connections no route uses any more, after in-flight requests had time to settle. */
  private retireRedis(used: ReadonlySet<string>): void {
    for (const [k, b] of this.redis) {
      if (used.has(k)) continue
      this.redis.delete(k)
      setTimeout(() => void b.close(), 30_000).unref()
    }
  }

  /** The Redis backends in use (tests and benchmarks). */
  get redisBackends(): readonly RedisBackend[] {
    return [...this.redis.values()]
  }
}
