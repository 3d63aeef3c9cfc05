// A minimal gRPC server for one bidi-streaming method on node:http2 directly (gRPC over HTTP/2,
// grpc/grpc PROTOCOL-HTTP2.md): the request's `:path` and `content-type` checked, the 5-byte
// length-prefixed messages parsed across DATA chunks, answers written as response headers
// (`:status 200`, `content-type: application/grpc`), length-prefixed messages and trailers
// (`grpc-status`, `grpc-message`).
//
// Why (issue 13): on the EPP's own stack (grpc-js) the transport costs ~90 % of the EPP's CPU per
// decision: a server that decides nothing (hack/bench/epp-floor.ts) spent most of what the EPP
// spends, while the EPP's own code in process is ~93 µs per stream. grpc-js layers a call object
// (a Node Duplex), interceptors, a message framer and its own buffering over node:http2; one
// method spoken directly needs none of them. `hack/bench/epp-floor.ts --transport http2` measures
// it against grpc-js with the same client (`npm run bench:epp -- --only-floors --floor-transports
// grpc-js,http2`): in session 10 it saved 10–28 % of the no-decision server's CPU per stream
// (median 18 % at c=1 over 16 paired rounds, ~230 µs; 19 % at c=8) and a median 10 % of its c=1
// p50, short of the 25 % that would make it the EPP's transport: most of a stream's CPU is
// node:http2 itself and GC, whichever layer sits on it. So for now only the floor benchmark
// uses it.
//
// Not handled (not needed for ext_proc, which Envoy speaks uncompressed): message compression (a
// compressed message is answered UNIMPLEMENTED), several methods, unary calls.
import {
  constants,
  createServer as createH2Server,
  type Http2Server,
  type Http2Session,
  type IncomingHttpHeaders,
  type ServerHttp2Stream,
} from 'node:http2'
import { createServer as createNetServer, type Server as NetServer } from 'node:net'

/** grpc-status codes this transport sends (grpc/grpc doc/statuscodes.md). */
export const GrpcStatus = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  RESOURCE_EXHAUSTED: 8,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
} as const
export type GrpcStatus = (typeof GrpcStatus)[keyof typeof GrpcStatus]

/** A message this transport refuses; `status` is what the client is told. */
export class GrpcTransportError extends Error {
  override readonly name = 'GrpcTransportError'
  readonly code: 'GRPC_MESSAGE_TOO_LARGE' | 'GRPC_COMPRESSED' | 'GRPC_DECODE'
  readonly status: GrpcStatus
  constructor(code: GrpcTransportError['code'], status: GrpcStatus, message: string) {
    super(message)
    this.code = code
    this.status = status
  }
}

/**
 * The length-prefixed messages of a gRPC stream, from DATA chunks cut anywhere: each message
 * handed over whole, as a view of the chunk when it lies in one (no copy), else joined.
 */
export class MessageReader {
  readonly #max: number
  readonly #onMessage: (message: Buffer) => void
  /** Bytes of an incomplete prefix or message, held until the rest comes. */
  #held: Buffer[] = []
  #heldBytes = 0
  /** Length of the message being gathered once its prefix is read; -1 while reading the prefix. */
  #need = -1

  constructor(maxMessageBytes: number, onMessage: (message: Buffer) => void) {
    this.#max = maxMessageBytes
    this.#onMessage = onMessage
  }

  /** True while part of a message (or of its prefix) has come and the rest has not. */
  get partial(): boolean {
    return this.#heldBytes > 0 || this.#need >= 0
  }

