// Token and request limits, reserve → settle. Before a request is proxied the limiter works out
// which counters apply (the route's Kthena-shaped limits; the caller's tier; the route × tier
// limits), what the request will cost (1 request, its input tokens counted now, its output tokens
// reserved from max_tokens or the policy's default) and takes that from every counter at once —
// or answers 429 with Retry-After and OpenAI's x-ratelimit-* headers. When the response is done
// it settles: the engine's `usage` replaces the estimate and the reservation, so limits count
// what was actually used. A stream that runs past its reservation reserves more as it goes, and
// is ended with an error event when the limit has no more room.

import { kthenaRateLimits } from '../../../api/policy-compile.js'
import type {
  LimitKey,
  LimitMetric,
  SnapshotLimit,
  SnapshotPolicy,
  SnapshotRateLimitConfig,
  SnapshotRoute,
} from '../../../api/snapshot.js'
import { GatewayError } from '../../errors.js'
import type { Logger } from '../../log.js'
import type { Usage } from '../../proxy/respond.js'
import { limitErrors } from '../errors.js'
import { type Identity, tierLabel } from '../identity.js'
import type { FilterMetrics } from '../metrics.js'
import {
  BackendUnavailableError,
  calendarWindow,
  type LimitOp,
  type OpState,
  type RateLimitBackend,
} from './backend.js'
import { SseLimitFilter } from './sse-filter.js'
import { inputTokens, outputReservation, type TokenCounters } from './tokens.js'

export type Api = 'chat' | 'completions' | 'embeddings'
type ScopeLabel = 'route' | 'tier' | 'route_tier'

interface Scope {
  readonly label: ScopeLabel
  /** Stable text naming whose counters these are, before per-caller parts are added. */
  readonly base: string
  readonly key: LimitKey | 'route'
  readonly tier?: string
  readonly limits: readonly SnapshotLimit[]
  readonly backend: RateLimitBackend
}

/** One counter of one request, with what is needed to describe it and settle it. */
interface Counter {
  readonly op: LimitOp
  readonly metric: LimitMetric
  readonly scope: Scope
  readonly limit: SnapshotLimit
  readonly backend: RateLimitBackend
}

export const DEFAULT_RATE_CONFIG: SnapshotRateLimitConfig = {
  backend: 'local',
  failureMode: 'open',
  outputReservation: { default: 1024, max: 32_768 },
  streamUsage: true,
  tokenizers: [],
}

const METRIC_KEY: Readonly<Record<LimitMetric, string>> = {
  requests: 'rq',
  inputTokens: 'in',
  outputTokens: 'out',
  tokens: 'tok',
}
const METRIC_TEXT: Readonly<Record<LimitMetric, string>> = {
  requests: 'requests',
  inputTokens: 'input tokens',
  outputTokens: 'output tokens',
  tokens: 'tokens',
}
const PERIOD_TEXT: Readonly<Record<number, string>> = {
  1000: 'second',
  60000: 'minute',
  3600000: 'hour',
  86400000: 'day',
  2592000000: '30 days',
}

/** OpenAI's reset format: `20ms`, `1s`, `6m0s`, `1h2m3s`. */
export function formatReset(ms: number): string {
  if (ms < 1000) return `${Math.max(0, Math.ceil(ms))}ms`
  let s = Math.ceil(ms / 100) / 10
  const h = Math.floor(s / 3600)
  s -= h * 3600
  const m = Math.floor(s / 60)
  s = Math.round((s - m * 60) * 10) / 10
  if (h > 0) return `${h}h${m}m${s}s`
  if (m > 0) return `${m}m${s}s`
  return `${s}s`
}

function costOf(metric: LimitMetric, input: number, output: number): number {
  switch (metric) {
    case 'requests':
      return 1
    case 'inputTokens':
      return input
    case 'outputTokens':
      return output
    case 'tokens':
      return input + output
  }
}

