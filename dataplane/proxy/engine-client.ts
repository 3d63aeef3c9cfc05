// The engine path's HTTP/1.1 client (issue 11): plain `node:net` sockets instead of undici, which
// providers keep (TLS, HTTP/2). Measured in the proxy floor (docs/proxy-cost.md), undici's
// Request object, header normalisation, llhttp through WASM, a Readable per body and a timer per
// request cost 1.5-1.9x this client's CPU on streams. A keep-alive pool per engine (RawPool:
// connection cap with a waiting queue, one timer for every timeout), the request head and body
// written in one `socket.write`, a small response parser (H1ResponseParser) that hands the body
// on as slices of the socket's own chunks, and a body (EngineBody) with the members the gateway
// reads of one, pushing chunks to its reader in the socket's turn.
//
// The parser is strict where a proxy must be: CRLF line ends, a status line of HTTP/1.x, token
// header names, one Content-Length (or equal repeats), Transfer-Encoding over Content-Length,
// no body for HEAD, 1xx, 204 and 304, a header block of at most `maxHeaderBytes` (trailers
// included), chunk sizes in hex with extensions skipped, and nothing from the server between
// responses. Errors carry llhttp's and undici's codes (HPE_*, UND_ERR_*_TIMEOUT, ECONNRESET) so
// that forward.ts and respond.ts read them as they read undici's.
import { connect, type Socket } from 'node:net'

export type H1ProtocolCode =
  | 'HPE_INVALID_STATUS'
  | 'HPE_INVALID_HEADER_TOKEN'
  | 'HPE_HEADER_OVERFLOW'
  | 'HPE_INVALID_CONTENT_LENGTH'
  | 'HPE_UNEXPECTED_CONTENT_LENGTH'
  | 'HPE_INVALID_CHUNK_SIZE'
  | 'HPE_STRICT'
  | 'HPE_INVALID_CONSTANT'

/** The engine's bytes were not the HTTP/1.1 response this client expected. */
export class H1ProtocolError extends Error {
  override readonly name = 'H1ProtocolError'
  readonly code: H1ProtocolCode
  constructor(code: H1ProtocolCode, message: string) {
    super(message)
    this.code = code
  }
}

/**
 * The connection ended or broke before the response was complete. `ECONNRESET` is the code
 * undici's callers (forward.ts's RESET_CODES) already treat as "the request may have been sent".
 */
export class H1SocketError extends Error {
  override readonly name = 'H1SocketError'
  readonly code = 'ECONNRESET'
}

/** Where a parser's response goes. */
export interface ResponseSink {
  /** Status and header fields as sent (name, value, name, value, …), names as the server spelt them. */
  onHead(status: number, rawHeaders: string[]): void
  /** A slice of a socket chunk (not copied: keep it, do not write into it). */
  onBody(chunk: Buffer): void
  /** The response is complete; `reusable`: the connection may carry another request. */
  onEnd(reusable: boolean): void
}

/** Parser states (numbers: compared on every byte of a chunk's framing). */
const S = {
  /** No response expected: any byte is an error. */
  Idle: 0,
  Head: 1,
  Length: 2,
  ChunkSize: 3,
  ChunkExt: 4,
  ChunkSizeLf: 5,
  ChunkData: 6,
  ChunkDataCr: 7,
  ChunkDataLf: 8,
  TrailerLineStart: 9,
  TrailerLine: 10,
  TrailerLineLf: 11,
  TrailerEndLf: 12,
  /** Body delimited by the connection's end. */
  UntilClose: 13,
  /** After a protocol error: nothing more is read. */
  Dead: 14,
} as const
type State = (typeof S)[keyof typeof S]

const EMPTY = Buffer.alloc(0)
/** Bytes a body keeps unread before the engine's socket is paused (a Readable's default). */
const HIGH_WATER = 64 * 1024
const HTTP_PREFIX = Buffer.from('HTTP/', 'latin1')
const CR = 13
const LF = 10
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/
const STATUS_LINE = /^HTTP\/1\.[01] (\d{3})(?: [^\r\n]*)?$/

function hexDigit(b: number): number {
  if (b >= 48 && b <= 57) return b - 48
  if (b >= 97 && b <= 102) return b - 87
  if (b >= 65 && b <= 70) return b - 55
  return -1
}

/** One connection's response parser: `expect` before each request, `execute` each chunk. */
export class H1ResponseParser {
  private state: State = S.Idle
  private noBody = false
  /** Bytes of an unfinished head (or trailer count) kept between chunks. */
  private pending: Buffer | undefined
  private remaining = 0
  private chunkDigits = 0
  private trailerBytes = 0
  private keepAlive = true
  private readonly sink: ResponseSink
  readonly maxHeaderBytes: number

  constructor(sink: ResponseSink, maxHeaderBytes = 16 * 1024) {
    this.sink = sink
    this.maxHeaderBytes = maxHeaderBytes
  }

  /** Whether a response is being read (its end not seen yet). */
  get busy(): boolean {
    return this.state !== S.Idle && this.state !== S.Dead
  }

