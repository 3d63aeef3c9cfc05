// An HTTP/1.1 client on plain `node:net` sockets, for the proxy floor's `--client raw` (issue 11):
// does a proxy's upstream half get cheaper without undici (its Request object, header
// normalisation, llhttp through WASM, a Readable per body, a promise per request)? A keep-alive
// pool per origin, the request head and body written in one `socket.write`, and a small response
// parser (H1ResponseParser) that hands the body on as slices of the socket's own chunks.
//
// The parser is strict where a proxy must be: CRLF line ends, a status line of HTTP/1.x, token
// header names, one Content-Length (or equal repeats), Transfer-Encoding over Content-Length,
// no body for HEAD, 1xx, 204 and 304, a header block of at most `maxHeaderBytes` (trailers
// included), chunk sizes in hex with extensions skipped, and nothing from the server between
// responses. Errors carry llhttp's codes (HPE_*) so that forward.ts's isProtocolError reads them
// as it reads undici's.
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
  /** Connect failure (the net error, its code), reset (H1SocketError), protocol (H1ProtocolError). */
  onError(err: Error): void
}

interface Job {
  readonly method: string
  readonly bytes: Buffer
  readonly body: Buffer | undefined
  readonly sink: RawSink
  conn: Conn | undefined
  aborted: boolean
}

class Conn implements ResponseSink {
  readonly pool: RawPool
  readonly socket: Socket
  readonly parser: H1ResponseParser
  job: Job | undefined
  /** ms (Date.now) after which an idle connection is not used again (the server's keep-alive). */
  expiresAt = Number.POSITIVE_INFINITY
  /** ms (Date.now) since which the connection is idle. */
  idleAt = 0
  connected = false
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
        if (m !== null) this.expiresAt = Date.now() + Number(m[1]) * 1000 - 1000
      }
    }
    this.job?.sink.onHead(status, raw)
  }

  onBody(chunk: Buffer): void {
    this.job?.sink.onBody(chunk)
  }

  onEnd(reusable: boolean): void {
    const job = this.job
    this.job = undefined
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
}

/** A keep-alive pool of plain TCP connections to one HTTP/1.1 origin. */
export class RawPool {
  private readonly idle: Conn[] = []
  private readonly queue: Job[] = []
  private open = 0
  private readonly hostHeader: string
  private readonly sweep: NodeJS.Timeout
  private readonly keepAliveMs: number
  private readonly opts: RawPoolOptions
  private closed = false

  constructor(opts: RawPoolOptions) {
    this.opts = opts
    this.hostHeader = `${opts.host.includes(':') ? `[${opts.host}]` : opts.host}:${opts.port}`
    const keepAlive = opts.keepAliveMs ?? 60_000
    // One timer for all idle connections, not one per request.
    this.sweep = setInterval(
      () => {
        const now = Date.now()
        for (let k = this.idle.length - 1; k >= 0; k--) {
          const c = this.idle[k] as Conn
          if (c.expiresAt <= now || now - c.idleAt >= keepAlive) {
            this.idle.splice(k, 1)
            c.destroy()
          }
        }
      },
      Math.min(1000, keepAlive),
    ).unref()
    this.keepAliveMs = keepAlive
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
    const job: Job = { method, bytes, body: rest, sink, conn: undefined, aborted: false }
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
      pause: () => job.conn?.socket.pause(),
      resume: () => job.conn?.socket.resume(),
    }
  }

  private dispatch(job: Job): void {
    if (this.closed) {
      job.sink.onError(new H1SocketError('pool closed'))
      return
    }
    const now = this.idle.length > 0 ? Date.now() : 0
    while (this.idle.length > 0) {
      const c = this.idle.pop() as Conn
      if (c.expiresAt > now && !c.dead) {
        this.send(c, job)
        return
      }
      c.destroy()
    }
    if (this.open < this.opts.connections) {
      this.send(this.connect(), job)
      return
    }
    this.queue.push(job)
  }

  private send(c: Conn, job: Job): void {
    c.job = job
    job.conn = c
    c.parser.expect(job.method)
    if (job.body !== undefined) {
      c.socket.cork()
      c.socket.write(job.bytes)
      c.socket.write(job.body)
      c.socket.uncork()
    } else c.socket.write(job.bytes)
  }

  private connect(): Conn {
    this.open++
    const socket = connect({ host: this.opts.host, port: this.opts.port, noDelay: true })
    const c = new Conn(this, socket)
    socket.setKeepAlive(true, this.keepAliveMs)
    socket.once('connect', () => {
      c.connected = true
    })
    socket.on('data', (b: Buffer) => {
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
    c.destroy()
    if (job !== undefined && !job.aborted) {
      job.conn = undefined
      job.aborted = true
      job.sink.onError(e)
    }
  }

  /** A connection finished a response and may carry the next. */
  release(c: Conn): void {
    const job = this.queue.shift()
    if (job !== undefined) this.send(c, job)
    else {
      c.idleAt = Date.now()
      this.idle.push(c)
    }
  }

  /**
   * A connection closed (Conn.destroy, once each): its slot is free before whoever it failed
   * hears of it, and the oldest waiting request gets a new connection.
   */
  gone(c: Conn): void {
    this.open--
    const k = this.idle.lastIndexOf(c)
    if (k >= 0) this.idle.splice(k, 1)
    this.next()
  }

  /** The oldest waiting requests get new connections while slots are free. */
  private next(): void {
    if (this.closed) return
    while (this.queue.length > 0 && this.open < this.opts.connections) {
      const job = this.queue.shift() as Job
      this.send(this.connect(), job)
    }
  }

  /** Connections open (connecting, idle or busy) and requests waiting for one. */
  get stats(): { open: number; idle: number; waiting: number } {
    return { open: this.open, idle: this.idle.length, waiting: this.queue.length }
  }

  close(): void {
    this.closed = true
    clearInterval(this.sweep)
    for (const job of this.queue.splice(0)) job.sink.onError(new H1SocketError('pool closed'))
    for (const c of this.idle.splice(0)) c.destroy()
  }
}
