// A raw HTTP/1.1 server on `node:net` for the proxy floor (issue 11, bench only): what would an
// inbound side without node:http save? `proxy-floor.ts --server raw` runs the floor's handlers on
// it instead of `node:http`'s server.
//
// What it does: the request line and header fields parsed from the socket's bytes by a strict
// parser (H1RequestParser: CRLF line ends, token methods and header names, a visible-ASCII target,
// HTTP/1.0 or 1.1, no obs-fold, no control characters in values, one Content-Length or equal
// repeats, Host required once on HTTP/1.1, a head of at most `maxHeaderBytes`); Content-Length
// bodies only; keep-alive (HTTP/1.1 by default, HTTP/1.0 when asked) and pipelining taken one
// request at a time (the next one parsed after the answer: answers stay in order and a client
// cannot make the server hold many answers); `Expect: 100-continue` answered; a non-streamed
// answer written as one buffer (status line, headers and body), a stream as chunked frames (a
// frame per write, the last chunk and the terminator in one write when the caller knows it is
// last); one timer for every connection's idle and request deadlines (no clock read per request);
// the listener's cap as net.Server's `maxConnections`.
//
// What it does not (docs/proxy-cost.md, "A raw inbound server"): chunked request bodies (answered
// 411, any other transfer coding 501), trailers, absolute-form targets and CONNECT (400), a Date
// header (the floor passes the engine's), the production listener's eviction of idle
// connections at the cap and its JSON 503, and node:http's deadlines for a whole head and a whole
// request (here only a stalled request, no byte for `requestMs`, and keep-alive idleness are
// bounded).
import { STATUS_CODES } from 'node:http'
import { type AddressInfo, createServer, type Server, type Socket } from 'node:net'
import { TOKEN } from '../../dataplane/proxy/h1-parser.js'

/** Why a request was refused, llhttp's codes where it has one. */
export type H1RequestCode =
  | 'HPE_INVALID_METHOD'
  | 'HPE_INVALID_URL'
  | 'HPE_INVALID_VERSION'
  | 'HPE_INVALID_HEADER_TOKEN'
  | 'HPE_HEADER_OVERFLOW'
  | 'HPE_INVALID_CONTENT_LENGTH'
  | 'HPE_UNEXPECTED_CONTENT_LENGTH'
  | 'HPE_INVALID_TRANSFER_ENCODING'
  | 'HPE_CHUNKED_UNSUPPORTED'
  | 'HPE_BODY_OVERFLOW'
  | 'HPE_MISSING_HOST'
  | 'HPE_UNSUPPORTED_EXPECT'
  | 'HPE_STRICT'
  | 'HPE_REQUEST_TIMEOUT'

/** A request the parser refuses; `status` is the answer (the connection is closed after it). */
export class H1RequestError extends Error {
  override readonly name = 'H1RequestError'
  readonly code: H1RequestCode
  readonly status: number
  constructor(code: H1RequestCode, status: number, message: string) {
    super(message)
    this.code = code
    this.status = status
  }
}

/** One whole request: its head and its body (a slice of the socket's bytes, not copied). */
export interface InboundRequest {
  readonly method: string
  /** The request target as sent (origin-form: starts with `/`, or `*` for OPTIONS). */
  readonly target: string
  /** 0 for HTTP/1.0, 1 for HTTP/1.1. */
  readonly minor: 0 | 1
  /** Header fields as sent: name, value, name, value, … (values without surrounding blanks). */
  readonly rawHeaders: string[]
  /** undefined when the request had no body (no Content-Length, or 0). */
  readonly body: Buffer | undefined
  /** Whether the connection may carry another request after this one's answer. */
  readonly keepAlive: boolean
}

const CR = 13
const LF = 10
const EMPTY = Buffer.alloc(0)
const TOKEN_CHAR = new Uint8Array(128)
for (let c = 0; c < 128; c++) if (TOKEN.test(String.fromCharCode(c))) TOKEN_CHAR[c] = 1

function isToken(s: string, from: number, to: number): boolean {
  if (from >= to) return false
  for (let k = from; k < to; k++) {
    const c = s.charCodeAt(k)
    if (c > 127 || TOKEN_CHAR[c] === 0) return false
  }
  return true
}

