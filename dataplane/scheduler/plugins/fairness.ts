// fairness: admission control with per-tenant queues. While the server has room, requests pass
// straight through (and are still charged to their tenant). Once every endpoint is saturated,
// requests wait here, at the gateway, instead of in the engines' FIFO queues, and are released as
// capacity frees up in this order:
//
//   1. higher priority first (integer header, default 0; strict: a low band waits for higher ones);
//   2. within a band, the tenant with the smallest virtual token counter (VTC): each tenant's
//      counter grows by (inputTokenWeight·prompt + outputTokenWeight·output) / tenantWeight for
//      what it was served, so a heavy tenant cannot crowd out a light one and weights give shares;
//   3. ties (a tenant just lifted to the backlog's minimum): the shorter queue; within a tenant,
//      arrival order.
//
// A tenant that was idle is lifted to the smallest counter among the backlogged ones when it
// queues again (VTC's rule), so idling never banks credit for a later burst. The queue is bounded
// (429 `queue_full` / `tenant_queue_full` with Retry-After) and so is the wait (503
// `queue_timeout` with Retry-After). A server counts as saturated when its healthy endpoints have
// no free concurrency: each endpoint's limit is `maxInFlightPerEndpoint`, else the concurrency the
// engine was seen running while it also queued (its batch limit). Until a limit is known the
// plugin admits everything: the first engine queue teaches it the limit.
//
// Two details keep a light tenant's latency flat while a heavy one saturates the server:
// - `headroom` (5 % of the server's places, rounded down, at least one) is kept for tenants below
//   their share: a tenant takes a place in it only while it has fewer requests in flight than its
//   weighted share of the places (counted as if one more tenant were active, so that a tenant
//   alone leaves it free for the next to arrive), whether it comes without a backlog (straight
//   through) or from the queue (it then takes the next place that frees). A heavy tenant
//   therefore never fills it. (It did while it had no backlog at the moment: the light tenant's
//   next request found no room, queued, and could leave the queue only once the whole headroom
//   was free again: +23 % on the light tenant's TTFT p90 in bench:routing --quick's two-tenant
//   regime.) The headroom is idle capacity for the heavy tenant, which is why it is small: one
//   place covers a light tenant's arrivals between two completions, and more places cost the
//   heavy tenant queueing (two of 32 places: its TTFT p90 +37 % against +11 % with one);
// - admitted requests are placed only on endpoints below their limit (a filter that fails open),
//   so admission and placement agree and the engines do not queue behind the gateway's back.
//
// Identity comes from a configurable header for now; authentication will provide it later.

import { objectivePriority } from '../../../api/snapshot.js'
import type { AbortLike } from '../../abort.js'
import { GatewayError } from '../../errors.js'
import type { DispatchOutcome } from '../../picker.js'
import { intArg, numArg, numMapArg, strArg } from '../args.js'
import { keepMarked } from '../scores.js'
import type { EndpointState } from '../state.js'
import type { Admission, Plugin, PluginArgs, PluginEnv, SchedRequest } from '../types.js'

export const ANONYMOUS_TENANT = 'anonymous'

/** Free places (net of promised ones), the headroom kept among them, and all places. */
interface Room {
  readonly free: number
  readonly headroom: number
  readonly total: number
}
const UNBOUNDED: Room = { free: Number.POSITIVE_INFINITY, headroom: 0, total: 0 }

interface Tenant {
  readonly name: string
  readonly weight: number
  vtc: number
  readonly queue: Waiter[]
  /** Admitted and not yet released. */
  inflight: number
}

interface Waiter {
  readonly tenant: Tenant
  readonly priority: number
  readonly cost: number
  readonly seq: number
  readonly grant: () => void
  readonly cleanup: () => void
}

/** The place a request holds from admission until it ends. */
interface Place extends Admission {
  readonly tenant: Tenant
  readonly charged: number
  dispatched: boolean
  released: boolean
}

