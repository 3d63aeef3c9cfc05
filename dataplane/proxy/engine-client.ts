// The engine path's HTTP/1.1 client (issue 11): plain `node:net` sockets instead of undici, which
// providers keep (TLS, HTTP/2). Measured in the proxy floor (docs/proxy-cost.md), undici's
// Request object, header normalisation, llhttp through WASM, a Readable per body and a timer per
// request cost 1.5-1.9x this client's CPU on streams. A keep-alive pool per engine (RawPool:
// connection cap with a waiting queue, one timer for every timeout), the request head and body
// written in one `socket.write`, every connection read into one buffer, a small response parser
// (H1ResponseParser) that hands the body on as copies of its bytes, and a body (EngineBody) with
// the members the gateway reads of one, pushing chunks to its reader in the socket's turn.
//
// Split along those seams: h1-parser.ts (the response parser, its strictness and error codes),
// engine-pool.ts (RawPool and its timeouts), engine-body.ts (EngineBody); this module is the
// client the engine path sends through (EngineClient: a pool per engine, request header checks).
import type { AbortLike } from '../abort.js'
import { EngineBody } from './engine-body.js'
import { RawPool, type RawSink, type RawTimeouts } from './engine-pool.js'
import { TOKEN } from './h1-parser.js'

export interface EngineRequest {
  /** The engine's address (IPv6 without brackets) and port. */
  readonly host: string
  readonly port: number
  readonly method: 'POST' | 'GET' | 'HEAD'
  readonly path: string
  /** Sent as given, but for Host, Content-Length and hop-by-hop names, which the client sets. */
  readonly headers: Readonly<Record<string, string>>
  readonly body: string | Uint8Array | undefined
  /** Before the head the promise rejects with its reason; after, the body errors with it. */
  readonly signal: AbortLike
  readonly timeouts: RawTimeouts
}

export interface EngineResponse {
  readonly statusCode: number
  /** Names lowercased; a repeated name's values in an array (as undici gives them). */
  readonly headers: Record<string, string | string[]>
  readonly body: EngineBody
}

/** A request header the client refuses to send (a line break would split the request). */
export class EngineHeaderError extends Error {
  override readonly name = 'EngineHeaderError'
  readonly code = 'UND_ERR_INVALID_ARG'
}

/** Names the client writes itself (framing, the connection): the caller's copies are dropped. */
const OWN_HEADERS = new Set([
  'host',
  'content-length',
  'transfer-encoding',
  'connection',
  'keep-alive',
  'upgrade',
  'te',
  'trailer',
  'expect',
])
const BAD_VALUE = /[\r\n\0]/

function headerLines(headers: Readonly<Record<string, string>>): string {
  let out = ''
  for (const name in headers) {
    const value = headers[name] as string
    const len = name.length
    // Only names of these lengths can be one of OWN_HEADERS.
    if (
      (len === 2 ||
        len === 4 ||
        len === 6 ||
        len === 7 ||
        len === 10 ||
        len === 14 ||
        len === 17) &&
      OWN_HEADERS.has(name.toLowerCase())
    )
      continue
    if (!TOKEN.test(name) || BAD_VALUE.test(value))
      throw new EngineHeaderError(`invalid request header ${JSON.stringify(name)}`)
    out += `${name}: ${value}\r\n`
  }
  return out
}

/** Raw header fields to undici's shape: lowercased names, repeats in an array. */
function headersOf(raw: readonly string[]): Record<string, string | string[]> {
  const h: Record<string, string | string[]> = {}
  for (let k = 0; k < raw.length; k += 2) {
    const name = (raw[k] as string).toLowerCase()
    const value = raw[k + 1] as string
    const prev = h[name]
    if (prev === undefined) h[name] = value
    else if (Array.isArray(prev)) prev.push(value)
    else h[name] = [prev, value]
  }
  return h
}

/** One request in flight: the pool's sink until its head, then its body's. */
class Exchange implements RawSink {
  readonly body = new EngineBody()
  private headed = false
  private readonly signal: AbortLike
  private readonly resolve: (r: EngineResponse) => void
  private readonly reject: (e: unknown) => void

  constructor(
    signal: AbortLike,
    resolve: (r: EngineResponse) => void,
    reject: (e: unknown) => void,
  ) {
    this.signal = signal
    this.resolve = resolve
    this.reject = reject
    signal.addEventListener('abort', this.onAbort)
    this.body.onSettled = this.unlisten
  }