  /** The next bytes answer a request of `method`. */
  expect(method: string): void {
    if (this.busy) throw new Error('H1ResponseParser: a response is still being read')
    this.noBody = method === 'HEAD'
    this.state = S.Head
    this.pending = undefined
    this.keepAlive = true
  }

  /** Feeds one chunk; throws H1ProtocolError (the parser is then dead). */
  execute(buf: Buffer): void {
    try {
      this.run(buf)
    } catch (e) {
      this.state = S.Dead
      this.pending = undefined
      throw e
    }
  }

  /**
   * The connection ended. Completes a body delimited by it; throws H1SocketError when a
   * response was under way in any other state.
   */
  finish(): void {
    const s = this.state
    if (s === S.UntilClose) {
      this.state = S.Dead
      this.sink.onEnd(false)
      return
    }
    this.state = S.Dead
    if (s !== S.Idle && s !== S.Dead)
      throw new H1SocketError(
        s === S.Head && this.pending === undefined
          ? 'the engine closed the connection before answering'
          : 'the engine closed the connection mid-response',
      )
  }

  private run(buf: Buffer): void {
    let i = 0
    const n = buf.length
    while (i < n) {
      switch (this.state) {
        case S.Idle:
          throw new H1ProtocolError('HPE_INVALID_CONSTANT', 'bytes from the engine with no request')
        case S.Dead:
          return
        case S.Head: {
          i = this.head(buf, i)
          break
        }
        case S.Length: {
          const take = Math.min(this.remaining, n - i)
          this.remaining -= take
          this.sink.onBody(take === n && i === 0 ? buf : buf.subarray(i, i + take))
          // The sink may have aborted the request (the parser is dead then).
          if (this.state !== S.Length) return
          i += take
          if (this.remaining === 0) this.done()
          break
        }
        case S.UntilClose: {
          this.sink.onBody(i === 0 ? buf : buf.subarray(i))
          return
        }
        case S.ChunkData: {
          const take = Math.min(this.remaining, n - i)
          this.remaining -= take
          this.sink.onBody(buf.subarray(i, i + take))
          if (this.state !== S.ChunkData) return
          i += take
          if (this.remaining === 0) this.state = S.ChunkDataCr
          break
        }
        default:
          i = this.chunkFraming(buf, i)
      }
    }
  }

  /** Chunk size lines, the CRLF after data, trailers: byte by byte (a handful per chunk). */
  private chunkFraming(buf: Buffer, start: number): number {
    const n = buf.length
    let i = start
    while (i < n) {
      const b = buf[i] as number
      switch (this.state) {
        case S.ChunkSize: {
          const d = hexDigit(b)
          if (d >= 0) {
            // 12 hex digits = 2^48 bytes: far past any body, and exact as a double.
            if (++this.chunkDigits > 12)
              throw new H1ProtocolError('HPE_INVALID_CHUNK_SIZE', 'chunk size too large')
            this.remaining = this.remaining * 16 + d
          } else if (this.chunkDigits === 0) {
            throw new H1ProtocolError('HPE_INVALID_CHUNK_SIZE', 'chunk size is not hex')
          } else if (b === CR) {
            this.state = S.ChunkSizeLf
          } else if (b === 59 /* ; */ || b === 32 || b === 9) {
            this.state = S.ChunkExt
            this.trailerBytes = 0
          } else {
            throw new H1ProtocolError('HPE_INVALID_CHUNK_SIZE', 'chunk size is not hex')
          }
          break
        }
        case S.ChunkExt:
          // Extensions are skipped (no meaning to a proxy), but bounded like a header.
          if (b === CR) this.state = S.ChunkSizeLf
          else if (b === LF || ++this.trailerBytes > this.maxHeaderBytes)
            throw new H1ProtocolError('HPE_INVALID_CHUNK_SIZE', 'bad chunk extension')
          break
        case S.ChunkSizeLf:
          if (b !== LF) throw new H1ProtocolError('HPE_STRICT', 'expected LF after chunk size')
          if (this.remaining === 0) {
            this.state = S.TrailerLineStart
            this.trailerBytes = 0
          } else {
            this.state = S.ChunkData
            return i + 1
          }
          break
        case S.ChunkDataCr:
          if (b !== CR) throw new H1ProtocolError('HPE_STRICT', 'expected CRLF after chunk data')
          this.state = S.ChunkDataLf
          break
        case S.ChunkDataLf:
          if (b !== LF) throw new H1ProtocolError('HPE_STRICT', 'expected CRLF after chunk data')
          this.state = S.ChunkSize
          this.chunkDigits = 0
          this.remaining = 0
          break
        case S.TrailerLineStart:
          if (b === CR) this.state = S.TrailerEndLf
          else {
            if (b === LF) throw new H1ProtocolError('HPE_STRICT', 'bare LF in trailers')
            this.state = S.TrailerLine
            if (++this.trailerBytes > this.maxHeaderBytes)
              throw new H1ProtocolError('HPE_HEADER_OVERFLOW', 'trailers too large')
          }
          break
        case S.TrailerLine:
          // Trailer fields are dropped: the proxy already sent the client its headers.
          if (b === CR) this.state = S.TrailerLineLf
          else if (b === LF) throw new H1ProtocolError('HPE_STRICT', 'bare LF in trailers')
          else if (++this.trailerBytes > this.maxHeaderBytes)
            throw new H1ProtocolError('HPE_HEADER_OVERFLOW', 'trailers too large')
          break
        case S.TrailerLineLf:
          if (b !== LF) throw new H1ProtocolError('HPE_STRICT', 'expected LF in trailers')
          this.state = S.TrailerLineStart
          break
        case S.TrailerEndLf:
          if (b !== LF) throw new H1ProtocolError('HPE_STRICT', 'expected LF after trailers')
          this.done()
          return i + 1
        default:
          return i
      }
      i++
    }
    return i
  }