function scopeSuffix(scope: Scope, id: Identity): string {
  switch (scope.key) {
    case 'route':
      return ''
    case 'subject':
      return `|s|${id.subject}`
    case 'tenant':
      return `|t|${id.tenant}`
    case 'tier':
      return ''
  }
}

/** The x-ratelimit-* headers for the tightest request counter and the tightest token counter. */
export function rateLimitHeaders(
  counters: readonly { readonly metric: LimitMetric; readonly op: LimitOp }[],
  states: readonly (OpState | undefined)[],
): Record<string, string> {
  const h: Record<string, string> = {}
  const tightest = (tokens: boolean) => {
    let best: { c: (typeof counters)[number]; s: OpState } | undefined
    counters.forEach((c, i) => {
      const s = states[i]
      if (s === undefined || (c.metric === 'requests') === tokens) return
      if (best === undefined || s.remaining / c.op.limit < best.s.remaining / best.c.op.limit)
        best = { c, s }
    })
    return best
  }
  for (const [name, b] of [
    ['requests', tightest(false)],
    ['tokens', tightest(true)],
  ] as const) {
    if (b === undefined) continue
    h[`x-ratelimit-limit-${name}`] = String(b.c.op.limit)
    h[`x-ratelimit-remaining-${name}`] = String(Math.max(0, b.s.remaining))
    h[`x-ratelimit-reset-${name}`] = formatReset(b.s.resetMs)
  }
  return h
}

export interface AdmitRequest {
  readonly route: SnapshotRoute
  readonly identity: Identity
  readonly api: Api
  /** The model as the client named it (picks the tokenizer). */
  readonly model: string
  readonly body: Readonly<Record<string, unknown>>
}

export interface LimiterDeps {
  /** Backend for a Kthena route's own `global.redis.address`, or the policy's (undefined). */
  readonly backendFor: (address: string | undefined) => RateLimitBackend
  readonly tokenizers: TokenCounters
  readonly metrics: FilterMetrics
  readonly log: Logger
}

/** The limits of one snapshot; rebuilt on reload (counters live in the backends and survive). */
export class RateLimiter {
  private readonly config: SnapshotRateLimitConfig
  private readonly deps: LimiterDeps
  private readonly tiers: ReadonlyMap<string, SnapshotPolicy['tiers'][number]>
  private readonly prefix: string
  private readonly plans = new Map<string, readonly Scope[]>()

  constructor(policy: SnapshotPolicy | undefined, deps: LimiterDeps) {
    this.config = policy?.rateLimit ?? DEFAULT_RATE_CONFIG
    this.deps = deps
    this.tiers = new Map((policy?.tiers ?? []).map((t) => [t.name, t]))
    this.prefix = this.config.redis?.keyPrefix ?? 'igw'
  }

  /** Which scopes apply to a route for a tier (cached: the same few combinations repeat). */
  private scopes(route: SnapshotRoute, tier: string | undefined): readonly Scope[] {
    const cacheKey = `${route.key}\0${tier ?? ''}`
    let plan = this.plans.get(cacheKey)
    if (plan !== undefined) return plan
    const out: Scope[] = []
    if (route.rateLimit !== undefined) {
      const limits = kthenaRateLimits(route.rateLimit)
      if (limits.length > 0) {
        out.push({
          label: 'route',
          base: `r|${route.key}`,
          key: 'route',
          limits,
          backend: this.deps.backendFor(route.rateLimit.global?.redis?.address),
        })
      }
    }
    const t = tier === undefined ? undefined : this.tiers.get(tier)
    if (t !== undefined && t.limits.length > 0) {
      out.push({
        label: 'tier',
        base: `k|${t.name}`,
        key: t.key,
        tier: t.name,
        limits: t.limits,
        backend: this.deps.backendFor(undefined),
      })
    }
    const rt = tier === undefined ? undefined : route.tierLimits?.find((x) => x.tier === tier)
    if (rt !== undefined && rt.limits.length > 0) {
      out.push({
        label: 'route_tier',
        base: `rt|${route.key}|${rt.tier}`,
        key: rt.key,
        tier: rt.tier,
        limits: rt.limits,
        backend: this.deps.backendFor(undefined),
      })
    }
    plan = out
    if (this.plans.size < 10_000) this.plans.set(cacheKey, plan)
    return plan
  }

