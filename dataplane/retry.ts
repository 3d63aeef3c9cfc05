// Helpers both upstream kinds use (self-hosted engines in proxy/, external providers in
// providers/): retry backoff, an abortable sleep and reading error codes off undici errors.
// One copy, so the two retry loops cannot drift apart.

import type { AbortLike } from './abort.js'

/** `code` of an error-like value (undici and Node errors carry one), if it is a string. */
export function errCode(e: unknown): string | undefined {
  if (typeof e === 'object' && e !== null && 'code' in e) {
    const c = (e as { code: unknown }).code
    return typeof c === 'string' ? c : undefined
  }
  return undefined
}

/** undici gave up waiting for the next body bytes (its body timeout): a stalled upstream. */
export function isBodyTimeout(e: unknown): boolean {
  return errCode(e) === 'UND_ERR_BODY_TIMEOUT'
}

export function backoffMs(
  attempt: number,
  base: number,
  max: number,
  random: () => number,
): number {
  // Exponential with "equal jitter": never less than half the step, so retries still spread out.
  const step = Math.min(max, base * 2 ** Math.max(0, attempt - 1))
  return step / 2 + random() * (step / 2)
}

/** setTimeout that rejects with the signal's reason when aborted. */
export function sleep(ms: number, signal: AbortLike): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason)
    const t = setTimeout(() => {
      signal.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    const onAbort = (): void => {
      clearTimeout(t)
      reject(signal.reason)
    }
    signal.addEventListener('abort', onAbort, { once: true })
  })
}
