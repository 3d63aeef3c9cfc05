// Serves a request whose rule involves an external provider or a fallback list: tries the targets
// in order (the weighted pick first) until one answers. A target is left for the next one only for
// a failure listed in the rule's `fallback.on` and only before anything went to the client: a
// response is committed once its status is known to be good (self-hosted) or once the first
// translated chunk exists (providers; a provider stream that fails before producing anything
// can still fall back). After that a failure ends the stream with an OpenAI error event, never
// `[DONE]`, and nothing else is tried.
//
// Self-hosted targets go through the same picker, proxy and response code as plain routes; this
// module adds the provider side (adapter, credential, transport, translation) and the one access
// log line and metrics for the whole request.
import type { FallbackOn, SnapshotProvider } from '../../api/snapshot.js'
import type { AccessLogEntry, AccessLogger } from '../access-log.js'
import { errors, GatewayError } from '../errors.js'
import { type Identity, tierLabel } from '../filters/identity.js'
import type { Inbound } from '../inbound.js'
import type { GatewayMetrics } from '../metrics.js'
import { statusClass } from '../metrics.js'
import type { Admission, EndpointPicker, PickContext } from '../picker.js'
import { dispatchOutcome, endpointId, failureOf } from '../picker.js'
import { type AttemptFailure, forward, type UpstreamResponse } from '../proxy/forward.js'
import { upstreamHeaders } from '../proxy/headers.js'
import {
  DEFAULT_MAX_UPSTREAM_BODY_BYTES,
  type ResponseOutcome,
  type StreamFilter,
  toClientResponse,
  type Usage,
} from '../proxy/respond.js'
import type { UpstreamPool } from '../proxy/upstream-pool.js'
import type { ChainDecision, RouteTarget } from '../router.js'
import type { ProviderCredentials } from './credentials.js'
import { mapProviderError, providerErrors } from './errors.js'
import { adapterFor } from './registry.js'
import { SseLineTooLongError, SseParser, sseError } from './sse.js'
import {
  BodyTooLargeError,
  headerValue,
  type ProviderHttpResponse,
  ProviderSendError,
  type ProviderTransport,
  readBody,
} from './transport.js'
import { type BuildInput, type ProviderApi, ProviderStreamError } from './types.js'
import { estimateCost, type ProviderUsage } from './usage.js'

export interface ChainDeps {
  readonly pool: UpstreamPool
  readonly picker: EndpointPicker
  readonly metrics: GatewayMetrics
  readonly accessLog: AccessLogger
  readonly transport: ProviderTransport
  readonly credentials: ProviderCredentials
  readonly random: () => number
  /** Cap of a non-streamed upstream body (engines and providers); default 64 MiB. */
  readonly maxUpstreamBodyBytes?: number
  /** Cap of one SSE line from an engine or a provider; default 1 MiB. */
  readonly maxSseLineBytes?: number
}

export interface ChainRequest {
  readonly requestId: string
  /** The client's path, e.g. /v1/chat/completions. */
  readonly path: string
  readonly api: ProviderApi
  /** The model the client asked for. */
  readonly model: string
  /** Metrics label for the client's model (bounded by the snapshot). */
  readonly modelLabel: string
  readonly body: Readonly<Record<string, unknown>>
  readonly raw: Uint8Array
  readonly inbound: Inbound
  /** performance.now() when the request arrived. */
  readonly startedAt: number
  /** Ends the request's in-flight accounting in the app (idempotent). */
  readonly closeInflight: () => void
  /** The authenticated caller (absent without authentication): tier label, picker input. */
  readonly identity?: Identity
  /** The rate limiter's reservation for this request. */
  readonly limits?: ChainLimits
  /** Client headers never forwarded to self-hosted engines (their credentials). */
  readonly stripHeaders?: ReadonlySet<string>
  /** Reports the final status to the filters (auth metrics). */
  readonly observe?: (status: number) => void
  /** Identity fields for the access log, as the app writes them. */
  readonly logFields?: Readonly<Record<string, string>>
}

/** What the chain needs of the rate limiter's admission (dataplane/filters). */
export interface ChainLimits {
  readonly headers?: Readonly<Record<string, string>>
  settle(o: { readonly status: number; readonly usage?: Usage }): void
  streamFilter(): StreamFilter | undefined
}