  /** True when some limit could apply to this route (cheap pre-check for the request path). */
  applies(route: SnapshotRoute, identity: Identity): boolean {
    return this.scopes(route, identity.tier).length > 0
  }

  /**
   * Reserves the request's cost. Resolves to the admission (undefined: no limit applies) or
   * throws the 429 / 503 GatewayError to answer with.
   */
  async admit(req: AdmitRequest): Promise<Admission | undefined> {
    const scopes = this.scopes(req.route, req.identity.tier)
    if (scopes.length === 0) return undefined
    const counter = this.deps.tokenizers.forModel(req.model)
    const input = inputTokens(req.api, req.body, counter)
    const output = outputReservation(req.api, req.body, this.config.outputReservation)
    const now = Date.now()
    const counters: Counter[] = []
    for (const scope of scopes) {
      // encodeURIComponent keeps `{` and `}` out of the hash tag whatever a subject contains.
      const tag = encodeURIComponent(scope.base + scopeSuffix(scope, req.identity))
      for (const limit of scope.limits) {
        const w = limit.calendar !== undefined ? calendarWindow(limit.calendar, now) : undefined
        counters.push({
          metric: limit.metric,
          scope,
          limit,
          backend: scope.backend,
          op: {
            key:
              w === undefined
                ? `${this.prefix}:{${tag}}:${METRIC_KEY[limit.metric]}:${limit.periodMs ?? 0}`
                : `${this.prefix}:{${tag}}:${METRIC_KEY[limit.metric]}:${w.id}`,
            tag,
            kind: w === undefined ? 'bucket' : 'window',
            limit: limit.amount,
            periodMs: limit.periodMs ?? 0,
            windowEndMs: w?.endMs ?? 0,
            cost: costOf(limit.metric, input, output),
          },
        })
      }
    }
    const tier = tierLabel(req.identity)
    const states = await this.reserve(counters, tier)
    const headers = states === undefined ? {} : rateLimitHeaders(counters, states)
    const stream = req.body['stream'] === true
    const so = req.body['stream_options']
    const clientWantsUsage =
      typeof so === 'object' &&
      so !== null &&
      (so as Record<string, unknown>)['include_usage'] === true
    this.deps.metrics.decision(tier, '', states === undefined ? 'fail_open' : 'allowed')
    return new Admission({
      limiter: this,
      counters,
      input,
      output,
      tier,
      headers,
      stream,
      injectUsage: stream && this.config.streamUsage && !clientWantsUsage,
      extendBy: Math.max(16, Math.min(256, this.config.outputReservation.default)),
    })
  }

  /** States of every counter (undefined: admitted without a check, fail-open), or throws. */
  async reserve(
    counters: readonly Counter[],
    tier: string,
  ): Promise<(OpState | undefined)[] | undefined> {
    const byBackend = new Map<RateLimitBackend, number[]>()
    counters.forEach((c, i) => {
      const list = byBackend.get(c.backend)
      if (list === undefined) byBackend.set(c.backend, [i])
      else list.push(i)
    })
    const calls = [...byBackend].map(async ([backend, idx]) => {
      const ops = idx.map((i) => counters[i]?.op).filter((o): o is LimitOp => o !== undefined)
      try {
        return { backend, idx, ops, result: await backend.reserve(ops) }
      } catch (e) {
        if (!(e instanceof BackendUnavailableError)) throw e
        this.deps.metrics.backendErrors.inc({ backend: backend.kind, op: 'reserve' })
        return { backend, idx, ops, result: undefined }
      }
    })
    const results = await Promise.all(calls)
    const states: (OpState | undefined)[] = new Array(counters.length)
    let denied = false
    let unavailable = false
    for (const r of results) {
      if (r.result === undefined) {
        unavailable = true
        continue
      }
      if (!r.result.allowed) denied = true
      r.idx.forEach((ci, j) => {
        states[ci] = r.result?.states[j]
      })
    }
    const undoAllowed = () => {
      for (const r of results)
        if (r.result?.allowed) r.backend.adjust(r.ops.map((o) => ({ ...o, cost: -o.cost })))
    }
    if (denied) {
      undoAllowed()
      throw this.deny(counters, states, tier)
    }
    if (unavailable) {
      if (this.config.failureMode === 'closed') {
        undoAllowed()
        this.deps.metrics.decision(tier, '', 'unavailable')
        throw limitErrors.unavailable()
      }
      // Fail open: admit, and charge the counters that could not be checked once the store is
      // back, so the usage still counts against the caller.
      for (const r of results) {
        if (r.result !== undefined) continue
        this.deps.metrics.failOpen.inc({ backend: r.backend.kind })
        r.backend.adjust(r.ops)
      }
      return undefined
    }
    return states
  }

