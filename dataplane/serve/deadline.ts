// A target's total deadline (`trafficPolicy.timeouts.requestMs`) on top of the client's abort:
// one signal that aborts when either fires, with the deadline's reason a 504 GatewayError so
// forward() and the response code tell a deadline from a client that left.
import type { AbortLike } from '../abort.js'
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

export function deadline<S extends AbortLike>(client: S, requestMs: number): Deadline<S> {
  if (requestMs <= 0) return { signal: client, timedOut: NEVER, clear: NOTHING }
  return new TimedSignal(client, requestMs)
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
