// The HTTP/1.1 response parser of the raw engine client (engine-client.ts, issue 11): one per
// connection, handing the body on as slices of the socket's own chunks (no copy), and the errors
// it and the connection end with.
//
// The parser is strict where a proxy must be: CRLF line ends, a status line of HTTP/1.x, token
// header names, one Content-Length (or equal repeats), Transfer-Encoding over Content-Length,
// no body for HEAD, 1xx, 204 and 304, a header block of at most `maxHeaderBytes` (trailers
// included), chunk sizes in hex with extensions skipped, and nothing from the server between
// responses. Errors carry llhttp's and undici's codes (HPE_*, UND_ERR_*_TIMEOUT, ECONNRESET) so
// that forward.ts and respond.ts read them as they read undici's.
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
  /**
   * A slice of the bytes passed to `execute` (not copied: valid only as long as they are).
   * `last`: the body's end follows in these same bytes (its length reached, or the zero-size
   * chunk next), so onEnd comes before `execute` returns.
   */
  onBody(chunk: Buffer, last: boolean): void
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

const HTTP_PREFIX = Buffer.from('HTTP/', 'latin1')
const CR = 13
const LF = 10
/** An HTTP token (RFC 9110 5.6.2): a header name; the client checks request names by it too. */
export const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/

function hexDigit(b: number): number {
  if (b >= 48 && b <= 57) return b - 48
  if (b >= 97 && b <= 102) return b - 87
  if (b >= 65 && b <= 70) return b - 55
  return -1
}

/** 1 for the characters of an HTTP token (TOKEN), by char code below 128. */
const TOKEN_CHAR = new Uint8Array(128)
for (let c = 0; c < 128; c++) if (TOKEN.test(String.fromCharCode(c))) TOKEN_CHAR[c] = 1

/** The latin1 characters String.prototype.trim removes (tab, LF, VT, FF, CR, space, NBSP). */
function isTrimmed(c: number): boolean {
  return (c >= 9 && c <= 13) || c === 32 || c === 160
}

/**
 * The status code of a status line `text[0, end)` as STATUS_LINE reads it (HTTP/1.0 or 1.1, a
 * space, three digits, then nothing or a space and a reason without CR or LF); -1 if it is not one.
 */
function statusOf(text: string, end: number): number {
  if (end < 12 || !text.startsWith('HTTP/1.', 0)) return -1
  const minor = text.charCodeAt(7)
  if ((minor !== 48 && minor !== 49) || text.charCodeAt(8) !== 32) return -1
  let status = 0
  for (let k = 9; k < 12; k++) {
    const d = text.charCodeAt(k) - 48
    if (d < 0 || d > 9) return -1
    status = status * 10 + d
  }
  if (end === 12) return status
  if (text.charCodeAt(12) !== 32) return -1
  for (let k = 13; k < end; k++) {
    const c = text.charCodeAt(k)
    if (c === 13 || c === 10) return -1
  }
  return status
}

/**
 * Where the first CRLFCRLF at or after `from` starts; -1 if none. A loop here, not
 * `Buffer.indexOf`: a native call costs more than scanning a head of a few hundred bytes.
 */
function headEnd(b: Buffer, from: number): number {
  for (let i = from + 3; i < b.length; i++)
    if (b[i] === LF && b[i - 1] === CR && b[i - 2] === LF && b[i - 3] === CR) return i - 3
  return -1
}

/**
 * Whether `buf` holds, at `at`, the CRLF ending a chunk's data and then the whole zero-size chunk
 * with no trailers (`0` CRLF CRLF): an engine's stream usually ends so, in the read of its last
 * event. Seven bytes looked at, at a chunk's end only; an extension or trailers are not looked
 * for (the body then ends unannounced).
 */
