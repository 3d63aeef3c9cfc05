// HTTP listener with graceful shutdown: readiness flips first (so load balancers stop sending),
// then the listener closes, in-flight requests get until the deadline to finish, and only then are
// remaining connections cut.
//
// Hostile clients are bounded here, before any request reaches the app:
// - headers must arrive within `headersTimeoutMs`, the whole request (headers + body) within
//   `requestTimeoutMs`; a response may then stream as long as it needs (Node's request timeout
//   stops counting once the request is received);
// - an idle keep-alive connection is closed after `keepAliveTimeoutMs`;
// - at most `maxConnections` sockets are open. At the cap, a new connection first evicts the
//   oldest connection that has not sent a request yet (idle floods cannot starve real clients);
//   when there is none, the new one is refused with an OpenAI-shaped 503 and closed. Either way
//   file descriptors stay bounded, so config reloads and upstream connections keep working.
// - a connection is handed to Node's HTTP machinery only when its first bytes arrive. Node sets up
//   a parser, a connection-list entry and a dozen bound listeners per accepted socket (~1.4 KB of
//   heap beyond the socket itself); an idle flood holding 10,000 sockets, each renewed every few
//   seconds, made that the bulk of what every young-generation GC copied, and those pauses (not
//   our code) were the event-loop stalls real clients waited out. Until handed over, a connection
//   is only the socket and three shared listeners; the listener's own sweep answers 408 to the
//   ones silent past `headersTimeoutMs` (counted from the accept, as Node counts it).
// - requests Node's HTTP parser rejects (malformed, headers too large, unsupported Expect, timed
//   out, HTTP/1.1 without Host) get OpenAI-shaped JSON bodies like every other gateway error;
//   answers sent before the body was read close the connection by lingering (linger.ts).
import { readFileSync } from 'node:fs'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { getRequestListener, RequestError } from '@hono/node-server'
import type { Hono } from 'hono'
import { Counter, Gauge, type Registry } from 'prom-client'
import { type Lifecycle, nodeListener } from './app.js'
import { CloseQueue } from './close-queue.js'
import { errors, GatewayError } from './errors.js'
import { closeAfterAnswer } from './linger.js'

export interface ConnectionLimits {
  /** Time for a client to send the request headers (default 10 s). */
  readonly headersTimeoutMs?: number
  /** Time to receive the whole request, body included (default 60 s; 0 = none). */
  readonly requestTimeoutMs?: number
  /** Idle time after a response before a keep-alive connection is closed (default 65 s). */
  readonly keepAliveTimeoutMs?: number
  /** Open connections at most (default: 10,000, or half the process' file limit if lower). */
  readonly maxConnections?: number
  /**
   * How often Node checks the header/request deadlines (default: a quarter of the shorter of the
   * two, between 100 ms and 1 s). A connection is closed at most this long after its deadline.
   */
  readonly timeoutCheckIntervalMs?: number
}

export interface ListenOptions extends ConnectionLimits {
  readonly host: string
  readonly port: number
  readonly lifecycle: Lifecycle
  /** Where to register the connection metrics (open connections, refusals by reason). */
  readonly registry?: Registry
}

export interface RunningServer {
  readonly server: Server
  readonly url: string
  readonly port: number
  inflight(): number
  /** Open client connections. */
  connections(): number
  /** Connections refused or evicted at the cap since start. */
  refusedConnections(): number
  /** Drain then close. `drainDelayMs`: time to keep serving after readiness flips. */
  shutdown(opts?: { drainDelayMs?: number; deadlineMs?: number }): Promise<{ forced: number }>
}

export const DEFAULT_HEADERS_TIMEOUT_MS = 10_000
export const DEFAULT_REQUEST_TIMEOUT_MS = 60_000
/** Longer than the 60 s idle timeout of common load balancers, so they close first (no races). */
export const DEFAULT_KEEP_ALIVE_TIMEOUT_MS = 65_000

