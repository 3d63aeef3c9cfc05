// The data plane's HTTP surface: OpenAI-compatible inference routes plus health and metrics.
// Request path: read body (bounded) → parse → match route → pick endpoints → forward with
// retries → stream or return the upstream response. Every gateway-made error is OpenAI-shaped.
import { randomUUID } from 'node:crypto'
import type { ServerResponse } from 'node:http'
import type { HttpBindings } from '@hono/node-server'
import type { Context } from 'hono'
import { Hono } from 'hono'
import { type AccessLogger, discardLogger } from './access-log.js'
import { DEFAULT_MAX_JSON_DEPTH, parseJsonObject } from './body.js'
import { clip, errors, GatewayError } from './errors.js'
import type { Filters, Identity, Admission as LimitAdmission } from './filters/index.js'
import { fetchInbound, nodeInbound } from './inbound.js'
import type { GatewayMetrics } from './metrics.js'
import { statusClass } from './metrics.js'
import type { Admission, EndpointPicker, PickContext } from './picker.js'
import { dispatchOutcome, endpointId, failureOf } from './picker.js'
import { type ChainDeps, dispatchChain, ProviderRuntime } from './providers/index.js'
import { forward } from './proxy/forward.js'
import { upstreamHeaders } from './proxy/headers.js'
import { type ResponseOutcome, toClientResponse } from './proxy/respond.js'
import type { UpstreamPool } from './proxy/upstream-pool.js'
import type { RouteDecision } from './router.js'
import type { SnapshotStore } from './snapshot-store.js'

export interface Lifecycle {
  /** Set when shutdown begins: readiness fails so load balancers stop sending new traffic. */
  draining: boolean
}

export interface AppDeps {
  readonly store: SnapshotStore
  readonly picker: EndpointPicker
  readonly pool: UpstreamPool
  readonly metrics: GatewayMetrics
  readonly accessLog?: AccessLogger
  /** Authentication, authorization and rate limits (absent: none). */
  readonly filters?: Filters
  readonly lifecycle?: Lifecycle
  /** Request body limit in bytes (default 10 MiB). */
  readonly maxBodyBytes?: number
  /** Deepest object/array nesting accepted in a request body (default 128). */
  readonly maxJsonDepth?: number
  /** Cap of a non-streamed upstream response body (default 64 MiB): past it 502. */
  readonly maxUpstreamBodyBytes?: number
  /** Cap of one SSE line from an upstream (default 1 MiB): past it the stream ends with an error. */
  readonly maxSseLineBytes?: number
  /**
   * Explain routing: serve GET /debug/endpoints (the picker's view: pod addresses, load, scores)
   * and answer `x-infer-gateway-explain: 1` with the decision line. Off by default: both reveal
   * pod names and scores.
   */
  readonly explain?: boolean
  /** Old name of `explain` (same effect). */
  readonly debugEndpoints?: boolean
  readonly random?: () => number
  /** External providers' connections and credentials (default: no credentials mounted). */
  readonly providers?: ProviderRuntime
}

const INFERENCE_APIS = {
  '/v1/chat/completions': 'chat',
  '/v1/completions': 'completions',
  '/v1/embeddings': 'embeddings',
} as const

type InferencePath = keyof typeof INFERENCE_APIS

export function errorResponse(err: GatewayError, requestId?: string): Response {
  const headers = new Headers({ 'content-type': 'application/json', ...err.headers })
  if (requestId) headers.set('x-request-id', requestId)
  return new Response(JSON.stringify(err.toBody()), { status: err.status, headers })
}