  /** Reads a head from buf[start..]; returns where the body starts (or buf.length). */
  private head(buf: Buffer, start: number): number {
    let data = buf
    let from = start
    let scanFrom = start
    if (this.pending !== undefined) {
      // Rescan the last 3 bytes kept: the CRLFCRLF may straddle the two chunks.
      scanFrom = Math.max(0, this.pending.length - 3)
      data = Buffer.concat([this.pending, start === 0 ? buf : buf.subarray(start)])
      from = 0
      this.pending = undefined
    }
    // Not HTTP from its first bytes (another protocol on the port, binary garbage): refused
    // now, as llhttp does, not when a blank line that may never come arrives.
    for (let k = from, j = 0; k < data.length && j < 5; k++, j++)
      if (data[k] !== HTTP_PREFIX[j])
        throw new H1ProtocolError('HPE_INVALID_CONSTANT', 'the engine did not answer HTTP')
    const end = data.indexOf('\r\n\r\n', scanFrom, 'latin1')
    if (end < 0) {
      if (data.length - from > this.maxHeaderBytes)
        throw new H1ProtocolError('HPE_HEADER_OVERFLOW', 'response head too large')
      this.pending = from === 0 ? data : data.subarray(from)
      return buf.length
    }
    if (end + 4 - from > this.maxHeaderBytes)
      throw new H1ProtocolError('HPE_HEADER_OVERFLOW', 'response head too large')
    const bodyAt = end + 4
    // Where the body starts in `buf` (data may be pending + buf).
    const next = buf.length - (data.length - bodyAt)
    this.parseHead(data.toString('latin1', from, end))
    return next
  }

  private parseHead(text: string): void {
    const lines = text.split('\r\n')
    const m = STATUS_LINE.exec(lines[0] ?? '')
    if (m === null) throw new H1ProtocolError('HPE_INVALID_STATUS', 'bad status line')
    const status = Number(m[1])
    const http10 = (lines[0] as string).charCodeAt(7) === 48
    const raw: string[] = []
    let length = -1
    let chunked = false
    let transferEncoding = false
    let close = http10
    for (let k = 1; k < lines.length; k++) {
      const line = lines[k] as string
      const colon = line.indexOf(':')
      if (colon <= 0) throw new H1ProtocolError('HPE_INVALID_HEADER_TOKEN', 'bad header line')
      const name = line.slice(0, colon)
      if (!TOKEN.test(name))
        throw new H1ProtocolError('HPE_INVALID_HEADER_TOKEN', 'bad header name')
      const value = line.slice(colon + 1).trim()
      if (value.includes('\n') || value.includes('\r') || value.includes('\0'))
        throw new H1ProtocolError('HPE_INVALID_HEADER_TOKEN', 'bad header value')
      raw.push(name, value)
      // Most names are none of the three: check the length before lowercasing.
      const len = name.length
      if (len !== 10 && len !== 14 && len !== 17) continue
      const lower = name.toLowerCase()
      if (lower === 'content-length') {
        if (!/^\d{1,15}$/.test(value))
          throw new H1ProtocolError('HPE_INVALID_CONTENT_LENGTH', 'bad content-length')
        const v = Number(value)
        if (length >= 0 && length !== v)
          throw new H1ProtocolError('HPE_UNEXPECTED_CONTENT_LENGTH', 'conflicting content-length')
        length = v
      } else if (lower === 'transfer-encoding') {
        transferEncoding = true
        // Only the last coding says how the body is framed.
        const codings = value.toLowerCase().split(',')
        chunked = (codings[codings.length - 1] as string).trim() === 'chunked'
      } else if (lower === 'connection') {
        const v = value.toLowerCase()
        if (v.includes('close')) close = true
        else if (http10 && v.includes('keep-alive')) close = false
      }
    }
    if (transferEncoding && length >= 0)
      // Which one frames the body is the question request smuggling lives on: refused, as
      // llhttp (undici, node:http) refuses it.
      throw new H1ProtocolError(
        'HPE_UNEXPECTED_CONTENT_LENGTH',
        'both content-length and transfer-encoding',
      )
    if (status < 200) {
      // 101 would switch protocols, which no request of ours asks for.
      if (status === 101)
        throw new H1ProtocolError('HPE_INVALID_STATUS', 'unexpected 101 Switching Protocols')
      // Informational: dropped, the final response follows on the same connection.
      this.state = S.Head
      return
    }
    this.keepAlive = !close
    this.sink.onHead(status, raw)
    if (this.state !== S.Head) return // the sink aborted
    if (this.noBody || status === 204 || status === 304) {
      this.done()
      return
    }
    if (transferEncoding) {
      if (chunked) {
        this.state = S.ChunkSize
        this.chunkDigits = 0
        this.remaining = 0
      } else {
        this.state = S.UntilClose
        this.keepAlive = false
      }
      return
    }
    if (length >= 0) {
      if (length === 0) this.done()
      else {
        this.state = S.Length
        this.remaining = length
      }
      return
    }
    this.state = S.UntilClose
    this.keepAlive = false
  }

