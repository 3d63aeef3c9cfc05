// A target's total deadline (`trafficPolicy.timeouts.requestMs`) on top of the client's abort:
// one signal that aborts when either fires, with the deadline's reason a 504 GatewayError so
// forward() and the response code tell a deadline from a client that left.
import { type AbortLike, ClientSignal } from '../abort.js'
import { errors } from '../errors.js'

/** `S`: the client's signal type, which is the deadline's own when there is no time limit. */
export interface Deadline<S extends AbortLike = AbortLike> {
  readonly signal: S | AbortSignal
  timedOut(): boolean
  /** Stops the timer and unlinks from the client's signal (idempotent). */
  clear(): void
}

const NEVER = (): boolean => false
const NOTHING = (): void => {}

/**
 * The client's signal with a deadline. A ClientSignal (the self-hosted path's) gets a ClientSignal
 * of its own, not an AbortController: creating one costs Node 20 more than the rest of the
 * deadline (abort.ts), on every request of a server with a request timeout.
 */
export function deadline(client: ClientSignal, requestMs: number): Deadline<ClientSignal>
export function deadline<S extends AbortLike>(client: S, requestMs: number): Deadline<S>
export function deadline(client: AbortLike, requestMs: number): Deadline<AbortLike> {
  if (requestMs <= 0) return { signal: client, timedOut: NEVER, clear: NOTHING }
  if (client instanceof ClientSignal) return new TimedClientSignal(client, requestMs)
  return new TimedSignal(client, requestMs)
}

/** The deadline of a ClientSignal: another ClientSignal, aborted by the client's or the timer. */
class TimedClientSignal implements Deadline<ClientSignal> {
  readonly signal = new ClientSignal()
  readonly #client: ClientSignal
  readonly #timer: NodeJS.Timeout
  #fired = false
  readonly #onClient = (): void => this.signal.abort(this.#client.reason)
  /** A property, not a method: passed on as a callback (respond's `timedOut`). */
  readonly timedOut = (): boolean => this.#fired

  constructor(client: ClientSignal, requestMs: number) {
    this.#client = client
    if (client.aborted) this.signal.abort(client.reason)
    else client.addEventListener('abort', this.#onClient)
    this.#timer = setTimeout(() => {
      this.#fired = true
      this.signal.abort(errors.upstreamTimeout(`request exceeded ${requestMs} ms`))
    }, requestMs)
  }

  clear(): void {
    clearTimeout(this.#timer)
    this.#client.removeEventListener('abort', this.#onClient)
  }
}

/** One AbortController linked to the client's signal by a listener (cheaper than AbortSignal.any). */
class TimedSignal implements Deadline<AbortLike> {
  readonly #ctl = new AbortController()
  readonly #client: AbortLike
  readonly #timer: NodeJS.Timeout
  #fired = false
  readonly #onClient = (): void => this.#ctl.abort(this.#client.reason)
  /** A property, not a method: passed on as a callback (respond's `timedOut`). */
  readonly timedOut = (): boolean => this.#fired

  constructor(client: AbortLike, requestMs: number) {
    this.#client = client
    if (client.aborted) this.#ctl.abort(client.reason)
    else client.addEventListener('abort', this.#onClient, { once: true })
    this.#timer = setTimeout(() => {
      this.#fired = true
      this.#ctl.abort(errors.upstreamTimeout(`request exceeded ${requestMs} ms`))
    }, requestMs)
  }

  get signal(): AbortSignal {
    return this.#ctl.signal
  }

  clear(): void {
    clearTimeout(this.#timer)
    this.#client.removeEventListener('abort', this.#onClient)
  }
}
