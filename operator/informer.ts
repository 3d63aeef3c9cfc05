// A supervised list+watch cache (an "informer") on client-node 1.4's Watch. Not client-node's own
// ListWatch, because on 1.4 that one (style.md §2): stops for good on non-410 errors, fires
// `error` on stop(), has no way to force a re-list, and nothing bounds a dead watch stream. Here:
// - paged LIST, then WATCH from its resourceVersion with bookmarks and a server-side timeout, so
//   every healthy watch ends and restarts within minutes;
// - 410 Gone (history compacted) → re-list at once; any other error → retry with jittered
//   exponential backoff, never two loops at once, nothing after stop();
// - a watchdog restarts a watch that delivered nothing (not even a bookmark) for `stallMs`;
// - a periodic re-list repairs anything a watch may have missed, emitting the differences.
// Objects are reduced by `transform` before caching (10k Pods would otherwise be ~100 MB), and an
// update whose reduced form `equals` the cached one is not emitted (Pod status heartbeats).
import { type KubeConfig, Watch } from '@kubernetes/client-node'
import { backoffDelay, jittered, sleep, withTimeout } from './backoff.js'
import { isGone, OperatorError } from './errors.js'
import { errorText, type Logger, silentLogger } from './log.js'

export interface ListPage {
  readonly items: readonly unknown[]
  readonly resourceVersion: string
  readonly continueToken?: string | undefined
}

export interface ListRequest {
  readonly limit: number
  readonly continueToken?: string
  readonly labelSelector?: string
  readonly fieldSelector?: string
}

export type InformerEventType = 'add' | 'update' | 'delete'

export interface InformerEvent<T> {
  readonly type: InformerEventType
  /** "namespace/name" ("name" for cluster-scoped objects). */
  readonly key: string
  readonly value: T
  /** The previous cached value (update and delete). */
  readonly old?: T
}

export interface InformerOptions<T> {
  /** For logs and metrics, e.g. "pods". */
  readonly name: string
  readonly kc: KubeConfig
  /** Watch path, e.g. `/api/v1/pods` or `/apis/g/v1/namespaces/ns/configmaps`. */
  readonly path: string
  readonly list: (req: ListRequest) => Promise<ListPage>
  /** Reduces a raw object for the cache; undefined drops it (treated as absent). */
  readonly transform: (raw: unknown) => T | undefined
  readonly equals?: (a: T, b: T) => boolean
  readonly labelSelector?: string
  readonly fieldSelector?: string
  readonly pageSize?: number
  /** Server-side watch timeout, drawn uniformly per watch (client-go: 5–10 min). */
  readonly watchTimeoutSeconds?: readonly [number, number]
  /** Restart a watch after this long without any event or bookmark. */
  readonly stallMs?: number
  /** Full re-list period (jittered +10%); 0 = never. */
  readonly relistMs?: number
  readonly backoff?: { readonly baseMs: number; readonly maxMs: number }
  /**
   * Bound on one LIST page: client-node 1.4 requests have no timeout, and a request to a hung
   * API server would otherwise block the loop for good. Default 60 s.
   */
  readonly listTimeoutMs?: number
  /** How often the watchdog looks. */
  readonly watchdogMs?: number
  readonly log?: Logger
  readonly onEvent?: (e: InformerEvent<T>) => void
  /** After each completed LIST (the cache now matches the server as of that list). */
  readonly onList?: () => void
  /** A watch or list failed or stalled and will be retried; `reason` is a bounded label. */
  readonly onRestart?: (reason: 'error' | 'stall' | 'gone') => void
}

interface Entry<T> {
  readonly rv: string
  readonly value: T
}

interface Meta {
  readonly key: string
  readonly rv: string
}

function metaOf(raw: unknown): Meta | undefined {
  if (typeof raw !== 'object' || raw === null) return undefined
  const m = (
    raw as { metadata?: { name?: unknown; namespace?: unknown; resourceVersion?: unknown } }
  ).metadata
  if (m === undefined || typeof m.name !== 'string') return undefined
  const key =
    typeof m.namespace === 'string' && m.namespace !== '' ? `${m.namespace}/${m.name}` : m.name
  return { key, rv: typeof m.resourceVersion === 'string' ? m.resourceVersion : '' }
}

interface ActiveWatch {
  /** Ends the watch: with an error (restart with backoff) or cleanly (loop goes on at once). */
  end(err?: unknown): void
}