/** Access-log fields beyond the common ones (the JSON-line logger writes whatever it gets). */
interface ProviderLogFields {
  readonly target_kind?: 'server' | 'provider'
  readonly provider?: string
  readonly provider_type?: string
  readonly tenant?: string
  readonly cost?: number
  readonly currency?: string
  readonly cached_prompt_tokens?: number
  /** Targets tried before the one that answered (or failed last), with why they were left. */
  readonly fallbacks?: readonly { target: string; reason: string; status: number; code: string }[]
}

type Entry = AccessLogEntry & ProviderLogFields

/** Bodies of provider errors are read this far (enough to explain, never unbounded). */
const ERROR_BODY_LIMIT = 64 * 1024

type Step =
  | { readonly kind: 'done'; readonly response: Response }
  | {
      readonly kind: 'failed'
      readonly error: GatewayError
      /** Which fallback condition this failure is (absent = never falls back). */
      readonly reason?: FallbackOn
      /** The target cannot express this request (unsupported API or parameter). */
      readonly unsupported?: boolean
    }

function failed(error: GatewayError, reason?: FallbackOn, unsupported = false): Step {
  return {
    kind: 'failed',
    error,
    ...(reason !== undefined ? { reason } : {}),
    ...(unsupported ? { unsupported } : {}),
  }
}

function targetId(t: RouteTarget): string {
  return t.kind === 'server' ? `server:${t.server.key}` : `provider:${t.provider.key}`
}

const clientClosed = (): GatewayError =>
  new GatewayError(499, 'client_closed', 'client closed the request')

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000
}

function errorResponse(err: GatewayError, requestId: string): Response {
  const headers = new Headers({ 'content-type': 'application/json', ...err.headers })
  headers.set('x-request-id', requestId)
  return new Response(JSON.stringify(err.toBody()), { status: err.status, headers })
}

export async function dispatchChain(
  d: ChainDecision,
  req: ChainRequest,
  deps: ChainDeps,
): Promise<Response> {
  const client = new AbortController()
  const unsubscribe = req.inbound.onClientGone(() => client.abort(clientClosed()))
  const tried: { target: string; reason: string; status: number; code: string }[] = []
  let lastAvailability: GatewayError | undefined
  const base = { route: d.route.key, rule: d.rule.name, ...req.logFields }

  const fail = (err: GatewayError, t: RouteTarget | undefined): Response => {
    unsubscribe()
    req.closeInflight()
    // Nothing was generated: reserved tokens go back.
    req.limits?.settle({ status: 0 })
    req.observe?.(err.status)
    const duration = performance.now() - req.startedAt
    const { metrics } = deps
    metrics.requests.inc({
      model: req.modelLabel,
      api: req.api,
      status_class: statusClass(err.status),
      code: err.code,
    })
    metrics.duration.observe({ model: req.modelLabel, api: req.api }, duration / 1000)
    const entry: Entry = {
      time: new Date().toISOString(),
      request_id: req.requestId,
      method: 'POST',
      path: req.path,
      status: err.status,
      duration_ms: round(duration),
      model: req.model,
      ...base,
      ...(t ? targetFields(t) : {}),
      ...(tried.length > 0 ? { fallbacks: [...tried] } : {}),
      error_code: err.code,
    }
    deps.accessLog(entry)
    return errorResponse(err, req.requestId)
  }

  const ctx: StepContext = { d, req, deps, client: client.signal, base, tried, unsubscribe }
  for (let i = 0; i < d.targets.length; i++) {
    const t = d.targets[i]
    if (t === undefined) break
    const more = i < d.targets.length - 1
    const canFallback = (r: FallbackOn): boolean => more && d.fallbackOn.has(r)
    let step: Step
    try {
      step =
        t.kind === 'server' ? await serverStep(t, ctx, canFallback) : await providerStep(t, ctx)
    } catch (e) {
      // An unexpected exception in a target (a bug, a picker, an adapter) still ends the request
      // with one access-log line; what the target held was released by the target itself.
      return fail(e instanceof GatewayError ? e : errors.internal(), t)
    }
    if (step.kind === 'done') return step.response
    if (client.signal.aborted) return fail(clientClosed(), t)
    // A fallback target that cannot express the request is skipped: the client is better served
    // by the failure that made us look further than by a 400 about a target it never chose.
    if (step.unsupported && i > 0 && lastAvailability !== undefined) {
      tried.push({
        target: targetId(t),
        reason: 'unsupported',
        status: step.error.status,
        code: step.error.code,
      })
      if (!more) return fail(lastAvailability, t)
      continue
    }
    if (step.reason !== undefined && canFallback(step.reason)) {
      const next = d.targets[i + 1]
      tried.push({
        target: targetId(t),
        reason: step.reason,
        status: step.error.status,
        code: step.error.code,
      })
      if (next) {
        deps.metrics.fallbacks.inc({
          route: d.route.key,
          from: targetId(t),
          to: targetId(next),
          reason: step.reason,
        })
      }
      lastAvailability = step.error
      continue
    }
    return fail(step.error, t)
  }
  return fail(
    lastAvailability ?? errors.upstreamUnavailable('no target could serve the request'),
    undefined,
  )
}

