// A scrape's GET over the raw engine client's connection pool (proxy/engine-pool.ts: plain
// `node:net` keep-alive sockets, one read buffer, a small HTTP/1.1 response parser) instead of
// undici.
//
// Why (issue 9, the uniform row at low rate): the data plane scrapes every engine every 200 ms on
// the thread that serves requests (--scrape inline, the default). An idle gateway in front of 4
// simulated engines spent ~20 ms of its main thread's CPU per second on that, most of it undici's
// machinery around a 10 KB answer (the Request object, llhttp through WASM, a Readable body read
// by `for await`, an AbortSignal listener): at ~25 requests/s that is ~0.8 ms of every request's
// CPU, whether requests come or not. The raw pool already carries the inference requests to the
// same engines; here it carries their `/metrics` too, on a pool of its own (one connection per
// engine, as the undici agent had), so scrapes never wait behind streams.
//
// Only `http:` origins: an engine scraped over TLS keeps the undici path (originAddress).
import type { RawPool, RawRequest, RawSink } from '../proxy/engine-pool.js'

/** Host (IPv6 without brackets) and port of an `http://` origin; undefined for any other scheme. */
export function originAddress(origin: string): { host: string; port: number } | undefined {
  let u: URL
  try {
    u = new URL(origin)
  } catch {
    return undefined
  }
  if (u.protocol !== 'http:') return undefined
  const host = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname
  return { host, port: u.port === '' ? 80 : Number(u.port) }
}

/** The answer to a GET: its status and, for a 200, its body as UTF-8 text ('' otherwise). */
export interface RawGetAnswer {
  readonly status: number
  readonly text: string
}

/** A 200 answer's body passed the caller's cap (the connection is closed, not reused). */
export class RawGetTooLargeError extends Error {
  override readonly name = 'RawGetTooLargeError'
  readonly code = 'SCRAPE_TOO_LARGE'
}

/**
 * One GET in flight: the pool's sink for it, settled once. A non-200 head settles it at once (its
 * body is not read: the connection is closed); a 200's body is gathered up to `maxBytes`.
 */
export class RawGet implements RawSink {
  readonly done: Promise<RawGetAnswer>
  #resolve!: (a: RawGetAnswer) => void
  #reject!: (e: unknown) => void
  #settled = false
  #status = 0
  #size = 0
  readonly #chunks: Buffer[] = []
  readonly #maxBytes: number
  readonly #req: RawRequest

  constructor(pool: RawPool, path: string, headerLines: string, maxBytes: number) {
    this.#maxBytes = maxBytes
    this.done = new Promise<RawGetAnswer>((resolve, reject) => {
      this.#resolve = resolve
      this.#reject = reject
    })
    this.#req = pool.request('GET', path, headerLines, undefined, this)
  }

  /** Stops the GET (its connection is closed); `done` rejects with `reason` unless already settled. */
  abort(reason: unknown): void {
    if (this.#settled) return
    this.#settled = true
    this.#req.abort()
    this.#reject(reason)
  }

  onHead(status: number): void {
    this.#status = status
    if (status !== 200 && !this.#settled) {
      this.#settled = true
      this.#req.abort()
      this.#resolve({ status, text: '' })
    }
  }

  onBody(chunk: Buffer): void {
    if (this.#settled) return
    this.#size += chunk.length
    if (this.#size > this.#maxBytes) {
      this.abort(new RawGetTooLargeError(`metrics larger than ${this.#maxBytes} bytes`))
      return
    }
    this.#chunks.push(chunk)
  }

  onEnd(): void {
    if (this.#settled) return
    this.#settled = true
    const c = this.#chunks
    const text = (c.length === 1 ? (c[0] as Buffer) : Buffer.concat(c)).toString('utf8')
    this.#resolve({ status: this.#status, text })
  }

  onError(err: Error): void {
    if (this.#settled) return
    this.#settled = true
    this.#reject(err)
  }
}