export class Informer<T> {
  readonly name: string
  private readonly o: InformerOptions<T>
  private readonly log: Logger
  private cache = new Map<string, Entry<T>>()
  private rv = ''
  private stopped = true
  private relistDue = false
  private failures = 0
  private loopDone: Promise<void> | undefined
  private active: ActiveWatch | undefined
  private readonly sleeper = new AbortController()
  private watchdog: NodeJS.Timeout | undefined
  private relistTimer: NodeJS.Timeout | undefined
  private lastActivityAt = 0
  private syncedFlag = false
  private syncWaiters: (() => void)[] = []

  constructor(o: InformerOptions<T>) {
    this.o = o
    this.name = o.name
    this.log = o.log ?? silentLogger
  }

  /** True once the first LIST completed (and stays true across restarts: the cache is kept). */
  get synced(): boolean {
    return this.syncedFlag
  }

  /** Wall-clock ms of the last list, event or bookmark (0 before any). */
  get lastActivity(): number {
    return this.lastActivityAt
  }

  get size(): number {
    return this.cache.size
  }

  get resourceVersion(): string {
    return this.rv
  }

  get(key: string): T | undefined {
    return this.cache.get(key)?.value
  }

  values(): T[] {
    return [...this.cache.values()].map((e) => e.value)
  }

  keys(): string[] {
    return [...this.cache.keys()]
  }

  waitForSync(): Promise<void> {
    if (this.syncedFlag) return Promise.resolve()
    return new Promise((r) => this.syncWaiters.push(r))
  }

  start(): void {
    if (!this.stopped) return
    this.stopped = false
    this.loopDone = this.loop()
    const every = this.o.watchdogMs ?? 5_000
    this.watchdog = setInterval(() => this.checkStall(), every)
    this.watchdog.unref()
    this.scheduleRelist()
  }

