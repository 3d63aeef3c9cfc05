// The Endpoint Picker's decision: the same scheduler, profile code, prefix index and in-flight
// accounting as the data plane, asked by a gateway (Envoy) instead of our own proxy. One Decision
// per HTTP request; it holds the dispatch (in-flight load, prefix placement) until `finish`.
import { randomUUID } from 'node:crypto'
import {
  inferencePoolKey,
  type RoutingSnapshot,
  type SnapshotEndpoint,
  type SnapshotServer,
} from '../../api/snapshot.js'
import type { AbortLike } from '../abort.js'
import { DEFAULT_MAX_JSON_DEPTH, parseJsonObject } from '../body.js'
import { errors, GatewayError } from '../errors.js'
import type { Logger } from '../log.js'
import type { Admission, DispatchOutcome, EndpointPicker, PickContext } from '../picker.js'
import { endpointId } from '../picker.js'
import type { SnapshotStore } from '../snapshot-store.js'
import { type DecisionTrace, Mark } from './phases.js'

/** Which pool of the snapshot this EPP serves. */
export interface PoolRef {
  /** `pool`: an InferencePool (`--pool`); `server`: a ModelServer (`--server`). */
  readonly kind: 'pool' | 'server'
  /** "namespace/name". */
  readonly key: string
}

/**
 * The pool's servers entry. InferencePools compile into `snapshot.servers` like ModelServers (one
 * pool = one server of `podIP:targetPort` endpoints), under their own key (`inferencePoolKey`).
 */
export function poolServer(
  snapshot: RoutingSnapshot | undefined,
  ref: PoolRef,
): SnapshotServer | undefined {
  if (snapshot === undefined) return undefined
  if (ref.kind === 'server') return snapshot.servers[ref.key]
  const [ns = '', name = ''] = ref.key.split('/')
  return snapshot.servers[inferencePoolKey(ns, name)]
}

export const eppErrors = {
  poolNotFound: (ref: PoolRef) =>
    new GatewayError(
      503,
      'pool_not_found',
      `the endpoint picker's ${ref.kind === 'pool' ? 'InferencePool' : 'ModelServer'} "${ref.key}" is not in the routing snapshot`,
      { headers: { 'retry-after': '1' } },
    ),
  subsetEmpty: () =>
    new GatewayError(
      503,
      'no_ready_endpoint_in_subset',
      'no ready endpoint of the pool is in the gateway subset hint (envoy.lb.subset_hint)',
      { headers: { 'retry-after': '1' } },
    ),
} as const

export interface DecideInput {
  /** Request headers, lower-cased names (pseudo-headers such as `:path` included). */
  readonly headers: ReadonlyMap<string, string>
  /** The whole request body; undefined when the request has none (or the body is not sent). */
  readonly body: Uint8Array | undefined
  /** `ip` or `ip:port` entries of the gateway's subset hint; undefined = no hint. */
  readonly subset: readonly string[] | undefined
  /** Aborts when the gateway's stream ends (a request waiting in admission is dropped). */
  readonly signal: AbortLike
  /** `--debug-phases`: marks for the steps of this decision. */
  readonly trace?: DecisionTrace
}

export interface FinishOutcome {
  readonly status: number
  readonly failure?: DispatchOutcome['failure']
  readonly firstByteMs?: number
  readonly promptTokens?: number
  readonly completionTokens?: number
}

export interface Decision {
  /** `ip:port` (IPv6 `[ip]:port`), the primary first, then the fallbacks in order. */
  readonly endpoints: readonly string[]
  /** The body to send upstream when the model was rewritten; undefined = unchanged. */
  readonly body: Buffer | undefined
  readonly model: string
  /** The gateway reports which endpoint served (after its retries): move the dispatch there. */
  served(id: string): void
  /** The request is over (idempotent): releases in-flight load and admission. */
  finish(outcome: FinishOutcome): void
}

export interface EppCoreOptions {
  readonly store: SnapshotStore
  readonly picker: EndpointPicker
  readonly pool: PoolRef
  /** Endpoints after the primary in the answer (default 2). */
  readonly fallbacks?: number
  readonly maxJsonDepth?: number
  readonly now?: () => number
  /** Where a failing bookkeeping step (afterAnswer) is reported. */
  readonly log?: Logger
}

export class EppCore {
  readonly pool: PoolRef
  readonly #store: SnapshotStore
  readonly #picker: EndpointPicker
  readonly #fallbacks: number
  readonly #depth: number
  readonly #now: () => number
  readonly #log: Logger | undefined
  /** Bookkeeping waiting for the answers of this turn of the event loop to be written. */
  readonly #later: (() => void)[] = []
  #laterScheduled = false
  #settling = false