/** A head parsed whose body has not all arrived. */
interface Head {
  readonly method: string
  readonly target: string
  readonly minor: 0 | 1
  readonly rawHeaders: string[]
  readonly length: number
  readonly keepAlive: boolean
  readonly expectContinue: boolean
}

/**
 * One connection's request parser: `feed` each chunk the socket reads, `next` for the next whole
 * request. Chunks are kept, not copied, until a head or body spans several of them (then joined
 * once); the body handed on is a slice of them.
 */
export class H1RequestParser {
  readonly maxHeaderBytes: number
  readonly maxBodyBytes: number
  /** Chunks fed and not consumed; the first one from `at`. */
  private parts: Buffer[] = []
  private at = 0
  private size = 0
  /** Bytes after `at` already searched for the head's end. */
  private scanned = 0
  private head: Head | undefined
  private continueDue = false

  constructor(maxHeaderBytes = 16 * 1024, maxBodyBytes = 16 * 1024 * 1024) {
    this.maxHeaderBytes = maxHeaderBytes
    this.maxBodyBytes = maxBodyBytes
  }

  /** Bytes fed and not yet part of a request handed out. */
  get buffered(): number {
    return this.size
  }

  /** Whether bytes of a request that is not complete yet are held (a head or a body partly in). */
  get partial(): boolean {
    return this.size > 0 || this.head !== undefined
  }

  feed(chunk: Buffer): void {
    if (chunk.length === 0) return
    if (this.size === 0) {
      this.parts.length = 0
      this.parts.push(chunk)
      this.at = 0
    } else this.parts.push(chunk)
    this.size += chunk.length
  }

  /**
   * True once after a head with `Expect: 100-continue` was parsed and its body is not all in:
   * the server answers `100 Continue` then.
   */
  takeContinue(): boolean {
    const due = this.continueDue
    this.continueDue = false
    return due
  }

  /** The next whole request, undefined until its bytes are in; throws H1RequestError. */
  next(): InboundRequest | undefined {
    if (this.head === undefined && !this.readHead()) return undefined
    const h = this.head as Head
    if (this.size < h.length) {
      if (h.expectContinue && h.minor === 1 && this.size === 0) this.continueDue = true
      return undefined
    }
    this.head = undefined
    let body: Buffer | undefined
    if (h.length > 0) {
      const data = this.join()
      body = data.subarray(this.at, this.at + h.length)
      this.consume(h.length)
    }
    return {
      method: h.method,
      target: h.target,
      minor: h.minor,
      rawHeaders: h.rawHeaders,
      body,
      keepAlive: h.keepAlive,
    }
  }

  /** The buffered chunks as one buffer (from `at`). */
  private join(): Buffer {
    if (this.parts.length > 1) {
      const first = this.parts[0] as Buffer
      this.parts[0] = this.at === 0 ? first : first.subarray(this.at)
      const whole = Buffer.concat(this.parts, this.size)
      this.parts.length = 1
      this.parts[0] = whole
      this.at = 0
    }
    return (this.parts[0] as Buffer | undefined) ?? EMPTY
  }

  private consume(n: number): void {
    this.at += n
    this.size -= n
    this.scanned = 0
    if (this.size === 0) {
      this.parts.length = 0
      this.at = 0
    }
  }

  /** Parses a head if its end is in; false when more bytes are needed. */
  private readHead(): boolean {
    if (this.size === 0) return false
    let data = this.join()
    // RFC 9112 2.2: empty lines before a request line are ignored (some clients send a CRLF
    // after a POST body).
    while (this.size >= 2 && data[this.at] === CR && data[this.at + 1] === LF) {
      this.consume(2)
      data = this.join()
    }
    if (this.size === 0) return false
    const from = this.at
    const stop = from + this.size
    let end = -1
    for (let i = from + Math.max(3, this.scanned); i < stop; i++)
      if (data[i] === LF && data[i - 1] === CR && data[i - 2] === LF && data[i - 3] === CR) {
        end = i - 3
        break
      }
    if (end < 0) {
      if (this.size > this.maxHeaderBytes)
        throw new H1RequestError('HPE_HEADER_OVERFLOW', 431, 'request head too large')
      this.scanned = this.size
      return false
    }
    if (end + 4 - from > this.maxHeaderBytes)
      throw new H1RequestError('HPE_HEADER_OVERFLOW', 431, 'request head too large')
    const head = parseHead(data.toString('latin1', from, end), this.maxBodyBytes)
    this.consume(end + 4 - from)
    this.head = head
    return true
  }
}

