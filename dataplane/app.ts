// The data plane's HTTP surface: OpenAI-compatible inference routes plus health and metrics.
// Request path: read body (bounded) → parse → match route → pick endpoints → forward with
// retries → stream or return the upstream response. Every gateway-made error is OpenAI-shaped.
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { HttpBindings } from '@hono/node-server'
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response'
import type { Context } from 'hono'
import { Hono } from 'hono'
import type { SnapshotRoute } from '../api/snapshot.js'
import { type AccessLogger, discardLogger } from './access-log.js'
import { messagesAnswer, rewrittenInbound, translateMessages } from './api/messages/index.js'
import { ModelCatalog } from './api/models.js'
import { servePlain } from './api/plain.js'
import { requestIdOf } from './api/request-id.js'
import { responsesAdmissionView } from './api/responses.js'
import { DEFAULT_MAX_JSON_DEPTH, parseJsonObject } from './body.js'
import { errors, GatewayError } from './errors.js'
import type { Filters, Identity, Admission as LimitAdmission } from './filters/index.js'
import { fetchInbound, type Inbound, nodeInbound } from './inbound.js'
import type { GatewayMetrics } from './metrics.js'
import { writeAnswer } from './node-answer.js'
import type { EndpointPicker } from './picker.js'
import { ProviderRuntime } from './providers/index.js'
import type { RouteTable } from './router.js'
import { serveChain } from './serve/chain.js'
import { errorResponse, Outcome, type OutcomeEnv } from './serve/outcome.js'
import { EXPLAIN_HEADER } from './serve/server-target.js'
import type { ServeDeps, ServeRequest } from './serve/types.js'
import type { SnapshotStore } from './snapshot-store.js'
import type { Tracing } from './telemetry/tracing.js'

export { EXPLAIN_HEADER, errorResponse }

export interface Lifecycle {
  /** Set when shutdown begins: readiness fails so load balancers stop sending new traffic. */
  draining: boolean
}

export interface AppDeps {
  readonly store: SnapshotStore
  readonly picker: EndpointPicker
  /** Connections to the engines (proxy/upstream-pool.ts), used by serve/. */
  readonly pool: ServeDeps['pool']
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
  /** OpenTelemetry tracing (absent: off, and nothing of it runs). */
  readonly tracing?: Tracing
}

const INFERENCE_APIS = {
  '/v1/chat/completions': 'chat',
  '/v1/completions': 'completions',
  '/v1/embeddings': 'embeddings',
  '/v1/responses': 'responses',
  '/v1/messages': 'messages',
} as const

type InferencePath = keyof typeof INFERENCE_APIS

const MODEL_METHODS: readonly string[] = ['GET', 'HEAD']

type NodeListener = (req: IncomingMessage, res: ServerResponse) => void

type Writable<T> = { -readonly [K in keyof T]: T[K] }

/**
 * Inference routes the listener serves without Hono. Their handler reads Node's request and
 * writes Node's response itself, so Hono's routing, Context and the adapter's Request wrapper and
 * response conversion were pure per-request cost. /v1/messages stays with Hono (its answer is
 * rewritten as a Response).
 */
const DIRECT: ReadonlySet<string> = new Set<InferencePath>([
  '/v1/chat/completions',
  '/v1/completions',
  '/v1/embeddings',
  '/v1/responses',
])

/** The direct handler of each app createApp made. */
const directHandlers = new WeakMap<
  Hono,
  (req: IncomingMessage, res: ServerResponse, path: InferencePath) => void
>()

/**
 * The Node request listener for `app`: POSTs to the inference routes (exact path, no query) go
 * straight to their handler, everything else to `viaHono` (the Hono adapter's listener).
 */
export function nodeListener(
  app: Hono,
  viaHono: (req: IncomingMessage, res: ServerResponse) => unknown,
): NodeListener {
  const direct = directHandlers.get(app)
  return (req, res) => {
    const url = req.url
    if (direct !== undefined && req.method === 'POST' && url !== undefined && DIRECT.has(url)) {
      direct(req, res, url as InferencePath)
      return
    }
    void viaHono(req, res)
  }
}