function lastChunkAt(buf: Buffer, at: number): boolean {
  return (
    buf[at] === CR &&
    buf[at + 1] === LF &&
    buf[at + 2] === 0x30 &&
    buf[at + 3] === CR &&
    buf[at + 4] === LF &&
    buf[at + 5] === CR &&
    buf[at + 6] === LF
  )
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
          this.sink.onBody(
            take === n && i === 0 ? buf : buf.subarray(i, i + take),
            this.remaining === 0,
          )
          // The sink may have aborted the request (the parser is dead then).
          if (this.state !== S.Length) return
          i += take
          if (this.remaining === 0) this.done()
          break
        }
        case S.UntilClose: {
          this.sink.onBody(i === 0 ? buf : buf.subarray(i), false)
          return
        }
        case S.ChunkData: {
          const take = Math.min(this.remaining, n - i)
          this.remaining -= take
          this.sink.onBody(
            buf.subarray(i, i + take),
            this.remaining === 0 && lastChunkAt(buf, i + take),
          )
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
    const end = headEnd(data, scanFrom)
    if (end < 0) {
      if (data.length - from > this.maxHeaderBytes)
        throw new H1ProtocolError('HPE_HEADER_OVERFLOW', 'response head too large')
      // A copy when it is the caller's buffer: the raw client reads every socket into one
      // buffer (engine-pool.ts), overwritten by the next read.
      this.pending = data !== buf ? data : Buffer.from(data.subarray(from))
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

  /**
   * The status line and header fields of a head (`text`: latin1, no final CRLFCRLF), checked and
   * recorded in one pass over the string: no split into lines, no regular expression per field,
   * one slice for each name and value. The split, a TOKEN test, a trim and three `includes` per
   * field were most of the raw client's own time per response in a profile (docs/proxy-cost.md).
   */
  private parseHead(text: string): void {
    const n = text.length
    let lineEnd = text.indexOf('\r\n')
    if (lineEnd < 0) lineEnd = n
    const status = statusOf(text, lineEnd)
    if (status < 0) throw new H1ProtocolError('HPE_INVALID_STATUS', 'bad status line')
    const http10 = text.charCodeAt(7) === 48
    const raw: string[] = []
    let length = -1
    let chunked = false
    let transferEncoding = false
    let close = http10
    for (let at = lineEnd + 2; at <= n; at = lineEnd + 2) {
      lineEnd = text.indexOf('\r\n', at)
      if (lineEnd < 0) lineEnd = n
      // The name: token characters up to the colon.
      let colon = at
      for (; colon < lineEnd; colon++) {
        const c = text.charCodeAt(colon)
        if (c === 58) break
        if (c > 127 || TOKEN_CHAR[c] === 0) {
          // Reported as the split-and-test parser did: no colon at all, or a bad name.
          if (text.indexOf(':', colon) < 0 || text.indexOf(':', colon) >= lineEnd)
            throw new H1ProtocolError('HPE_INVALID_HEADER_TOKEN', 'bad header line')
          throw new H1ProtocolError('HPE_INVALID_HEADER_TOKEN', 'bad header name')
        }
      }
      if (colon === at || colon === lineEnd)
        throw new H1ProtocolError('HPE_INVALID_HEADER_TOKEN', 'bad header line')
      // The value: trimmed as String.prototype.trim trims latin1 text, and no CR, LF or NUL.
      let vs = colon + 1
      let ve = lineEnd
      while (vs < ve && isTrimmed(text.charCodeAt(vs))) vs++
      while (ve > vs && isTrimmed(text.charCodeAt(ve - 1))) ve--
      for (let k = vs; k < ve; k++) {
        const c = text.charCodeAt(k)
        if (c === 13 || c === 10 || c === 0)
          throw new H1ProtocolError('HPE_INVALID_HEADER_TOKEN', 'bad header value')
      }
      const name = text.slice(at, colon)
      const value = text.slice(vs, ve)
      raw.push(name, value)
      // Most names are none of the three: check the length before lowercasing.
      const len = colon - at
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