  private done(): void {
    if (this.state === S.Dead) return
    this.state = S.Idle
    this.sink.onEnd(this.keepAlive)
  }

  /** Stops reading (the sink's request was aborted); the connection must not be reused. */
  kill(): void {
    this.state = S.Dead
    this.pending = undefined
  }
}

/** One request's callbacks and its abort handle. */
export interface RawRequest {
  /** Stops the request: a connection it holds is closed (not reused), a queued one dropped. */
  abort(): void
  /** Stops / resumes reading the body (back-pressure from the client). */
  pause(): void
  resume(): void
}

export interface RawSink {
  onHead(status: number, rawHeaders: string[]): void
  onBody(chunk: Buffer): void
  onEnd(): void
  /**
   * Connect failure (the net error, its code), reset (H1SocketError), protocol (H1ProtocolError),
   * a timeout (EngineTimeoutError).
   */
  onError(err: Error): void
}

/**
 * Which timeout ended a request. The codes are undici's, so that forward.ts and respond.ts read a
 * raw request's timeouts as they read undici's (connect: nothing sent, a connect failure; headers:
 * the engine may be working, not retried; body: the stream stalled).
 */
export type EngineTimeoutCode =
  | 'UND_ERR_CONNECT_TIMEOUT'
  | 'UND_ERR_HEADERS_TIMEOUT'
  | 'UND_ERR_BODY_TIMEOUT'

export class EngineTimeoutError extends Error {
  override readonly name = 'EngineTimeoutError'
  readonly code: EngineTimeoutCode
  constructor(code: EngineTimeoutCode, message: string) {
    super(message)
    this.code = code
  }
}

/** Per-request timeouts in ms (0: none). */
export interface RawTimeouts {
  /** From opening a connection for this request until it is connected. */
  readonly connectMs: number
  /** From the request's write until the response head. */
  readonly headersMs: number
  /** Between two pieces of the body. */
  readonly idleMs: number
}

const NO_TIMEOUTS: RawTimeouts = { connectMs: 0, headersMs: 0, idleMs: 0 }

interface Job {
  readonly method: string
  readonly bytes: Buffer
  readonly body: Buffer | undefined
  readonly sink: RawSink
  readonly timeouts: RawTimeouts
  conn: Conn | undefined
  aborted: boolean
  /** A response byte arrived for this request (after that, a close is not a stale keep-alive). */
  answered: boolean
  /** Resent once already after a reused connection closed before answering. */
  resent: boolean
  /** Whether the head has arrived (the timeout then is the body's). */
  headed: boolean
  /** pool.now() past which the request fails (headers or body timeout); Infinity: none. */
  deadline: number
  /**
   * The reader holds the body back (its client is slow): the engine's silence is ours, so the
   * body timeout waits, and restarts on resume (as undici's does).
   */
  paused: boolean
}

class Conn implements ResponseSink {
  readonly pool: RawPool
  readonly socket: Socket
  readonly parser: H1ResponseParser
  job: Job | undefined
  /** pool.now() after which an idle connection is not used again (the server's keep-alive). */
  expiresAt = Number.POSITIVE_INFINITY
  /** pool.now() since which the connection is idle. */
  idleAt = 0
  /** pool.now() past which a connection still connecting fails; Infinity: none. */
  connectDeadline = Number.POSITIVE_INFINITY
  connected = false
  /** Responses completed on it (a request on a used connection may meet the server's close). */
  served = 0
  dead = false

  constructor(pool: RawPool, socket: Socket) {
    this.pool = pool
    this.socket = socket
    this.parser = new H1ResponseParser(this)
  }

  onHead(status: number, raw: string[]): void {
    // The server's keep-alive timeout (Node's servers send 5 s): the connection is not reused
    // within a second of it, or a request may cross the server's close on the wire.
    for (let k = 0; k < raw.length; k += 2) {
      const name = raw[k] as string
      if (name.length === 10 && name.toLowerCase() === 'keep-alive') {
        const m = /timeout=(\d+)/.exec(raw[k + 1] as string)
        if (m !== null) this.expiresAt = this.pool.now() + Number(m[1]) * 1000 - 1000
      }
    }
    const job = this.job
    if (job === undefined) return
    job.headed = true
    job.deadline =
      job.timeouts.idleMs > 0 ? this.pool.now() + job.timeouts.idleMs : Number.POSITIVE_INFINITY
    job.sink.onHead(status, raw)
  }