/** The request line and fields of a head (latin1, without the final CRLFCRLF). */
function parseHead(text: string, maxBodyBytes: number): Head {
  const n = text.length
  let lineEnd = text.indexOf('\r\n')
  if (lineEnd < 0) lineEnd = n
  const sp1 = text.indexOf(' ')
  if (sp1 < 0 || sp1 > lineEnd || !isToken(text, 0, sp1))
    throw new H1RequestError('HPE_INVALID_METHOD', 400, 'bad request method')
  const sp2 = text.indexOf(' ', sp1 + 1)
  if (sp2 < 0 || sp2 > lineEnd) throw new H1RequestError('HPE_INVALID_URL', 400, 'bad request line')
  if (sp2 === sp1 + 1) throw new H1RequestError('HPE_INVALID_URL', 400, 'empty request target')
  for (let k = sp1 + 1; k < sp2; k++) {
    const c = text.charCodeAt(k)
    if (c <= 32 || c >= 127) throw new H1RequestError('HPE_INVALID_URL', 400, 'bad request target')
  }
  const first = text.charCodeAt(sp1 + 1)
  const method = text.slice(0, sp1)
  // Origin-form only (and `*` for OPTIONS): absolute-form is for proxies, authority-form for
  // CONNECT, neither of which this server is.
  if (first !== 47 /* / */ && !(first === 42 /* * */ && sp2 === sp1 + 2 && method === 'OPTIONS'))
    throw new H1RequestError('HPE_INVALID_URL', 400, 'request target is not origin-form')
  let minor: 0 | 1
  if (lineEnd - sp2 !== 9 || !text.startsWith('HTTP/', sp2 + 1) || text.charCodeAt(sp2 + 7) !== 46)
    throw new H1RequestError('HPE_INVALID_VERSION', 400, 'bad HTTP version')
  const major = text.charCodeAt(sp2 + 6) - 48
  const mi = text.charCodeAt(sp2 + 8) - 48
  if (major < 0 || major > 9 || mi < 0 || mi > 9)
    throw new H1RequestError('HPE_INVALID_VERSION', 400, 'bad HTTP version')
  if (major === 1 && mi === 1) minor = 1
  else if (major === 1 && mi === 0) minor = 0
  else throw new H1RequestError('HPE_INVALID_VERSION', 505, 'HTTP version not supported')
  const raw: string[] = []
  let length = -1
  let transferEncoding: string | undefined
  let hosts = 0
  let close = false
  let keepAliveAsked = false
  let expectContinue = false
  for (let at = lineEnd + 2; at < n; at = lineEnd + 2) {
    lineEnd = text.indexOf('\r\n', at)
    if (lineEnd < 0) lineEnd = n
    let colon = at
    for (; colon < lineEnd; colon++) {
      const c = text.charCodeAt(colon)
      if (c === 58) break
      // A space or tab here is obs-fold (at the line's start) or blank before the colon: both
      // refused (RFC 9112 5.1, 5.2).
      if (c > 127 || TOKEN_CHAR[c] === 0)
        throw new H1RequestError('HPE_INVALID_HEADER_TOKEN', 400, 'bad header name')
    }
    if (colon === at || colon === lineEnd)
      throw new H1RequestError('HPE_INVALID_HEADER_TOKEN', 400, 'bad header line')
    let vs = colon + 1
    let ve = lineEnd
    while (vs < ve && (text.charCodeAt(vs) === 32 || text.charCodeAt(vs) === 9)) vs++
    while (ve > vs && (text.charCodeAt(ve - 1) === 32 || text.charCodeAt(ve - 1) === 9)) ve--
    for (let k = vs; k < ve; k++) {
      const c = text.charCodeAt(k)
      // CR, LF (a bare one would split the line for the engine), NUL and the other controls.
      if ((c < 32 && c !== 9) || c === 127)
        throw new H1RequestError('HPE_INVALID_HEADER_TOKEN', 400, 'bad header value')
    }
    const name = text.slice(at, colon)
    const value = text.slice(vs, ve)
    raw.push(name, value)
    const len = colon - at
    if (len !== 4 && len !== 6 && len !== 10 && len !== 14 && len !== 17) continue
    const lower = name.toLowerCase()
    if (lower === 'content-length') {
      if (!/^\d{1,15}$/.test(value))
        throw new H1RequestError('HPE_INVALID_CONTENT_LENGTH', 400, 'bad content-length')
      const v = Number(value)
      if (length >= 0 && length !== v)
        throw new H1RequestError('HPE_UNEXPECTED_CONTENT_LENGTH', 400, 'conflicting content-length')
      length = v
    } else if (lower === 'transfer-encoding') {
      transferEncoding = transferEncoding === undefined ? value : `${transferEncoding}, ${value}`
    } else if (lower === 'host') {
      hosts++
    } else if (lower === 'connection') {
      for (const t of value.toLowerCase().split(',')) {
        const tok = t.trim()
        if (tok === 'close') close = true
        else if (tok === 'keep-alive') keepAliveAsked = true
      }
    } else if (lower === 'expect') {
      if (value.toLowerCase() !== '100-continue')
        throw new H1RequestError('HPE_UNSUPPORTED_EXPECT', 417, 'unsupported expectation')
      expectContinue = true
    }
  }
  if (transferEncoding !== undefined) {
    // Both framings is where request smuggling lives: refused, as llhttp refuses it.
    if (length >= 0)
      throw new H1RequestError(
        'HPE_UNEXPECTED_CONTENT_LENGTH',
        400,
        'both content-length and transfer-encoding',
      )
    const codings = transferEncoding.toLowerCase().split(',')
    if ((codings[codings.length - 1] as string).trim() === 'chunked')
      throw new H1RequestError(
        'HPE_CHUNKED_UNSUPPORTED',
        411,
        'chunked request bodies are not read: send Content-Length',
      )
    throw new H1RequestError('HPE_INVALID_TRANSFER_ENCODING', 501, 'unsupported transfer coding')
  }
  // RFC 9112 3.2: exactly one Host on HTTP/1.1.
  if (minor === 1 ? hosts !== 1 : hosts > 1)
    throw new H1RequestError('HPE_MISSING_HOST', 400, 'HTTP/1.1 needs exactly one Host')
  if (length > maxBodyBytes)
    throw new H1RequestError('HPE_BODY_OVERFLOW', 413, 'request body too large')
  return {
    method,
    target: text.slice(sp1 + 1, sp2),
    minor,
    rawHeaders: raw,
    length: Math.max(length, 0),
    keepAlive: minor === 1 ? !close : keepAliveAsked && !close,
    expectContinue,
  }
}

