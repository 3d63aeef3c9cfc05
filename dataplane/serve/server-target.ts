// One self-hosted target: admission (it may queue), the picker's ordered endpoints, forward with
// retries, then the engine's response passed to the client. A retryable status (429/5xx) the rule
// falls back on is drained and handed back to the chain instead of going to the client.
import type { FallbackOn } from '../../api/snapshot.js'
import { responsesUnsupported, servesResponses } from '../api/responses.js'
import { errors, GatewayError } from '../errors.js'
import type { Admission, PickContext } from '../picker.js'
import { dispatchOutcome, endpointId, failureOf } from '../picker.js'
import { type AttemptFailure, forward, type UpstreamResponse } from '../proxy/forward.js'
import { upstreamHeaders } from '../proxy/headers.js'
import { type RespondOptions, type ResponseOutcome, toClientResponse } from '../proxy/respond.js'
import { requestUsage, UsageChunkStripper, wantsInjectedUsage } from '../proxy/usage-strip.js'
import type { RouteTarget } from '../router.js'
import { type Deadline, deadline } from './deadline.js'
import { clientClosed, errorResponse, type Finished } from './outcome.js'
import { pdDispatch } from './pd-target.js'
import { serveShadow } from './shadow.js'
import { saturatedError, spillOf, spillsTier } from './spill.js'
import { type ChainContext, canFallback, failed, type Step } from './types.js'

type Writable<T> = { -readonly [K in keyof T]: T[K] }

/** Request header `1` asks for the scheduler's decision summary in the same-named response header. */
export const EXPLAIN_HEADER = 'x-infer-gateway-explain'

type ServerTarget = Extract<RouteTarget, { kind: 'server' }>

export async function serverTarget(
  t: ServerTarget,
  ctx: ChainContext,
  more: boolean,
): Promise<Step> {
  const { req, deps, d } = ctx
  if (req.api === 'responses' && !servesResponses(t.server))
    return failed(responsesUnsupported(t.server), undefined, true)
  const picker = deps.picker
  const identity = ctx.out.identity
  // Optional fields assigned, not spread (object spreads are a generic copy per request).
  const pickCtx: Writable<PickContext> = {
    requestId: ctx.out.requestId,
    model: req.model,
    isLora: d.isLora,
    server: t.server,
    body: req.body,
    header: req.inbound.header,
  }
  // Only a client's explain header asks for the score summary (it then goes on the span too):
  // building it for every traced request was a third of tracing's cost (issue 15).
  if (req.explain) pickCtx.explain = {}
  if (identity !== undefined) pickCtx.identity = identity
  // Spill-over: decided before admission, where the request would otherwise queue.
  const sat = d.rule.fallback?.saturation
  if (sat !== undefined && more && d.fallbackOn.has('saturated') && spillsTier(sat, identity)) {
    const spill = spillOf(sat, picker.saturation?.(pickCtx))
    if (spill !== undefined) {
      ctx.out.spill = spill
      return failed(saturatedError(t.server.key, spill), 'saturated')
    }
  }
  let admission: Admission | undefined
  if (picker.admit) {
    // Admission may queue (fairness while the server is saturated); the pick comes after it so
    // a request that waited is placed on the current view of the endpoints.
    try {
      const a = picker.admit(pickCtx, ctx.client)
      admission = a instanceof Promise ? await a : a
    } catch (e) {
      const err = e instanceof GatewayError ? e : errors.internal()
      // The scheduler's "queue full" is overload; "nothing to admit to" is no ready endpoints.
      return failed(
        err,
        err.status === 429 ? '429' : err.status === 503 ? 'no-ready-endpoints' : undefined,
      )
    }
  }
  if (admission === undefined) return dispatch(t, ctx, more, pickCtx, undefined)
  const owned = { byStream: false }
  try {
    return await dispatch(t, ctx, more, pickCtx, admission, owned)
  } finally {
    // The one place this target lets go of its admission (idempotent), whatever happened, unless
    // a streaming response still runs and releases it when it ends.
    if (!owned.byStream) admission.release()
  }
}