  onBody(chunk: Buffer): void {
    const job = this.job
    if (job === undefined) return
    if (job.timeouts.idleMs > 0) job.deadline = this.pool.now() + job.timeouts.idleMs
    job.sink.onBody(chunk)
  }

  onEnd(reusable: boolean): void {
    const job = this.job
    this.job = undefined
    this.served++
    this.pool.busy.delete(this)
    if (job !== undefined) job.conn = undefined
    if (reusable) this.pool.release(this)
    else this.destroy()
    job?.sink.onEnd()
  }

  /** Closes the connection (once); its pool slot is free when this returns. */
  destroy(): void {
    if (this.dead) return
    this.dead = true
    this.parser.kill()
    this.socket.destroy()
    this.pool.gone(this)
  }
}

export interface RawPoolOptions {
  readonly host: string
  readonly port: number
  /** Connections at most; requests past it wait in order. */
  readonly connections: number
  /** Idle connections are closed after this long. */
  readonly keepAliveMs?: number
  /** Monotonic ms (default performance.now): tests pass a clock of their own. */
  readonly now?: () => number
  /**
   * Period of the pool's one timer (default 100 ms), which closes idle connections and fails
   * requests past their timeouts: a timeout fires up to this late. 0: no timer (a test calls
   * `sweep()` itself).
   */
  readonly tickMs?: number
}

/**
 * A keep-alive pool of plain TCP connections to one HTTP/1.1 origin. Timeouts are deadlines on
 * each connection, checked by one periodic timer per pool: a setTimeout per request (undici arms
 * and clears its own per request and per body chunk) costs more than the check.
 */
export class RawPool {
  private readonly idle: Conn[] = []
  private readonly queue: Job[] = []
  /** Connections carrying a request (connecting, writing, or reading the response). */
  readonly busy = new Set<Conn>()
  private open = 0
  private readonly hostHeader: string
  private readonly sweeper: NodeJS.Timeout | undefined
  private readonly keepAliveMs: number
  private readonly opts: RawPoolOptions
  private closed = false
  readonly now: () => number

  constructor(opts: RawPoolOptions) {
    this.opts = opts
    this.now = opts.now ?? (() => performance.now())
    this.hostHeader = `${opts.host.includes(':') ? `[${opts.host}]` : opts.host}:${opts.port}`
    this.keepAliveMs = opts.keepAliveMs ?? 60_000
    const tick = opts.tickMs ?? 100
    this.sweeper = tick > 0 ? setInterval(() => this.sweep(), tick).unref() : undefined
  }

  /**
   * Closes idle connections past their keep-alive, fails requests past their deadline (connect,
   * headers, body idle). Run by the pool's timer.
   */
  sweep(): void {
    const now = this.now()
    for (let k = this.idle.length - 1; k >= 0; k--) {
      const c = this.idle[k] as Conn
      if (c.expiresAt <= now || now - c.idleAt >= this.keepAliveMs) {
        this.idle.splice(k, 1)
        c.destroy()
      }
    }
    for (const c of this.busy) {
      const job = c.job
      if (!c.connected) {
        if (c.connectDeadline <= now)
          this.fail(
            c,
            new EngineTimeoutError('UND_ERR_CONNECT_TIMEOUT', 'connect to the engine timed out'),
          )
      } else if (job !== undefined && job.deadline <= now && !(job.headed && job.paused)) {
        this.fail(
          c,
          job.headed
            ? new EngineTimeoutError('UND_ERR_BODY_TIMEOUT', 'the engine stopped sending the body')
            : new EngineTimeoutError('UND_ERR_HEADERS_TIMEOUT', 'no response headers in time'),
        )
      }
    }
  }

  /**
   * Sends `method path` with `headerLines` (each `name: value\r\n`, already checked) and `body`.
   * Host and Content-Length are added here.
   */
  request(
    method: string,
    path: string,
    headerLines: string,
    body: Buffer | undefined,
    sink: RawSink,
    timeouts: RawTimeouts = NO_TIMEOUTS,
  ): RawRequest {
    const head = `${method} ${path} HTTP/1.1\r\nhost: ${this.hostHeader}\r\n${headerLines}${body !== undefined || method === 'POST' ? `content-length: ${body?.length ?? 0}\r\n` : ''}\r\n`
    const headLen = Buffer.byteLength(head, 'latin1')
    let bytes: Buffer
    let rest: Buffer | undefined
    if (body !== undefined && body.length <= 16 * 1024) {
      // Head and a small body in one buffer, one write, one syscall.
      bytes = Buffer.allocUnsafe(headLen + body.length)
      bytes.write(head, 0, 'latin1')
      body.copy(bytes, headLen)
    } else {
      bytes = Buffer.from(head, 'latin1')
      rest = body
    }
    const job: Job = {
      method,
      bytes,
      body: rest,
      sink,
      timeouts,
      conn: undefined,
      aborted: false,
      answered: false,
      resent: false,
      headed: false,
      deadline: Number.POSITIVE_INFINITY,
      paused: false,
    }
    this.dispatch(job)
    return {
      abort: () => {
        if (job.aborted) return
        job.aborted = true
        const c = job.conn
        if (c !== undefined) {
          job.conn = undefined
          c.job = undefined
          c.destroy()
        } else {
          const k = this.queue.indexOf(job)
          if (k >= 0) this.queue.splice(k, 1)
        }
      },
      pause: () => {
        job.paused = true
        job.conn?.socket.pause()
      },
      resume: () => {
        job.paused = false
        if (job.headed && job.timeouts.idleMs > 0) job.deadline = this.now() + job.timeouts.idleMs
        job.conn?.socket.resume()
      },
    }
  }

