// A keyed, de-duplicated work queue (client-go's workqueue semantics, level-triggered):
// - a key is queued at most once, however many events name it;
// - one handler runs per key at a time; a key added while it is being processed runs again after;
// - a failed key is retried after a per-key exponential backoff with jitter, reset on success;
// - `addAfter` keeps the earliest pending time, so it doubles as a batching window ("debounce"
//   with a bounded delay: a burst of events costs one run, at most `ms` after the first event).
// Handlers must read the latest state themselves (the key carries no event payload).
import { type BackoffOptions, backoffDelay } from './backoff.js'

export interface WorkQueueOptions {
  readonly handler: (key: string) => Promise<void>
  /** Handlers running at once (different keys). Default 2. */
  readonly concurrency?: number
  /** Per-key retry backoff. Default 100 ms doubling to 30 s. */
  readonly backoff?: BackoffOptions
  readonly onError?: (key: string, err: unknown, retryInMs: number) => void
  readonly onProcessed?: (key: string, seconds: number, ok: boolean) => void
}

export class WorkQueue {
  private readonly opts: WorkQueueOptions
  private readonly ready: string[] = []
  /** Keys waiting in `ready`, or marked to run again after their current run. */
  private readonly dirty = new Set<string>()
  private readonly processing = new Set<string>()
  private readonly delayed = new Map<string, { at: number; timer: NodeJS.Timeout }>()
  private readonly failures = new Map<string, number>()
  private stopped = false
  private idleWaiters: (() => void)[] = []

  constructor(opts: WorkQueueOptions) {
    this.opts = opts
  }

  /** Keys waiting to run (not counting delayed ones or those running). */
  get depth(): number {
    return this.ready.length
  }

  /** Keys scheduled for later (backoff or batching window). */
  get pending(): number {
    return this.delayed.size
  }

  get running(): number {
    return this.processing.size
  }

  /** Retries so far for a key (0 after a success). */
  retries(key: string): number {
    return this.failures.get(key) ?? 0
  }

  add(key: string): void {
    if (this.stopped || this.dirty.has(key)) return
    this.dirty.add(key)
    // Re-queued by `finish` once the current run ends: never two runs of one key at once.
    if (this.processing.has(key)) return
    this.ready.push(key)
    this.pump()
  }

  /** Runs `key` after `ms`, unless it is already due earlier. */
  addAfter(key: string, ms: number): void {
    if (this.stopped) return
    if (ms <= 0) {
      this.add(key)
      return
    }
    const at = Date.now() + ms
    const existing = this.delayed.get(key)
    if (existing !== undefined) {
      if (existing.at <= at) return
      clearTimeout(existing.timer)
    }
    const timer = setTimeout(() => {
      this.delayed.delete(key)
      this.add(key)
    }, ms)
    timer.unref()
    this.delayed.set(key, { at, timer })
  }

  /** Resolves once nothing is ready, running or (unless `ignoreDelayed`) scheduled. */
  idle(ignoreDelayed = false): Promise<void> {
    if (this.isIdle(ignoreDelayed)) return Promise.resolve()
    return new Promise((resolve) => {
      const check = (): void => {
        if (this.isIdle(ignoreDelayed)) resolve()
        else this.idleWaiters.push(check)
      }
      this.idleWaiters.push(check)
    })
  }

  /**
   * Stops taking work: drops queued and scheduled keys, then waits for running handlers up to
   * `deadlineMs`. Returns how many were still running at the deadline.
   */
  async stop(deadlineMs: number): Promise<{ abandoned: number }> {
    this.stopped = true
    for (const d of this.delayed.values()) clearTimeout(d.timer)
    this.delayed.clear()
    this.ready.length = 0
    this.dirty.clear()
    if (this.processing.size === 0) return { abandoned: 0 }
    let timer: NodeJS.Timeout | undefined
    await Promise.race([
      this.idle(true),
      new Promise<void>((r) => {
        timer = setTimeout(r, deadlineMs)
      }),
    ])
    clearTimeout(timer)
    return { abandoned: this.processing.size }
  }

  private isIdle(ignoreDelayed: boolean): boolean {
    return (
      this.ready.length === 0 &&
      this.processing.size === 0 &&
      (ignoreDelayed || this.delayed.size === 0)
    )
  }

  private pump(): void {
    const limit = this.opts.concurrency ?? 2
    while (!this.stopped && this.processing.size < limit && this.ready.length > 0) {
      const key = this.ready.shift() as string
      this.dirty.delete(key)
      this.processing.add(key)
      void this.run(key)
    }
  }

  private async run(key: string): Promise<void> {
    const t0 = performance.now()
    let ok = true
    try {
      await this.opts.handler(key)
      this.failures.delete(key)
    } catch (err) {
      ok = false
      const n = this.failures.get(key) ?? 0
      this.failures.set(key, n + 1)
      const delay = backoffDelay(n, this.opts.backoff ?? { baseMs: 100, maxMs: 30_000 })
      this.opts.onError?.(key, err, delay)
      this.addAfter(key, delay)
    } finally {
      this.processing.delete(key)
      this.opts.onProcessed?.(key, (performance.now() - t0) / 1000, ok)
      if (this.dirty.has(key) && !this.stopped) this.ready.push(key)
      this.pump()
      const waiters = this.idleWaiters
      this.idleWaiters = []
      for (const w of waiters) w()
    }
  }
}