interface StepContext {
  readonly d: ChainDecision
  readonly req: ChainRequest
  readonly deps: ChainDeps
  /** Aborted when the client goes away. */
  readonly client: AbortSignal
  readonly base: Readonly<Record<string, string>>
  readonly tried: readonly { target: string; reason: string; status: number; code: string }[]
  readonly unsubscribe: () => void
}

function targetFields(t: RouteTarget): Partial<Entry> {
  return t.kind === 'server'
    ? { target_kind: 'server', server: t.server.key, upstream_model: t.upstreamModel }
    : {
        target_kind: 'provider',
        provider: t.provider.key,
        provider_type: t.provider.type,
        upstream_model: t.upstreamModel,
      }
}

/** Per-target deadline (`requestMs`) on top of the client's abort. */
function deadline(
  client: AbortSignal,
  requestMs: number,
): { signal: AbortSignal; timedOut: () => boolean; clear: () => void } {
  if (requestMs <= 0) return { signal: client, timedOut: () => false, clear: () => {} }
  const timer = new AbortController()
  let fired = false
  const t = setTimeout(() => {
    fired = true
    // A 504 reason: forward() tells the deadline from the client leaving by it.
    timer.abort(errors.upstreamTimeout(`request exceeded ${requestMs} ms`))
  }, requestMs)
  return {
    signal: AbortSignal.any([client, timer.signal]),
    timedOut: () => fired,
    clear: () => clearTimeout(t),
  }
}

// ---------------------------------------------------------------------------------------------
// self-hosted targets