  private dispatch(job: Job): void {
    if (this.closed) {
      job.sink.onError(new H1SocketError('pool closed'))
      return
    }
    const now = this.idle.length > 0 ? this.now() : 0
    while (this.idle.length > 0) {
      const c = this.idle.pop() as Conn
      if (c.expiresAt > now && !c.dead) {
        this.send(c, job)
        return
      }
      c.destroy()
    }
    if (this.open < this.opts.connections) {
      this.send(this.connect(job.timeouts.connectMs), job)
      return
    }
    this.queue.push(job)
  }

  private send(c: Conn, job: Job): void {
    c.job = job
    job.conn = c
    this.busy.add(c)
    job.deadline =
      job.timeouts.headersMs > 0 ? this.now() + job.timeouts.headersMs : Number.POSITIVE_INFINITY
    c.parser.expect(job.method)
    if (job.body !== undefined) {
      c.socket.cork()
      c.socket.write(job.bytes)
      c.socket.write(job.body)
      c.socket.uncork()
    } else c.socket.write(job.bytes)
  }

  private connect(connectMs: number): Conn {
    this.open++
    const socket = connect({ host: this.opts.host, port: this.opts.port, noDelay: true })
    const c = new Conn(this, socket)
    if (connectMs > 0) c.connectDeadline = this.now() + connectMs
    socket.setKeepAlive(true, this.keepAliveMs)
    socket.once('connect', () => {
      c.connected = true
    })
    socket.on('data', (b: Buffer) => {
      const job = c.job
      if (job !== undefined) job.answered = true
      try {
        c.parser.execute(b)
      } catch (e) {
        this.fail(c, e instanceof Error ? e : new Error(String(e)))
      }
    })
    socket.on('end', () => {
      try {
        c.parser.finish()
      } catch (e) {
        this.fail(c, e instanceof Error ? e : new Error(String(e)))
      }
      c.destroy()
    })
    socket.on('error', (e: Error) => {
      // Before the connection existed nothing was sent: the net error's code (ECONNREFUSED…)
      // says so. After, the request may have reached the engine: a reset.
      this.fail(c, c.connected ? Object.assign(new H1SocketError(e.message), { cause: e }) : e)
    })
    socket.on('close', () => {
      if (c.job !== undefined) this.fail(c, new H1SocketError('the engine closed the connection'))
      else c.destroy()
    })
    return c
  }

  private fail(c: Conn, e: Error): void {
    const job = c.job
    c.job = undefined
    this.busy.delete(c)
    if (
      job !== undefined &&
      !job.aborted &&
      !job.answered &&
      !job.resent &&
      c.served > 0 &&
      e instanceof H1SocketError &&
      !this.closed
    ) {
      // The stale keep-alive race: the engine closed an idle connection as we reused it, and
      // not one byte came back. The request was not read (an engine answers or at least
      // keeps the connection while it works on one), so it is sent again, once, on a fresh
      // connection: first in line, it takes the slot this connection frees.
      job.resent = true
      job.conn = undefined
      this.queue.unshift(job)
      c.destroy()
      return
    }
    c.destroy()
    if (job !== undefined && !job.aborted) {
      job.conn = undefined
      job.aborted = true
      job.sink.onError(e)
    }
  }

  /** A connection finished a response and may carry the next. */
  release(c: Conn): void {
    // A body that held its reader back may have paused the socket with the response's last bytes.
    if (c.socket.isPaused()) c.socket.resume()
    const job = this.queue.shift()
    if (job !== undefined) this.send(c, job)
    else {
      c.idleAt = this.now()
      this.idle.push(c)
    }
  }

  /**
   * A connection closed (Conn.destroy, once each): its slot is free before whoever it failed
   * hears of it, and the oldest waiting request gets a new connection.
   */
  gone(c: Conn): void {
    this.open--
    this.busy.delete(c)
    const k = this.idle.lastIndexOf(c)
    if (k >= 0) this.idle.splice(k, 1)
    this.next()
  }

  /** The oldest waiting requests get new connections while slots are free. */
  private next(): void {
    if (this.closed) return
    while (this.queue.length > 0 && this.open < this.opts.connections) {
      const job = this.queue.shift() as Job
      this.send(this.connect(job.timeouts.connectMs), job)
    }
  }

  /** Connections open (connecting, idle or busy), requests on one, and requests waiting. */
  get stats(): { open: number; idle: number; waiting: number; active: number } {
    return {
      open: this.open,
      idle: this.idle.length,
      waiting: this.queue.length,
      active: this.busy.size,
    }
  }