export function createApp(deps: AppDeps): Hono {
  const app = new Hono()
  const log = deps.accessLog ?? discardLogger
  const lifecycle = deps.lifecycle ?? { draining: false }
  const maxBody = deps.maxBodyBytes ?? 10 * 1024 * 1024
  const maxJsonDepth = deps.maxJsonDepth ?? DEFAULT_MAX_JSON_DEPTH
  const random = deps.random ?? Math.random
  const { metrics } = deps
  const providers = deps.providers ?? new ProviderRuntime()
  const chainDeps: ChainDeps = {
    pool: deps.pool,
    picker: deps.picker,
    metrics,
    accessLog: log,
    transport: providers.transport,
    credentials: providers.credentials,
    random,
    ...(deps.maxUpstreamBodyBytes !== undefined
      ? { maxUpstreamBodyBytes: deps.maxUpstreamBodyBytes }
      : {}),
    ...(deps.maxSseLineBytes !== undefined ? { maxSseLineBytes: deps.maxSseLineBytes } : {}),
  }

  app.get('/healthz', (c) => c.json({ status: 'ok' }))
  app.get('/readyz', (c) => {
    if (lifecycle.draining) return c.json({ status: 'draining' }, 503)
    const snap = deps.store.snapshot
    if (!snap) return c.json({ status: 'no-config' }, 503)
    // A config that routes nothing (an accepted empty one, or every route invalid) serves only
    // 404s: not ready, so load balancers keep sending to replicas that do route.
    if ((deps.store.table?.models.length ?? 0) === 0)
      return c.json({ status: 'no-routes', snapshotVersion: snap.version }, 503)
    return c.json({ status: 'ready', snapshotVersion: snap.version })
  })
  const explainOn = deps.explain === true || deps.debugEndpoints === true
  const debugView = deps.picker.debug
  if (debugView && explainOn) {
    // The picker's live view of each endpoint (engine metrics, own load, health, plugin state).
    // Read-only and opt-in (--explain): nothing secret, but pod addresses and load are
    // not every client's business. Documented in docs/scheduling.md.
    app.get(
      '/debug/endpoints',
      () =>
        new Response(JSON.stringify(debugView.call(deps.picker), null, 2), {
          headers: { 'content-type': 'application/json' },
        }),
    )
  }
  app.get('/metrics', async (c) => {
    const text = await metrics.registry.metrics()
    return c.body(text, 200, { 'content-type': metrics.registry.contentType })
  })
  app.get('/v1/models', async (c) => {
    const table = deps.store.table
    if (!table) return errorResponse(errors.notReady())
    let models = table.models
    const filters = deps.filters?.active ? deps.filters : undefined
    if (filters !== undefined) {
      // Callers see only the models they may call (and need credentials where any are needed).
      const env = c.env as Partial<HttpBindings> | undefined
      let identity: Identity
      try {
        identity = await filters.authenticate({
          header: (n) => c.req.header(n),
          remoteAddress: env?.incoming?.socket.remoteAddress,
        })
      } catch (e) {
        return errorResponse(e instanceof GatewayError ? e : errors.internal())
      }
      const routes = new Map(table.snapshot.routes.map((r) => [r.key, r]))
      models = models.filter((m) => filters.visible(identity, routes.get(m.route), m.id))
    }
    return c.json({
      object: 'list',
      data: models.map((m) => ({
        id: m.id,
        object: 'model',
        created: m.created,
        owned_by: 'infer-gateway',
      })),
    })
  })

  for (const path of Object.keys(INFERENCE_APIS) as InferencePath[]) {
    app.post(path, (c) => handleInference(c, path))
  }

  // Methods each known path answers to: any other method there is a 405 with `Allow`, not a 404.
  const allowed = new Map<string, readonly string[]>([
    ['/healthz', ['GET', 'HEAD']],
    ['/readyz', ['GET', 'HEAD']],
    ['/metrics', ['GET', 'HEAD']],
    ['/v1/models', ['GET', 'HEAD']],
    ...Object.keys(INFERENCE_APIS).map((p): [string, readonly string[]] => [p, ['POST']]),
    ...(debugView && deps.debugEndpoints
      ? [['/debug/endpoints', ['GET', 'HEAD']] as [string, readonly string[]]]
      : []),
  ])
  app.notFound((c) => {
    const allow = allowed.get(c.req.path)
    if (allow !== undefined)
      return errorResponse(errors.methodNotAllowed(c.req.method, c.req.path, allow))
    return errorResponse(errors.notFound(c.req.path))
  })
  app.onError((err) => {
    if (err instanceof GatewayError) return errorResponse(err)
    return errorResponse(errors.internal())
  })

  async function handleInference(c: Context, path: InferencePath): Promise<Response> {
    const startedAt = performance.now()
    const api = INFERENCE_APIS[path]
    const env = c.env as Partial<HttpBindings> | undefined
    const inbound =
      env?.incoming && env.outgoing
        ? nodeInbound(env.incoming, env.outgoing as ServerResponse)
        : fetchInbound(c.req.raw)
    const requestId = inbound.header('x-request-id') || randomUUID()
    const filters = deps.filters?.active ? deps.filters : undefined
    let identity: Identity | undefined
    let limits: LimitAdmission | undefined
    let model: string | undefined
    let decision: RouteDecision | undefined
    let modelLabel = 'unknown'
    metrics.inflight.inc()
    let inflightOpen = true
    let admission: Admission | undefined
    const closeInflight = (): void => {
      if (inflightOpen) {
        inflightOpen = false
        metrics.inflight.dec()
        admission?.release()
      }
    }
    /** Set when the returned response is a stream whose end records the outcome (onDone). */
    let bodyOwnsEnd = false
    /** Stops the upstream deadline timer and client-gone listener once they exist. */
    let cleanupForward: (() => void) | undefined
    /** The outcome (metrics, access log) was recorded: by `fail` or by `onDone`, never both. */
    let recorded = false

    const fail = (err: GatewayError, extra: { endpoint?: string; attempts?: number } = {}) => {
      closeInflight()
      // Nothing was generated: the reserved tokens go back.
      limits?.settle({ status: 0 })
      if (recorded) return errorResponse(err, requestId)
      recorded = true
      filters?.observe(identity, err.status)
      const duration = performance.now() - startedAt
      metrics.requests.inc({
        model: modelLabel,
        api,
        status_class: statusClass(err.status),
        code: err.code,
      })
      metrics.duration.observe({ model: modelLabel, api }, duration / 1000)
      log({
        time: new Date().toISOString(),
        request_id: requestId,
        method: 'POST',
        path,
        status: err.status,
        duration_ms: round(duration),
        ...(model !== undefined ? { model: clip(model) } : {}),
        ...decisionFields(decision),
        ...identityFields(identity),
        ...extra,
        error_code: err.code,
      })
      return errorResponse(err, requestId)
    }

    try {
      if (filters !== undefined) {
        // Before the body is read: a caller with bad credentials does not get to upload 10 MiB.
        try {
          identity = await filters.authenticate({
            header: inbound.header,
            remoteAddress: env?.incoming?.socket.remoteAddress,
          })
        } catch (e) {
          return fail(e instanceof GatewayError ? e : errors.internal())
        }
      }

      const table = deps.store.table
      let body: Record<string, unknown>
      let raw: Uint8Array
      try {
        raw = await inbound.readBody(maxBody)
        body = parseJsonObject(raw, maxJsonDepth)
      } catch (e) {
        return fail(e instanceof GatewayError ? e : errors.invalidJson(String(e)))
      }
      const m = body['model']
      if (typeof m !== 'string' || m === '') return fail(errors.missingModel())
      model = m
      if (!table) return fail(errors.notReady())
      if (table.hasModel(m)) modelLabel = m

      const result = table.resolve({ model: m, path, header: inbound.header })
      if (result.kind === 'unknown-model') return fail(errors.modelNotFound(m))
      if (result.kind === 'no-rule') return fail(errors.routeNotFound(m))
      if (filters !== undefined && identity !== undefined) {
        try {
          filters.authorize(identity, result.decision.route, m)
          limits = await filters.admit({
            route: result.decision.route,
            identity,
            api,
            model: m,
            body,
          })
        } catch (e) {
          return fail(e instanceof GatewayError ? e : errors.internal())
        }
        if (limits?.injectUsage) {
          // Ask the engine for usage so the stream settles exactly; the usage-only chunk is
          // removed again on the way back (the client did not ask for it).
          const so = body['stream_options']
          body = {
            ...body,
            stream_options: {
              ...(typeof so === 'object' && so !== null ? so : {}),
              include_usage: true,
            },
          }
          raw = Buffer.from(JSON.stringify(body))
        }
      }
      if (result.kind === 'chain') {
        // External providers and fallback lists (dataplane/providers/): that module serves the rest
        // of the request and writes its access-log line and metrics.
        const res = await dispatchChain(
          result.decision,
          {
            requestId,
            path,
            api,
            model: m,
            modelLabel,
            body,
            raw,
            inbound,
            startedAt,
            closeInflight,
            ...(identity !== undefined ? { identity, logFields: identityFields(identity) } : {}),
            ...(limits !== undefined ? { limits } : {}),
            ...(filters !== undefined
              ? {
                  stripHeaders: filters.stripHeaders,
                  observe: (status: number) => filters.observe(identity, status),
                }
              : {}),
          },
          chainDeps,
        )
        // Still open: a stream that records the outcome when it ends.
        bodyOwnsEnd = inflightOpen
        return res
      }
      decision = result.decision
      const server = decision.server

      const pickCtx: PickContext = {
        requestId,
        model: m,
        isLora: decision.isLora,
        server,
        body,
        header: inbound.header,
        ...(explainOn && inbound.header(EXPLAIN_HEADER) === '1' ? { explain: {} } : {}),
        ...(identity !== undefined ? { identity } : {}),
      }
      const picker = deps.picker
      if (picker.admit) {
        // Admission may queue (fairness while the server is saturated); the pick comes after it so
        // a request that waited is placed on the current view of the endpoints.
        const gone = new AbortController()
        const unsubscribe = inbound.onClientGone(() => gone.abort())
        try {
          const a = picker.admit(pickCtx, gone.signal)
          admission = a instanceof Promise ? await a : a
        } catch (e) {
          return fail(e instanceof GatewayError ? e : errors.internal())
        } finally {
          unsubscribe()
        }
      }
      const candidates = picker.pick(pickCtx)
      if (candidates.length === 0) return fail(errors.noReadyEndpoint(server.key))

      // Re-serialise only when the model is rewritten; otherwise the client's bytes go through.
      let upstreamBody: string | Uint8Array = raw
      if (decision.upstreamModel !== m) {
        upstreamBody = JSON.stringify({ ...body, model: decision.upstreamModel })
      }

      const headers = upstreamHeaders(
        inbound.headers(),
        requestId,
        filters?.stripHeaders,
        inbound.remoteAddress,
      )
      const abort = new AbortController()
      const unsubscribeClientGone = inbound.onClientGone(() => abort.abort(new ClientClosedError()))
      let timedOut = false
      const requestMs = server.trafficPolicy.timeouts.requestMs
      const timer =
        requestMs > 0
          ? setTimeout(() => {
              timedOut = true
              abort.abort(errors.upstreamTimeout(`request exceeded ${requestMs} ms`))
            }, requestMs)
          : undefined
      const cleanup = (): void => {
        if (timer) clearTimeout(timer)
        unsubscribeClientGone()
      }
      cleanupForward = cleanup

      let dispatchedAt = performance.now()
      let up: Awaited<ReturnType<typeof forward>>
      try {
        up = await forward(
          deps.pool,
          {
            server,
            candidates,
            method: 'POST',
            path,
            headers,
            body: upstreamBody,
            signal: abort.signal,
            onAttemptStart: (ep) => {
              dispatchedAt = performance.now()
              picker.onDispatch?.(pickCtx, ep)
            },
            onAttemptFailed: (f) => {
              metrics.upstreamFailures.inc({ server: server.key, reason: f.reason })
              picker.onComplete?.(pickCtx, f.endpoint, {
                status: f.status ?? 0,
                failure: failureOf(f.reason),
                durationMs: performance.now() - dispatchedAt,
              })
            },
          },
          random,
        )
      } catch (e) {
        cleanup()
        if (e instanceof ClientClosedError)
          return fail(new GatewayError(499, 'client_closed', 'client closed the request'))
        return fail(e instanceof GatewayError ? e : errors.upstreamUnavailable(String(e)))
      }

      const d = decision
      const endpoint = endpointId(up.endpoint)
      const onDone = (o: ResponseOutcome): void => {
        cleanup()
        closeInflight()
        recorded = true
        picker.onComplete?.(pickCtx, up.endpoint, dispatchOutcome(o, dispatchedAt, startedAt))
        const duration = performance.now() - startedAt
        const status = o.error === 'client_closed' ? 499 : o.status
        limits?.settle({ status: o.status, ...(o.usage ? { usage: o.usage } : {}) })
        filters?.observe(identity, status)
        metrics.requests.inc({
          model: modelLabel,
          api,
          status_class: statusClass(status),
          code: o.error ?? '',
        })
        metrics.duration.observe({ model: modelLabel, api }, duration / 1000)
        if (o.firstByteMs !== undefined)
          metrics.ttft.observe({ model: modelLabel, api }, o.firstByteMs / 1000)
        if (o.usage) {
          metrics.tokens.inc({ model: modelLabel, type: 'input' }, o.usage.promptTokens)
          metrics.tokens.inc({ model: modelLabel, type: 'output' }, o.usage.completionTokens)
        }
        log({
          time: new Date().toISOString(),
          request_id: requestId,
          method: 'POST',
          path,
          status,
          duration_ms: round(duration),
          model: m,
          ...decisionFields(d),
          ...identityFields(identity),
          endpoint,
          attempts: up.attempts,
          stream: o.stream,
          ...(o.usage
            ? { prompt_tokens: o.usage.promptTokens, completion_tokens: o.usage.completionTokens }
            : {}),
          ...(o.firstByteMs !== undefined ? { first_byte_ms: round(o.firstByteMs) } : {}),
          upstream_headers_ms: round(up.headersMs),
          bytes: o.bytes,
          ...(o.error ? { error_code: o.error } : {}),
        })
      }
      const streamFilter = limits?.streamFilter()
      try {
        const response = await toClientResponse(up, {
          startedAt,
          extraHeaders: {
            'x-request-id': requestId,
            ...(pickCtx.explain?.text !== undefined
              ? { [EXPLAIN_HEADER]: pickCtx.explain.text }
              : {}),
            ...limits?.headers,
          },
          ...(streamFilter !== undefined ? { streamFilter } : {}),
          ...(deps.maxUpstreamBodyBytes !== undefined
            ? { maxBodyBytes: deps.maxUpstreamBodyBytes }
            : {}),
          ...(deps.maxSseLineBytes !== undefined ? { maxSseLineBytes: deps.maxSseLineBytes } : {}),
          signal: abort.signal,
          timedOut: () => timedOut,
          onDone,
        })
        // Still open: a stream that runs onDone when it ends.
        bodyOwnsEnd = inflightOpen
        return response
      } catch (e) {
        // The non-streaming body failed before anything reached the client: we can still answer.
        if (timedOut) return errorResponse(errors.upstreamTimeout('response body'), requestId)
        if (abort.signal.aborted)
          return errorResponse(
            new GatewayError(499, 'client_closed', 'client closed the request'),
            requestId,
          )
        // Refused by the gateway itself (e.g. the response passed the body cap).
        if (e instanceof GatewayError) return errorResponse(e, requestId)
        return errorResponse(
          errors.upstreamUnavailable(`${up.endpoint.name}: response body cut`),
          requestId,
        )
      }
    } catch (e) {
      // Anything thrown on the request path (a bug, a picker, a serialiser) still ends the
      // request properly: metrics, access log, settlement and the in-flight release below.
      return fail(asGatewayError(e))
    } finally {
      // The one place the request lets go of what it holds: the in-flight gauge, the fairness
      // admission and the rate-limit reservation (all idempotent), unless a streaming body
      // still owns them and releases them when it ends.
      if (!bodyOwnsEnd) {
        cleanupForward?.()
        closeInflight()
        limits?.settle({ status: 0 })
      }
    }
  }

  return app
}

/** Request header `1` asks for the scheduler's decision summary in the same-named response header. */
export const EXPLAIN_HEADER = 'x-infer-gateway-explain'

/** An unexpected exception as the client sees it: a plain 500, nothing of its text. */
function asGatewayError(e: unknown): GatewayError {
  return e instanceof GatewayError ? e : errors.internal()
}

class ClientClosedError extends Error {
  readonly code = 'client_closed'
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000
}

function identityFields(id: Identity | undefined): Record<string, string> {
  if (id === undefined) return {}
  return {
    auth: id.method,
    subject: id.subject,
    tenant: id.tenant,
    ...(id.tier ? { tier: id.tier } : {}),
  }
}

function decisionFields(d: RouteDecision | undefined): Record<string, string> {
  if (!d) return {}
  return {
    route: d.route.key,
    rule: d.rule.name,
    server: d.server.key,
    upstream_model: d.upstreamModel,
  }
}