export function admissionError(
  status: 429 | 503,
  code: 'queue_full' | 'tenant_queue_full' | 'queue_timeout',
  message: string,
  retryAfterSec: number,
): GatewayError {
  return new GatewayError(status, code, message, {
    headers: { 'retry-after': String(Math.max(1, Math.ceil(retryAfterSec))) },
  })
}

/**
 * Release order: priority, then the smaller virtual counter, then the shorter queue (a tenant just
 * lifted to the backlog's minimum ties with it; the one asking for less goes first), then arrival.
 */
function before(a: Waiter, b: Waiter): boolean {
  if (a.priority !== b.priority) return a.priority > b.priority
  if (a.tenant.vtc !== b.tenant.vtc) return a.tenant.vtc < b.tenant.vtc
  if (a.tenant.queue.length !== b.tenant.queue.length) {
    return a.tenant.queue.length < b.tenant.queue.length
  }
  return a.seq < b.seq
}

export class FairnessPlugin implements Plugin {
  readonly name = 'fairness'
  readonly tenantHeader: string
  readonly priorityHeader: string
  readonly inputWeight: number
  readonly outputWeight: number
  readonly maxQueue: number
  readonly maxQueuePerTenant: number
  readonly queueTimeoutMs: number
  readonly maxInFlightPerEndpoint: number
  /** Fraction of the server's concurrency kept free of backlogged tenants. */
  readonly headroom: number
  readonly #weights: ReadonlyMap<string, number>
  readonly #tenants = new Map<string, Tenant>()
  readonly #env: PluginEnv
  #queued = 0
  /** Sum of the weights of the tenants with requests in flight or queued. */
  #activeWeight = 0
  /** Admitted but not yet dispatched: capacity promised but not yet visible in endpoint state. */
  #reserved = 0
  #seq = 0
  #eps: () => readonly EndpointState[] = () => []
  /** filter's kept-or-not per candidate, read only within the call (keepMarked). */
  #marks = new Uint8Array(64)
  #timer: NodeJS.Timeout | undefined
  admittedTotal = 0
  queuedTotal = 0
  rejectedTotal = 0

  constructor(args: PluginArgs, env: PluginEnv) {
    this.tenantHeader = strArg(args, 'tenantHeader', 'x-tenant-id').toLowerCase()
    this.priorityHeader = strArg(args, 'priorityHeader', 'x-priority').toLowerCase()
    this.inputWeight = numArg(args, 'inputTokenWeight', 1, 0, 1000)
    this.outputWeight = numArg(args, 'outputTokenWeight', 2, 0, 1000)
    this.maxQueue = intArg(args, 'maxQueue', 1000, 1, 1_000_000)
    this.maxQueuePerTenant = intArg(args, 'maxQueuePerTenant', 256, 1, 1_000_000)
    this.queueTimeoutMs = numArg(args, 'queueTimeoutMs', 30_000, 1, 3_600_000)
    this.maxInFlightPerEndpoint = intArg(args, 'maxInFlightPerEndpoint', 0, 0, 1_000_000)
    this.headroom = numArg(args, 'headroom', 0.05, 0, 0.5)
    this.#weights = numMapArg(args, 'tenantWeights')
    this.#env = env
  }

  get queued(): number {
    return this.#queued
  }

  tenantOf(req: SchedRequest): string {
    const t = req.ctx.header(this.tenantHeader)
    return t === undefined || t === '' ? ANONYMOUS_TENANT : t
  }

  priorityOf(req: SchedRequest): number {
    // An InferencePool request naming an InferenceObjective gets the objective's priority (GAIE).
    const objective = objectivePriority(req.ctx.server, req.ctx.header)
    if (objective !== undefined) return Math.max(-1000, Math.min(1000, objective))
    const p = Number(req.ctx.header(this.priorityHeader))
    return Number.isInteger(p) ? Math.max(-1000, Math.min(1000, p)) : 0
  }

