// Counters in this process: exact and ~1 µs per check, but each replica counts only its own
// traffic. The arithmetic is the one the Redis scripts (redis-scripts.ts) run, so both backends
// answer the same; the backend tests run one suite against both.
import type { LimitOp, OpState, RateLimitBackend, ReserveResult } from './backend.js'

interface Bucket {
  tokens: number
  ts: number
  limit: number
  periodMs: number
}

interface Window {
  used: number
  endMs: number
}

function level(b: Bucket | undefined, op: LimitOp, now: number): number {
  if (b === undefined) return op.limit
  // The limit may have changed by a reload: refill towards the new one.
  return now > b.ts
    ? Math.min(op.limit, b.tokens + ((now - b.ts) * op.limit) / op.periodMs)
    : b.tokens
}

/** Full buckets and ended windows hold nothing; they are dropped every so often. */
const SWEEP_EVERY = 10_000

export class LocalBackend implements RateLimitBackend {
  readonly kind = 'local' as const
  private readonly buckets = new Map<string, Bucket>()
  private readonly windows = new Map<string, Window>()
  private readonly now: () => number
  private ops = 0

  constructor(now: () => number = Date.now) {
    this.now = now
  }

  /** Synchronous core of `reserve` (the limiter's benchmark and tests use it directly). */
  reserveSync(ops: readonly LimitOp[]): ReserveResult {
    const now = this.now()
    const avail: number[] = []
    let allowed = true
    for (const op of ops) {
      const a =
        op.kind === 'bucket'
          ? level(this.buckets.get(op.key), op, now)
          : op.limit - this.windowUsed(op.key, now)
      avail.push(a)
      if (op.cost > a) allowed = false
    }
    const states: OpState[] = []
    ops.forEach((op, i) => {
      const a = avail[i] ?? 0
      const remaining = allowed ? a - op.cost : a
      if (allowed) this.apply(op, remaining, now)
      const rate = op.limit / op.periodMs
      const resetMs =
        op.kind === 'bucket' ? Math.ceil((op.limit - remaining) / rate) : op.windowEndMs - now
      const retryMs =
        allowed || op.cost <= a
          ? 0
          : op.cost > op.limit
            ? -1
            : op.kind === 'bucket'
              ? Math.ceil((op.cost - a) / rate)
              : op.windowEndMs - now
      states.push({ remaining: Math.floor(remaining), resetMs: Math.max(0, resetMs), retryMs })
    })
    this.maybeSweep(now)
    return { allowed, states }
  }

  reserve(ops: readonly LimitOp[]): Promise<ReserveResult> {
    return Promise.resolve(this.reserveSync(ops))
  }

  adjust(ops: readonly LimitOp[]): void {
    const now = this.now()
    for (const op of ops) {
      if (op.cost === 0) continue
      if (op.kind === 'bucket') {
        const l = level(this.buckets.get(op.key), op, now)
        // Debt is capped at one period's allowance: usage charged after a fail-open outage (or a
        // request far over its reservation) delays a caller at most about one period, instead
        // of locking it out for as long as the outage's traffic would take to refill.
        this.apply(op, Math.max(-op.limit, Math.min(op.limit, l - op.cost)), now)
      } else {
        const used = Math.max(0, this.windowUsed(op.key, now) + op.cost)
        this.windows.set(op.key, { used, endMs: op.windowEndMs })
      }
    }
  }

  private windowUsed(key: string, now: number): number {
    const w = this.windows.get(key)
    return w === undefined || w.endMs <= now ? 0 : w.used
  }

  private apply(op: LimitOp, remaining: number, now: number): void {
    if (op.kind === 'bucket') {
      this.buckets.set(op.key, {
        tokens: remaining,
        ts: now,
        limit: op.limit,
        periodMs: op.periodMs,
      })
    } else {
      this.windows.set(op.key, { used: op.limit - remaining, endMs: op.windowEndMs })
    }
  }

  private maybeSweep(now: number): void {
    if (++this.ops % SWEEP_EVERY !== 0) return
    for (const [k, b] of this.buckets) {
      if (b.tokens + ((now - b.ts) * b.limit) / b.periodMs >= b.limit) this.buckets.delete(k)
    }
    for (const [k, w] of this.windows) if (w.endMs <= now) this.windows.delete(k)
  }

  /** Counters held (tests). */
  get size(): number {
    return this.buckets.size + this.windows.size
  }

  close(): Promise<void> {
    return Promise.resolve()
  }
}
