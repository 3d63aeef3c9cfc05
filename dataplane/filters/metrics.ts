// Metrics of authentication and rate limiting, registered on the gateway's registry. Labels are
// bounded: tiers come from the policy (plus `none`), methods and results are fixed sets; never a
// user, key, tenant or token.
import { Counter, Gauge, Histogram, type Registry } from 'prom-client'
import {
  type BoundCounter,
  type BoundHistogram,
  bindCounter,
  bindHistogram,
} from '../metrics-bound.js'

export class FilterMetrics {
  readonly auth: Counter<'method' | 'result'>
  readonly untrustedHeaders: Counter
  readonly decisions: Counter<'tier' | 'scope' | 'result'>
  readonly backendErrors: Counter<'backend' | 'op'>
  readonly failOpen: Counter<'backend'>
  readonly pending: Gauge<'backend'>
  readonly tierRequests: Counter<'tier' | 'status_class'>
  readonly tierTokens: Counter<'tier' | 'type'>
  readonly streamCuts: Counter<'tier'>
  readonly duration: Histogram<'filter'>

  constructor(registry: Registry) {
    const registers = [registry]
    this.auth = new Counter({
      name: 'infer_gateway_auth_total',
      help: 'Authentication outcomes by method (api-key|jwt|oauth2|trusted-header|anonymous|none) and result.',
      labelNames: ['method', 'result'] as const,
      registers,
    })
    this.untrustedHeaders = new Counter({
      name: 'infer_gateway_auth_untrusted_identity_headers_total',
      help: 'Requests that carried identity headers from an untrusted source (ignored and stripped).',
      registers,
    })
    this.decisions = new Counter({
      name: 'infer_gateway_ratelimit_decisions_total',
      help: 'Rate-limit decisions by tier, limiting scope (route|tier|route_tier) and result.',
      labelNames: ['tier', 'scope', 'result'] as const,
      registers,
    })
    this.backendErrors = new Counter({
      name: 'infer_gateway_ratelimit_backend_errors_total',
      help: 'Failed calls to the rate-limit store, by backend and operation (reserve|adjust).',
      labelNames: ['backend', 'op'] as const,
      registers,
    })
    this.failOpen = new Counter({
      name: 'infer_gateway_ratelimit_fail_open_total',
      help: 'Requests admitted without a check because the store was unavailable (failureMode open).',
      labelNames: ['backend'] as const,
      registers,
    })
    this.pending = new Gauge({
      name: 'infer_gateway_ratelimit_pending_adjustments',
      help: 'Counter adjustments waiting for the store to come back.',
      labelNames: ['backend'] as const,
      registers,
    })
    this.tierRequests = new Counter({
      name: 'infer_gateway_tier_requests_total',
      help: 'Requests by caller tier and status class.',
      labelNames: ['tier', 'status_class'] as const,
      registers,
    })
    this.tierTokens = new Counter({
      name: 'infer_gateway_tier_tokens_total',
      help: 'Tokens charged to callers by tier and type (input|output), as settled.',
      labelNames: ['tier', 'type'] as const,
      registers,
    })
    this.streamCuts = new Counter({
      name: 'infer_gateway_ratelimit_stream_cuts_total',
      help: 'Streams ended with an error event because they ran past their token limit.',
      labelNames: ['tier'] as const,
      registers,
    })
    this.duration = new Histogram({
      name: 'infer_gateway_filter_duration_seconds',
      help: 'Time spent in the auth and ratelimit filters per request.',
      labelNames: ['filter'] as const,
      buckets: [
        0.00001, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1,
      ],
      registers,
    })
    this.authSeconds = bindHistogram(this.duration, { filter: 'auth' })
    this.ratelimitSeconds = bindHistogram(this.duration, { filter: 'ratelimit' })
  }

  // The request path's series, bound once (metrics-bound.ts): prom-client hashes a label object
  // on every labelled inc/observe, and an authenticated, rate-limited request made four or five.
  /** `duration{filter="auth"}`. */
  readonly authSeconds: BoundHistogram
  /** `duration{filter="ratelimit"}`. */
  readonly ratelimitSeconds: BoundHistogram
  readonly #auth = new Map<string, BoundCounter>()
  readonly #tierRequests = new Map<string, BoundCounter>()
  readonly #decisions = new Map<string, BoundCounter>()

  /** One authentication outcome (`auth{method, result}`). */
  authCounted(method: string, result: string): void {
    const key = `${method}\u0000${result}`
    let c = this.#auth.get(key)
    if (c === undefined) {
      c = bindCounter(this.auth, { method, result })
      this.#auth.set(key, c)
    }
    c.inc()
  }

  /** One finished request of a tier (`tier_requests{tier, status_class}`). */
  tierRequest(tier: string, statusClass: string): void {
    const key = `${tier}\u0000${statusClass}`
    let c = this.#tierRequests.get(key)
    if (c === undefined) {
      c = bindCounter(this.tierRequests, { tier, status_class: statusClass })
      this.#tierRequests.set(key, c)
    }
    c.inc()
  }

  /** One rate-limit decision (`decisions{tier, scope, result}`). */
  decision(tier: string, scope: string, result: string): void {
    const key = `${tier}\u0000${scope}\u0000${result}`
    let c = this.#decisions.get(key)
    if (c === undefined) {
      c = bindCounter(this.decisions, { tier, scope, result })
      this.#decisions.set(key, c)
    }
    c.inc()
  }
}
