// The body of a response from the raw engine client (engine-client.ts, issue 11): the members the
// gateway reads of an upstream body, without a Node Readable's machinery, chunks pushed to its
// reader in the socket's turn.

import type { RawRequest, RawSink } from './engine-pool.js'
import { H1SocketError } from './h1-parser.js'

/** Bytes a body keeps unread before the engine's socket is paused (a Readable's default). */
const HIGH_WATER = 64 * 1024

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
  /** See UpstreamBody.lastIn: the bytes handed over last are the body's last, its end next. */
  lastIn = false

  // RawSink: the pool's events for this request after its head.
  onHead(): void {}
  onBody(chunk: Buffer, last = false): void {
    if (this.closed) return
    this.lastIn = last
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

  /**
   * Everything kept, in one piece (as a Node byte stream's `read()` gives it): what piled up
   * while the reader was busy (a stream's events, each its own HTTP chunk) is one write to the
   * client, one pass of the stream's scanner and filter, instead of one of each per chunk.
   */
  read(): Buffer | null {
    const n = this.chunks.length
    if (n > 0) {
      const c =
        n === 1 ? (this.chunks[0] as Buffer) : Buffer.concat(this.chunks, this.readableLength)
      this.chunks.length = 0
      this.readableLength = 0
      this.drained()
      return c
    }
    // Nothing kept: the engine may send again (a reader that paused and left, as holdBody
    // does before handing a large body to an iterator).
    this.drained()
    this.maybeEnd()
    return null
  }

  /** See UpstreamBody.takeWhole: the pieces of a body that ended unread, at most `max` bytes. */
  takeWhole(max: number): Buffer[] | undefined {
    if (
      !this.ended ||
      this.closed ||
      this.readableLength > max ||
      this.flushQueued ||
      this.listeners.data.length > 0 ||
      this.listeners.readable.length > 0 ||
      this.listeners.end.length > 0
    )
      return undefined
    const chunks = this.chunks.splice(0)
    this.readableLength = 0
    // Ended as if read to its end ('end' and 'close' had nobody to tell).
    this.endEmitted = true
    this.closed = true
    this.settle()
    return chunks
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
    // The last one (the usual case: one listener per event) without splice's removed-items array.
    if (k === ls.length - 1) ls.pop()
    else if (k >= 0) ls.splice(k, 1)
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
