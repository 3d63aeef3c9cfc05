// Counters in Redis, shared by every data-plane replica. Each scope's counters share a hash tag
// (`igw:{<scope>}:…`). On a single Redis node a request's counters are checked and taken by one
// script call (atomic). On Redis Cluster a script may only touch one slot, so a request touching
// several scopes makes one call per scope, in parallel, and undoes the scopes that succeeded when
// another one refuses.
//
// Scripts are loaded once per connection (SCRIPT LOAD on `ready`) and called with EVALSHA; a
// NOSCRIPT answer (Redis restarted, or failed over to a replica without the script) loads it
// again. Commands fail fast when Redis is away (no offline queue, a short per-command timeout):
// the limiter then applies the configured fail-open/fail-closed policy. Nothing is lost across an
// outage: adjustments that could not be written wait in memory and are replayed when Redis is
// back; every write carries a marker key so a replay of something Redis did apply (its reply was
// lost) is a no-op, and a reservation whose outcome is unknown is undone exactly once.
import { randomBytes } from 'node:crypto'
import { Cluster, Redis } from 'ioredis'
import type { Logger } from '../../log.js'
import {
  BackendUnavailableError,
  type LimitOp,
  type OpState,
  type RateLimitBackend,
  type ReserveResult,
} from './backend.js'
import { ADJUST_SCRIPT, MARKER_TTL_MS, RESERVE_SCRIPT, scriptSha } from './redis-scripts.js'

export interface RedisBackendOptions {
  /** host:port */
  readonly address: string
  readonly password?: string
  readonly db?: number
  readonly cluster?: boolean
  /** One script call per hash tag even on a single node (default: when `cluster`); for tests. */
  readonly splitBySlot?: boolean
  /** Prefix of every key (`<prefix>:{<scope>}:<counter>`). */
  readonly keyPrefix: string
  /** Per-command timeout; a slower answer counts as unavailable. */
  readonly timeoutMs: number
  readonly log: Logger
  /** Called for each failed call (metrics). */
  readonly onError?: (op: 'reserve' | 'adjust') => void
  /** Called when the number of waiting adjustments changes (metrics). */
  readonly onPending?: (count: number) => void
  /** Bound on waiting adjustments; the oldest are dropped (and logged) beyond it. */
  readonly maxPending?: number
}

interface Pending {
  readonly mode: 'once' | 'undo'
  readonly marker: string
  readonly ops: readonly LimitOp[]
  readonly since: number
}

type Client = Redis | Cluster

const RESERVE_SHA = scriptSha(RESERVE_SCRIPT)
const ADJUST_SHA = scriptSha(ADJUST_SCRIPT)

function markerId(): string {
  return randomBytes(12).toString('base64url')
}

function args(ops: readonly LimitOp[]): (string | number)[] {
  const out: (string | number)[] = []
  for (const op of ops) {
    out.push(op.kind === 'bucket' ? 'b' : 'w', op.limit, op.periodMs, op.windowEndMs, op.cost)
  }
  return out
}

/** ioredis refused to send: the command never reached Redis, so it surely was not applied. */
function notSent(e: unknown): boolean {
  return e instanceof Error && /isn't writeable|enableOfflineQueue/.test(e.message)
}

/**
 * Calls to make: on Redis Cluster one per hash tag (a script may only touch one slot); on a
 * single node one for everything, which also makes the whole reservation atomic.
 */
function groupByTag(
  ops: readonly LimitOp[],
  cluster: boolean,
): Map<string, { ops: LimitOp[]; idx: number[] }> {
  const groups = new Map<string, { ops: LimitOp[]; idx: number[] }>()
  const first = ops[0]?.tag ?? ''
  ops.forEach((op, i) => {
    const tag = cluster ? op.tag : first
    let g = groups.get(tag)
    if (g === undefined) {
      g = { ops: [], idx: [] }
      groups.set(tag, g)
    }
    g.ops.push(op)
    g.idx.push(i)
  })
  return groups
}

export class RedisBackend implements RateLimitBackend {
  readonly kind = 'redis' as const
  readonly client: Client
  private readonly opts: RedisBackendOptions
  private pending: Pending[] = []
  private flushing = false
  private flushTimer: NodeJS.Timeout | undefined
  private readonly lastErrorLog = new Map<string, number>()
  private closed = false
  private readonly split: boolean