  constructor(opts: EppCoreOptions) {
    this.#log = opts.log
    this.pool = opts.pool
    this.#store = opts.store
    this.#picker = opts.picker
    this.#fallbacks = opts.fallbacks ?? 2
    this.#depth = opts.maxJsonDepth ?? DEFAULT_MAX_JSON_DEPTH
    this.#now = opts.now ?? (() => performance.now())
  }

  /**
   * Runs `f` after the answers written in this turn of the event loop have gone out, for work that
   * does not change an answer: a dispatch's accounting (in-flight count, prefix-index placement),
   * a finished request's release, decision metrics. grpc-js hands each answer to node:http2, which
   * writes to the socket from a native setImmediate once the JavaScript of this turn is done, before
   * the JavaScript setImmediate queue runs (issue 13: in the EPP's profile the dispatch alone was
   * ~60 µs per stream in front of that write). In order; every decision first applies what is
   * queued (settle), so no pick sees a state without the dispatches made before it.
   */
  afterAnswer(f: () => void): void {
    this.#later.push(f)
    if (this.#laterScheduled) return
    this.#laterScheduled = true
    setImmediate(() => {
      this.#laterScheduled = false
      this.settle()
    })
  }

  /** Applies the queued bookkeeping now, in order (anything reading the scheduler's load first). */
  settle(): void {
    if (this.#settling) return
    this.#settling = true
    try {
      // Steps queued meanwhile run too, after the ones before them.
      for (let i = 0; i < this.#later.length; i++) {
        try {
          ;(this.#later[i] as () => void)()
        } catch (e) {
          this.#log?.('error', 'epp bookkeeping failed', {
            error: e instanceof Error ? e.message : String(e),
          })
        }
      }
      this.#later.length = 0
    } finally {
      this.#settling = false
    }
  }

  /** The pool is in the live snapshot (readiness). */
  ready(): boolean {
    return poolServer(this.#store.snapshot, this.pool) !== undefined
  }

  /** Throws a GatewayError for what the protocol answers with an ImmediateResponse. */
  async decide(input: DecideInput): Promise<Decision> {
    this.settle()
    const startedAt = this.#now()
    const server = poolServer(this.#store.snapshot, this.pool)
    if (server === undefined) throw eppErrors.poolNotFound(this.pool)
    let body: Readonly<Record<string, unknown>> = {}
    let model = ''
    if (input.body !== undefined && input.body.byteLength > 0) {
      body = parseJsonObject(input.body, this.#depth)
      const m = body['model']
      if (typeof m !== 'string' || m === '') throw errors.missingModel()
      model = m
    }
    const trace = input.trace
    trace?.mark(Mark.PARSE)
    const header = (name: string): string | undefined => input.headers.get(name)
    const { isLora, upstreamModel } = this.#target(server, model, header(':path') ?? '', header)
    // The answer lists the primary and the fallbacks: the scheduler orders as many as the server's
    // retry budget says, so the budget seen here is the EPP's own.
    const asked: SnapshotServer = {
      ...server,
      trafficPolicy: {
        ...server.trafficPolicy,
        retry: { ...server.trafficPolicy.retry, attempts: 1 + this.#fallbacks },
      },
    }
    const subset = input.subset !== undefined ? subsetIds(server, input.subset) : undefined
    if (subset !== undefined && subset.size === 0) throw eppErrors.subsetEmpty()
    const ctx: PickContext = {
      requestId: header('x-request-id') || randomUUID(),
      model,
      isLora,
      server: asked,
      body,
      header,
      ...(subset !== undefined ? { subset } : {}),
    }
    trace?.mark(Mark.ROUTE)
    let admission: Admission | undefined
    if (this.#picker.admit) {
      const a = this.#picker.admit(ctx, input.signal)
      admission = a instanceof Promise ? await a : a
    }
    trace?.mark(Mark.ADMIT)
    // Admission may have waited: what finished meanwhile is applied before the pick.
    this.settle()
    const picked = this.#picker.pick(ctx)
    trace?.mark(Mark.PICK)
    if (picked.length === 0) {
      admission?.release()
      throw subset !== undefined ? eppErrors.subsetEmpty() : errors.noReadyEndpoint(server.key)
    }
    const first = picked[0] as SnapshotEndpoint
    const picker = this.#picker
    this.afterAnswer(() => picker.onDispatch?.(ctx, first))
    const rewritten =
      upstreamModel !== model && model !== ''
        ? Buffer.from(JSON.stringify({ ...body, model: upstreamModel }))
        : undefined
    return new PickedRequest(
      this,
      this.#picker,
      ctx,
      picked,
      first,
      admission,
      startedAt,
      this.#now,
      {
        body: rewritten,
        model,
      },
    )
  }

  /** LoRA or base model, and the model name the engine gets (the route table's answer, if any). */
  #target(
    server: SnapshotServer,
    model: string,
    path: string,
    header: (name: string) => string | undefined,
  ): { isLora: boolean; upstreamModel: string } {
    const table = this.#store.table
    if (model !== '' && table !== undefined) {
      const r = table.resolve({ model, path, header })
      if (r.kind === 'chain') {
        for (const t of r.decision.targets) {
          if (t.kind === 'server' && t.server.key === server.key)
            return { isLora: r.decision.isLora, upstreamModel: t.upstreamModel }
        }
      }
    }
    // No route names this pool for the model: the pool serves it as asked (as GAIE's EPP does),
    // with the server's model override for base-model requests.
    return { isLora: false, upstreamModel: model !== '' && server.model ? server.model : model }
  }
}

/** `ip:port` as Envoy parses it (IPv6 in brackets). */
export function wireAddress(e: SnapshotEndpoint): string {
  return e.address.includes(':') ? `[${e.address}]:${e.port}` : `${e.address}:${e.port}`
}

/** Subset hint entries (`ip` = every port of that address) → endpoint ids of the server. */
export function subsetIds(server: SnapshotServer, hint: readonly string[]): Set<string> {
  const exact = new Set<string>()
  const hosts = new Set<string>()
  for (const raw of hint) {
    const e = raw.trim()
    if (e === '') continue
    if (/^\[.*\]:\d+$/.test(e) || /^[^:]+:\d+$/.test(e))
      exact.add(e.replace(/^\[(.*)\](:\d+)$/, '$1$2'))
    else hosts.add(e.replace(/^\[(.*)\]$/, '$1'))
  }
  const out = new Set<string>()
  for (const ep of server.endpoints) {
    const id = endpointId(ep)
    if (exact.has(id) || hosts.has(ep.address)) out.add(id)
  }
  return out
}

class PickedRequest implements Decision {
  readonly #core: EppCore
  readonly endpoints: readonly string[]
  readonly body: Buffer | undefined
  readonly model: string
  readonly #picker: EndpointPicker
  readonly #ctx: PickContext
  readonly #picked: readonly SnapshotEndpoint[]
  #current: SnapshotEndpoint
  readonly #admission: Admission | undefined
  #dispatchedAt: number
  readonly #now: () => number
  #done = false

  constructor(
    core: EppCore,
    picker: EndpointPicker,
    ctx: PickContext,
    picked: readonly SnapshotEndpoint[],
    first: SnapshotEndpoint,
    admission: Admission | undefined,
    startedAt: number,
    now: () => number,
    out: { body: Buffer | undefined; model: string },
  ) {
    this.#core = core
    this.#picker = picker
    this.#ctx = ctx
    this.#picked = picked
    this.#current = first
    this.#admission = admission
    this.#dispatchedAt = startedAt
    this.#now = now
    this.endpoints = picked.map(wireAddress)
    this.body = out.body
    this.model = out.model
  }

  served(served: string): void {
    // Envoy writes IPv6 as [addr]:port; endpoint ids are addr:port.
    const id = served.replace(/^\[(.*)\](:\d+)$/, '$1$2')
    if (this.#done || id === endpointId(this.#current)) return
    // The first dispatch may still be queued: it comes before the move.
    this.#core.settle()
    const ep =
      this.#picked.find((e) => endpointId(e) === id) ??
      this.#ctx.server.endpoints.find((e) => endpointId(e) === id)
    if (ep === undefined) return
    const now = this.#now()
    // The gateway moved on from the endpoint it tried first: that attempt failed (Envoy retries
    // on connect failures and retriable statuses), the served one carries the request now.
    this.#picker.onComplete?.(this.#ctx, this.#current, {
      status: 0,
      failure: 'other',
      durationMs: now - this.#dispatchedAt,
    })
    this.#current = ep
    this.#dispatchedAt = now
    this.#picker.onDispatch?.(this.#ctx, ep)
  }

  finish(o: FinishOutcome): void {
    if (this.#done) return
    this.#done = true
    // Released after the dispatch it ends (queued by decide, if not applied yet).
    this.#core.settle()
    this.#admission?.release()
    this.#picker.onComplete?.(this.#ctx, this.#current, {
      status: o.status,
      ...(o.failure !== undefined ? { failure: o.failure } : {}),
      ...(o.firstByteMs !== undefined ? { firstByteMs: o.firstByteMs } : {}),
      durationMs: this.#now() - this.#dispatchedAt,
      ...(o.promptTokens !== undefined ? { promptTokens: o.promptTokens } : {}),
      ...(o.completionTokens !== undefined ? { completionTokens: o.completionTokens } : {}),
    })
  }
}