  /** Fails waiting requests, closes idle connections; busy ones finish (or `destroy`). */
  close(): void {
    this.closed = true
    if (this.sweeper !== undefined) clearInterval(this.sweeper)
    for (const job of this.queue.splice(0)) job.sink.onError(new H1SocketError('pool closed'))
    for (const c of this.idle.splice(0)) c.destroy()
  }

  /** close(), and every busy connection torn down too. */
  destroy(): void {
    this.close()
    for (const c of [...this.busy]) this.fail(c, new H1SocketError('pool destroyed'))
  }
}

/** A body's events, as respond.ts listens to them (the names of a Node Readable's). */
type BodyEvent = 'data' | 'readable' | 'end' | 'error' | 'close'
type Listener = (arg?: unknown) => void

const NOOP = (): void => {}

/**
 * The body of a response from the raw client: what respond.ts, forward.ts and serve/ read of an
 * upstream body (undici's BodyReadable has the same members), without a Node Readable's
 * machinery. Chunks go straight from the socket's parser to the listeners, in the same turn: a
 * 'readable' listener is called when one arrives and reads it with `read()`; a 'data' listener
 * gets each one (flowing, unless paused). Chunks arriving with nobody listening, or while paused,
 * are kept (the socket paused as well). 'end' comes once everything was read, then 'close';
 * a failure is an 'error', then 'close'. `destroy()` stops the request (the connection is closed,
 * not reused).
 */
export class EngineBody implements RawSink {
  private readonly chunks: Buffer[] = []
  private head = 0
  /** Bytes kept, not read yet. */
  readableLength = 0
  private readonly listeners: Record<BodyEvent, Listener[]> = {
    data: [],
    readable: [],
    end: [],
    error: [],
    close: [],
  }
  private ended = false
  private endEmitted = false
  private closed = false
  private paused = false
  /** The engine's socket is paused by this body. */
  private socketPaused = false
  private err: Error | undefined
  private errorEmitted = false
  /** A deferred flush is scheduled (a listener came after something happened). */
  private flushQueued = false
  /** The pool's handle, once the request is sent. */
  handle: RawRequest | undefined
  /** Called once, when the body finishes in any way (the request's abort listener goes). */
  onSettled: () => void = NOOP

  // RawSink: the pool's events for this request after its head.
  onHead(): void {}
  onBody(chunk: Buffer): void {
    if (this.closed) return
    if (this.listeners.data.length > 0 && !this.paused && this.readableLength === 0) {
      for (const l of this.listeners.data) l(chunk)
      return
    }
    this.chunks.push(chunk)
    this.readableLength += chunk.length
    if (this.listeners.data.length > 0) {
      // Paused: the engine waits too.
      this.pauseSocket()
      return
    }
    // Nobody reads as fast as the engine writes: it waits past a high-water mark, as a
    // Readable's source does, so a slow client does not pile the stream up in memory.
    if (this.readableLength >= HIGH_WATER) this.pauseSocket()
    const rs = this.listeners.readable
    if (rs.length === 0) return
    for (const l of rs) l()
  }
  onEnd(): void {
    if (this.closed) return
    this.ended = true
    this.maybeEnd()
  }
  onError(err: Error): void {
    if (this.closed) return
    this.err = err
    this.closed = true
    this.settle()
    this.emitError()
  }

  read(): Buffer | null {
    if (this.head < this.chunks.length) {
      const c = this.chunks[this.head] as Buffer
      this.chunks[this.head++] = EMPTY
      if (this.head === this.chunks.length) {
        this.chunks.length = 0
        this.head = 0
      }
      this.readableLength -= c.length
      if (this.readableLength === 0) this.drained()
      return c
    }
    // Nothing kept: the engine may send again (a reader that paused and left, as holdBody
    // does before handing a large body to an iterator).
    this.drained()
    this.maybeEnd()
    return null
  }

  private pauseSocket(): void {
    if (this.socketPaused) return
    this.socketPaused = true
    this.handle?.pause()
  }

  /** Everything kept was read: the engine may send again (unless a 'data' reader paused). */
  private drained(): void {
    if (!this.socketPaused || (this.paused && this.listeners.data.length > 0)) return
    this.socketPaused = false
    this.handle?.resume()
  }

  on(event: 'data', listener: (chunk: Uint8Array) => void): this
  on(event: 'error', listener: (err: Error) => void): this
  on(event: 'readable' | 'end' | 'close', listener: () => void): this
  on(event: BodyEvent, listener: (arg: never) => void): this {
    this.listeners[event].push(listener as Listener)
    // What happened before anyone listened is told on the next tick (as a Readable does): the
    // caller adds its other listeners first.
    if (
      !this.flushQueued &&
      (this.readableLength > 0 || this.ended || this.err !== undefined || this.closed)
    ) {
      this.flushQueued = true
      process.nextTick(() => this.flush())
    }
    return this
  }

  off(event: BodyEvent, listener: (arg: never) => void): this {
    const ls = this.listeners[event]
    const k = ls.indexOf(listener as Listener)
    if (k >= 0) ls.splice(k, 1)
    return this
  }

  pause(): this {
    this.paused = true
    this.pauseSocket()
    return this
  }

  resume(): this {
    this.paused = false
    if (this.readableLength > 0 || this.ended) this.flush()
    if (this.readableLength === 0) this.drained()
    return this
  }