  /** Ends the loop; the cache stays readable. Resolves when no request of ours is pending. */
  async stop(): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    clearInterval(this.watchdog)
    clearTimeout(this.relistTimer)
    this.sleeper.abort()
    this.active?.end()
    await this.loopDone
  }

  /** Forces a full re-list now (also what the periodic timer does). */
  relist(): void {
    this.relistDue = true
    this.active?.end()
  }

  private scheduleRelist(): void {
    const every = this.o.relistMs ?? 10 * 60_000
    if (every <= 0 || this.stopped) return
    this.relistTimer = setTimeout(() => {
      this.relist()
      this.scheduleRelist()
    }, jittered(every))
    this.relistTimer.unref()
  }

  private checkStall(): void {
    const stallMs = this.o.stallMs ?? 390_000
    if (this.active !== undefined && Date.now() - this.lastActivityAt > stallMs) {
      this.active.end(
        new OperatorError('WATCH_STALLED', `${this.name}: no watch event for ${stallMs} ms`),
      )
    }
  }

  private async loop(): Promise<void> {
    while (!this.stopped) {
      try {
        if (this.rv === '' || this.relistDue) {
          this.relistDue = false
          await this.listAll()
        }
        const r = await this.watchOnce()
        // A watch that the server closes at once (no event) is a failure in disguise: without
        // this, a misbehaving server would make us spin.
        if (r.events === 0 && r.ms < 1000 && !this.relistDue && !this.stopped) {
          throw new Error('watch closed immediately')
        }
        this.failures = 0
      } catch (e) {
        if (this.stopped) break
        if (isGone(e)) {
          // History compacted past our resourceVersion: list again now, no backoff needed.
          this.o.onRestart?.('gone')
          this.log('info', 'resourceVersion too old; re-listing', { informer: this.name })
          this.rv = ''
          continue
        }
        const stalled = e instanceof OperatorError && e.code === 'WATCH_STALLED'
        this.o.onRestart?.(stalled ? 'stall' : 'error')
        const delay = backoffDelay(
          this.failures++,
          this.o.backoff ?? { baseMs: 1000, maxMs: 30_000 },
        )
        this.log('warn', 'list/watch failed; retrying', {
          informer: this.name,
          error: errorText(e),
          retryInMs: delay,
        })
        await sleep(delay, this.sleeper.signal)
      }
    }
  }

  private async listAll(): Promise<void> {
    const fresh = new Map<string, Entry<T>>()
    let token: string | undefined
    let rv = ''
    do {
      const page = await this.withTimeout(
        this.o.list({
          limit: this.o.pageSize ?? 500,
          ...(token !== undefined ? { continueToken: token } : {}),
          ...(this.o.labelSelector !== undefined ? { labelSelector: this.o.labelSelector } : {}),
          ...(this.o.fieldSelector !== undefined ? { fieldSelector: this.o.fieldSelector } : {}),
        }),
      )
      if (this.stopped) return
      // Every page of one paged list is from the first page's snapshot; its RV is the list's.
      if (rv === '') rv = page.resourceVersion
      for (const raw of page.items) {
        const meta = metaOf(raw)
        const value = meta && this.o.transform(raw)
        if (meta !== undefined && value !== undefined) fresh.set(meta.key, { rv: meta.rv, value })
      }
      token = page.continueToken || undefined
    } while (token !== undefined)
    const old = this.cache
    this.cache = fresh
    this.rv = rv
    this.lastActivityAt = Date.now()
    for (const [key, e] of old) {
      if (!fresh.has(key)) this.emit({ type: 'delete', key, value: e.value })
    }
    for (const [key, e] of fresh) {
      const before = old.get(key)
      if (before === undefined) this.emit({ type: 'add', key, value: e.value })
      else if (before.rv !== e.rv && !(this.o.equals?.(before.value, e.value) ?? false))
        this.emit({ type: 'update', key, value: e.value, old: before.value })
    }
    if (!this.syncedFlag) {
      this.syncedFlag = true
      for (const w of this.syncWaiters.splice(0)) w()
    }
    this.o.onList?.()
  }

  private withTimeout<R>(p: Promise<R>): Promise<R> {
    const ms = this.o.listTimeoutMs ?? 60_000
    // The abandoned request is left to fail on its own; its result is ignored.
    return withTimeout(p, ms, `${this.name}: list`).catch((e: unknown) => {
      throw e instanceof Error && e.message.endsWith(`timed out after ${ms} ms`)
        ? new OperatorError('WATCH_STALLED', e.message)
        : e
    })
  }

  private watchOnce(): Promise<{ events: number; ms: number }> {
    return new Promise((resolve, reject) => {
      const started = Date.now()
      let events = 0
      let settled = false
      let controller: AbortController | undefined
      const [lo, hi] = this.o.watchTimeoutSeconds ?? [300, 600]
      const timeoutSeconds = Math.round(lo + Math.random() * (hi - lo))
      const end = (err?: unknown): void => {
        if (settled) return
        settled = true
        if (this.active === watch) this.active = undefined
        // Abandons the stream; late callbacks from it are ignored via `settled`.
        controller?.abort()
        if (err === undefined || err === null) resolve({ events, ms: Date.now() - started })
        else reject(err)
      }
      const watch: ActiveWatch = { end }
      this.active = watch
      this.lastActivityAt = Date.now()
      if (this.relistDue || this.stopped) return end()
      const params: Record<string, string | number | boolean> = {
        resourceVersion: this.rv,
        allowWatchBookmarks: true,
        timeoutSeconds,
      }
      if (this.o.labelSelector !== undefined) params['labelSelector'] = this.o.labelSelector
      if (this.o.fieldSelector !== undefined) params['fieldSelector'] = this.o.fieldSelector
      new Watch(this.o.kc)
        .watch(
          this.o.path,
          params,
          (phase: string, obj: unknown) => {
            if (settled) return
            this.lastActivityAt = Date.now()
            events++
            this.onWatchEvent(phase, obj, end)
          },
          (err: unknown) => end(err),
        )
        .then(
          (c) => {
            controller = c
            if (settled) c.abort()
          },
          (e: unknown) => end(e),
        )
    })
  }

  private onWatchEvent(phase: string, obj: unknown, end: (err?: unknown) => void): void {
    if (phase === 'ERROR') {
      const status = obj as { code?: unknown; message?: unknown }
      const code = typeof status.code === 'number' ? status.code : 500
      const err = Object.assign(
        new OperatorError(
          'WATCH_FAILED',
          `${this.name}: watch error ${code}: ${String(status.message)}`,
        ),
        { statusCode: code },
      )
      end(err)
      return
    }
    const meta = metaOf(obj)
    if (meta === undefined) return
    if (meta.rv !== '') this.rv = meta.rv
    if (phase === 'BOOKMARK') return
    const before = this.cache.get(meta.key)
    // DELETED, or now outside what we keep (e.g. a Pod that finished): a deletion to consumers.
    const value = phase === 'DELETED' ? undefined : this.o.transform(obj)
    if (value === undefined) {
      if (before === undefined) return
      this.cache.delete(meta.key)
      this.emit({ type: 'delete', key: meta.key, value: before.value })
      return
    }
    this.cache.set(meta.key, { rv: meta.rv, value })
    if (before === undefined) {
      this.emit({ type: 'add', key: meta.key, value })
      return
    }
    if (before.rv === meta.rv || (this.o.equals?.(before.value, value) ?? false)) return
    this.emit({ type: 'update', key: meta.key, value, old: before.value })
  }

  private emit(e: InformerEvent<T>): void {
    try {
      this.o.onEvent?.(e)
    } catch (err) {
      // A consumer bug must not kill the watch loop.
      this.log('error', 'informer event handler threw', {
        informer: this.name,
        error: errorText(err),
      })
    }
  }
}