  readonly onAbort = (): void => {
    this.body.handle?.abort()
    const reason = this.signal.reason
    if (!this.headed) {
      this.headed = true
      this.unlisten()
      this.reject(reason)
    } else this.body.onError(reason instanceof Error ? reason : new Error(String(reason)))
  }

  readonly unlisten = (): void => {
    this.signal.removeEventListener('abort', this.onAbort)
  }

  onHead(status: number, raw: string[]): void {
    this.headed = true
    this.resolve({ statusCode: status, headers: headersOf(raw), body: this.body })
  }
  onBody(chunk: Buffer, last: boolean): void {
    this.body.onBody(chunk, last)
  }
  onEnd(): void {
    this.body.onEnd()
  }
  onError(err: Error): void {
    if (this.headed) {
      this.body.onError(err)
      return
    }
    this.headed = true
    this.unlisten()
    this.reject(err)
  }
}

export interface EngineClientOptions {
  /** Connections per engine at most; requests past it wait in order. */
  readonly connectionsPerOrigin: number
  readonly keepAliveMs?: number
  readonly now?: () => number
  readonly tickMs?: number
}

/**
 * Pools per engine (address and port) of the raw client; what the engine path sends through. One
 * timer sweeps them all (each pool's timeouts and idle connections), however many engines.
 */
export class EngineClient {
  private readonly pools = new Map<string, RawPool>()
  private readonly opts: EngineClientOptions
  private readonly timer: NodeJS.Timeout | undefined

  constructor(opts: EngineClientOptions) {
    this.opts = opts
    const tick = opts.tickMs ?? 100
    this.timer = tick > 0 ? setInterval(() => this.sweep(), tick).unref() : undefined
  }

  /** Every pool's sweep (RawPool.sweep): run by the client's timer. */
  sweep(): void {
    for (const p of this.pools.values()) p.sweep()
  }

  /**
   * The last pool asked for and its engine's address and port: a repeat skips the key string and
   * the Map lookup (consecutive requests often go to the same engine).
   */
  private lastHost = ''
  private lastPort = -1
  private lastPool: RawPool | undefined

  /** The pool of one engine (made on first use). */
  pool(host: string, port: number): RawPool {
    if (this.lastPool !== undefined && port === this.lastPort && host === this.lastHost)
      return this.lastPool
    const key = `${host}|${port}`
    let p = this.pools.get(key)
    if (p === undefined) {
      p = new RawPool({
        host,
        port,
        connections: this.opts.connectionsPerOrigin,
        ...(this.opts.keepAliveMs !== undefined ? { keepAliveMs: this.opts.keepAliveMs } : {}),
        ...(this.opts.now !== undefined ? { now: this.opts.now } : {}),
        // Swept by the client's one timer.
        tickMs: 0,
      })
      this.pools.set(key, p)
    }
    this.lastHost = host
    this.lastPort = port
    this.lastPool = p
    return p
  }

  /** The pool of one engine if it was ever used. */
  existing(host: string, port: number): RawPool | undefined {
    return this.pools.get(`${host}|${port}`)
  }

  /** Resolves at the response head (1xx skipped); rejects on a failure before it. */
  request(r: EngineRequest): Promise<EngineResponse> {
    if (r.signal.aborted) return Promise.reject(r.signal.reason)
    let lines: string
    let bytes: Buffer | undefined
    try {
      lines = headerLines(r.headers)
    } catch (e) {
      return Promise.reject(e)
    }
    const b = r.body
    if (b === undefined) bytes = undefined
    else if (typeof b === 'string') bytes = Buffer.from(b)
    else bytes = Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength)
    const pool = this.pool(r.host, r.port)
    return new Promise<EngineResponse>((resolve, reject) => {
      const x = new Exchange(r.signal, resolve, reject)
      x.body.handle = pool.request(r.method, r.path, lines, bytes, x, r.timeouts)
    })
  }

  /** Closes every pool: waiting requests fail, busy connections are torn down. */
  close(): void {
    if (this.timer !== undefined) clearInterval(this.timer)
    for (const p of this.pools.values()) p.destroy()
    this.pools.clear()
    this.lastPool = undefined
  }
}