  /** Takes one DATA chunk; throws GrpcTransportError on a message it refuses. */
  push(chunk: Buffer): void {
    let off = 0
    const n = chunk.length
    while (off < n) {
      if (this.#need < 0) {
        // Reading a prefix: straight from the chunk when nothing is held and it is all there.
        if (this.#heldBytes === 0 && n - off >= 5) {
          this.#prefix(chunk, off)
          off += 5
        } else {
          const take = Math.min(5 - this.#heldBytes, n - off)
          this.#hold(chunk.subarray(off, off + take))
          off += take
          if (this.#heldBytes < 5) return
          const p = this.#take()
          this.#prefix(p, 0)
        }
        if (this.#need === 0) {
          this.#need = -1
          this.#onMessage(Buffer.alloc(0))
        }
        continue
      }
      const want = this.#need - this.#heldBytes
      if (this.#heldBytes === 0 && n - off >= want) {
        const m = chunk.subarray(off, off + want)
        off += want
        this.#need = -1
        this.#onMessage(m)
        continue
      }
      const take = Math.min(want, n - off)
      this.#hold(chunk.subarray(off, off + take))
      off += take
      if (this.#heldBytes < this.#need) return
      const m = this.#take()
      this.#need = -1
      this.#onMessage(m)
    }
  }

  #prefix(b: Buffer, at: number): void {
    if (b[at] !== 0)
      throw new GrpcTransportError(
        'GRPC_COMPRESSED',
        GrpcStatus.UNIMPLEMENTED,
        'compressed messages are not supported (no grpc-encoding is accepted)',
      )
    const len = b.readUInt32BE(at + 1)
    if (len > this.#max)
      throw new GrpcTransportError(
        'GRPC_MESSAGE_TOO_LARGE',
        GrpcStatus.RESOURCE_EXHAUSTED,
        `received message larger than max (${len} vs. ${this.#max})`,
      )
    this.#need = len
  }

  #hold(b: Buffer): void {
    this.#held.push(b)
    this.#heldBytes += b.length
  }

  #take(): Buffer {
    const b =
      this.#held.length === 1
        ? (this.#held[0] as Buffer)
        : Buffer.concat(this.#held, this.#heldBytes)
    this.#held = []
    this.#heldBytes = 0
    return b
  }
}

/** The 5-byte gRPC message prefix (uncompressed) of a message of `length` bytes. */
export function messagePrefix(length: number): Buffer {
  const p = Buffer.allocUnsafe(5)
  p[0] = 0
  p.writeUInt32BE(length, 1)
  return p
}

const TIMEOUT_UNIT_MS: Record<string, number> = {
  H: 3_600_000,
  M: 60_000,
  S: 1000,
  m: 1,
  u: 0.001,
  n: 0.000_001,
}

/** `grpc-timeout` (1–8 digits and a unit) in ms; undefined when absent or malformed. */
export function parseGrpcTimeout(v: string | string[] | undefined): number | undefined {
  if (typeof v !== 'string') return undefined
  const m = /^(\d{1,8})([HMSmun])$/.exec(v)
  if (m === null) return undefined
  return Number(m[1]) * (TIMEOUT_UNIT_MS[m[2] as string] as number)
}

/** grpc-message is percent-encoded (the spec: bytes outside 0x20–0x7E, and '%'). */
export function encodeGrpcMessage(s: string): string {
  return /^[\x20-\x24\x26-\x7e]*$/.test(s)
    ? s
    : Array.from(Buffer.from(s, 'utf8'), (b) =>
        b >= 0x20 && b <= 0x7e && b !== 0x25
          ? String.fromCharCode(b)
          : `%${b.toString(16).toUpperCase().padStart(2, '0')}`,
      ).join('')
}

/** One bidi call as the method's handler sees it. */
export interface BidiCall<Res> {
  /** Writes one answer; `written` once node:http2 has taken it. False: the stream's buffer is full. */
  send(r: Res, written?: () => void): boolean
  /** Runs `write` (several `send`s) with the stream corked: its answers leave in one socket write. */
  together(write: () => void): void
  /** Ends the call with `status` (OK by default) in the trailers. */
  end(status?: GrpcStatus, message?: string): void
  /** True once the call ended: ended by us, cancelled by the client, or past its deadline. */
  readonly done: boolean
}

export interface BidiHandlers<Req> {
  /** Each request message, decoded, in order. */
  onMessage(req: Req): void
  /** The client half-closed its side (no more messages). */
  onEnd(): void
  /** The call ended without our `end`: client reset (RST_STREAM), connection gone, or deadline. */
  onCancel(): void
}

export interface BidiMethod<Req, Res> {
  /** `/package.Service/Method`. */
  readonly path: string
  readonly decode: (b: Buffer) => Req
  readonly encode: (r: Res) => Buffer
  readonly maxMessageBytes: number
  /** A new call: returns its handlers. */
  readonly open: (call: BidiCall<Res>) => BidiHandlers<Req>
}

const RESPONSE_HEADERS = {
  [constants.HTTP2_HEADER_STATUS]: 200,
  [constants.HTTP2_HEADER_CONTENT_TYPE]: 'application/grpc',
}

/** Trailers-only answer (no message sent): the status in the response headers, stream ended. */
function trailersOnly(stream: ServerHttp2Stream, status: GrpcStatus, message: string): void {
  if (stream.headersSent || stream.destroyed) return
  stream.respond(
    {
      ...RESPONSE_HEADERS,
      'grpc-status': String(status),
      ...(message !== '' ? { 'grpc-message': encodeGrpcMessage(message) } : {}),
    },
    { endStream: true },
  )
  stopReading(stream)
}

/**
 * After our status, a client still sending is told to stop: RST_STREAM NO_ERROR, as the spec
 * allows (it follows the status frame out: nghttp2 sends frames in the order submitted).
 * Otherwise the stream, open on the client's side, would be held until the client gave up.
 */
function stopReading(stream: ServerHttp2Stream): void {
  if (stream.readableEnded || stream.destroyed) return
  stream.resume()
  stream.close(constants.NGHTTP2_NO_ERROR)
}

const isGrpc = (ct: string | string[] | undefined): boolean =>
  typeof ct === 'string' &&
  (ct === 'application/grpc' ||
    ct.startsWith('application/grpc+') ||
    ct.startsWith('application/grpc;'))

/** Serves `method` on one node:http2 server stream (the server's `stream` event). */
export function serveStream<Req, Res>(
  method: BidiMethod<Req, Res>,
  stream: ServerHttp2Stream,
  headers: IncomingHttpHeaders,
): void {
  if (headers[constants.HTTP2_HEADER_METHOD] !== 'POST') {
    stream.respond({ [constants.HTTP2_HEADER_STATUS]: 405 }, { endStream: true })
    stopReading(stream)
    return
  }
  if (!isGrpc(headers[constants.HTTP2_HEADER_CONTENT_TYPE])) {
    stream.respond({ [constants.HTTP2_HEADER_STATUS]: 415 }, { endStream: true })
    stopReading(stream)
    return
  }
  const path = headers[constants.HTTP2_HEADER_PATH]
  if (path !== method.path) {
    trailersOnly(stream, GrpcStatus.UNIMPLEMENTED, `unknown method ${String(path)}`)
    return
  }
  new Call(method, stream, parseGrpcTimeout(headers['grpc-timeout']))
}

class Call<Req, Res> implements BidiCall<Res> {
  readonly #method: BidiMethod<Req, Res>
  readonly #stream: ServerHttp2Stream
  readonly #handlers: BidiHandlers<Req>
  readonly #reader: MessageReader
  #done = false
  #timer: NodeJS.Timeout | undefined
  #status: { code: GrpcStatus; message: string } = { code: GrpcStatus.OK, message: '' }

  constructor(
    method: BidiMethod<Req, Res>,
    stream: ServerHttp2Stream,
    timeoutMs: number | undefined,
  ) {
    this.#method = method
    this.#stream = stream
    this.#reader = new MessageReader(method.maxMessageBytes, (b) => this.#message(b))
    this.#handlers = method.open(this)
    if (timeoutMs !== undefined)
      this.#timer = setTimeout(
        () => this.#fail(GrpcStatus.DEADLINE_EXCEEDED, 'deadline exceeded'),
        timeoutMs,
      )
    stream.on('data', (chunk: Buffer) => {
      if (this.#done) return
      try {
        this.#reader.push(chunk)
      } catch (e) {
        if (e instanceof GrpcTransportError) this.#fail(e.status, e.message)
        else this.#fail(GrpcStatus.INTERNAL, e instanceof Error ? e.message : String(e))
      }
    })
    stream.on('end', () => {
      if (this.#done) return
      if (this.#reader.partial) {
        this.#fail(GrpcStatus.INTERNAL, 'stream ended inside a message')
        return
      }
      this.#handlers.onEnd()
    })
    stream.on('wantTrailers', () => {
      const s = this.#status
      stream.sendTrailers({
        'grpc-status': String(s.code),
        ...(s.message !== '' ? { 'grpc-message': encodeGrpcMessage(s.message) } : {}),
      })
      stopReading(stream)
    })
    // Closed before our end (RST_STREAM from the client, the connection gone): a cancel.
    stream.on('close', () => this.#cancel())
    stream.on('error', () => this.#cancel())
    // Flow control: while our answers wait for the client to read them, read nothing more from
    // it, so its own window closes instead of our memory growing.
    stream.on('drain', () => {
      if (!this.#done) stream.resume()
    })
  }

  get done(): boolean {
    return this.#done
  }

  #message(b: Buffer): void {
    let req: Req
    try {
      req = this.#method.decode(b)
    } catch (e) {
      throw new GrpcTransportError(
        'GRPC_DECODE',
        GrpcStatus.INTERNAL,
        `failed to parse request: ${e instanceof Error ? e.message : String(e)}`,
      )
    }
    this.#handlers.onMessage(req)
  }

  // Bound: handlers take `send` off the call (as they take it off call-writer.ts's writer).
  readonly send = (r: Res, written?: () => void): boolean => {
    const s = this.#stream
    if (this.#done || s.destroyed) return false
    if (!s.headersSent) s.respond(RESPONSE_HEADERS, { waitForTrailers: true })
    const body = this.#method.encode(r)
    // Prefix and message in one writev (corking nests: inside `together` it waits for its end).
    s.cork()
    s.write(messagePrefix(body.length))
    const ok = s.write(body, written)
    s.uncork()
    if (!ok) s.pause()
    return ok
  }

  readonly together = (write: () => void): void => {
    const s = this.#stream
    s.cork()
    try {
      write()
    } finally {
      s.uncork()
    }
  }

  end(status: GrpcStatus = GrpcStatus.OK, message = ''): void {
    if (this.#done) return
    this.#finish()
    const s = this.#stream
    if (s.destroyed) return
    if (!s.headersSent) {
      trailersOnly(s, status, message)
      return
    }
    this.#status = { code: status, message }
    s.end()
  }

  #fail(status: GrpcStatus, message: string): void {
    if (this.#done) return
    this.end(status, message)
    this.#handlers.onCancel()
  }

  #cancel(): void {
    if (this.#done) return
    this.#finish()
    this.#handlers.onCancel()
  }

  #finish(): void {
    this.#done = true
    if (this.#timer !== undefined) clearTimeout(this.#timer)
  }
}

export interface H2GrpcServer {
  readonly port: number
  close(): Promise<void>
}

/**
 * Listens on host:port (h2c, TCP_NODELAY as the grpc-js path has it: server.ts) and serves
 * `method`; any other path is answered UNIMPLEMENTED.
 */
export async function listenBidi<Req, Res>(
  method: BidiMethod<Req, Res>,
  host: string,
  port: number,
): Promise<H2GrpcServer> {
  // node:http2's default 64 KiB receive windows: 16 MiB ones (no WINDOW_UPDATE within a body)
  // saved no CPU per stream in the floor A/B (issue 13, session 10).
  const h2: Http2Server = createH2Server()
  h2.on('stream', (stream, headers) => serveStream(method, stream, headers))
  // Sessions of the connections we hand over: closed with the server (node:http2's own close
  // only stops its listener, which is not the one accepting here).
  const sessions = new Set<Http2Session>()
  h2.on('session', (session: Http2Session) => {
    sessions.add(session)
    session.once('close', () => sessions.delete(session))
    // A connection's error closes it; its streams' cancels settle what they held.
    session.on('error', () => {})
  })
  const listener: NetServer = createNetServer({ noDelay: true, keepAlive: true }, (socket) =>
    h2.emit('connection', socket),
  )
  await new Promise<void>((resolve, reject) => {
    listener.once('error', reject)
    listener.listen(port, host, () => {
      listener.off('error', reject)
      resolve()
    })
  })
  const a = listener.address()
  return {
    port: typeof a === 'object' && a !== null ? a.port : 0,
    close: () =>
      new Promise<void>((resolve) => {
        listener.close(() => resolve())
        for (const s of sessions) s.close()
      }),
  }
}