const STATUS_LINES = new Map<number, string>()
function statusLine(status: number): string {
  let s = STATUS_LINES.get(status)
  if (s === undefined) {
    s = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Unknown'}\r\n`
    STATUS_LINES.set(status, s)
  }
  return s
}

/**
 * Header lines (name, value, …: the caller's, already free of CR and LF, without framing or
 * connection fields) as text.
 */
function headerText(headers: readonly string[]): string {
  let s = ''
  for (let k = 0; k < headers.length; k += 2) s += `${headers[k]}: ${headers[k + 1]}\r\n`
  return s
}

const TERMINATOR = Buffer.from('0\r\n\r\n', 'latin1')

/**
 * The answer to one request. `end` writes a whole answer in one buffer; `writeHead`, `write` and
 * `finish` stream one (chunked on HTTP/1.1; on HTTP/1.0 the body runs to the connection's close).
 * The header lines given must not carry Content-Length, Transfer-Encoding or Connection: the
 * server writes those.
 */
export class RawResponse {
  readonly request: InboundRequest
  /** Called once when the client's connection closes before the answer was finished. */
  onAbort: (() => void) | undefined
  /** Called when the socket drained after a `write` that returned false. */
  onDrain: (() => void) | undefined
  private readonly conn: Conn
  /** The stream's head, written with its first frame. */
  private pendingHead: string | undefined
  private chunked = false
  private streaming = false
  private ended = false
  private terminated = false