/** 10,000, or half the open-files limit when that is lower (the rest: upstreams, config, logs). */
export function defaultMaxConnections(): number {
  try {
    const m = /^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'))
    if (m?.[1]) return Math.max(64, Math.min(10_000, Math.floor(Number(m[1]) / 2)))
  } catch {
    // Not Linux: the fixed default.
  }
  return 10_000
}

export class ServerOptionError extends Error {
  override readonly name = 'ServerOptionError'
  readonly code = 'SERVER_OPTION_INVALID'
}

/** Errors the listener itself answers (no request reached the app). */
export const protocolErrors = {
  tooManyConnections: (max: number) =>
    new GatewayError(
      503,
      'too_many_connections',
      `the gateway is at its connection limit (${max}); retry shortly`,
      { headers: { 'retry-after': '1' } },
    ),
  headersTooLarge: () =>
    new GatewayError(431, 'request_header_too_large', 'request headers are too large'),
  requestTimeout: () =>
    new GatewayError(408, 'request_timeout', 'the request was not received in time', {
      type: 'timeout_error',
    }),
  expectationFailed: (expect: string) =>
    new GatewayError(
      417,
      'expectation_failed',
      `unsupported Expect header "${expect.slice(0, 64)}" (only 100-continue is)`,
    ),
  badRequest: (code: string) =>
    new GatewayError(400, 'invalid_http_request', `malformed HTTP request (${code})`),
  missingHost: () =>
    new GatewayError(
      400,
      'missing_host_header',
      'an HTTP/1.1 request must carry a Host header (RFC 9112 §3.2)',
    ),
} as const

const REASONS: Readonly<Record<number, string>> = {
  400: 'Bad Request',
  408: 'Request Timeout',
  417: 'Expectation Failed',
  431: 'Request Header Fields Too Large',
  503: 'Service Unavailable',
}

/** A complete HTTP/1.1 response as bytes, for sockets that have no ServerResponse. */
export function rawErrorResponse(err: GatewayError): string {
  const body = JSON.stringify(err.toBody())
  const head = [
    `HTTP/1.1 ${err.status} ${REASONS[err.status] ?? 'Error'}`,
    'content-type: application/json',
    `content-length: ${Buffer.byteLength(body)}`,
    'connection: close',
    ...Object.entries(err.headers)
      .filter(([k]) => k !== 'connection')
      .map(([k, v]) => `${k}: ${v}`),
  ]
  return `${head.join('\r\n')}\r\n\r\n${body}`
}

/**
 * Writes `answer` (rawErrorResponse) and closes; the socket is destroyed once written (or after
 * 1 s at the latest).
 */
function refuse(socket: Socket, answer: string): void {
  if (socket.destroyed) return
  if (!socket.writable) {
    socket.destroy()
    return
  }
  const timer = setTimeout(() => socket.destroy(), 1000)
  timer.unref()
  socket.end(answer, () => {
    clearTimeout(timer)
    socket.destroy()
  })
}

/** Headers or body not received in time (Node's deadline sweep): answered 408. */
function isTimeout(err: NodeJS.ErrnoException): boolean {
  return err.code === 'ERR_HTTP_REQUEST_TIMEOUT' || err.code === 'HPE_HEADERS_TIMEOUT'
}

function clientErrorOf(err: NodeJS.ErrnoException): GatewayError {
  if (isTimeout(err)) return protocolErrors.requestTimeout()
  switch (err.code) {
    case 'HPE_HEADER_OVERFLOW':
      return protocolErrors.headersTooLarge()
    default:
      return protocolErrors.badRequest(err.code ?? 'parse error')
  }
}

/**
 * Node enforces headersTimeout/requestTimeout only when it sweeps its connection list, so a slow
 * or idle connection lives up to one interval past its deadline. A quarter of the shorter deadline
 * keeps that overshoot proportionate (low timeouts in tests, 10 s headers by default → 1 s); the
 * sweep walks only connections still receiving a request, so 100 ms is cheap enough as a floor.
 */
