// The seam the scheduler plugs into: given the chosen server, optionally admit the request (it may
// wait in a queue), then return endpoints in the order to try them (first is the target, the rest
// are fallbacks for retries). The model-aware scheduler (scheduler/) implements it; the
// round-robin below is the minimal picker for tests and benchmarks.

import type { RoutingSnapshot, SnapshotEndpoint, SnapshotServer } from '../api/snapshot.js'
import type { AbortLike } from './abort.js'
import type { Identity } from './filters/identity.js'
import type { SchedulerGaugeView, SchedulerObserver } from './metrics.js'
import type { AttemptFailure } from './proxy/forward.js'
import type { ResponseOutcome } from './proxy/respond.js'

export interface PickContext {
  readonly requestId: string
  readonly model: string
  readonly isLora: boolean
  readonly server: SnapshotServer
  /** The parsed request body (chat/completions/embeddings). */
  readonly body: Readonly<Record<string, unknown>>
  readonly header: (name: string) => string | undefined
  /** Present when the client asked for a decision explanation; the picker fills `text`. */
  readonly explain?: ExplainSink
  /** Who is calling (set when authentication is configured): tenant and tier for fairness. */
  readonly identity?: Identity
  /**
   * Endpoint ids (`address:port`) the pick must stay within: the Endpoint Picker protocol's
   * subset hint (epp/). Absent = every ready endpoint of the server.
   */
  readonly subset?: ReadonlySet<string>
}

/** Where a picker leaves a one-line summary of its decision (sent back as a response header). */
export interface ExplainSink {
  text?: string
}

/** A place held from admission until the request is over; `release` is idempotent. */
export interface Admission {
  release(): void
}

/** How one dispatch to one endpoint ended (each retry attempt is its own dispatch). */
export interface DispatchOutcome {
  /** HTTP status from the endpoint; 0 when no response arrived. */
  readonly status: number
  /**
   * Why the dispatch did not complete normally: `connect` (refused/reset/connect timeout),
   * `timeout` (headers/idle/total), `stream_cut` (upstream broke the body), `aborted` (client
   * left), `retry_status` (a 5xx/429 the proxy retried elsewhere), `protocol` (the endpoint spoke
   * malformed HTTP), `body_too_large` (its response passed the gateway's body or SSE-line cap).
   */
  readonly failure?:
    | 'connect'
    | 'timeout'
    | 'stream_cut'
    | 'aborted'
    | 'retry_status'
    | 'protocol'
    | 'body_too_large'
    | 'other'
  /** ms from dispatch to the first body byte (TTFT for streams). */
  readonly firstByteMs?: number
  /** ms from dispatch to the end of the response. */
  readonly durationMs: number
  readonly promptTokens?: number
  readonly completionTokens?: number
}

/**
 * A shadow request to send: the client's prompt with one output token to `endpoint`, the answer
 * read and dropped. `start` when it leaves (it counts in flight on the endpoint: the engine really
 * is busy with it; the picker records the prefix there) and call what it returns once when it has
 * ended. Never a client request: no health, latency or usage is learned from it.
 */
export interface ShadowPlan {
  readonly endpoint: SnapshotEndpoint
  start(): (ok: boolean) => void
}

/**
 * A re-warm (issue 9): a shadow of a prefix group's last kept prompt to the pod its group is
 * re-homed to, after the engine that held it died or restarted (scheduler/plugins/rewarm.ts).
 * `group` names the prompt to send (the key `rewarmGroup` returned when it was kept).
 */
export interface RewarmPlan extends ShadowPlan {
  readonly group: number
}

/** How loaded a server is for one request (spill-over, `fallback.on: [saturated]`). */
export interface Saturation {
  /** Lowest predicted time to first token (ms) over the healthy endpoints, when the picker predicts. */
  readonly ttftMs?: number
  /** Fewest requests waiting per healthy endpoint (engine queue plus the picker's own queue). */
  readonly queuePerEndpoint: number
}