/** The model id of `/v1/models/{id}` (percent-decoded; ids such as `org/model` keep their slash). */
function modelIdOf(path: string): string | undefined {
  const rest = path.slice('/v1/models/'.length)
  if (rest === '') return undefined
  try {
    return decodeURIComponent(rest)
  } catch {
    return undefined
  }
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
  const serveDeps: ServeDeps = {
    pool: deps.pool,
    picker: deps.picker,
    metrics,
    transport: providers.transport,
    credentials: providers.credentials,
    random,
    ...(deps.maxUpstreamBodyBytes !== undefined
      ? { maxUpstreamBodyBytes: deps.maxUpstreamBodyBytes }
      : {}),
    ...(deps.maxSseLineBytes !== undefined ? { maxSseLineBytes: deps.maxSseLineBytes } : {}),
  }
  const filters = deps.filters?.active ? deps.filters : undefined
  const outcomeEnv: OutcomeEnv = {
    metrics,
    accessLog: log,
    ...(filters !== undefined ? { observe: (id, status) => filters.observe(id, status) } : {}),
  }
  /** The table the bound metric series belong to: a new snapshot drops the old bindings. */
  let seriesTable: RouteTable | undefined

  app.get('/healthz', (c) => c.json({ status: 'ok' }))
  app.get('/readyz', (c) => {
    if (lifecycle.draining) return c.json({ status: 'draining' }, 503)
    const snap = deps.store.snapshot
    if (!snap) return c.json({ status: 'no-config' }, 503)
    // A config that routes nothing (an accepted empty one, or every route invalid) serves only
    // 404s: not ready, so load balancers keep sending to replicas that do route.
    if ((deps.store.table?.models.length ?? 0) === 0)
      return c.json({ status: 'no-routes', snapshotVersion: snap.version }, 503)
    // The start-up warm-up (--scheduler-warmup) costs ~0.5 s of CPU; traffic sent before it ends
    // meets cold code and shares the core with it.
    if (deps.picker.warming?.() === true)
      return c.json({ status: 'warming', snapshotVersion: snap.version }, 503)
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
  const catalog = new ModelCatalog()
  const routesByTable = new WeakMap<RouteTable, Map<string, SnapshotRoute>>()
  /** The caller's identity for model listing, or undefined when no policy is active. */
  const listingIdentity = async (c: Context): Promise<Identity | undefined> => {
    const filters = deps.filters?.active ? deps.filters : undefined
    if (filters === undefined) return undefined
    const env = c.env as Partial<HttpBindings> | undefined
    return filters.authenticate({
      header: (n) => c.req.header(n),
      remoteAddress: env?.incoming?.socket.remoteAddress,
    })
  }
  /** Callers see only the models they may call (and need credentials where any are needed). */
  const visibleTo = (
    identity: Identity | undefined,
    table: RouteTable,
    route: string,
    id: string,
  ) => {
    const filters = deps.filters?.active ? deps.filters : undefined
    if (filters === undefined || identity === undefined) return true
    let routes = routesByTable.get(table)
    if (routes === undefined) {
      routes = new Map(table.snapshot.routes.map((r) => [r.key, r]))
      routesByTable.set(table, routes)
    }
    return filters.visible(identity, routes.get(route), id)
  }
  const plainReq = (c: Context) => ({
    method: c.req.method,
    path: c.req.path,
    header: (n: string) => c.req.header(n),
  })
  app.get('/v1/models', (c) =>
    servePlain(log, plainReq(c), async () => {
      const table = deps.store.table
      if (!table) return errors.notReady()
      const identity = await listingIdentity(c)
      const data = catalog
        .list(table)
        .filter((m) => visibleTo(identity, table, m.route, m.model.id))
        .map((m) => m.model)
      return c.json({ object: 'list', data })
    }),
  )
  app.get('/v1/models/*', (c) =>
    servePlain(log, plainReq(c), async () => {
      const table = deps.store.table
      if (!table) return errors.notReady()
      const id = modelIdOf(c.req.path)
      const identity = await listingIdentity(c)
      const m = id === undefined ? undefined : catalog.find(table, id)
      // A model the caller may not see is as unknown to them as one that does not exist.
      if (id === undefined || m === undefined || !visibleTo(identity, table, m.route, id))
        return errors.modelNotFound(id ?? c.req.path)
      return c.json(m.model)
    }),
  )

  for (const path of Object.keys(INFERENCE_APIS) as InferencePath[]) {
    if (path === '/v1/messages') {
      // Anthropic's API: the answer (and any error) is rewritten into Anthropic's shapes unless
      // an Anthropic provider answered.
      app.post(path, async (c) => {
        let out: Outcome | undefined
        const res = await handleInference(...fromContext(c), path, (o) => {
          out = o
        })
        const t = out?.target
        return messagesAnswer(
          res,
          res.status < 400 && t?.kind === 'provider' && t.provider.type === 'Anthropic',
          out?.model ?? '',
          out?.requestId,
        )
      })
      continue
    }
    app.post(path, (c) => handleInference(...fromContext(c), path))
  }
  // Not an async function, and no `.catch` chained by the listener: its async frame, awaits and
  // catch promise were 0.3-0.5 KiB of allocation per request (docs/proxy-cost.md, 2026-12-04).
  // One closure takes both outcomes of handleInference (it catches everything itself; a
  // rejection would be a bug in its own error path).
  directHandlers.set(app, (req, res, path) => {
    const settle = (answer: unknown): void => {
      // An engine's answer is already written (proxy/respond.ts): nothing more to do.
      if (answer === RESPONSE_ALREADY_SENT) return
      try {
        // What app.onError does for the Hono routes.
        const r = answer instanceof Response ? answer : errorResponse(asGatewayError(answer))
        writeAnswer(r, res).catch(() => res.destroy())
      } catch {
        // Never an unhandled rejection of the `then` below (it would end the process).
        res.destroy()
      }
    }
    let p: Promise<Response>
    try {
      p = handleInference(nodeInbound(req, res), req.socket.remoteAddress, path)
    } catch (e) {
      settle(e)
      return
    }
    p.then(settle, settle)
  })

  // Methods each known path answers to: any other method there is a 405 with `Allow`, not a 404.
  const allowed = new Map<string, readonly string[]>([
    ['/healthz', ['GET', 'HEAD']],
    ['/readyz', ['GET', 'HEAD']],
    ['/metrics', ['GET', 'HEAD']],
    ['/v1/models', MODEL_METHODS],
    ...Object.keys(INFERENCE_APIS).map((p): [string, readonly string[]] => [p, ['POST']]),
    ...(debugView && deps.debugEndpoints
      ? [['/debug/endpoints', ['GET', 'HEAD']] as [string, readonly string[]]]
      : []),
  ])
  app.notFound((c) =>
    servePlain(log, plainReq(c), () => {
      const path = c.req.path
      const allow =
        allowed.get(path) ?? (path.startsWith('/v1/models/') ? MODEL_METHODS : undefined)
      if (allow !== undefined) return errors.methodNotAllowed(c.req.method, path, allow)
      return errors.notFound(path)
    }),
  )
  app.onError((err) => {
    if (err instanceof GatewayError) return errorResponse(err)
    return errorResponse(errors.internal())
  })

  /** The request as Hono has it: Node's objects when served by Node, else the fetch Request. */
  function fromContext(c: Context): [Inbound, string | undefined] {
    const env = c.env as Partial<HttpBindings> | undefined
    const inbound =
      env?.incoming && env.outgoing
        ? nodeInbound(env.incoming, env.outgoing as ServerResponse)
        : fetchInbound(c.req.raw)
    return [inbound, env?.incoming?.socket.remoteAddress]
  }

  async function handleInference(
    inbound: Inbound,
    /** The TCP peer as Node reports it (the authenticator's view), undefined off Node. */
    remoteAddress: string | undefined,
    path: InferencePath,
    /** Gets the request's Outcome (the /v1/messages wrapper reads which target answered). */
    onOutcome?: (o: Outcome) => void,
  ): Promise<Response> {
    const startedAt = performance.now()
    const api = INFERENCE_APIS[path]
    const requestId = requestIdOf(inbound.header('x-request-id'))
    // Everything the request holds and how it ends (metrics, access log, settlement): once.
    const out = new Outcome(outcomeEnv, requestId, path, api, startedAt)
    onOutcome?.(out)
    if (deps.tracing !== undefined) out.trace = deps.tracing.start(inbound.header, api)
    /** Set when the returned response is a stream whose end records the outcome. */
    let bodyOwnsEnd = false
    try {
      // authenticate → parse → resolve → authorize/admit → serve
      if (filters !== undefined) {
        // Before the body is read: a caller with bad credentials does not get to upload 10 MiB.
        try {
          out.identity = await filters.authenticate({ header: inbound.header, remoteAddress })
        } catch (e) {
          return out.fail(asGatewayError(e))
        }
      }

      const table = deps.store.table
      let body: Record<string, unknown>
      let raw: Uint8Array
      try {
        raw = await inbound.readBody(maxBody)
        body = parseJsonObject(raw, maxJsonDepth)
      } catch (e) {
        return out.fail(e instanceof GatewayError ? e : errors.invalidJson(String(e)))
      }
      const m = body['model']
      if (typeof m !== 'string' || m === '') return out.fail(errors.missingModel())
      out.model = m
      if (!table) return out.fail(errors.notReady())
      if (table !== seriesTable) {
        metrics.forgetSeries()
        seriesTable = table
      }
      if (table.hasModel(m)) out.modelLabel = m

      const result = table.resolve({ model: m, path, header: inbound.header })
      if (result.kind === 'unknown-model') return out.fail(errors.modelNotFound(m))
      if (result.kind === 'no-rule') return out.fail(errors.routeNotFound(m))
      const decision = result.decision
      out.decision = decision
      // Until a target is tried, a plain rule's access-log line names its server.
      if (decision.plain) out.target = decision.targets[0]
      // /v1/messages: the OpenAI chat form most targets get (or why there is none).
      const messages = api === 'messages' ? translateMessages(body) : undefined
      const identity = out.identity
      let limits: LimitAdmission | undefined
      if (filters !== undefined && identity !== undefined) {
        try {
          filters.authorize(identity, decision.route, m)
          // The limiter knows chat, completions and embeddings; a Responses request is counted
          // through its chat-shaped view (dataplane/api/responses.ts).
          // The same for Anthropic Messages through its chat translation.
          limits = await filters.admit(
            api === 'responses' || api === 'messages'
              ? {
                  route: decision.route,
                  identity,
                  api: 'chat',
                  model: m,
                  body:
                    api === 'responses' ? responsesAdmissionView(body) : (messages?.chat ?? body),
                }
              : { route: decision.route, identity, api, model: m, body },
          )
          out.limits = limits
        } catch (e) {
          return out.fail(asGatewayError(e))
        }
        // (Responses and Messages streams end with their usage: nothing to ask for.)
        if (limits?.injectUsage && api !== 'messages' && api !== 'responses') {
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
      // Built field by field: object spreads of optional parts were half of this function's own
      // time in a profile (the spread copies through a generic path on every request).
      const serveReq: Writable<ServeRequest> = {
        path,
        api,
        model: m,
        body,
        raw,
        inbound: messages !== undefined ? rewrittenInbound(inbound) : inbound,
      }
      if (explainOn && inbound.header(EXPLAIN_HEADER) === '1') serveReq.explain = true
      if (filters !== undefined) serveReq.stripHeaders = filters.stripHeaders
      if (messages !== undefined) {
        const chat = messages.chat
        serveReq.translated =
          chat !== undefined
            ? {
                ...serveReq,
                path: '/v1/chat/completions',
                api: 'chat' as const,
                body: chat,
                raw: Buffer.from(JSON.stringify(chat)),
              }
            : (messages.error ?? errors.internal())
      }
      const res = await serveChain(decision, serveReq, out, serveDeps)
      // Not released yet: a streaming body that records the outcome when it ends.
      bodyOwnsEnd = !out.released
      return res
    } catch (e) {
      // Anything thrown on the request path (a bug, a picker, a serialiser) still ends the
      // request properly: metrics, access log, settlement and the in-flight release.
      return out.fail(asGatewayError(e))
    } finally {
      // The one place the request lets go of what it holds (the in-flight gauge, the client
      // listener, the rate-limit reservation; idempotent), unless a streaming body still owns
      // them and releases them when it ends.
      if (!bodyOwnsEnd) out.release()
    }
  }

  return app
}

/** An unexpected exception as the client sees it: a plain 500, nothing of its text. */
function asGatewayError(e: unknown): GatewayError {
  return e instanceof GatewayError ? e : errors.internal()
}
