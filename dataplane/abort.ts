// The request path's "client went away" signal without a Node AbortSignal per request. Creating
// an AbortSignal costs Node 20 about 10-17 µs on our CI-class machine (it is a transferable
// EventTarget: a C++-backed object, an event map, a listener registry), as much as a tenth of the
// data plane's own JavaScript per proxied request. The self-hosted path only needs what undici's
// request() reads of a signal (`aborted`, `reason`, add/removeEventListener: undici's
// api/abort-signal.js) and what the scheduler's admission queue and the retry sleep read, so a
// plain object does. A real AbortSignal is still made, once, for a caller that needs one (fetch,
// the providers' transport, prefill/decode pairs): `ClientSignal.signal`.

/** What the request path reads of an abort signal. A Node AbortSignal is one too. */
export interface AbortLike {
  readonly aborted: boolean
  readonly reason: unknown
  addEventListener(type: 'abort', listener: () => void, options?: { once?: boolean }): void
  removeEventListener(type: 'abort', listener: () => void): void
}

/**
 * Aborted once, with a reason, by its owner. Listeners run in the order they were added, each at
 * most once (as AbortSignal's 'abort' listeners do: the event fires once); adding one that is
 * already there, or adding after the abort, does nothing, as on an EventTarget.
 */
export class ClientSignal implements AbortLike {
  aborted = false
  reason: unknown = undefined
  /** Usually zero or one listener (undici's, or the admission queue's while waiting). */
  #listeners: (() => void)[] | undefined
  #real: AbortController | undefined

  addEventListener(type: 'abort', listener: () => void): void {
    if (type !== 'abort' || this.aborted) return
    const ls = this.#listeners
    if (ls === undefined) this.#listeners = [listener]
    else if (!ls.includes(listener)) ls.push(listener)
  }

  removeEventListener(type: 'abort', listener: () => void): void {
    const ls = this.#listeners
    if (type !== 'abort' || ls === undefined) return
    const i = ls.indexOf(listener)
    if (i >= 0) ls.splice(i, 1)
  }

  abort(reason: unknown): void {
    if (this.aborted) return
    this.aborted = true
    this.reason = reason
    const ls = this.#listeners
    this.#listeners = undefined
    if (ls !== undefined)
      for (const l of ls) {
        try {
          l()
        } catch (e) {
          // What an EventTarget does with a listener's exception: uncaught, not swallowed, and
          // the other listeners still run.
          queueMicrotask(() => {
            throw e
          })
        }
      }
    this.#real?.abort(reason)
  }

  /** A real AbortSignal that aborts with this one (made on first use). */
  get signal(): AbortSignal {
    if (this.#real === undefined) {
      this.#real = new AbortController()
      if (this.aborted) this.#real.abort(this.reason)
    }
    return this.#real.signal
  }
}