export function timeoutCheckInterval(headersTimeoutMs: number, requestTimeoutMs: number): number {
  const shortest =
    requestTimeoutMs > 0 ? Math.min(headersTimeoutMs, requestTimeoutMs) : headersTimeoutMs
  return Math.min(1000, Math.max(100, Math.floor(shortest / 4)))
}

type ConnectionListener = (this: Server, socket: Socket) => void

/**
 * Removes Node's own 'connection' listener from an HTTP server and returns it, so the listener can
 * run it later (on a connection's first bytes). Undefined if this Node does not register it the
 * way every release since 0.x does (one function named connectionListener): the server then keeps
 * it and sets connections up on accept, as before.
 */
function takeConnectionListener(server: Server): ConnectionListener | undefined {
  const listeners = server.listeners('connection')
  const node = listeners[0]
  if (listeners.length !== 1 || typeof node !== 'function' || node.name !== 'connectionListener') {
    return undefined
  }
  server.removeListener('connection', node as ConnectionListener)
  return node as ConnectionListener
}

function jsonError(err: GatewayError, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(err.toBody()), {
    status: err.status,
    headers: { 'content-type': 'application/json', ...err.headers, ...headers },
  })
}

/** An error answered by the listener on a request's own response; the connection then closes. */
function answerAndClose(req: IncomingMessage, res: ServerResponse, err: GatewayError): void {
  // The body (if any) is not read: close by lingering, so the client still gets the answer.
  closeAfterAnswer(req, res)
  const body = JSON.stringify(err.toBody())
  res.writeHead(err.status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    connection: 'close',
    ...err.headers,
  })
  res.end(body)
}

function positive(name: string, v: number): number {
  if (!Number.isInteger(v) || v < 0) throw new ServerOptionError(`${name} must be >= 0, got ${v}`)
  return v
}

