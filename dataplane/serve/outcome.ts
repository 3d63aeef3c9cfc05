// What one inference request holds and how it ends. Created when the request arrives; every
// path out of it (an error before routing, a target's error, a finished body, an exception)
// goes through here, so the request's metrics, access-log line and rate-limit settlement are
// written exactly once, and what it holds (the in-flight gauge, the client-gone listener, the
// rate-limit reservation) is let go exactly once. A target's own holdings (fairness admission,
// deadline timer) are the target's: it lets go of them when it fails or its body ends.
import { type AccessLogEntry, type AccessLogger, discardLogger } from '../access-log.js'
import { clip, GatewayError } from '../errors.js'
import { type Identity, tierLabel } from '../filters/identity.js'
import type { GatewayMetrics, RequestSeries } from '../metrics.js'
import { estimateCost, type ProviderUsage } from '../providers/usage.js'
import type { StreamFilter, Usage } from '../proxy/respond.js'
import type { ChainDecision, RouteTarget } from '../router.js'
import type { RequestTrace } from '../telemetry/tracing.js'
import type { Spill } from './spill.js'

/** What serving needs of the rate limiter's admission (dataplane/filters). */
export interface Limits {
  readonly headers?: Readonly<Record<string, string>>
  settle(o: { readonly status: number; readonly usage?: Usage }): void
  streamFilter(): StreamFilter | undefined
}

/** A target left for the next one, and why (the access log's `fallbacks`). */
export interface Fallback {
  readonly target: string
  readonly reason: string
  readonly status: number
  readonly code: string
}

/** How a target's response ended. */
export interface Finished {
  readonly status: number
  /** Error code when the body did not complete ('' = it did). */
  readonly code: string
  readonly stream: boolean
  readonly bytes: number
  readonly firstByteMs?: number
  /** ms to the first generated token (see ResponseOutcome.firstTokenMs). */
  readonly firstTokenMs?: number
  readonly usage?: ProviderUsage
  readonly endpoint?: string
  /** Prefill/decode: the prefill pod of the pair that answered (`endpoint` is its decode pod). */
  readonly prefillEndpoint?: string
  readonly attempts?: number
  readonly headersMs?: number
  readonly errorMessage?: string
}

export interface OutcomeEnv {
  readonly metrics: GatewayMetrics
  readonly accessLog: AccessLogger
  /** Reports the final status to the filters (auth metrics). */
  readonly observe?: (identity: Identity | undefined, status: number) => void
}

/**
 * The client went away: no fault whose stack anyone reads, so none is captured. It is the reason
 * every upstream request of that client is aborted with, and Node formats the stack of the error a
 * stream is destroyed with (streams' destroy reads `err.stack`): with 5,000 streams dropped at once
 * (bench:proxy's slow streams leaving) capturing and formatting these stacks took about 7 % of the
 * gateway's busy time, in stalls of up to 0.8 s.
 */
export const clientClosed = (): GatewayError => {
  const limit = Error.stackTraceLimit
  Error.stackTraceLimit = 0
  try {
    return new GatewayError(499, 'client_closed', 'client closed the request')
  } finally {
    Error.stackTraceLimit = limit
  }
}

export function errorResponse(err: GatewayError, requestId?: string): Response {
  const headers: Record<string, string> = { 'content-type': 'application/json', ...err.headers }
  if (requestId) headers['x-request-id'] = requestId
  return new Response(JSON.stringify(err.toBody()), { status: err.status, headers })
}

export class Outcome {
  /** The model the client asked for, once the body is parsed. */
  model: string | undefined
  /** Metrics label for it: the model when the snapshot knows it, else "unknown". */
  modelLabel = 'unknown'
  identity: Identity | undefined
  limits: Limits | undefined
  decision: ChainDecision | undefined
  /** The target being tried (or that answered). */
  target: RouteTarget | undefined
  readonly tried: Fallback[] = []
  /** Set when a saturated self-hosted target handed the request on (spill-over). */
  spill: Spill | undefined
  /** The request's span when tracing is on and it is sampled (telemetry/tracing.ts). */
  trace: RequestTrace | undefined
  /** Runs once on release: the chain's client-gone listener. */
  onRelease: (() => void) | undefined
  #recorded = false
  #released = false
  readonly #env: OutcomeEnv
  readonly requestId: string
  readonly path: string
  readonly api: string
  /** performance.now() when the request arrived. */
  readonly startedAt: number

  constructor(env: OutcomeEnv, requestId: string, path: string, api: string, startedAt: number) {
    this.#env = env
    this.requestId = requestId
    this.path = path
    this.api = api
    this.startedAt = startedAt
    env.metrics.inflight.inc()
  }

  /** Released: the request is over (a streaming body that still runs has not released yet). */
  get released(): boolean {
    return this.#released
  }

