// Exponential backoff with jitter. Jitter spreads retries of many keys (and many replicas) so a
// recovering API server is not hit by a synchronised wave (client-node issue #1933).

export interface BackoffOptions {
  readonly baseMs: number
  readonly maxMs: number
  /** Injected for deterministic tests. */
  readonly random?: () => number
}

/**
 * Delay before retry number `attempt` (0 = first retry): `base·2^attempt` capped at `max`, then
 * scaled by a random factor in [0.5, 1) ("equal jitter": never less than half, so backoff still
 * grows, never more than the cap).
 */
export function backoffDelay(attempt: number, o: BackoffOptions): number {
  const exp = Math.min(o.maxMs, o.baseMs * 2 ** Math.min(attempt, 30))
  const r = (o.random ?? Math.random)()
  return Math.round(exp * (0.5 + r / 2))
}

/** `ms` scaled by a random factor in [1, 1 + fraction): spreads periodic timers across replicas. */
export function jittered(ms: number, fraction = 0.1, random: () => number = Math.random): number {
  return Math.round(ms * (1 + fraction * random()))
}

export const sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    if (signal?.aborted) return resolve()
    const t = setTimeout(done, ms)
    function done(): void {
      clearTimeout(t)
      signal?.removeEventListener('abort', done)
      resolve()
    }
    signal?.addEventListener('abort', done, { once: true })
  })

/**
 * Rejects if `p` has not settled within `ms`. client-node 1.4 requests have no timeout, so a
 * request to a hung API server would otherwise block its caller (and its queue key) for good;
 * the abandoned request is left to fail on its own.
 */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms)
    }),
  ]).finally(() => clearTimeout(timer))
}