export interface EndpointPicker {
  /** The server's load as this request would meet it; undefined: no healthy endpoint to judge. */
  saturation?(ctx: PickContext): Saturation | undefined
  /**
   * Admission before `pick`: `undefined` or an Admission = go ahead now; a promise = wait (e.g.
   * queued while the server is saturated); a GatewayError thrown or rejected = refuse (429/503
   * with Retry-After). The caller releases the Admission once the request has finished.
   * `signal` aborts when the client disconnects (a waiting request is then dropped).
   */
  admit?(ctx: PickContext, signal: AbortLike): Admission | Promise<Admission> | undefined
  /** Ordered candidates; empty when nothing is ready. */
  pick(ctx: PickContext): readonly SnapshotEndpoint[]
  /**
   * After `pick`: a shadow request the decision asks for (a warm copy of the prompt's prefix on a
   * second endpoint, see ShadowPlan), at most once per pick; undefined = none. Only a caller that
   * sends shadows asks (the proxy path, serve/shadow.ts; not the EPP, where Envoy sends).
   */
  shadow?(ctx: PickContext): ShadowPlan | undefined
  /**
   * After `pick`: the key of the request's prefix group when its prompt is worth keeping for a
   * re-warm (a warm group, not LoRA); undefined = do not keep it. Only a caller that sends
   * shadows asks, and keeps the prompt under this key (serve/rewarm.ts).
   */
  rewarmGroup?(ctx: PickContext): number | undefined
  /**
   * After `pick`: one re-warm of a group a dead or restarted engine held, among the groups the
   * caller `has` a kept prompt for; undefined = none now. Asked once per pick by callers that
   * send shadows (not the EPP).
   */
  rewarm?(server: SnapshotServer, has: (group: number) => boolean): RewarmPlan | undefined
  /** A request is being sent to `endpoint` (once per attempt). */
  onDispatch?(ctx: PickContext, endpoint: SnapshotEndpoint): void
  /** Exactly once per `onDispatch`: feeds in-flight counts, latency and health. */
  onComplete?(ctx: PickContext, endpoint: SnapshotEndpoint, outcome: DispatchOutcome): void
  /** A new snapshot went live (start/stop watching endpoints). */
  onSnapshot?(snapshot: RoutingSnapshot): void
  /**
   * True while the warm-up started by the first snapshot runs (the scheduler's
   * `--scheduler-warmup`): /readyz answers `warming` until then, so the first real requests meet
   * optimised code. Later snapshots warm new profiles while the process serves.
   */
  warming?(): boolean
  /** The picker's view of endpoints, served as JSON by GET /debug/endpoints. */
  debug?(): unknown
  /** Decision and health-transition metrics go to `o` (dataplane/metrics.ts). */
  observe?(o: SchedulerObserver): void
  /** Endpoint load, engine numbers and queues read when /metrics is scraped. */
  gauges?(): SchedulerGaugeView
  close?(): Promise<void>
}

/** Rotates the starting point per server; fallbacks follow in ring order. */
export class RoundRobinPicker implements EndpointPicker {
  private readonly next = new Map<string, number>()

  pick(ctx: PickContext): readonly SnapshotEndpoint[] {
    const ready = ctx.server.endpoints.filter((e) => e.ready)
    if (ready.length <= 1) return ready
    const start = (this.next.get(ctx.server.key) ?? 0) % ready.length
    this.next.set(ctx.server.key, start + 1)
    return [...ready.slice(start), ...ready.slice(0, start)]
  }
}

export function endpointId(e: SnapshotEndpoint): string {
  return `${e.address}:${e.port}`
}

/**
 * The picker's view of a finished response (times relative to the dispatch, not the request).
 * Assigned field by field: three conditional spreads here were a generic copy each, per request.
 */
export function dispatchOutcome(
  o: ResponseOutcome,
  dispatchedAt: number,
  startedAt: number,
): DispatchOutcome {
  const d: { -readonly [K in keyof DispatchOutcome]: DispatchOutcome[K] } = {
    status: o.status,
    durationMs: performance.now() - dispatchedAt,
  }
  if (o.error) d.failure = responseFailure(o.error)
  if (o.firstByteMs !== undefined) d.firstByteMs = o.firstByteMs - (dispatchedAt - startedAt)
  const u = o.usage
  if (u) {
    d.promptTokens = u.promptTokens
    d.completionTokens = u.completionTokens
  }
  return d
}

/**
 * ResponseOutcome.error → the picker's failure kind. Codes from a stream filter (the rate
 * limiter's `rate_limited`) are the gateway cutting the stream, like a client leaving: the engine
 * is not to blame.
 */
function responseFailure(error: string): NonNullable<DispatchOutcome['failure']> {
  switch (error) {
    case 'timeout':
      return 'timeout'
    case 'upstream_cut':
      return 'stream_cut'
    case 'protocol':
      return 'protocol'
    case 'body_too_large':
      return 'body_too_large'
    default:
      return 'aborted'
  }
}

const FAILURE_OF: Record<AttemptFailure['reason'], NonNullable<DispatchOutcome['failure']>> = {
  'connect-failure': 'connect',
  '5xx': 'retry_status',
  '429': 'retry_status',
  timeout: 'timeout',
  aborted: 'aborted',
  // The request may have reached the engine (or been refused for its size): no connect failure.
  reset: 'other',
  protocol: 'protocol',
  other: 'other',
}

/** The picker's name for why a proxy attempt failed. */
export function failureOf(
  reason: AttemptFailure['reason'],
): NonNullable<DispatchOutcome['failure']> {
  return FAILURE_OF[reason]
}