async function serverStep(
  t: Extract<RouteTarget, { kind: 'server' }>,
  ctx: StepContext,
  canFallback: (r: FallbackOn) => boolean,
): Promise<Step> {
  const { req, deps, d } = ctx
  const server = t.server
  const picker = deps.picker
  const pickCtx: PickContext = {
    requestId: req.requestId,
    model: req.model,
    isLora: d.isLora,
    server,
    body: req.body,
    header: req.inbound.header,
    ...(req.identity !== undefined ? { identity: req.identity } : {}),
  }
  let admission: Admission | undefined
  if (picker.admit) {
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
  const release = (): void => admission?.release()
  const owned = { byStream: false }
  try {
    return await dispatchToServer(t, ctx, canFallback, pickCtx, release, owned)
  } finally {
    // The one place this target lets go of its admission (idempotent), whatever happened, unless
    // a streaming response still runs and releases it in its onDone.
    if (!owned.byStream) release()
  }
}

async function dispatchToServer(
  t: Extract<RouteTarget, { kind: 'server' }>,
  ctx: StepContext,
  canFallback: (r: FallbackOn) => boolean,
  pickCtx: PickContext,
  release: () => void,
  owned: { byStream: boolean },
): Promise<Step> {
  const { req, deps } = ctx
  const server = t.server
  const picker = deps.picker
  const candidates = picker.pick(pickCtx)
  if (candidates.length === 0) {
    release()
    return failed(errors.noReadyEndpoint(server.key), 'no-ready-endpoints')
  }
  const body: string | Uint8Array =
    t.upstreamModel !== req.model
      ? JSON.stringify({ ...req.body, model: t.upstreamModel })
      : req.raw
  const headers = upstreamHeaders(
    req.inbound.headers(),
    req.requestId,
    req.stripHeaders,
    req.inbound.remoteAddress,
  )

  const dl = deadline(ctx.client, server.trafficPolicy.timeouts.requestMs)
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
    release()
    if (ctx.client.aborted) return failed(clientClosed())
    if (dl.timedOut())
      return failed(
        errors.upstreamTimeout(`request exceeded ${server.trafficPolicy.timeouts.requestMs} ms`),
      )
    const err = e instanceof GatewayError ? e : errors.upstreamUnavailable(String(e))
    return failed(err, lastFailure === 'connect-failure' ? 'connect-failure' : undefined)
  }

  const status = up.statusCode
  const reason: FallbackOn | undefined = status === 429 ? '429' : status >= 500 ? '5xx' : undefined
  if (reason !== undefined && canFallback(reason)) {
    // Nothing went to the client yet: drain (the socket goes back to the pool) and move on.
    up.body.dump().catch(() => {})
    dl.clear()
    picker.onComplete?.(pickCtx, up.endpoint, {
      status,
      failure: 'retry_status',
      durationMs: performance.now() - dispatchedAt,
    })
    release()
    const retryAfter = headerValue(up.headers, 'retry-after')
    return failed(
      new GatewayError(
        status,
        'upstream_error',
        `model server "${server.key}" answered HTTP ${status}`,
        {
          ...(retryAfter !== undefined ? { headers: { 'retry-after': retryAfter } } : {}),
        },
      ),
      reason,
    )
  }

  const endpoint = endpointId(up.endpoint)
  let settled = false
  const onDone = (o: ResponseOutcome): void => {
    settled = true
    dl.clear()
    ctx.unsubscribe()
    release()
    req.closeInflight()
    picker.onComplete?.(pickCtx, up.endpoint, dispatchOutcome(o, dispatchedAt, req.startedAt))
    const code = o.error ?? ''
    const finalStatus = o.error === 'client_closed' ? 499 : o.status
    record(ctx, {
      status: finalStatus,
      code,
      stream: o.stream,
      bytes: o.bytes,
      ...(o.firstByteMs !== undefined ? { firstByteMs: o.firstByteMs } : {}),
      ...(o.usage ? { usage: o.usage } : {}),
      target: t,
      extra: { endpoint, attempts: up.attempts, upstream_headers_ms: round(up.headersMs) },
    })
  }
  const streamFilter = req.limits?.streamFilter()
  try {
    const response = await toClientResponse(up, {
      startedAt: req.startedAt,
      extraHeaders: { 'x-request-id': req.requestId, ...req.limits?.headers },
      ...(streamFilter !== undefined ? { streamFilter } : {}),
      ...(deps.maxUpstreamBodyBytes !== undefined
        ? { maxBodyBytes: deps.maxUpstreamBodyBytes }
        : {}),
      ...(deps.maxSseLineBytes !== undefined ? { maxSseLineBytes: deps.maxSseLineBytes } : {}),
      signal: dl.signal,
      timedOut: dl.timedOut,
      onDone,
    })
    owned.byStream = !settled
    return { kind: 'done', response }
  } catch (e) {
    // A non-streamed body that broke before anything reached the client (onDone already ran).
    const err = dl.timedOut()
      ? errors.upstreamTimeout('response body')
      : ctx.client.aborted
        ? clientClosed()
        : e instanceof GatewayError
          ? e
          : errors.upstreamUnavailable(`${up.endpoint.name}: response body cut`)
    return { kind: 'done', response: errorResponse(err, req.requestId) }
  }
}

// ---------------------------------------------------------------------------------------------
// provider targets