  private deny(
    counters: readonly Counter[],
    states: readonly (OpState | undefined)[],
    tier: string,
  ): GatewayError {
    // The binding counter: one that can never fit, else the one that frees up last.
    let worst = -1
    counters.forEach((_, i) => {
      const s = states[i]
      if (s === undefined || s.retryMs === 0) return
      const w = worst < 0 ? undefined : states[worst]
      if (w === undefined || s.retryMs === -1 || (w.retryMs !== -1 && s.retryMs > w.retryMs))
        worst = i
    })
    const c = counters[worst]
    const s = states[worst]
    const headers = rateLimitHeaders(counters, states)
    if (c === undefined || s === undefined)
      return limitErrors.rateLimited('rate limit reached', headers)
    this.deps.metrics.decision(
      tier,
      c.scope.label,
      c.op.kind === 'window' ? 'budget_exhausted' : 'limited',
    )
    const who =
      c.scope.label === 'route'
        ? `model ${c.scope.base.slice(2)}`
        : c.scope.label === 'tier'
          ? `tier ${c.scope.tier ?? ''}`
          : `tier ${c.scope.tier ?? ''} on route ${c.scope.base.split('|')[1] ?? ''}`
    const what = METRIC_TEXT[c.metric]
    const available = Math.max(0, s.remaining)
    if (s.retryMs === -1) {
      headers['x-should-retry'] = 'false'
      return limitErrors.rateLimited(
        `Request too large for ${who}: it needs ${c.op.cost} ${what} but the limit is ${c.op.limit}${c.limit.periodMs !== undefined ? ` per ${PERIOD_TEXT[c.limit.periodMs] ?? `${c.limit.periodMs} ms`}` : ` per ${c.limit.calendar ?? ''}`}.`,
        headers,
      )
    }
    headers['retry-after'] = String(Math.max(1, Math.ceil(s.retryMs / 1000)))
    headers['retry-after-ms'] = String(Math.max(1, s.retryMs))
    if (c.op.kind === 'window') {
      return limitErrors.budgetExhausted(
        `The ${c.limit.calendar === 'month' ? 'monthly' : 'daily'} budget of ${c.op.limit} ${what} for ${who} is used up (${available} left, ${c.op.cost} needed); it resets in ${formatReset(s.retryMs)}.`,
        headers,
      )
    }
    return limitErrors.rateLimited(
      `Rate limit reached for ${who} on ${what} per ${PERIOD_TEXT[c.limit.periodMs ?? 0] ?? `${c.limit.periodMs} ms`}: limit ${c.op.limit}, available ${available}, requested ${c.op.cost}. Please retry in ${formatReset(s.retryMs)}.`,
      headers,
    )
  }

  adjust(counters: readonly { readonly op: LimitOp; readonly backend: RateLimitBackend }[]): void {
    const byBackend = new Map<RateLimitBackend, LimitOp[]>()
    for (const c of counters) {
      if (c.op.cost === 0) continue
      const l = byBackend.get(c.backend)
      if (l === undefined) byBackend.set(c.backend, [c.op])
      else l.push(c.op)
    }
    for (const [b, ops] of byBackend) b.adjust(ops)
  }