  /** A tenant's virtual token counter (tests, debug). */
  counter(tenant: string): number {
    return this.#tenants.get(tenant)?.vtc ?? 0
  }

  admit(
    req: SchedRequest,
    eps: () => readonly EndpointState[],
    signal: AbortLike,
  ): Admission | Promise<Admission> {
    this.#eps = eps
    const tenant = this.#tenant(this.tenantOf(req))
    const cost =
      this.inputWeight * req.ticket.promptTokens + this.outputWeight * req.ticket.outputTokens
    // A tenant with no backlog goes straight through while there is room, the headroom included
    // if it is below its share: the headroom exists for exactly these requests, and it is what
    // keeps a light tenant's latency flat while a heavy one saturates the server. (A tenant whose
    // requests start to queue is backlogged from then on and waits its turn like everyone else.)
    if (tenant.queue.length === 0 && this.#mayTake(tenant, this.#room(req.now))) {
      return this.#grant(req, tenant, cost)
    }
    if (this.#queued >= this.maxQueue) {
      this.rejectedTotal++
      throw admissionError(
        429,
        'queue_full',
        'the model server is saturated and its queue is full',
        1,
      )
    }
    if (tenant.queue.length >= this.maxQueuePerTenant) {
      this.rejectedTotal++
      throw admissionError(
        429,
        'tenant_queue_full',
        `too many queued requests for tenant "${tenant.name}"`,
        1,
      )
    }
    if (tenant.queue.length === 0 && this.#queued > 0) {
      // An idle tenant is lifted to the backlog's minimum (VTC). One with requests in flight keeps
      // up to one server-full of the lead it earned by asking for less than the backlog while it
      // was being served: lifted to the minimum on every queueing, a light tenant that a burst
      // made queue (an engine slower than its limit, the limit still being learned) only
      // alternated with the heavy backlog, one for one.
      const min = this.#minBackloggedVtc()
      const lead = tenant.inflight > 0 ? (this.#room(req.now).total * cost) / tenant.weight : 0
      tenant.vtc = Math.max(tenant.vtc, min - lead)
    }
    this.queuedTotal++
    return new Promise<Admission>((resolve, reject) => {
      const onAbort = (): void => {
        remove()
        reject(new GatewayError(499, 'client_closed', 'client closed the request while queued'))
      }
      const timer = setTimeout(() => {
        remove()
        this.rejectedTotal++
        reject(
          admissionError(
            503,
            'queue_timeout',
            `no capacity within ${Math.round(this.queueTimeoutMs)} ms`,
            this.queueTimeoutMs / 1000,
          ),
        )
      }, this.queueTimeoutMs)
      const cleanup = (): void => {
        clearTimeout(timer)
        signal.removeEventListener('abort', onAbort)
      }
      const waiter: Waiter = {
        tenant,
        priority: this.priorityOf(req),
        cost,
        seq: this.#seq++,
        grant: () => {
          cleanup()
          resolve(this.#grant(req, tenant, cost))
        },
        cleanup,
      }
      const remove = (): void => {
        cleanup()
        const i = tenant.queue.indexOf(waiter)
        if (i >= 0) {
          tenant.queue.splice(i, 1)
          this.#queued--
          this.#settle(tenant)
        }
      }
      if (signal.aborted) {
        onAbort()
        return
      }
      signal.addEventListener('abort', onAbort, { once: true })
      this.#activate(tenant)
      tenant.queue.push(waiter)
      this.#queued++
      this.#arm()
      this.pump()
    })
  }

  /** Place admitted requests where there is room, so the engines do not queue them. */
  filter(req: SchedRequest, eps: readonly EndpointState[]): readonly EndpointState[] {
    const pooled = pooledLimit(eps)
    const n = eps.length
    if (this.#marks.length < n) this.#marks = new Uint8Array(Math.max(n, this.#marks.length * 2))
    const marks = this.#marks
    let kept = 0
    for (let i = 0; i < n; i++) {
      const e = eps[i] as EndpointState
      const limit = this.limitOf(e, pooled)
      const keep = limit === 0 || e.pending(req.now) < limit
      marks[i] = keep ? 1 : 0
      if (keep) kept++
    }
    return keepMarked(eps, marks, kept)
  }

  onDispatch(req: SchedRequest): void {
    const place = req.scratch.get(this) as Place | undefined
    if (place !== undefined && !place.dispatched) {
      place.dispatched = true
      this.#reserved--
    }
  }

  onComplete(req: SchedRequest, _ep: EndpointState, o: DispatchOutcome): void {
    const place = req.scratch.get(this) as Place | undefined
    if (place !== undefined && o.promptTokens !== undefined) {
      // Settle the estimate against what was actually served.
      const actual =
        this.inputWeight * o.promptTokens + this.outputWeight * (o.completionTokens ?? 0)
      place.tenant.vtc += (actual - place.charged) / place.tenant.weight
      ;(place as { charged: number }).charged = actual
    }
    this.pump()
  }

  /** Release queued requests while there is room. */
  pump(): void {
    while (this.#queued > 0) {
      const room = this.#room(this.#env.now())
      if (room.free <= 0) break
      let w = this.#next()
      // Inside the headroom only tenants below their share are released (the light tenant that
      // queued behind a burst takes the next free place; the heavy backlog waits for more), and
      // not ahead of a higher priority band.
      if (
        w !== undefined &&
        room.free <= room.headroom &&
        !this.#belowShare(w.tenant, room.total)
      ) {
        const below = this.#next(room.total)
        w = below !== undefined && below.priority >= w.priority ? below : undefined
      }
      if (w === undefined) break
      // Granted before it leaves the queue, so the tenant stays active throughout (#activate).
      w.grant()
      w.tenant.queue.shift()
      this.#queued--
    }
    if (this.#queued === 0 && this.#timer !== undefined) {
      clearInterval(this.#timer)
      this.#timer = undefined
    }
  }

  close(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer)
    this.#timer = undefined
  }

  debug(): Record<string, unknown> {
    const tenants: Record<string, { vtc: number; queued: number }> = {}
    for (const t of this.#tenants.values()) {
      tenants[t.name] = { vtc: Math.round(t.vtc), queued: t.queue.length }
    }
    return {
      queued: this.#queued,
      reserved: this.#reserved,
      admitted: this.admittedTotal,
      queuedTotal: this.queuedTotal,
      rejected: this.rejectedTotal,
      tenants,
    }
  }

  #grant(req: SchedRequest, tenant: Tenant, cost: number): Admission {
    tenant.vtc += cost / tenant.weight
    this.#activate(tenant)
    tenant.inflight++
    this.#reserved++
    this.admittedTotal++
    const place: Place = {
      tenant,
      charged: cost,
      dispatched: false,
      released: false,
      release: () => {
        if (place.released) return
        place.released = true
        tenant.inflight--
        this.#settle(tenant)
        if (!place.dispatched) {
          place.dispatched = true
          this.#reserved--
        }
        this.pump()
      },
    }
    req.scratch.set(this, place)
    return place
  }

  /**
   * Concurrency limit of `e`: configured, else learned from the engine, else `pooled` (the limit
   * learned on another endpoint of the server: replicas of one model server share their batch
   * limit, as predicted-latency assumes too, and until each had queued once the others admitted
   * without bound); 0 = unknown.
   */
  limitOf(e: EndpointState, pooled = 0): number {
    if (this.maxInFlightPerEndpoint > 0) return this.maxInFlightPerEndpoint
    return e.learnedCapacity > 0 ? e.learnedCapacity : pooled
  }

  /**
   * Free concurrency on the healthy endpoints net of promised places, the headroom kept for
   * tenants below their share, and all places. Infinite while any healthy endpoint's limit is
   * unknown (nothing to protect yet; the engine's own queue will reveal it) or when no endpoint
   * is healthy (the request goes through to be answered, or retried, by the proxy).
   */
  #room(now: number): Room {
    let free = 0
    let total = 0
    let healthy = 0
    const eps = this.#eps()
    const pooled = pooledLimit(eps)
    for (const e of eps) {
      if (e.isEjected(now)) continue
      healthy++
      const limit = this.limitOf(e, pooled)
      if (limit === 0) return UNBOUNDED
      total += limit
      free += Math.max(0, limit - e.pending(now))
    }
    if (healthy === 0) return UNBOUNDED
    const headroom = this.headroom > 0 ? Math.max(1, Math.floor(total * this.headroom)) : 0
    return { free: free - this.#reserved, headroom, total }
  }

  /** Whether `t` may take a free place now: above the headroom anyone, inside it if below share. */
  #mayTake(t: Tenant, room: Room): boolean {
    if (room.free <= 0) return false
    return room.free > room.headroom || this.#belowShare(t, room.total)
  }

  /**
   * Fewer requests in flight than the tenant's weighted share of `total` places among the active
   * tenants (`t` included) and one more of weight 1: a tenant alone does not take the headroom,
   * so the first request of the next tenant to arrive finds room.
   */
  #belowShare(t: Tenant, total: number): boolean {
    const active =
      t.inflight > 0 || t.queue.length > 0 ? this.#activeWeight : this.#activeWeight + t.weight
    return t.inflight < (total * t.weight) / (active + 1)
  }