async function providerStep(
  t: Extract<RouteTarget, { kind: 'provider' }>,
  ctx: StepContext,
): Promise<Step> {
  const { req, deps } = ctx
  const p = t.provider
  const adapter = adapterFor(p.type)
  if (!adapter.supports(p, req.api))
    return failed(providerErrors.unsupportedApi(p, req.path), undefined, true)
  const input: BuildInput = {
    provider: p,
    api: req.api,
    body: req.body,
    raw: req.raw,
    upstreamModel: t.upstreamModel,
    clientModel: req.model,
    now: Math.floor(Date.now() / 1000),
    requestId: req.requestId,
  }
  let built: ReturnType<typeof adapter.build>
  try {
    built = adapter.build(input)
  } catch (e) {
    if (e instanceof GatewayError) return failed(e, undefined, true)
    throw e
  }
  const count = (status: number, code: string): void => {
    deps.metrics.providerRequests.inc({
      provider: p.key,
      provider_type: p.type,
      status_class: statusClass(status),
      code,
    })
  }

  const dl = deadline(ctx.client, p.trafficPolicy.timeouts.requestMs)
  let res: ProviderHttpResponse | undefined
  let usedKey: string | undefined
  // At most two sends: the second only when the provider rejected a key that has since rotated.
  for (let round = 0; round < 2; round++) {
    const cred = deps.credentials.get(p)
    if (!cred.ok) {
      dl.clear()
      const err = providerErrors.credentialsUnavailable(p)
      count(err.status, err.code)
      return failed(err, 'no-ready-endpoints')
    }
    // Static headers may not override these (validated); the credential goes last regardless.
    const headers: Record<string, string> = {
      ...built.headers,
      ...p.headers,
      'x-request-id': req.requestId,
      'user-agent': 'infer-gateway',
    }
    if (cred.header !== undefined) {
      headers[cred.header] = cred.value
      usedKey = cred.raw
    }
    try {
      res = await deps.transport.send(
        p,
        { url: built.url, headers, body: built.body },
        dl.signal,
        deps.random,
      )
    } catch (e) {
      dl.clear()
      if (ctx.client.aborted) return failed(clientClosed())
      if (dl.timedOut()) {
        const err = providerErrors.timeout(
          p,
          `request exceeded ${p.trafficPolicy.timeouts.requestMs} ms`,
        )
        count(err.status, err.code)
        return failed(err)
      }
      if (e instanceof ProviderSendError) {
        const err =
          e.reason === 'timeout'
            ? providerErrors.timeout(p, e.message)
            : providerErrors.unreachable(p, e.message)
        count(err.status, err.code)
        return failed(err, e.reason === 'connect-failure' ? 'connect-failure' : undefined)
      }
      throw e
    }
    const rejected = res.statusCode === 401 || res.statusCode === 403
    if (
      round === 0 &&
      rejected &&
      usedKey !== undefined &&
      (await deps.credentials.refreshAfterRejection(p, usedKey))
    ) {
      res.body.dump().catch(() => {})
      continue
    }
    break
  }
  if (res === undefined) throw new Error('unreachable: no provider response')

  if (res.statusCode < 200 || res.statusCode >= 300) {
    let text = ''
    try {
      text = (await readBody(res.body, ERROR_BODY_LIMIT, true)).toString('utf8')
    } catch {
      // The status alone still says enough.
    }
    dl.clear()
    const err = mapProviderError(
      p,
      res.statusCode,
      adapter.errorDetail(res.statusCode, text),
      headerValue(res.headers, 'retry-after'),
    )
    count(err.status, err.code)
    return failed(err, err.status === 429 ? '429' : err.status >= 500 ? '5xx' : undefined)
  }

  if (!built.stream) {
    let raw: Buffer
    try {
      raw = await readBody(res.body, deps.maxUpstreamBodyBytes ?? DEFAULT_MAX_UPSTREAM_BODY_BYTES)
    } catch (e) {
      dl.clear()
      if (ctx.client.aborted) return failed(clientClosed())
      const err =
        dl.timedOut() || isBodyTimeout(e)
          ? providerErrors.timeout(p, 'response body')
          : e instanceof BodyTooLargeError
            ? errors.upstreamBodyTooLarge(`provider "${p.key}"`, e.limit)
            : providerErrors.unreachable(p, 'response body cut')
      count(err.status, err.code)
      return failed(err, err.status === 502 ? '5xx' : undefined)
    }
    dl.clear()
    let parsed: ReturnType<typeof adapter.parse>
    try {
      parsed = adapter.parse(input, raw)
    } catch (e) {
      const err =
        e instanceof GatewayError
          ? e
          : providerErrors.badResponse(p, e instanceof Error ? e.message : String(e))
      count(err.status, err.code)
      return failed(err, '5xx')
    }
    count(res.statusCode, '')
    const firstByteMs = performance.now() - req.startedAt
    record(ctx, {
      status: res.statusCode,
      code: '',
      stream: false,
      bytes:
        typeof parsed.body === 'string' ? Buffer.byteLength(parsed.body) : parsed.body.byteLength,
      firstByteMs,
      ...(parsed.usage ? { usage: parsed.usage } : {}),
      target: t,
      extra: { attempts: res.attempts, upstream_headers_ms: round(res.headersMs) },
    })
    ctx.unsubscribe()
    return {
      kind: 'done',
      response: new Response(parsed.body, {
        status: res.statusCode,
        headers: {
          'content-type': 'application/json',
          'x-request-id': req.requestId,
          ...req.limits?.headers,
        },
      }),
    }
  }
  return streamStep(t, ctx, res, input, dl, count)
}

