// Local (in-process) rate limits across the workers of `--workers N`: one set of counters, held by
// the primary, instead of N independent ones (N workers used to admit N× the limit).
//
// A decision must not wait on the primary for every request, so each worker holds small leases:
// budget taken from the primary's counter ahead of use.
// - A worker answers a reservation alone when it holds a lease with room for every counter of
//   the request; otherwise it asks the primary, which returns what the worker still held of those
//   counters, reserves the request's cost plus a new lease (`leaseChunk`: LEASE_SHARE of the limit
//   split over the workers, rounded down; 0 for small limits, which are then decided by the
//   primary for every request), and falls back to the cost alone when cost plus lease does not
//   fit. Denials therefore always come from the primary's exact counters.
// - Settlement (`adjust`) spends a worker's lease first for a charge; a refund tops the lease up
//   to the size the primary granted and sends the rest to the primary. Both are batched to the
//   primary once per event-loop turn, never awaited.
// - A lease unused for LEASE_IDLE_MS goes back to the primary.
//
// Bounds (also in docs/scheduling.md, "More than one core"):
// - Over-admission: none while no refund lands on a full bucket. A refund kept in a worker's
//   lease while the primary's bucket is full lets that worker admit up to its lease (at most one
//   chunk) beyond the limit, so at most LEASE_SHARE × limit (10 %) over all workers.
// - Under-admission: budget parked in other workers' leases (at most LEASE_SHARE × limit in
//   total) is unavailable to a worker for at most LEASE_IDLE_MS after its holder stops using it.
// - A worker that crashes loses its leases: at most one chunk per counter is consumed unused.
// - `remaining`/`reset` (the x-ratelimit-* headers) of a decision taken on a lease are estimates:
//   the primary's remaining at the lease's grant, refilled since, plus the lease left.
import {
  BackendUnavailableError,
  type LimitOp,
  type OpState,
  type RateLimitBackend,
  type ReserveResult,
} from '../filters/ratelimit/backend.js'
import { LocalBackend } from '../filters/ratelimit/local.js'

/** Share of a counter's limit leased out over all workers together. */
export const LEASE_SHARE = 0.1
/** A lease unused this long goes back to the primary. */
export const LEASE_IDLE_MS = 250
/** A reservation the primary does not answer in this time fails like an unreachable Redis. */
export const RESERVE_TIMEOUT_MS = 2_000

export type RateLimitToPrimary =
  | {
      readonly t: 'igw:rl-reserve'
      readonly rid: number
      readonly ops: readonly LimitOp[]
      /** What the worker still held of these counters (negative costs: refunds). */
      readonly returned: readonly LimitOp[]
    }
  | { readonly t: 'igw:rl-adjust'; readonly ops: readonly LimitOp[] }

export interface RateLimitToWorker {
  readonly t: 'igw:rl-result'
  readonly rid: number
  readonly result: ReserveResult
  /** Lease granted per operation, in order (0 = none). */
  readonly granted: readonly number[]
}

/** Tokens one worker leases of a counter at a time. */
export function leaseChunk(op: LimitOp, workers: number, share = LEASE_SHARE): number {
  return Math.max(0, Math.floor((op.limit * share) / Math.max(1, workers)))
}

/** The primary's side: the only counters, and the lease arithmetic. */
export class LeaseServer {
  private readonly backend: LocalBackend
  private readonly workers: number
  private readonly share: number

  constructor(opts: { workers: number; share?: number; now?: () => number }) {
    this.backend = new LocalBackend(opts.now)
    this.workers = opts.workers
    this.share = opts.share ?? LEASE_SHARE
  }

  reserve(m: Extract<RateLimitToPrimary, { t: 'igw:rl-reserve' }>): RateLimitToWorker {
    if (m.returned.length > 0) this.backend.adjust(m.returned)
    const lease = m.ops.map((op) => leaseChunk(op, this.workers, this.share))
    if (lease.some((l) => l > 0)) {
      const r = this.backend.reserveSync(
        m.ops.map((op, i) => ({ ...op, cost: op.cost + (lease[i] ?? 0) })),
      )
      if (r.allowed) return { t: 'igw:rl-result', rid: m.rid, result: r, granted: lease }
    }
    const result = this.backend.reserveSync(m.ops)
    return { t: 'igw:rl-result', rid: m.rid, result, granted: m.ops.map(() => 0) }
  }