  constructor(opts: RedisBackendOptions) {
    this.opts = opts
    this.split = opts.splitBySlot ?? opts.cluster === true
    const [host = '127.0.0.1', portText = '6379'] = opts.address.split(':')
    const port = Number(portText)
    const common = {
      // Fail fast: a request must not wait for a reconnect; the failure mode decides instead.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: opts.timeoutMs,
      connectTimeout: Math.max(500, opts.timeoutMs * 5),
      enableAutoPipelining: true,
      retryStrategy: (times: number) => Math.min(20 * 2 ** Math.min(times, 6), 1000),
      ...(opts.password !== undefined ? { password: opts.password } : {}),
    }
    this.client = opts.cluster
      ? new Cluster([{ host, port }], { redisOptions: common, enableOfflineQueue: false })
      : new Redis({ host, port, db: opts.db ?? 0, ...common })
    this.client.on('error', (e: unknown) => this.logError('redis connection error', e))
    this.client.on('ready', () => {
      void this.loadScripts().then(() => this.flush())
    })
  }

  private key(op: LimitOp): string {
    return op.key
  }

  /** Marker keys live in the scope's hash slot, next to its counters. */
  private marker(tag: string, id: string): string {
    return `${this.opts.keyPrefix}:{${tag}}:m:${id}`
  }

  private async loadScripts(): Promise<void> {
    try {
      await this.client.script('LOAD', RESERVE_SCRIPT)
      await this.client.script('LOAD', ADJUST_SCRIPT)
    } catch (e) {
      this.logError('cannot load rate-limit scripts', e)
    }
  }

  private async evalsha(
    sha: string,
    script: string,
    keys: string[],
    argv: (string | number)[],
  ): Promise<unknown> {
    try {
      return await this.client.evalsha(sha, keys.length, ...keys, ...argv)
    } catch (e) {
      if (!(e instanceof Error) || !e.message.startsWith('NOSCRIPT')) throw e
      await this.client.script('LOAD', script)
      return this.client.evalsha(sha, keys.length, ...keys, ...argv)
    }
  }