async function dispatch(
  t: ServerTarget,
  ctx: ChainContext,
  more: boolean,
  pickCtx: PickContext,
  admission: Admission | undefined,
  owned?: { byStream: boolean },
): Promise<Step> {
  const { req, deps, out } = ctx
  const server = t.server
  // Disaggregated servers are served as prefill/decode pairs, the rest of the walk unchanged.
  if (server.pd !== undefined) return pdDispatch(t, server.pd, ctx, more, pickCtx, admission, owned)
  const picker = deps.picker
  const candidates = picker.pick(pickCtx)
  if (candidates.length === 0)
    return failed(errors.noReadyEndpoint(server.key), 'no-ready-endpoints')
  const first = candidates[0]
  if (out.trace !== undefined && first !== undefined)
    out.trace.event('infer_gateway.scheduler.decision', {
      'infer_gateway.server': server.key,
      'infer_gateway.endpoint': endpointId(first),
      'infer_gateway.candidates': candidates.length,
      ...(pickCtx.explain?.text !== undefined
        ? { 'infer_gateway.scheduler.explain': pickCtx.explain.text }
        : {}),
    })
  // Every stream's tokens are counted: without a rate-limit policy (whose filter does the same)
  // the engine is asked for usage and the usage-only event is removed again on the way back.
  // A Responses stream always ends with its usage and has no such option.
  const injectUsage =
    out.limits === undefined && req.api !== 'responses' && wantsInjectedUsage(req.body)
  // Re-serialise only when the model is rewritten; otherwise the client's bytes go through.
  let body: string | Uint8Array =
    t.upstreamModel !== req.model
      ? JSON.stringify({ ...req.body, model: t.upstreamModel })
      : req.raw
  if (injectUsage)
    body = requestUsage(
      body,
      t.upstreamModel !== req.model ? { ...req.body, model: t.upstreamModel } : req.body,
    )
  const headers = upstreamHeaders(
    req.inbound.headers(),
    out.requestId,
    req.stripHeaders,
    req.inbound.remoteAddress,
  )
  // The engine's spans join the gateway's trace.
  if (out.trace !== undefined) headers['traceparent'] = out.trace.traceparent()
  // A hot group's warm copy the pick asked for goes out beside this request (shadow.ts).
  serveShadow(ctx, server, t.upstreamModel, pickCtx, headers)

  const requestMs = server.trafficPolicy.timeouts.requestMs
  const dl = deadline(ctx.client, requestMs)
  let dispatchedAt = performance.now()
  let lastFailure: AttemptFailure['reason'] | undefined
  let up: UpstreamResponse
  try {
    up = await forward(
      deps.pool,
      {
        server,
        candidates,
        method: 'POST',
        path: req.path,
        headers,
        body,
        signal: dl.signal,
        onAttemptStart: (ep) => {
          dispatchedAt = performance.now()
          picker.onDispatch?.(pickCtx, ep)
        },
        onAttemptFailed: (f) => {
          lastFailure = f.reason
          deps.metrics.upstreamFailures.inc({ server: server.key, reason: f.reason })
          deps.metrics.endpoint(server.key, endpointId(f.endpoint)).error(f.reason)
          picker.onComplete?.(pickCtx, f.endpoint, {
            status: f.status ?? 0,
            failure: failureOf(f.reason),
            durationMs: performance.now() - dispatchedAt,
          })
        },
      },
      deps.random,
    )
  } catch (e) {
    dl.clear()
    if (ctx.client.aborted) return failed(clientClosed())
    if (dl.timedOut()) return failed(errors.upstreamTimeout(`request exceeded ${requestMs} ms`))
    const err = e instanceof GatewayError ? e : errors.upstreamUnavailable(String(e))
    return failed(err, lastFailure === 'connect-failure' ? 'connect-failure' : undefined)
  }

  // Built field by field: a conditional spread is a generic copy per request.
  const a: Writable<Answer> = {
    t,
    ctx,
    more,
    up,
    pickCtx,
    dispatchedAt,
    admission,
    dl,
    injectUsage,
  }
  if (owned !== undefined) a.owned = owned
  return answer(a)
}

/** A self-hosted answer on its way to the client (shared with the prefill/decode target). */
export interface Answer {
  readonly t: ServerTarget
  readonly ctx: ChainContext
  readonly more: boolean
  readonly up: UpstreamResponse
  readonly pickCtx: PickContext
  /** performance.now() when the answering attempt was sent. */
  readonly dispatchedAt: number
  readonly admission: Admission | undefined
  readonly owned?: { byStream: boolean }
  readonly dl: Deadline
  /** usage was asked of the engine for counting only: its usage-only event is stripped. */
  readonly injectUsage: boolean
  /** More access-log fields (the prefill pod of a pair). */
  readonly finish?: Pick<Finished, 'prefillEndpoint'>
  /** Runs once when the response has ended (fully or not), before the request is finished. */
  readonly onEnd?: (o: ResponseOutcome) => void
}

/**
 * A status the rule falls back on goes back to the chain (drained); anything else goes to the
 * client, and its end feeds the picker, the endpoint metrics and the request's outcome. Not an
 * async function: a non-streamed answer that came whole and an event stream are answered in
 * this call (no promise, no suspended frame, no microtask for the caller's await to pass).
 */