  constructor(conn: Conn, request: InboundRequest) {
    this.conn = conn
    this.request = request
  }

  get finished(): boolean {
    return this.ended
  }

  private connectionField(): string {
    const r = this.request
    if (!r.keepAlive || this.conn.closing) return 'connection: close\r\n'
    return r.minor === 0 ? 'connection: keep-alive\r\n' : ''
  }

  /** The whole answer in one write: status line, headers, Content-Length and body. */
  end(status: number, headers: readonly string[], body?: Buffer | string): void {
    if (this.ended || this.streaming) throw new Error('RawResponse: already answered')
    this.ended = true
    const bytes = body === undefined ? EMPTY : typeof body === 'string' ? Buffer.from(body) : body
    const head = `${statusLine(status)}${headerText(headers)}content-length: ${bytes.length}\r\n${this.connectionField()}\r\n`
    const sendBody = this.request.method !== 'HEAD' && status !== 204 && status !== 304
    const out = Buffer.allocUnsafe(head.length + (sendBody ? bytes.length : 0))
    out.write(head, 0, 'latin1')
    if (sendBody) bytes.copy(out, head.length)
    this.conn.write(out)
    this.conn.done(this)
  }

  /** Starts a streamed answer; the head goes out with the first frame. */
  writeHead(status: number, headers: readonly string[]): void {
    if (this.ended || this.streaming) throw new Error('RawResponse: already answered')
    this.streaming = true
    this.chunked = this.request.minor === 1
    if (!this.chunked) this.conn.closing = true
    this.pendingHead = `${statusLine(status)}${headerText(headers)}${this.chunked ? 'transfer-encoding: chunked\r\n' : ''}${this.connectionField()}\r\n`
  }

  /**
   * One frame of a streamed answer; `last`: nothing follows, so the chunked terminator is written
   * with it. Returns what the socket's write returned (false: wait for onDrain).
   */
  write(chunk: Buffer, last = false): boolean {
    if (!this.streaming || this.ended) throw new Error('RawResponse: not streaming')
    const head = this.pendingHead
    this.pendingHead = undefined
    const headLen = head === undefined ? 0 : head.length
    if (!this.chunked) {
      if (head === undefined) return this.conn.writeFrame(chunk)
      const out = Buffer.allocUnsafe(headLen + chunk.length)
      out.write(head, 0, 'latin1')
      chunk.copy(out, headLen)
      return this.conn.writeFrame(out)
    }
    if (chunk.length === 0 && !last) {
      if (head !== undefined) return this.conn.writeFrame(Buffer.from(head, 'latin1'))
      return true
    }
    const size = chunk.length.toString(16)
    const tail = last ? 7 : 2
    const frame = chunk.length > 0 ? size.length + 2 + chunk.length + tail : 5
    const out = Buffer.allocUnsafe(headLen + frame)
    let o = 0
    if (head !== undefined) o += out.write(head, 0, 'latin1')
    if (chunk.length > 0) {
      o += out.write(size, o, 'latin1')
      out[o++] = CR
      out[o++] = LF
      o += chunk.copy(out, o)
      out[o++] = CR
      out[o++] = LF
    }
    if (last) {
      TERMINATOR.copy(out, o)
      this.terminated = true
    }
    return this.conn.writeFrame(out)
  }

  /** Ends a streamed answer (the terminator, unless `write(…, true)` sent it). */
  finish(): void {
    if (this.ended) return
    if (!this.streaming) throw new Error('RawResponse: not streaming')
    if (this.pendingHead !== undefined || (this.chunked && !this.terminated)) {
      if (this.chunked) this.write(EMPTY, true)
      else this.conn.writeFrame(Buffer.from(this.pendingHead as string, 'latin1'))
    }
    this.ended = true
    this.conn.done(this)
  }