  adjust(ops: readonly LimitOp[]): void {
    this.backend.adjust(ops)
  }
}

interface Lease {
  /** Budget this worker may still spend without asking. */
  tokens: number
  /** Largest lease the primary granted for this counter (refunds top up to it). */
  cap: number
  /** The primary's remaining when it last answered for this counter (lease excluded). */
  primaryRemaining: number
  at: number
  usedAt: number
  op: LimitOp
}

export interface LeasedBackendOptions {
  readonly send: (m: RateLimitToPrimary) => void
  readonly now?: () => number
  readonly timeoutMs?: number
  readonly idleMs?: number
}

/** A worker's side: decides on its leases, asks the primary otherwise. */
export class LeasedBackend implements RateLimitBackend {
  readonly kind = 'local' as const
  private readonly send: (m: RateLimitToPrimary) => void
  private readonly now: () => number
  private readonly timeoutMs: number
  private readonly idleMs: number
  private readonly leases = new Map<string, Lease>()
  private readonly waiting = new Map<
    number,
    { ok: (m: RateLimitToWorker) => void; fail: (e: Error) => void; timer: NodeJS.Timeout }
  >()
  private rid = 0
  private queued: LimitOp[] = []
  private flushScheduled = false
  /**
   * Returns idle leases. Armed only while a lease is held: an interval running regardless woke
   * every worker 4 times a second with nothing to do, and a wake-up costs ~100 µs of CPU on a
   * small VM (dataplane/cluster/relay.ts has the measurements).
   */
  private sweeper: NodeJS.Timeout | undefined

  constructor(opts: LeasedBackendOptions) {
    this.send = opts.send
    this.now = opts.now ?? Date.now
    this.timeoutMs = opts.timeoutMs ?? RESERVE_TIMEOUT_MS
    this.idleMs = opts.idleMs ?? LEASE_IDLE_MS
  }

  /** Whether the idle-lease sweeper is armed (it is exactly while leases are held). */
  get sweeping(): boolean {
    return this.sweeper !== undefined
  }

  /** An answer of the primary (the worker's message handler passes `igw:rl-result` here). */
  onResult(m: RateLimitToWorker): void {
    const w = this.waiting.get(m.rid)
    if (w === undefined) return
    this.waiting.delete(m.rid)
    clearTimeout(w.timer)
    w.ok(m)
  }

  reserve(ops: readonly LimitOp[]): Promise<ReserveResult> {
    const now = this.now()
    if (ops.length > 0 && ops.every((op) => this.fits(op))) {
      const states: OpState[] = []
      for (const op of ops) {
        const l = this.leases.get(op.key) as Lease
        l.tokens -= op.cost
        l.usedAt = now
        states.push(estimate(op, l, now))
      }
      return Promise.resolve({ allowed: true, states })
    }
    return this.ask(ops, now)
  }

  adjust(ops: readonly LimitOp[]): void {
    const now = this.now()
    for (const op of ops) {
      if (op.cost === 0) continue
      const l = this.leases.get(op.key)
      let rest = op.cost
      if (l !== undefined) {
        // A charge is paid from budget already taken from the primary; a refund refills the
        // lease up to its granted size.
        const move =
          op.cost > 0
            ? Math.min(l.tokens, op.cost)
            : -Math.min(-op.cost, Math.max(0, l.cap - l.tokens))
        l.tokens -= move
        rest = op.cost - move
        l.primaryRemaining = Math.max(-op.limit, Math.min(op.limit, l.primaryRemaining - rest))
        l.usedAt = now
      }
      if (rest !== 0) this.queue({ ...op, cost: rest })
    }
  }

  /** Resolves once everything adjusted so far has been applied by the primary. */
  async sync(): Promise<void> {
    this.flush()
    await this.ask([], this.now())
  }

  close(): Promise<void> {
    clearInterval(this.sweeper)
    this.sweeper = undefined
    for (const [key, l] of this.leases) {
      if (l.tokens > 0) this.queue({ ...l.op, cost: -l.tokens })
      this.leases.delete(key)
    }
    this.flush()
    for (const [rid, w] of this.waiting) {
      clearTimeout(w.timer)
      w.fail(new BackendUnavailableError('rate-limit counters closed'))
      this.waiting.delete(rid)
    }
    return Promise.resolve()
  }