function isBodyTimeout(e: unknown): boolean {
  return (
    typeof e === 'object' &&
    e !== null &&
    'code' in e &&
    (e as { code: unknown }).code === 'UND_ERR_BODY_TIMEOUT'
  )
}

async function streamStep(
  t: Extract<RouteTarget, { kind: 'provider' }>,
  ctx: StepContext,
  res: ProviderHttpResponse,
  input: BuildInput,
  dl: { signal: AbortSignal; timedOut: () => boolean; clear: () => void },
  count: (status: number, code: string) => void,
): Promise<Step> {
  const { req } = ctx
  const p: SnapshotProvider = t.provider
  const translator = adapterFor(p.type).stream(input)
  const parser = new SseParser(
    ctx.deps.maxSseLineBytes !== undefined ? { maxLine: ctx.deps.maxSseLineBytes } : {},
  )
  const iterator = res.body[Symbol.asyncIterator]()
  const enc = new TextEncoder()
  let ended = false

  /** Reads until the translator has output (or the stream is over). */
  const next = async (): Promise<string[]> => {
    const out: string[] = []
    while (out.length === 0 && !ended) {
      const { value, done } = await iterator.next()
      if (done) {
        ended = true
        for (const ev of parser.end()) out.push(...translator.push(ev))
        out.push(...translator.end())
        break
      }
      for (const ev of parser.push(value as Uint8Array)) out.push(...translator.push(ev))
    }
    return out
  }

  // Peek: until the first translated chunk exists nothing is committed, so a stream that fails
  // right away (an overloaded error event, a cut) can still fall back.
  let first: string[]
  try {
    first = await next()
  } catch (e) {
    res.body.destroy()
    dl.clear()
    if (ctx.client.aborted) return failed(clientClosed())
    const err =
      e instanceof ProviderStreamError
        ? new GatewayError(e.code === 'provider_overloaded' ? 503 : 502, e.code, e.message)
        : e instanceof SseLineTooLongError
          ? new GatewayError(502, e.code, e.message)
          : dl.timedOut() || isBodyTimeout(e)
            ? providerErrors.timeout(p, 'stream')
            : providerErrors.unreachable(p, 'stream cut before the first event')
    count(err.status, err.code)
    const retryable = e instanceof ProviderStreamError ? e.retryable : err.status === 502
    return failed(err, retryable && err.status >= 500 && err.status !== 504 ? '5xx' : undefined)
  }

  const firstByteMs = performance.now() - req.startedAt
  let bytes = 0
  let finished = false
  const finish = (error?: string, message?: string): void => {
    if (finished) return
    finished = true
    dl.clear()
    ctx.unsubscribe()
    count(res.statusCode, error ?? '')
    const status = error === 'client_closed' ? 499 : res.statusCode
    record(ctx, {
      status,
      code: error ?? '',
      stream: true,
      bytes,
      firstByteMs,
      ...(translator.usage ? { usage: translator.usage } : {}),
      target: t,
      extra: {
        attempts: res.attempts,
        upstream_headers_ms: round(res.headersMs),
        ...(message !== undefined ? { error_message: message } : {}),
      },
    })
  }
  const emit = (
    controller: ReadableStreamDefaultController<Uint8Array>,
    frames: string[],
  ): void => {
    for (const f of frames) {
      const b = enc.encode(f)
      bytes += b.byteLength
      controller.enqueue(b)
    }
  }
  let pending: string[] | undefined = first
  // The rate limiter sees translated OpenAI events exactly as it sees an engine's.
  const filter = req.limits?.streamFilter()
  const stream = new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const frames = pending ?? (await next())
        pending = undefined
        if (filter === undefined) emit(controller, frames)
        else {
          for (const f of frames) {
            const r = await filter.transform(enc.encode(f))
            if (r.out !== undefined && r.out.byteLength > 0) {
              bytes += r.out.byteLength
              controller.enqueue(r.out)
            }
            if (r.end !== undefined) {
              finish(r.end)
              controller.close()
              res.body.destroy()
              return
            }
          }
          if (ended) {
            const rest = filter.flush()
            if (rest !== undefined && rest.byteLength > 0) controller.enqueue(rest)
          }
        }
        if (ended) {
          finish()
          controller.close()
        }
      } catch (e) {
        res.body.destroy()
        if (ctx.client.aborted && !dl.timedOut()) {
          finish('client_closed')
          controller.close()
          return
        }
        let code: string
        let message: string
        if (e instanceof ProviderStreamError || e instanceof SseLineTooLongError) {
          code = e.code
          message = e.message
        } else if (dl.timedOut() || isBodyTimeout(e)) {
          code = 'upstream_timeout'
          message = 'provider stream timed out'
        } else {
          code = 'upstream_stream_cut'
          message = 'provider closed the stream before it finished'
        }
        emit(controller, [sseError(message, code)])
        finish(code, message)
        controller.close()
      }
    },
    cancel() {
      // The client went away: stop the provider's generation (and its bill) too.
      finish('client_closed')
      res.body.destroy()
    },
  })
  return {
    kind: 'done',
    response: new Response(stream, {
      status: res.statusCode,
      headers: {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache',
        'x-accel-buffering': 'no',
        'x-request-id': req.requestId,
        ...req.limits?.headers,
      },
    }),
  }
}

