// The contract between the limiter (what to count for a request) and where counters live: in this
// process (local) or in Redis (shared by every replica). Both implement the same two counters:
//
// - bucket: a token bucket of capacity `limit`, refilled continuously at `limit / periodMs`; a
//   reservation takes `cost` out when it fits; settling may push it below zero (debt), which later
//   requests wait out. This is what "N per minute" means.
// - window: a counter for a calendar day or month (UTC) that resets at `windowEndMs`: a budget.
//
// `reserve` is all-or-nothing over its operations: either every counter takes its cost or none
// does. `adjust` settles afterwards (charge more, or refund) and never refuses.

export type LimitKind = 'bucket' | 'window'

export interface LimitOp {
  /** Storage key, unique per counter. */
  readonly key: string
  /** Counters with one tag are stored together (one Redis hash slot, one atomic script call). */
  readonly tag: string
  readonly kind: LimitKind
  readonly limit: number
  /** bucket: time to refill from empty to full. */
  readonly periodMs: number
  /** window: when the current window ends (ms since epoch). */
  readonly windowEndMs: number
  /** reserve: amount to take (>= 0); adjust: amount to charge (> 0) or refund (< 0). */
  readonly cost: number
}

export interface OpState {
  /** Left after the reservation, or available now when it was denied. May be negative (debt). */
  readonly remaining: number
  /** ms until the counter is full again (bucket) or the window resets. */
  readonly resetMs: number
  /** ms until this operation's cost would fit; 0 = it fits; -1 = never (cost above the limit). */
  readonly retryMs: number
}

export interface ReserveResult {
  readonly allowed: boolean
  /** One per operation, in order. */
  readonly states: readonly OpState[]
}

export interface RateLimitBackend {
  /** `local` or `redis`: metrics label. */
  readonly kind: 'local' | 'redis'
  reserve(ops: readonly LimitOp[]): Promise<ReserveResult>
  /** Never fails: a backend that cannot write now keeps the adjustment and applies it later. */
  adjust(ops: readonly LimitOp[]): void
  close(): Promise<void>
}

/** The shared store did not answer in time or at all. */
export class BackendUnavailableError extends Error {
  override readonly name = 'BackendUnavailableError'
  readonly code = 'RATE_LIMIT_BACKEND_UNAVAILABLE'
}

export const DAY_MS = 86_400_000

/** The current UTC calendar window: an id for keys and its end. */
export function calendarWindow(kind: 'day' | 'month', now: number): { id: string; endMs: number } {
  const d = new Date(now)
  const y = d.getUTCFullYear()
  const m = d.getUTCMonth()
  if (kind === 'month') {
    return { id: `m${y}${String(m + 1).padStart(2, '0')}`, endMs: Date.UTC(y, m + 1, 1) }
  }
  const day = d.getUTCDate()
  return {
    id: `d${y}${String(m + 1).padStart(2, '0')}${String(day).padStart(2, '0')}`,
    endMs: Date.UTC(y, m, day + 1),
  }
}