  /**
   * While (re)connecting, wait for the connection at most one command timeout: the first
   * requests after start, or after a blip, should not fail for a connection that is a moment
   * away; during a real outage this bounds the added latency.
   */
  private ready(): Promise<void> | undefined {
    if (this.client.status === 'ready') return undefined
    return new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer)
        this.client.off('ready', done)
        resolve()
      }
      const timer = setTimeout(done, this.opts.timeoutMs)
      this.client.once('ready', done)
    })
  }

  async reserve(ops: readonly LimitOp[]): Promise<ReserveResult> {
    // One deadline for the whole reservation (connection wait included): ioredis' own command
    // timeout starts only when an auto-pipeline is sent, and one stuck behind an earlier pipeline
    // (a settlement to a stopped Redis) answered after twice the configured timeout.
    const deadline = Date.now() + this.opts.timeoutMs
    const waiting = this.ready()
    if (waiting !== undefined) await waiting
    const groups = [...groupByTag(ops, this.split)]
    const calls = groups.map(async ([tag, g]) => {
      const marker = this.marker(tag, markerId())
      try {
        const r = (await withDeadline(
          this.evalsha(
            RESERVE_SHA,
            RESERVE_SCRIPT,
            [...g.ops.map((o) => this.key(o)), marker],
            [...args(g.ops), MARKER_TTL_MS],
          ),
          deadline,
        )) as number[]
        return { tag, g, marker, ok: true as const, reply: r }
      } catch (e) {
        this.opts.onError?.('reserve')
        this.logError('rate-limit reserve failed', e)
        return { tag, g, marker, ok: false as const, sent: !notSent(e) }
      }
    })
    const results = await Promise.all(calls)
    const failed = results.some((r) => !r.ok)
    const states: OpState[] = new Array(ops.length)
    let allowed = !failed
    for (const r of results) {
      if (!r.ok) continue
      if (r.reply[0] !== 1) allowed = false
      r.g.idx.forEach((opIndex, j) => {
        states[opIndex] = {
          remaining: Number(r.reply[1 + j * 3]),
          resetMs: Number(r.reply[2 + j * 3]),
          retryMs: Number(r.reply[3 + j * 3]),
        }
      })
    }
    if (!allowed) {
      // All or nothing across scopes: undo what was taken (and what may have been).
      for (const r of results) {
        const taken = r.ok ? r.reply[0] === 1 : r.sent
        if (taken) this.enqueue('undo', r.marker, r.g.ops.map(negate))
      }
      void this.flush()
    }
    if (failed) throw new BackendUnavailableError('redis did not answer the reservation')
    return { allowed, states }
  }

  adjust(ops: readonly LimitOp[]): void {
    const live = ops.filter((o) => o.cost !== 0)
    if (live.length === 0) return
    for (const [tag, g] of groupByTag(live, this.split))
      this.enqueue('once', this.marker(tag, markerId()), g.ops)
    void this.flush()
  }

  private enqueue(mode: Pending['mode'], marker: string, ops: readonly LimitOp[]): void {
    this.pending.push({ mode, marker, ops, since: Date.now() })
    const max = this.opts.maxPending ?? 100_000
    if (this.pending.length > max) {
      const dropped = this.pending.splice(0, this.pending.length - max)
      this.opts.log('error', 'rate-limit adjustments dropped: Redis away too long', {
        dropped: dropped.length,
      })
    }
    this.opts.onPending?.(this.pending.length)
  }

  /** Writes waiting adjustments in order; stops at the first failure and retries later. */
  private async flush(): Promise<void> {
    if (this.flushing || this.closed) return
    this.flushing = true
    try {
      while (this.pending.length > 0) {
        const batch = this.pending.slice(0, 64)
        const done = await Promise.all(
          batch.map(async (p) => {
            try {
              await this.evalsha(
                ADJUST_SHA,
                ADJUST_SCRIPT,
                [...p.ops.map((o) => this.key(o)), p.marker],
                [...args(p.ops), p.mode, MARKER_TTL_MS],
              )
              return true
            } catch (e) {
              this.opts.onError?.('adjust')
              this.logError('rate-limit adjustment failed; will retry', e)
              return false
            }
          }),
        )
        // Keep the failed ones (in order) for the next attempt.
        const failed = batch.filter((_, i) => !done[i])
        this.pending = [...failed, ...this.pending.slice(batch.length)]
        this.opts.onPending?.(this.pending.length)
        if (failed.length > 0) break
      }
    } finally {
      this.flushing = false
    }
    if (this.pending.length > 0 && this.flushTimer === undefined && !this.closed) {
      this.flushTimer = setTimeout(() => {
        this.flushTimer = undefined
        void this.flush()
      }, 250)
      this.flushTimer.unref()
    }
  }

  /** Adjustments not yet written (tests, metrics). */
  get pendingCount(): number {
    return this.pending.length
  }

  /** Resolves once every waiting adjustment is written (or the deadline passes). */
  async drain(deadlineMs = 5_000): Promise<boolean> {
    const end = Date.now() + deadlineMs
    while (this.pending.length > 0 && Date.now() < end) {
      await this.flush()
      if (this.pending.length > 0) await new Promise((r) => setTimeout(r, 50))
    }
    return this.pending.length === 0
  }

  private logError(msg: string, e: unknown): void {
    // One line per kind per second at most: an outage must not flood the log.
    const now = Date.now()
    if (now - (this.lastErrorLog.get(msg) ?? 0) < 1000) return
    this.lastErrorLog.set(msg, now)
    this.opts.log('error', msg, {
      backend: 'redis',
      address: this.opts.address,
      error: e instanceof Error ? e.message : String(e),
    })
  }

  async close(): Promise<void> {
    await this.drain(1_000)
    this.closed = true
    if (this.flushTimer) clearTimeout(this.flushTimer)
    this.client.disconnect()
  }
}

class DeadlineError extends Error {
  override readonly name = 'DeadlineError'
  readonly code = 'RATELIMIT_DEADLINE'
}

/**
 * `p`, or a DeadlineError at `deadline` (ms since epoch). The command may still run on Redis:
 * callers treat it as sent (outcome unknown), so a reservation is undone by its marker.
 */
function withDeadline<T>(p: Promise<T>, deadline: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new DeadlineError('redis did not answer within the timeout')),
      Math.max(0, deadline - Date.now()),
    )
    p.then(
      (v) => {
        clearTimeout(timer)
        resolve(v)
      },
      (e: unknown) => {
        clearTimeout(timer)
        reject(e)
      },
    )
  })
}

function negate(op: LimitOp): LimitOp {
  return { ...op, cost: -op.cost }
}
