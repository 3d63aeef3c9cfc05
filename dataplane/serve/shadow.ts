// Shadow requests (issue 9, engines restarted under load): when the scheduler decides that a hot
// prefix group should have a second warm copy (predicted-latency #replicate), the proxy sends the
// client's prompt to that second engine with one output token and drops the answer. The engine
// computes and caches the prefix; no client waits on it. Without the copy, a kill of the group's
// only engine makes its next request pay a cold prefill and the requests arriving meanwhile wait
// for it (docs/scheduling.md, "Restarts").
//
// A shadow is not a client request: it is counted apart (`infer_gateway_shadow_requests_total`),
// never in the request metrics, tenant token limits or the access log; its outcome is never held
// against the endpoint (no ejection, no latency sample); it is not tied to the client's signal (a
// client leaving does not make the copy useless). It does count in flight on its endpoint while
// it runs (the engine really is busy with it). At most MAX_SHADOWS_IN_FLIGHT per process; past
// that a shadow is dropped, not queued (a late copy is worth little, a queue of them is load).
// In EPP mode (Envoy sends the requests) no shadows are sent.
import type { SnapshotServer } from '../../api/snapshot.js'
import type { AbortLike } from '../abort.js'
import type { PickContext, ShadowPlan } from '../picker.js'
import type { ProviderApi } from '../providers/types.js'
import type { UpstreamPool } from '../proxy/upstream-pool.js'
import { nextRewarm, RewarmStore } from './rewarm.js'
import type { ChainContext } from './types.js'

/** Shadows in flight per process at most (per gateway: per upstream pool). */
export const MAX_SHADOWS_IN_FLIGHT = 8
/** A shadow's answer (one token, not streamed) is given up after this long at most. */
export const SHADOW_TIMEOUT_MS = 30_000

export type ShadowOutcome = 'ok' | 'failed' | 'dropped'

/** The bound on shadows in flight (shared by the proxy path and the virtual fleet). */
export class ShadowGate {
  readonly max: number
  #inFlight = 0

  constructor(max = MAX_SHADOWS_IN_FLIGHT) {
    this.max = max
  }

  get inFlight(): number {
    return this.#inFlight
  }

