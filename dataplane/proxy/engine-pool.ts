// The raw engine client's connection pool (engine-client.ts, issue 11): a keep-alive pool of
// plain `node:net` connections to one engine, with a connection cap and a waiting queue, the
// request head and body written in one `socket.write`, and one timer for every timeout (a timer
// per request, as undici arms, cost more than the check; docs/proxy-cost.md).
import { connect, type Socket } from 'node:net'
import { H1ResponseParser, H1SocketError, type ResponseSink } from './h1-parser.js'

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
  /** `last`: the body's end follows before the read that brought `chunk` is done (h1-parser.ts). */
  onBody(chunk: Buffer, last: boolean): void
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

/**
 * The one buffer every engine connection of this thread reads into (`net`'s `onread`). A socket
 * read the usual way costs, per read, a 64 KiB allocation shrunk to the bytes read, a Buffer
 * object, the Readable's push, a 'data' event and a `process.nextTick` (maybeReadMore): for an
 * engine streaming one token per read, that was per SSE chunk. Reads never overlap in one
 * thread, so one buffer serves them all: the parser is done with it when the callback returns,
 * and the body bytes handed on are copied (Conn.onBody), the head decoded to strings, an
 * unfinished head copied (h1-parser.ts).
 */
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024)

/**
 * One request: what the pool sends and where its answer goes, and (as a class with methods, not
 * an object of three closures per request) the handle its caller aborts, pauses and resumes.
 */
class Job implements RawRequest {
  readonly pool: RawPool
  readonly method: string
  readonly bytes: Buffer
  readonly body: Buffer | undefined
  readonly sink: RawSink
  readonly timeouts: RawTimeouts
  conn: Conn | undefined = undefined
  aborted = false
  /** A response byte arrived for this request (after that, a close is not a stale keep-alive). */
  answered = false
  /** Resent once already after a reused connection closed before answering. */
  resent = false
  /** Whether the head has arrived (the timeout then is the body's). */
  headed = false
  /** pool.now() past which the request fails (headers or body timeout); Infinity: none. */
  deadline = Number.POSITIVE_INFINITY
  /**
   * The reader holds the body back (its client is slow): the engine's silence is ours, so the
   * body timeout waits, and restarts on resume (as undici's does).
   */
  paused = false

  constructor(
    pool: RawPool,
    method: string,
    bytes: Buffer,
    body: Buffer | undefined,
    sink: RawSink,
    timeouts: RawTimeouts,
  ) {
    this.pool = pool
    this.method = method
    this.bytes = bytes
    this.body = body
    this.sink = sink
    this.timeouts = timeouts
  }

  abort(): void {
    if (this.aborted) return
    this.aborted = true
    const c = this.conn
    if (c !== undefined) {
      this.conn = undefined
      c.job = undefined
      c.destroy()
    } else this.pool.unqueue(this)
  }

  pause(): void {
    this.paused = true
    this.conn?.socket.pause()
  }

  resume(): void {
    this.paused = false
    if (this.headed && this.timeouts.idleMs > 0)
      this.deadline = this.pool.now() + this.timeouts.idleMs
    this.conn?.socket.resume()
  }
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
        const ms = this.pool.keepAliveOf(raw[k + 1] as string)
        if (ms >= 0) this.expiresAt = this.pool.now() + ms - 1000
      }
    }
    const job = this.job
    if (job === undefined) return
    job.headed = true
    job.deadline =
      job.timeouts.idleMs > 0 ? this.pool.now() + job.timeouts.idleMs : Number.POSITIVE_INFINITY
    job.sink.onHead(status, raw)
  }

  onBody(chunk: Buffer, last: boolean): void {
    const job = this.job
    if (job === undefined) return
    if (job.timeouts.idleMs > 0) job.deadline = this.pool.now() + job.timeouts.idleMs
    // A copy: `chunk` is a slice of READ_BUFFER, which the next read overwrites (the reader may
    // keep it: a partial SSE line, a non-streamed body, a write still queued on the client).
    job.sink.onBody(Buffer.from(chunk), last)
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

  /** The last `Keep-Alive` value read and its timeout in ms (-1: none): an engine sends the same one. */
  private keepAliveValue = ''
  private keepAliveValueMs = -1

  /** The timeout in ms of a `Keep-Alive` header's value (`timeout=5`); -1 if it names none. */
  keepAliveOf(value: string): number {
    if (value !== this.keepAliveValue) {
      const m = /timeout=(\d+)/.exec(value)
      this.keepAliveValue = value
      this.keepAliveValueMs = m !== null ? Number(m[1]) * 1000 : -1
    }
    return this.keepAliveValueMs
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
    const job = new Job(this, method, bytes, rest, sink, timeouts)
    this.dispatch(job)
    return job
  }

  /** Drops a request still waiting for a connection (aborted by its caller). */
  unqueue(job: Job): void {
    const k = this.queue.indexOf(job)
    if (k >= 0) this.queue.splice(k, 1)
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
    const socket = connect({
      host: this.opts.host,
      port: this.opts.port,
      noDelay: true,
      // true: keep reading (back-pressure pauses the socket itself, Job.pause).
      onread: { buffer: READ_BUFFER, callback: (n) => this.onRead(c, n) },
    })
    const c = new Conn(this, socket)
    if (connectMs > 0) c.connectDeadline = this.now() + connectMs
    socket.setKeepAlive(true, this.keepAliveMs)
    socket.once('connect', () => {
      c.connected = true
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

  /** `n` bytes from the engine in READ_BUFFER (the socket's `onread` callback). */
  private onRead(c: Conn, n: number): true {
    const job = c.job
    if (job !== undefined) job.answered = true
    try {
      c.parser.execute(READ_BUFFER.subarray(0, n))
    } catch (e) {
      this.fail(c, e instanceof Error ? e : new Error(String(e)))
    }
    return true
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