  /**
   * Lets go of what the request holds (idempotent): in-flight gauge, admission, listeners, and
   * the rate-limit reservation (settled as "nothing generated" unless `finish` settled it).
   */
  release(): void {
    if (this.#released) return
    this.#released = true
    this.#env.metrics.inflight.dec()
    this.onRelease?.()
    this.limits?.settle({ status: 0 })
  }

  /** Ends the request with a gateway error: recorded (once), released, answered. */
  fail(err: GatewayError): Response {
    if (!this.#released) {
      // Nothing was generated: the reserved tokens go back (release settles with status 0).
      this.release()
    }
    if (this.#recorded) return errorResponse(err, this.requestId)
    this.#recorded = true
    this.#env.observe?.(this.identity, err.status)
    if (this.trace !== undefined) this.#endTrace(this.trace, err.status, err.code, undefined)
    const duration = performance.now() - this.startedAt
    const s = this.series()
    s.requests(err.status, err.code).inc()
    s.duration.observe(duration / 1000)
    if (this.#env.accessLog === discardLogger) return errorResponse(err, this.requestId)
    const entry = this.#entry(err.status, duration)
    entry.error_code = err.code
    this.#env.accessLog(entry)
    return errorResponse(err, this.requestId)
  }

  /** A target's response ended (fully, or cut): settle with its usage, record, release. */
  finish(f: Finished): void {
    const u = f.usage
    if (!this.#released) {
      // Settled with what was generated; release's own settle (status 0) then finds it settled.
      this.limits?.settle({
        status: f.status,
        ...(u
          ? { usage: { promptTokens: u.promptTokens, completionTokens: u.completionTokens } }
          : {}),
      })
      this.release()
    }
    if (this.#recorded) return
    this.#recorded = true
    this.#env.observe?.(this.identity, f.status)
    if (this.trace !== undefined) this.#endTrace(this.trace, f.status, f.code, f)
    const { metrics } = this.#env
    const duration = performance.now() - this.startedAt
    const s = this.series()
    s.requests(f.status, f.code).inc()
    s.duration.observe(duration / 1000)
    if (f.firstByteMs !== undefined) s.ttft.observe(f.firstByteMs / 1000)
    if (u) {
      s.inputTokens.inc(u.promptTokens)
      s.outputTokens.inc(u.completionTokens)
    }
    const t = this.target
    if (t !== undefined) this.#latency(t, f, duration)
    let cost: number | undefined
    let currency: string | undefined
    if (t?.kind === 'provider' && u) {
      const p = t.provider
      const labels = { provider: p.key, model: t.upstreamModel, tier: tierLabel(this.identity) }
      metrics.providerTokens.inc({ ...labels, type: 'input' }, u.promptTokens)
      metrics.providerTokens.inc({ ...labels, type: 'output' }, u.completionTokens)
      if (u.cachedPromptTokens)
        metrics.providerTokens.inc({ ...labels, type: 'cached_input' }, u.cachedPromptTokens)
      if (p.pricing) {
        cost = estimateCost(u, p.pricing)
        currency = p.pricing.currency
        metrics.providerCost.inc({ ...labels, currency }, cost)
      }
    }
    // Without an access log (--no-access-log) the line is not even built.
    if (this.#env.accessLog === discardLogger) return
    const entry = this.#entry(f.status, duration)
    if (f.endpoint !== undefined) entry.endpoint = f.endpoint
    if (f.prefillEndpoint !== undefined) entry['prefill_endpoint'] = f.prefillEndpoint
    if (f.attempts !== undefined) entry.attempts = f.attempts
    entry.stream = f.stream
    if (u) {
      entry.prompt_tokens = u.promptTokens
      entry.completion_tokens = u.completionTokens
    }
    if (u?.cachedPromptTokens) entry['cached_prompt_tokens'] = u.cachedPromptTokens
    if (cost !== undefined && currency !== undefined) {
      entry['cost'] = Math.round(cost * 1e9) / 1e9
      entry['currency'] = currency
    }
    if (f.firstByteMs !== undefined) entry.first_byte_ms = round(f.firstByteMs)
    if (f.headersMs !== undefined) entry.upstream_headers_ms = round(f.headersMs)
    entry.bytes = f.bytes
    if (f.errorMessage !== undefined) entry['error_message'] = f.errorMessage
    if (f.code !== '') entry.error_code = f.code
    this.#env.accessLog(entry)
  }

  /** The span's GenAI and routing attributes; fallbacks as events. Never the tenant. */
  #endTrace(tr: RequestTrace, status: number, code: string, f: Finished | undefined): void {
    if (this.model !== undefined) tr.model(clip(this.model), this.modelLabel !== 'unknown')
    const d = this.decision
    const t = this.target
    const u = f?.usage
    for (const fb of this.tried)
      tr.event('infer_gateway.fallback', {
        'infer_gateway.target': fb.target,
        'infer_gateway.fallback.reason': fb.reason,
        'http.response.status_code': fb.status,
        'error.type': fb.code,
      })
    const attrs: Record<string, string | number | boolean> = {
      'infer_gateway.request_id': this.requestId,
      'url.path': this.path,
    }
    if (d !== undefined) {
      attrs['infer_gateway.route'] = d.route.key
      attrs['infer_gateway.rule'] = d.rule.name
    }
    if (this.identity !== undefined) attrs['infer_gateway.tier'] = tierLabel(this.identity)
    if (t !== undefined) {
      attrs['gen_ai.response.model'] = t.upstreamModel
      if (t.kind === 'server') attrs['infer_gateway.target'] = `server:${t.server.key}`
      else {
        attrs['infer_gateway.target'] = `provider:${t.provider.key}`
        attrs['gen_ai.provider.name'] = t.provider.type
      }
    }
    if (f !== undefined) {
      attrs['infer_gateway.stream'] = f.stream
      if (f.endpoint !== undefined) {
        const colon = f.endpoint.lastIndexOf(':')
        attrs['server.address'] = f.endpoint.slice(0, colon)
        attrs['server.port'] = Number(f.endpoint.slice(colon + 1))
      }
      if (f.attempts !== undefined) attrs['infer_gateway.attempts'] = f.attempts
      const ttft = f.firstTokenMs ?? (t?.kind === 'provider' ? f.firstByteMs : undefined)
      if (ttft !== undefined) attrs['infer_gateway.time_to_first_token_ms'] = round(ttft)
    }
    if (u !== undefined) {
      attrs['gen_ai.usage.input_tokens'] = u.promptTokens
      attrs['gen_ai.usage.output_tokens'] = u.completionTokens
    }
    tr.end(status, attrs, code === '' ? undefined : code)
  }

  /** TTFT, TPOT and E2E by model, route and target. */
  #latency(t: RouteTarget, f: Finished, duration: number): void {
    const l = this.#env.metrics.latency(
      this.modelLabel,
      this.decision?.route.key ?? 'unknown',
      t.kind === 'server' ? `server:${t.server.key}` : `provider:${t.provider.key}`,
    )
    l.e2e.observe(duration / 1000)
    // A provider's first translated event is its first token (provider-target commits on it).
    const ttft = f.firstTokenMs ?? (t.kind === 'provider' ? f.firstByteMs : undefined)
    if (ttft === undefined || f.status >= 300) return
    l.ttft.observe(ttft / 1000)
    const out = f.usage?.completionTokens ?? 0
    if (f.stream && f.code === '' && out >= 2) l.tpot.observe((duration - ttft) / (out - 1) / 1000)
  }

  #series: RequestSeries | undefined
  private series(): RequestSeries {
    this.#series ??= this.#env.metrics.series(this.modelLabel, this.api)
    return this.#series
  }

  /**
   * The access-log line's common fields, then route, rule, caller and target (what it says about
   * where the request went). Assigned one by one in the line's order: the conditional object
   * spreads this was built with before took a generic copy per field group, and the line is
   * written for every request.
   */
  #entry(status: number, duration: number): MutableEntry {
    const e: MutableEntry = {
      time: new Date().toISOString(),
      request_id: this.requestId,
      method: 'POST',
      path: this.path,
      status,
      duration_ms: round(duration),
    }
    if (this.model !== undefined) e.model = clip(this.model)
    const d = this.decision
    const id = this.identity
    const t = this.target
    if (d !== undefined) {
      e.route = d.route.key
      e.rule = d.rule.name
    }
    if (id !== undefined) {
      e.auth = id.method
      e.subject = id.subject
      e.tenant = id.tenant
      if (id.tier) e.tier = id.tier
    }
    if (t !== undefined) {
      if (t.kind === 'server') {
        if (d !== undefined && !d.plain) e['target_kind'] = 'server'
        e.server = t.server.key
      } else {
        e['target_kind'] = 'provider'
        e['provider'] = t.provider.key
        e['provider_type'] = t.provider.type
      }
      e.upstream_model = t.upstreamModel
    }
    if (this.tried.length > 0) e['fallbacks'] = [...this.tried]
    if (this.spill !== undefined) {
      e['spilled'] = true
      e['spill_reason'] = this.spill.reason
      e['spill_detail'] = this.spill.detail
    }
    return e
  }
}

/** An access-log line being built (AccessLogEntry's fields writable, plus the others by name). */
type MutableEntry = { -readonly [K in keyof AccessLogEntry]: AccessLogEntry[K] } & Record<
  string,
  unknown
>

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000
}