  tryAcquire(): boolean {
    if (this.#inFlight >= this.max) return false
    this.#inFlight++
    return true
  }

  release(): void {
    this.#inFlight = Math.max(0, this.#inFlight - 1)
  }
}

/**
 * Fields of the client's body a one-token shadow must not carry: streaming options (invalid
 * without `stream`), a minimum output above one token, output constraints that cost the engine
 * work (a grammar to compile) without changing the prompt it caches, several sequences or beams,
 * and answers that repeat or score the prompt (`echo`, `prompt_logprobs`: a large body or work
 * over every prompt token). Tools and their choice stay: they are part of the prompt.
 */
const DROPPED_FIELDS = [
  'stream_options',
  'min_tokens',
  'response_format',
  'guided_json',
  'guided_regex',
  'guided_choice',
  'guided_grammar',
  'structured_outputs',
  'logit_bias',
  'best_of',
  'use_beam_search',
  'echo',
  'prompt_logprobs',
] as const

/**
 * The shadow's body: the client's request (the prompt the engine will cache, as the client's own
 * request will meet it: same model, messages, tools and template options) with one output token,
 * not streamed, one choice. Undefined for APIs without a prompt to cache this way (embeddings,
 * Responses, Anthropic messages sent as such).
 */
export function shadowBody(
  api: ProviderApi,
  body: Readonly<Record<string, unknown>>,
  upstreamModel: string,
): string | undefined {
  if (api !== 'chat' && api !== 'completions') return undefined
  const out: Record<string, unknown> = { ...body, model: upstreamModel, stream: false }
  for (const k of DROPPED_FIELDS) delete out[k]
  out['max_tokens'] = 1
  if ('max_completion_tokens' in out) out['max_completion_tokens'] = 1
  if ('n' in out) out['n'] = 1
  return JSON.stringify(out)
}

export interface ShadowDeps {
  readonly pool: UpstreamPool
  readonly gate: ShadowGate
  readonly count: (outcome: ShadowOutcome) => void
}

export interface ShadowRequest {
  readonly server: SnapshotServer
  readonly api: ProviderApi
  readonly path: string
  readonly body: Readonly<Record<string, unknown>>
  readonly upstreamModel: string
  /** The headers the client's request goes upstream with (its x-request-id is suffixed). */
  readonly headers: Readonly<Record<string, string>>
}

/**
 * Sends a shadow the picker asked for; the answer is awaited in the background (the promise, for
 * tests, settles with the outcome and never rejects). Whatever happens, a started plan is ended
 * exactly once and the gate released.
 */
export function sendShadow(
  deps: ShadowDeps,
  plan: ShadowPlan,
  r: ShadowRequest,
): Promise<ShadowOutcome> {
  const body = shadowBody(r.api, r.body, r.upstreamModel)
  if (body === undefined) return Promise.resolve('dropped')
  if (!deps.gate.tryAcquire()) {
    deps.count('dropped')
    return Promise.resolve('dropped')
  }
  let end: ((ok: boolean) => void) | undefined
  let done = false
  const finish = (ok: boolean): ShadowOutcome => {
    const outcome = ok ? 'ok' : 'failed'
    if (done) return outcome
    done = true
    deps.gate.release()
    try {
      end?.(ok)
    } finally {
      deps.count(outcome)
    }
    return outcome
  }
  try {
    end = plan.start()
    return send(deps.pool, plan, r, body)
      .then(
        (ok) => finish(ok),
        () => finish(false),
      )
      .catch(() => 'failed' as const)
  } catch {
    try {
      return Promise.resolve(finish(false))
    } catch {
      return Promise.resolve('failed')
    }
  }
}

/**
 * The proxy path's hook (serve/server-target.ts, right after the pick): the shadow the pick asked
 * for, if any, goes out beside the client's request (reason="copy"). Then the re-warms
 * (serve/rewarm.ts): this request is kept if the scheduler calls its group warm, and one re-warm
 * of a group a dead engine held goes out if the scheduler has one (reason="rewarm").
 */
export function serveShadow(
  ctx: ChainContext,
  server: SnapshotServer,
  upstreamModel: string,
  pickCtx: PickContext,
  headers: Readonly<Record<string, string>>,
): void {
  const { deps, req } = ctx
  const picker = deps.picker
  const plan = picker.shadow?.(pickCtx)
  const metrics = deps.metrics
  const r: ShadowRequest = {
    server,
    api: req.api,
    path: req.path,
    body: req.body,
    upstreamModel,
    headers,
  }
  if (plan !== undefined) {
    void sendShadow(
      {
        pool: deps.pool,
        gate: shadowGateOf(deps.pool),
        count: (outcome) => metrics.shadowRequests.inc({ outcome, reason: 'copy' }),
      },
      plan,
      r,
    )
  }
  const re = nextRewarm(
    picker,
    rewarmStoreOf(deps.pool),
    pickCtx,
    server,
    r,
    req.raw.length,
    performance.now(),
  )
  if (re === undefined) return
  void sendShadow(
    {
      pool: deps.pool,
      gate: shadowGateOf(deps.pool),
      count: (outcome) => metrics.shadowRequests.inc({ outcome, reason: 'rewarm' }),
    },
    re.plan,
    re.kept,
  )
}

/** A shadow copy has no client to leave: only its timeouts end it. */
const NO_CLIENT: AbortLike = {
  aborted: false,
  reason: undefined,
  addEventListener: () => {},
  removeEventListener: () => {},
}

async function send(
  pool: UpstreamPool,
  plan: ShadowPlan,
  r: ShadowRequest,
  body: string,
): Promise<boolean> {
  const policy = r.server.trafficPolicy.timeouts
  const headers: Record<string, string> = { ...r.headers }
  headers['x-request-id'] = `${headers['x-request-id'] ?? ''}-shadow`
  // Not part of the client's trace.
  delete headers['traceparent']
  // Through the engine client the request path uses (its connection cap counts the copy too).
  const res = await pool.request(r.server, plan.endpoint, {
    path: r.path,
    method: 'POST',
    headers,
    body,
    signal: NO_CLIENT,
    connectMs: policy.connectMs,
    headersMs: Math.min(
      SHADOW_TIMEOUT_MS,
      policy.requestMs > 0 ? policy.requestMs : SHADOW_TIMEOUT_MS,
      policy.responseHeaderMs > 0 ? policy.responseHeaderMs : SHADOW_TIMEOUT_MS,
    ),
    idleMs: Math.min(SHADOW_TIMEOUT_MS, policy.idleMs > 0 ? policy.idleMs : SHADOW_TIMEOUT_MS),
  })
  // Read to the end so the connection goes back to the pool; the answer itself is dropped.
  await res.body.dump({ limit: 1 << 20 })
  return res.statusCode >= 200 && res.statusCode < 300
}

/** One re-warm store per gateway (its upstream pool): its recent requests of warm groups. */
const rewarmStores = new WeakMap<UpstreamPool, RewarmStore<ShadowRequest>>()

export function rewarmStoreOf(pool: UpstreamPool): RewarmStore<ShadowRequest> {
  let s = rewarmStores.get(pool)
  if (s === undefined) {
    s = new RewarmStore<ShadowRequest>()
    rewarmStores.set(pool, s)
  }
  return s
}

/** One gate per gateway (its upstream pool): the bound holds across its requests. */
const gates = new WeakMap<UpstreamPool, ShadowGate>()

export function shadowGateOf(pool: UpstreamPool): ShadowGate {
  let g = gates.get(pool)
  if (g === undefined) {
    g = new ShadowGate()
    gates.set(pool, g)
  }
  return g
}