  /** Leases held (tests). */
  leaseOf(key: string): number {
    return this.leases.get(key)?.tokens ?? 0
  }

  private fits(op: LimitOp): boolean {
    const l = this.leases.get(op.key)
    return l !== undefined && l.tokens > 0 && l.tokens >= op.cost
  }

  private async ask(ops: readonly LimitOp[], now: number): Promise<ReserveResult> {
    const returned: LimitOp[] = []
    for (const op of ops) {
      const l = this.leases.get(op.key)
      if (l === undefined) continue
      if (l.tokens > 0) returned.push({ ...op, cost: -l.tokens })
      this.leases.delete(op.key)
    }
    // Settlements queued before this reservation reach the primary first.
    this.flush()
    const rid = this.rid++
    const answer = await new Promise<RateLimitToWorker>((ok, fail) => {
      const timer = setTimeout(() => {
        this.waiting.delete(rid)
        fail(new BackendUnavailableError(`the primary did not answer in ${this.timeoutMs} ms`))
      }, this.timeoutMs)
      this.waiting.set(rid, { ok, fail, timer })
      try {
        this.send({ t: 'igw:rl-reserve', rid, ops, returned })
      } catch (e) {
        clearTimeout(timer)
        this.waiting.delete(rid)
        fail(new BackendUnavailableError(e instanceof Error ? e.message : String(e)))
      }
    })
    const states = answer.result.states.map((s, i) => {
      const op = ops[i]
      const g = answer.granted[i] ?? 0
      if (op === undefined) return s
      if (answer.result.allowed) {
        const prev = this.leases.get(op.key)
        // Another reservation of this counter may have been answered meanwhile: keep both.
        this.leases.set(op.key, {
          tokens: (prev?.tokens ?? 0) + g,
          cap: Math.max(g, prev?.cap ?? 0),
          primaryRemaining: s.remaining,
          at: now,
          usedAt: now,
          op,
        })
        if (this.sweeper === undefined) {
          this.sweeper = setInterval(() => this.returnIdle(), this.idleMs)
          this.sweeper.unref()
        }
      }
      return g > 0 ? estimate(op, { primaryRemaining: s.remaining, tokens: g, at: now }, now) : s
    })
    return { allowed: answer.result.allowed, states }
  }

  private queue(op: LimitOp): void {
    this.queued.push(op)
    if (this.flushScheduled) return
    this.flushScheduled = true
    setImmediate(() => this.flush())
  }

  private flush(): void {
    this.flushScheduled = false
    if (this.queued.length === 0) return
    const ops = this.queued
    this.queued = []
    try {
      this.send({ t: 'igw:rl-adjust', ops })
    } catch {
      // The primary is gone: this worker is on its way out; nothing left to settle against.
    }
  }

  private returnIdle(): void {
    const now = this.now()
    for (const [key, l] of this.leases) {
      if (now - l.usedAt < this.idleMs) continue
      if (l.tokens > 0) this.queue({ ...l.op, cost: -l.tokens })
      this.leases.delete(key)
    }
    if (this.leases.size === 0) {
      clearInterval(this.sweeper)
      this.sweeper = undefined
    }
  }
}

/** What a decision on a lease reports: the primary's remaining (refilled since) plus the lease. */
function estimate(
  op: LimitOp,
  l: { readonly primaryRemaining: number; readonly tokens: number; readonly at: number },
  now: number,
): OpState {
  const rate = op.limit / (op.periodMs || 1)
  const refilled =
    op.kind === 'bucket'
      ? Math.min(op.limit, l.primaryRemaining + Math.max(0, now - l.at) * rate)
      : l.primaryRemaining
  const remaining = Math.min(op.limit, refilled + l.tokens)
  const resetMs =
    op.kind === 'bucket' ? Math.ceil((op.limit - remaining) / rate) : op.windowEndMs - now
  return { remaining: Math.floor(remaining), resetMs: Math.max(0, resetMs), retryMs: 0 }
}