export async function listen(app: Hono, opts: ListenOptions): Promise<RunningServer> {
  const headersTimeout = positive(
    'headersTimeoutMs',
    opts.headersTimeoutMs ?? DEFAULT_HEADERS_TIMEOUT_MS,
  )
  const requestTimeout = positive(
    'requestTimeoutMs',
    opts.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS,
  )
  const keepAliveTimeout = positive(
    'keepAliveTimeoutMs',
    opts.keepAliveTimeoutMs ?? DEFAULT_KEEP_ALIVE_TIMEOUT_MS,
  )
  const maxConnections = positive('maxConnections', opts.maxConnections ?? defaultMaxConnections())
  if (headersTimeout <= 0) throw new ServerOptionError('headersTimeoutMs must be > 0')
  if (maxConnections <= 0) throw new ServerOptionError('maxConnections must be > 0')
  if (requestTimeout > 0 && headersTimeout > requestTimeout) {
    throw new ServerOptionError('headersTimeoutMs must not exceed requestTimeoutMs')
  }
  // The inference routes go to their handler directly; the rest through Hono's adapter.
  const listener = nodeListener(
    app,
    getRequestListener(app.fetch, {
      // The URL Hono builds when a request names no host (HTTP/1.0 may omit it; HTTP/1.1 without
      // Host is refused before the app). The gateway routes by path and model, never by host.
      hostname: 'localhost',
      // A request target or Host the adapter cannot make a URL of: an OpenAI-shaped 400 that
      // closes the connection (as Node's own parse errors do), not the adapter's empty one.
      errorHandler: (e) =>
        e instanceof RequestError
          ? jsonError(protocolErrors.badRequest(e.message.slice(0, 64)), { connection: 'close' })
          : jsonError(errors.internal()),
    }),
  )
  let inflight = 0
  let idleWaiters: (() => void)[] = []
  const onResponseClose = (): void => {
    inflight--
    if (inflight === 0) {
      const w = idleWaiters
      idleWaiters = []
      for (const f of w) f()
    }
  }
  let refused = 0
  const open = new Set<Socket>()
  /**
   * Connections that have not sent a request yet, oldest first, with their accept time (ms,
   * performance.now): evicted first at the cap, answered 408 past the headers deadline.
   */
  const fresh = new Map<Socket, number>()
  const rejected = new WeakSet<Socket>()
  // The listener's own answers, rendered once: a flood closes thousands of sockets a second.
  const atCapAnswer = rawErrorResponse(protocolErrors.tooManyConnections(maxConnections))
  const timeoutAnswer = rawErrorResponse(protocolErrors.requestTimeout())
  /** Connections past their deadline (a sweep finds them all at once): closed in batches. */
  const closing = new CloseQueue<{ socket: Socket; answer: string }>((c) =>
    refuse(c.socket, c.answer),
  )
  const registers = opts.registry ? [opts.registry] : []
  new Gauge({
    name: 'infer_gateway_client_connections',
    help: 'Open client connections (the cap is --max-connections).',
    registers,
    collect() {
      this.set(open.size)
    },
  })
  const refusals = new Counter({
    name: 'infer_gateway_client_connections_refused_total',
    help: 'Client connections closed by the listener, by reason: at_cap_evicted (idle, evicted for a new one), at_cap_refused (503, none idle), timeout (408: headers or body too slow), protocol_error (400/431).',
    labelNames: ['reason'] as const,
    registers,
  })
  // Bound once: the flood's paths count per socket.
  const timedOut = refusals.labels({ reason: 'timeout' })
  const evicted = refusals.labels({ reason: 'at_cap_evicted' })
  const refusedAtCap = refusals.labels({ reason: 'at_cap_refused' })
  const timeoutCheckMs =
    opts.timeoutCheckIntervalMs ?? timeoutCheckInterval(headersTimeout, requestTimeout)

  const server = createServer(
    {
      headersTimeout,
      requestTimeout,
      keepAliveTimeout,
      connectionsCheckingInterval: timeoutCheckMs,
      // Node would answer a Host-less HTTP/1.1 request itself, with an empty 400 that never
      // reaches 'clientError'; the listener answers it below instead, in the gateway's shape.
      requireHostHeader: false,
    },
    (req: IncomingMessage, res: ServerResponse) => {
      // Written before the socket was refused: never reaches the app.
      if (rejected.has(req.socket)) {
        res.destroy()
        return
      }
      // RFC 9112 §3.2: a server MUST answer 400 to an HTTP/1.1 request without Host. (HTTP/1.0
      // has no such rule; the gateway routes by model, not by host, so it is served.)
      if (req.httpVersion === '1.1' && req.headers.host === undefined) {
        fresh.delete(req.socket)
        refusals.inc({ reason: 'protocol_error' })
        answerAndClose(req, res, protocolErrors.missingHost())
        return
      }
      fresh.delete(req.socket)
      inflight++
      if (opts.lifecycle.draining) res.setHeader('connection', 'close')
      // 'close' fires once: a plain listener shared by every response (no closure and no
      // once-wrapper per request).
      res.on('close', onResponseClose)
      void listener(req, res)
    },
  )
  // Node's per-connection set-up, run on a connection's first bytes (see the header comment).
  const attach = takeConnectionListener(server)
  // Shared by every socket (no closure per connection); `this` is the socket.
  function onSocketClose(this: Socket): void {
    open.delete(this)
    fresh.delete(this)
  }
  function onFirstData(this: Socket, chunk: Buffer): void {
    detach(this)
    // Back into the stream, read again by Node's parser once it is set up; resume() emits it on
    // the next tick, before any later bytes (those go to the parser from the socket's handle).
    this.pause()
    this.unshift(chunk)
    attach?.call(server, this)
    this.resume()
  }
  // Before the hand-over nothing else listens: an error or a FIN without a byte just closes.
  function onEarlyEnd(this: Socket): void {
    this.destroy()
  }
  function onEarlyError(this: Socket): void {
    this.destroy()
  }
  function detach(socket: Socket): void {
    socket.off('data', onFirstData)
    socket.off('end', onEarlyEnd)
    socket.off('error', onEarlyError)
  }
  // Headers deadline of connections that have not sent a request (from their accept): the map
  // is in accept order, so the sweep stops at the first one still in time.
  const sweep = setInterval(() => {
    const expiredBefore = performance.now() - headersTimeout
    for (const [socket, acceptedAt] of fresh) {
      if (acceptedAt > expiredBefore) break
      fresh.delete(socket)
      if (rejected.has(socket) || socket.destroyed) continue
      rejected.add(socket)
      timedOut.inc()
      closing.push({ socket, answer: timeoutAnswer })
    }
  }, timeoutCheckMs)
  sweep.unref()
  server.once('close', () => clearInterval(sweep))

  server.on('connection', (socket: Socket) => {
    if (open.size >= maxConnections) {
      // One eviction per new connection, closed now (not queued): its descriptor is needed now.
      // (Node accepts one connection per event-loop turn, so a burst is no single long turn.)
      const victim = fresh.keys().next().value
      refused++
      if (victim === undefined) {
        refusedAtCap.inc()
        rejected.add(socket)
        // Never handed to Node's HTTP server: its only error listener (a reset must not throw).
        if (attach !== undefined) socket.on('error', onEarlyError)
        refuse(socket, atCapAnswer)
        return
      }
      // A victim already queued for its 408 (rejected) was counted as a timeout.
      if (!rejected.has(victim)) evicted.inc()
      fresh.delete(victim)
      open.delete(victim)
      rejected.add(victim)
      refuse(victim, atCapAnswer)
    }
    open.add(socket)
    fresh.set(socket, performance.now())
    socket.on('close', onSocketClose)
    if (attach !== undefined) {
      socket.on('data', onFirstData)
      socket.on('end', onEarlyEnd)
      socket.on('error', onEarlyError)
    }
  })
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    // Node's default handler, but the body is the gateway's JSON error. Nothing to say to a
    // client that is gone or already has (part of) a response.
    const pending = (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage
    if (err.code === 'ECONNRESET' || !socket.writable || pending?.headersSent === true) {
      socket.destroy()
      return
    }
    // Already queued by the listener's own headers sweep (Node's runs later on the same socket).
    if (rejected.has(socket)) return
    // Until its turn in the queue, a request completed on this socket is not served.
    rejected.add(socket)
    // The flood's path (thousands per sweep): no error object, no label lookup per socket.
    if (isTimeout(err)) {
      timedOut.inc()
      closing.push({ socket, answer: timeoutAnswer })
      return
    }
    refusals.inc({ reason: 'protocol_error' })
    closing.push({ socket, answer: rawErrorResponse(clientErrorOf(err)) })
  })
  server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => {
    answerAndClose(req, res, protocolErrors.expectationFailed(String(req.headers.expect ?? '')))
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    // A deeper accept queue than Node's 511 (the kernel caps it at somaxconn): in a connection
    // flood, real clients' handshakes are not dropped while the listener catches up.
    server.listen({ port: opts.port, host: opts.host, backlog: 4096 }, () => {
      server.off('error', reject)
      resolve()
    })
  })
  const addr = server.address() as AddressInfo
  const hostForUrl = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address
  return {
    server,
    url: `http://${hostForUrl}:${addr.port}`,
    port: addr.port,
    inflight: () => inflight,
    connections: () => open.size,
    refusedConnections: () => refused,
    async shutdown({ drainDelayMs = 0, deadlineMs = 30_000 } = {}) {
      opts.lifecycle.draining = true
      if (drainDelayMs > 0) await new Promise((r) => setTimeout(r, drainDelayMs))
      const closed = new Promise<void>((r) => server.close(() => r()))
      server.closeIdleConnections()
      // Node does not know the connections still waiting for their first bytes: idle too.
      for (const socket of fresh.keys()) {
        if (socket.listeners('data').includes(onFirstData)) socket.destroy()
      }
      if (inflight > 0) {
        await Promise.race([
          new Promise<void>((r) => idleWaiters.push(r)),
          new Promise<void>((r) => setTimeout(r, deadlineMs).unref()),
        ])
      }
      const forced = inflight
      server.closeAllConnections()
      await closed
      return { forced }
    },
  }
}