// ---------------------------------------------------------------------------------------------
// accounting

interface Outcome {
  readonly status: number
  readonly code: string
  readonly stream: boolean
  readonly bytes: number
  readonly firstByteMs?: number
  readonly usage?: ProviderUsage
  readonly target: RouteTarget
  readonly extra: Record<string, unknown>
}

/** One access-log line and the metrics for a request that got a response from a target. */
function record(ctx: StepContext, o: Outcome): void {
  const { req, deps } = ctx
  const { metrics } = deps
  req.closeInflight()
  req.limits?.settle({
    status: o.status,
    ...(o.usage
      ? {
          usage: { promptTokens: o.usage.promptTokens, completionTokens: o.usage.completionTokens },
        }
      : {}),
  })
  req.observe?.(o.status)
  const duration = performance.now() - req.startedAt
  metrics.requests.inc({
    model: req.modelLabel,
    api: req.api,
    status_class: statusClass(o.status),
    code: o.code,
  })
  metrics.duration.observe({ model: req.modelLabel, api: req.api }, duration / 1000)
  if (o.firstByteMs !== undefined)
    metrics.ttft.observe({ model: req.modelLabel, api: req.api }, o.firstByteMs / 1000)
  const u = o.usage
  if (u) {
    metrics.tokens.inc({ model: req.modelLabel, type: 'input' }, u.promptTokens)
    metrics.tokens.inc({ model: req.modelLabel, type: 'output' }, u.completionTokens)
  }
  let cost: number | undefined
  let currency: string | undefined
  if (o.target.kind === 'provider') {
    const p = o.target.provider
    const labels = {
      provider: p.key,
      model: o.target.upstreamModel,
      tier: tierLabel(req.identity),
    }
    if (u) {
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
  }
  const entry: Entry & Record<string, unknown> = {
    time: new Date().toISOString(),
    request_id: req.requestId,
    method: 'POST',
    path: req.path,
    status: o.status,
    duration_ms: round(duration),
    model: req.model,
    ...ctx.base,
    ...targetFields(o.target),
    ...o.extra,
    stream: o.stream,
    ...(u ? { prompt_tokens: u.promptTokens, completion_tokens: u.completionTokens } : {}),
    ...(u?.cachedPromptTokens ? { cached_prompt_tokens: u.cachedPromptTokens } : {}),
    ...(cost !== undefined && currency !== undefined
      ? { cost: Math.round(cost * 1e9) / 1e9, currency }
      : {}),
    ...(o.firstByteMs !== undefined ? { first_byte_ms: round(o.firstByteMs) } : {}),
    bytes: o.bytes,
    ...(ctx.tried.length > 0 ? { fallbacks: [...ctx.tried] } : {}),
    ...(o.code !== '' ? { error_code: o.code } : {}),
  }
  deps.accessLog(entry)
}