  /** Stops the request (its connection is closed, not reused); 'close' follows on the next tick. */
  destroy(err?: Error): this {
    if (this.closed) return this
    this.closed = true
    this.handle?.abort()
    this.chunks.length = 0
    this.head = 0
    this.readableLength = 0
    this.settle()
    if (err !== undefined) {
      this.err = err
      process.nextTick(() => this.emitError())
    } else process.nextTick(() => this.emit('close'))
    return this
  }

  get destroyed(): boolean {
    return this.closed
  }

  /**
   * Reads the rest and drops it, so that the connection can carry another request; a body past
   * `limit` bytes (default 128 KiB, as undici's) is not worth reading: the request is stopped.
   * Resolves either way, and on a failure.
   */
  dump(opts?: { limit?: number }): Promise<void> {
    const limit = opts?.limit ?? 128 * 1024
    return new Promise<void>((resolve) => {
      if (this.closed) {
        resolve()
        return
      }
      let n = this.readableLength
      this.chunks.length = 0
      this.head = 0
      this.readableLength = 0
      if (n > limit) {
        this.destroy()
        resolve()
        return
      }
      const done = (): void => resolve()
      this.on('data', (c) => {
        n += c.byteLength
        if (n > limit) {
          this.destroy()
          resolve()
        }
      })
      this.on('end', done)
      this.on('error', done)
      this.on('close', done)
      this.maybeEnd()
    })
  }

  /** The whole body as text (UTF-8). */
  async text(): Promise<string> {
    const parts: Buffer[] = []
    for await (const c of this) parts.push(c)
    return Buffer.concat(parts).toString('utf8')
  }

  async json(): Promise<unknown> {
    return JSON.parse(await this.text()) as unknown
  }

  [Symbol.asyncIterator](): AsyncIterator<Buffer> {
    let wake: (() => void) | undefined
    const poke = (): void => {
      const w = wake
      wake = undefined
      w?.()
    }
    this.on('readable', poke)
    this.on('end', poke)
    this.on('error', poke)
    this.on('close', poke)
    const stop = (): void => {
      this.off('readable', poke)
      this.off('end', poke)
      this.off('error', poke)
      this.off('close', poke)
    }
    const next = async (): Promise<IteratorResult<Buffer>> => {
      for (;;) {
        const c = this.read()
        if (c !== null) return { value: c, done: false }
        if (this.err !== undefined) {
          stop()
          throw this.err
        }
        if (this.endEmitted) {
          stop()
          return { value: undefined, done: true }
        }
        if (this.closed) {
          stop()
          throw new H1SocketError('the response body was destroyed')
        }
        await new Promise<void>((r) => {
          wake = r
        })
      }
    }
    return {
      next,
      return: async (): Promise<IteratorResult<Buffer>> => {
        stop()
        if (!this.endEmitted) this.destroy()
        return { value: undefined, done: true }
      },
    }
  }

  private flush(): void {
    this.flushQueued = false
    if (this.err !== undefined) {
      this.emitError()
      return
    }
    if (this.listeners.data.length > 0) {
      while (!this.paused && !this.closed && this.listeners.data.length > 0) {
        const c = this.read()
        if (c === null) return
        for (const l of this.listeners.data) l(c)
      }
      return
    }
    if (this.readableLength > 0) {
      for (const l of this.listeners.readable) l()
      return
    }
    if (this.closed && !this.endEmitted) {
      this.emit('close')
      return
    }
    this.maybeEnd()
  }

  private maybeEnd(): void {
    if (!this.ended || this.endEmitted || this.readableLength > 0) return
    // Nobody listens yet: told when someone does.
    if (this.listeners.end.length === 0 && this.listeners.data.length === 0) return
    this.endEmitted = true
    this.closed = true
    this.settle()
    this.emit('end')
    this.emit('close')
  }

  private emitError(): void {
    if (this.errorEmitted || this.listeners.error.length === 0) return
    this.errorEmitted = true
    this.emit('error', this.err)
    this.emit('close')
  }

  private emit(event: BodyEvent, arg?: unknown): void {
    const ls = this.listeners[event]
    if (ls.length === 0) return
    // Copied: a listener may remove itself (or others) while they run.
    for (const l of ls.length === 1 ? ls : [...ls]) l(arg)
  }

  private settle(): void {
    const s = this.onSettled
    this.onSettled = NOOP
    s()
  }
}

/** The request's abort signal as the client reads it (a Node AbortSignal is one). */
export interface AbortSource {
  readonly aborted: boolean
  readonly reason: unknown
  addEventListener(type: 'abort', listener: () => void): void
  removeEventListener(type: 'abort', listener: () => void): void
}

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
  readonly signal: AbortSource
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
  private readonly signal: AbortSource
  private readonly resolve: (r: EngineResponse) => void
  private readonly reject: (e: unknown) => void

  constructor(
    signal: AbortSource,
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
  onBody(chunk: Buffer): void {
    this.body.onBody(chunk)
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

  /** The pool of one engine (made on first use). */
  pool(host: string, port: number): RawPool {
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
  }
}