  /** Gives up: the connection is destroyed (a failure after the head was sent). */
  destroy(): void {
    this.ended = true
    this.conn.socket.destroy()
  }
}

/** What a request's answer is made by. */
export type RawHandler = (req: InboundRequest, res: RawResponse) => void

export interface RawServerOptions {
  readonly host: string
  readonly port: number
  readonly handler: RawHandler
  readonly backlog?: number
  /** The listener's cap (net.Server's maxConnections: new connections past it are closed). */
  readonly maxConnections?: number
  readonly maxHeaderBytes?: number
  readonly maxBodyBytes?: number
  /** An idle keep-alive connection is closed after this long (default 65 s, as the floor's node:http). */
  readonly keepAliveMs?: number
  /**
   * A request partly in is answered 408 when none of its bytes came for this long (default
   * 60 s): a stall bound, not node:http's deadline for the whole request.
   */
  readonly requestMs?: number
  /** The sweep's period: deadlines are kept to within it (default 1 s). */
  readonly tickMs?: number
}

export interface RawServer {
  readonly server: Server
  readonly port: number
  /** Open connections. */
  readonly connections: number
  close(): Promise<void>
}

/** Unread bytes past which a busy connection stops reading (pipelined requests wait). */
const READ_AHEAD = 64 * 1024

function errorBody(e: H1RequestError): string {
  return JSON.stringify({
    error: { message: e.message, type: 'invalid_request_error', code: e.code, param: null },
  })
}

function uncorkConn(c: Conn): void {
  c.corked = false
  c.socket.uncork()
}

/** One client connection: its parser and the answer under way. */
class Conn {
  readonly socket: Socket
  readonly parser: H1RequestParser
  private readonly srv: RawServerImpl
  res: RawResponse | undefined
  /** Close once the answer under way is written (HTTP/1.0 stream, the client's FIN). */
  closing = false
  /** Bytes read since the last sweep. */
  active = false
  /** Sweeps since the last byte read while idle or mid-request. */
  quietTicks = 0
  /** Stream frames of this turn are corked (uncorkConn on the next tick). */
  corked = false
  /** Refused: what else the client sends is read and dropped until it closes. */
  refused = false
  private pumping = false
  private paused = false

  constructor(srv: RawServerImpl, socket: Socket) {
    this.srv = srv
    this.socket = socket
    this.parser = new H1RequestParser(srv.maxHeaderBytes, srv.maxBodyBytes)
  }

  onData(chunk: Buffer): void {
    this.active = true
    if (this.refused) return
    this.parser.feed(chunk)
    if (this.res === undefined) this.pump()
    else if (!this.paused && this.parser.buffered > READ_AHEAD) {
      this.paused = true
      this.socket.pause()
    }
  }

  /**
   * The client sent FIN. With no answer under way the connection is closed; with one under way
   * the client is taken to have left (as node:http does without httpAllowHalfOpen): the answer
   * is given up, its handler told.
   */
  onEnd(): void {
    this.closing = true
    if (this.res === undefined) this.socket.end()
    else this.socket.destroy()
  }

  onClose(): void {
    const res = this.res
    this.res = undefined
    if (res !== undefined && !res.finished) res.onAbort?.()
  }

  onDrain(): void {
    this.res?.onDrain?.()
  }

  /** A whole answer: one buffer, one system call. */
  write(b: Buffer): boolean {
    return this.socket.write(b)
  }

  /**
   * A stream's frame. The engine client hands on several events from one read; as node:http
   * corks a response's writes until the next tick, the frames of one turn go out in one writev.
   */
  writeFrame(b: Buffer): boolean {
    if (!this.corked) {
      this.corked = true
      this.socket.cork()
      process.nextTick(uncorkConn, this)
    }
    return this.socket.write(b)
  }

  /** The answer to `res` is written: the next request (or the close). */
  done(res: RawResponse): void {
    if (this.res !== res) return
    this.res = undefined
    if (!res.request.keepAlive || this.closing) {
      this.socket.end()
      return
    }
    if (this.paused) {
      this.paused = false
      this.socket.resume()
    }
    this.pump()
  }