export function answer(a: Answer): Step | Promise<Step> {
  const { t, ctx, more, up, pickCtx, dispatchedAt, admission, owned, dl, injectUsage } = a
  const { req, deps, out } = ctx
  const server = t.server
  const picker = deps.picker
  const status = up.statusCode
  if (req.api === 'responses' && (status === 404 || status === 405)) {
    // An engine version without the Responses API (see dataplane/api/responses.ts).
    up.body.dump().catch(() => {})
    dl.clear()
    picker.onComplete?.(pickCtx, up.endpoint, {
      status,
      durationMs: performance.now() - dispatchedAt,
    })
    return failed(responsesUnsupported(server, status), undefined, true)
  }
  const reason: FallbackOn | undefined = status === 429 ? '429' : status >= 500 ? '5xx' : undefined
  if (reason !== undefined && canFallback(ctx.d, more, reason)) {
    // Nothing went to the client yet: drain (the socket goes back to the pool) and move on.
    up.body.dump().catch(() => {})
    dl.clear()
    picker.onComplete?.(pickCtx, up.endpoint, {
      status,
      failure: 'retry_status',
      durationMs: performance.now() - dispatchedAt,
    })
    const ra = up.headers['retry-after']
    const retryAfter = Array.isArray(ra) ? ra[0] : ra
    return failed(
      new GatewayError(
        status,
        'upstream_error',
        `model server "${server.key}" answered HTTP ${status}`,
        retryAfter !== undefined ? { headers: { 'retry-after': retryAfter } } : {},
      ),
      reason,
    )
  }

  const answered = up
  let settled = false
  const onDone = (o: ResponseOutcome): void => {
    settled = true
    dl.clear()
    admission?.release()
    const eps = deps.metrics.endpoint(server.key, endpointId(answered.endpoint))
    eps.response(o.status)
    if (o.error !== undefined && o.error !== 'client_closed') eps.error(o.error)
    a.onEnd?.(o)
    picker.onComplete?.(pickCtx, answered.endpoint, dispatchOutcome(o, dispatchedAt, out.startedAt))
    // Assigned field by field: conditional spreads here were most of this callback's own time.
    const f: Writable<Finished> = {
      status: o.error === 'client_closed' ? 499 : o.status,
      code: o.error ?? '',
      stream: o.stream,
      bytes: o.bytes,
      endpoint: endpointId(answered.endpoint),
      attempts: answered.attempts,
      headersMs: answered.headersMs,
    }
    if (o.firstByteMs !== undefined) f.firstByteMs = o.firstByteMs
    if (o.firstTokenMs !== undefined) f.firstTokenMs = o.firstTokenMs
    if (o.usage) f.usage = o.usage
    if (a.finish?.prefillEndpoint !== undefined) f.prefillEndpoint = a.finish.prefillEndpoint
    out.finish(f)
  }
  const limits = out.limits
  const streamFilter =
    limits?.streamFilter() ?? (injectUsage ? new UsageChunkStripper() : undefined)
  const explained = req.explain ? pickCtx.explain?.text : undefined
  try {
    const opts: Writable<RespondOptions> = {
      startedAt: out.startedAt,
      extraHeaders:
        explained === undefined && limits?.headers === undefined
          ? { 'x-request-id': out.requestId }
          : {
              'x-request-id': out.requestId,
              ...(explained !== undefined ? { [EXPLAIN_HEADER]: explained } : {}),
              ...limits?.headers,
            },
      signal: dl.signal,
      timedOut: dl.timedOut,
      onDone,
    }
    if (streamFilter !== undefined) opts.streamFilter = streamFilter
    if (deps.maxUpstreamBodyBytes !== undefined) opts.maxBodyBytes = deps.maxUpstreamBodyBytes
    if (deps.maxSseLineBytes !== undefined) opts.maxSseLineBytes = deps.maxSseLineBytes
    const nodeResponse = req.inbound.nodeResponse
    if (nodeResponse !== undefined) opts.nodeResponse = nodeResponse
    const response = toClientResponse(up, opts)
    if (response instanceof Promise)
      return response.then(
        (r): Step => {
          if (owned !== undefined) owned.byStream = !settled
          return { kind: 'done', response: r }
        },
        (e: unknown) => bodyCut(e, a),
      )
    if (owned !== undefined) owned.byStream = !settled
    return { kind: 'done', response }
  } catch (e) {
    return bodyCut(e, a)
  }
}

/**
 * A non-streamed body that broke before anything reached the client (onDone already ran): we can
 * still answer.
 */
function bodyCut(e: unknown, a: Answer): Step {
  const { dl, ctx, up } = a
  const err = dl.timedOut()
    ? errors.upstreamTimeout('response body')
    : ctx.client.aborted
      ? clientClosed()
      : e instanceof GatewayError
        ? e
        : errors.upstreamUnavailable(`${up.endpoint.name}: response body cut`)
  return { kind: 'done', response: errorResponse(err, ctx.out.requestId) }
}