  /** The next waiter to release; with `total`, only among tenants below their share of it. */
  #next(total?: number): Waiter | undefined {
    let best: Waiter | undefined
    for (const t of this.#tenants.values()) {
      const w = t.queue[0]
      if (w === undefined || (total !== undefined && !this.#belowShare(t, total))) continue
      if (best === undefined || before(w, best)) best = w
    }
    return best
  }

  /** `t` is about to have a request in flight or queued: count its weight if it had none. */
  #activate(t: Tenant): void {
    if (t.inflight === 0 && t.queue.length === 0) this.#activeWeight += t.weight
  }

  /** `t` may just have lost its last request in flight or queued. */
  #settle(t: Tenant): void {
    if (t.inflight === 0 && t.queue.length === 0) this.#activeWeight -= t.weight
  }

  /** Smallest counter among tenants with queued requests; +∞ when nobody is queued. */
  #minBackloggedVtc(): number {
    let min = Number.POSITIVE_INFINITY
    for (const t of this.#tenants.values()) {
      if (t.queue.length > 0 && t.vtc < min) min = t.vtc
    }
    return min
  }

  #tenant(name: string): Tenant {
    let t = this.#tenants.get(name)
    if (t === undefined) {
      if (this.#tenants.size >= 10_000) this.#pruneIdle()
      t = { name, weight: this.#weights.get(name) ?? 1, vtc: 0, queue: [], inflight: 0 }
      this.#tenants.set(name, t)
    }
    return t
  }

  /** Idle tenants carry no state that matters: they are lifted to the backlog's minimum on return. */
  #pruneIdle(): void {
    for (const [k, t] of this.#tenants) {
      if (t.queue.length === 0 && t.inflight === 0) this.#tenants.delete(k)
    }
  }

  /** Capacity also frees up through other replicas' traffic, seen only in scrapes: poll while queued. */
  #arm(): void {
    if (this.#timer !== undefined) return
    this.#timer = setInterval(() => this.pump(), 20)
    this.#timer.unref()
  }
}

/** The largest batch limit learned on any of `eps`; 0 when none is known. */
function pooledLimit(eps: readonly EndpointState[]): number {
  let max = 0
  for (const e of eps) if (e.learnedCapacity > max) max = e.learnedCapacity
  return max
}

export function fairness(args: PluginArgs, env: PluginEnv): Plugin {
  return new FairnessPlugin(args, env)
}