  /** Hands the next whole request to the handler (in a loop: answers may come synchronously). */
  private pump(): void {
    if (this.pumping) return
    this.pumping = true
    try {
      while (this.res === undefined && !this.socket.destroyed) {
        let req: InboundRequest | undefined
        try {
          req = this.parser.next()
        } catch (e) {
          if (!(e instanceof H1RequestError)) throw e
          this.refuse(e)
          return
        }
        if (req === undefined) {
          if (this.parser.takeContinue()) this.socket.write('HTTP/1.1 100 Continue\r\n\r\n')
          if (this.closing) this.socket.end()
          return
        }
        this.quietTicks = 0
        const res = new RawResponse(this, req)
        this.res = res
        this.srv.handler(req, res)
      }
    } finally {
      this.pumping = false
    }
  }

  /** A refused request: its answer, then the connection closed (nothing after it is read). */
  refuse(e: H1RequestError): void {
    const body = errorBody(e)
    this.closing = true
    this.refused = true
    // Not destroyed at once: unread bytes would make the kernel send RST, which can discard
    // the answer before the client reads it. The client's FIN (or the sweep) closes it.
    this.socket.end(
      `${statusLine(e.status)}content-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
      'latin1',
    )
  }
}

class RawServerImpl {
  readonly handler: RawHandler
  readonly maxHeaderBytes: number
  readonly maxBodyBytes: number
  readonly conns = new Set<Conn>()

  constructor(opts: RawServerOptions) {
    this.handler = opts.handler
    this.maxHeaderBytes = opts.maxHeaderBytes ?? 16 * 1024
    this.maxBodyBytes = opts.maxBodyBytes ?? 16 * 1024 * 1024
  }

  /**
   * Deadlines by counting sweeps, not reading clocks: a connection with no answer under way
   * that read nothing for `idleTicks` sweeps (keep-alive) or `requestTicks` (a request partly
   * in) is closed, the latter with a 408.
   */
  sweep(idleTicks: number, requestTicks: number): void {
    for (const c of this.conns) {
      if (c.refused) {
        if (!c.active) c.socket.destroy()
        c.active = false
        continue
      }
      if (c.res !== undefined) continue
      if (c.active) {
        c.active = false
        c.quietTicks = 0
        continue
      }
      c.quietTicks++
      if (c.parser.partial) {
        if (c.quietTicks >= requestTicks)
          c.refuse(new H1RequestError('HPE_REQUEST_TIMEOUT', 408, 'request not received in time'))
      } else if (c.quietTicks >= idleTicks) c.socket.destroy()
    }
  }
}

/** Starts the raw server; resolves once it listens. */
export async function startRawServer(opts: RawServerOptions): Promise<RawServer> {
  const impl = new RawServerImpl(opts)
  const tickMs = opts.tickMs ?? 1000
  const idleTicks = Math.max(1, Math.ceil((opts.keepAliveMs ?? 65_000) / tickMs))
  const requestTicks = Math.max(1, Math.ceil((opts.requestMs ?? 60_000) / tickMs))
  // allowHalfOpen: our side ends when the answer under way is written, not at the client's FIN
  // (Conn.onEnd decides).
  const server = createServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
    const c = new Conn(impl, socket)
    impl.conns.add(c)
    socket.on('data', (b: Buffer) => c.onData(b))
    socket.on('end', () => c.onEnd())
    socket.on('drain', () => c.onDrain())
    socket.on('error', () => socket.destroy())
    socket.on('close', () => {
      impl.conns.delete(c)
      c.onClose()
    })
  })
  if (opts.maxConnections !== undefined) server.maxConnections = opts.maxConnections
  const timer = setInterval(() => impl.sweep(idleTicks, requestTicks), tickMs).unref()
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen({ host: opts.host, port: opts.port, backlog: opts.backlog ?? 4096 }, () => {
      server.off('error', reject)
      resolve()
    })
  })
  return {
    server,
    port: (server.address() as AddressInfo).port,
    get connections() {
      return impl.conns.size
    },
    async close() {
      clearInterval(timer)
      const closed = new Promise<void>((r) => server.close(() => r()))
      for (const c of impl.conns) c.socket.destroy()
      await closed
    },
  }
}