  get metrics(): FilterMetrics {
    return this.deps.metrics
  }

  get failureMode(): 'open' | 'closed' {
    return this.config.failureMode
  }
}

interface AdmissionInit {
  readonly limiter: RateLimiter
  readonly counters: readonly Counter[]
  readonly input: number
  readonly output: number
  readonly tier: string
  readonly headers: Record<string, string>
  readonly stream: boolean
  readonly injectUsage: boolean
  readonly extendBy: number
}

export interface SettleOutcome {
  /** HTTP status of the response; 0 when no response came. */
  readonly status: number
  readonly usage?: Usage
}

/** One admitted request's reservation, until it settles. */
export class Admission {
  private readonly init: AdmissionInit
  /** Response headers: OpenAI's x-ratelimit-*. */
  readonly headers: Readonly<Record<string, string>>
  /** Ask the engine for usage on this stream (the client did not). */
  readonly injectUsage: boolean
  readonly inputReserved: number
  private outputReserved: number
  private filter: SseLimitFilter | undefined
  private settled = false

  constructor(init: AdmissionInit) {
    this.init = init
    this.headers = init.headers
    this.injectUsage = init.injectUsage
    this.inputReserved = init.input
    this.outputReserved = init.output
  }

  get reservedOutput(): number {
    return this.outputReserved
  }

  /** The stream's filter (token counting, usage-chunk removal, budget cut); once per request. */
  streamFilter(): SseLimitFilter | undefined {
    if (!this.init.stream) return undefined
    const hasOutputLimit = this.init.counters.some(
      (c) => c.metric === 'outputTokens' || c.metric === 'tokens',
    )
    this.filter ??= new SseLimitFilter({
      stripUsageChunk: this.injectUsage,
      extendBy: this.init.extendBy,
      ...(hasOutputLimit ? { budget: this } : {}),
    })
    return this.filter
  }

  /** Reserve `n` more output tokens mid-stream. */
  async extend(n: number): Promise<boolean> {
    const counters = this.init.counters
      .filter((c) => c.metric === 'outputTokens' || c.metric === 'tokens')
      .map((c) => ({ ...c, op: { ...c.op, cost: n } }))
    try {
      const states = await this.init.limiter.reserve(counters, this.init.tier)
      // Fail open admitted it without a check; the charge is queued.
      void states
      this.outputReserved += n
      return true
    } catch (e) {
      if (!(e instanceof GatewayError)) throw e
      this.init.limiter.metrics.streamCuts.inc({ tier: this.init.tier })
      return false
    }
  }

  /** Replaces the reservation by what was used. Called once; later calls are ignored. */
  settle(o: SettleOutcome): void {
    if (this.settled) return
    this.settled = true
    let input: number
    let output: number
    if (o.usage !== undefined) {
      input = o.usage.promptTokens
      output = o.usage.completionTokens
    } else if (o.status === 0 || o.status >= 400) {
      // Nothing was generated (or the engine refused): give the tokens back. The request
      // itself still counts.
      input = 0
      output = 0
    } else if (this.filter !== undefined) {
      input = this.inputReserved
      output = this.filter.streamed
    } else {
      input = this.inputReserved
      output = this.outputReserved
    }
    const tier = this.init.tier
    const m = this.init.limiter.metrics
    if (input > 0) m.tierTokens.inc({ tier, type: 'input' }, input)
    if (output > 0) m.tierTokens.inc({ tier, type: 'output' }, output)
    const dIn = input - this.inputReserved
    const dOut = output - this.outputReserved
    this.init.limiter.adjust(
      this.init.counters.map((c) => ({
        backend: c.backend,
        op: {
          ...c.op,
          cost:
            c.metric === 'inputTokens'
              ? dIn
              : c.metric === 'outputTokens'
                ? dOut
                : c.metric === 'tokens'
                  ? dIn + dOut
                  : 0,
        },
      })),
    )
  }
}
