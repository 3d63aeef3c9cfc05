// What the workers of `--workers N` tell each other through the primary, batched and paced so that
// it costs few wake-ups:
// - In-flight load and dispatched prefix blocks travel in ONE message per report (worker →
//   primary) and ONE per broadcast (primary → worker), instead of a message of each kind each way.
// - Dispatches travel grouped by (server, plugin, endpoint): one Int32Array of every hash of the
//   group and their lengths, instead of an object and a typed array per dispatch (V8's serializer
//   handles each typed array through a JS callback; v8.DefaultSerializer, which the IPC channel's
//   extends: 6 dispatches took 20 µs to write and 30 to read, grouped 12 and 11; 60 took 130 and
//   230, grouped 10 and 19).
// - A worker reports from the event-loop turn of a dispatch or completion once LOAD_REPORT_MS has
//   passed since its last report (ReportPacer), not from a timer of its own: under load it is
//   awake anyway, and idle it has nothing to say.
//
// Why: each IPC message costs far more than its bytes. Measured on the 2-core benchmark VM
// (Firecracker, hack/bench/proxy-workers.ts and a cluster ping script): a Node process woken by a
// 100/s timer uses ~100-125 µs CPU per wake-up, a send adds ~60 µs, a process woken by the message
// ~170 µs. Turning the reports off altogether (3 alternating rounds, zero-latency engine, 500
// req/s, load 6-7) took the 2-worker data plane from ~700 to ~575 µs CPU per request. Most of
// what 2 workers cost over 1 is not this traffic, though: two separate single-process data planes
// with no coordination at all cost as much as the 2 workers (proxy-workers.ts --split).
// Pure: IPC and timers live in primary.ts and worker.ts.
import type { PeerDispatch } from '../scheduler/index.js'
import { LoadAggregator, type LoadEntry, loadKey } from './load.js'

/** Dispatches to one plugin's index for one endpoint, in order: hashes of each, concatenated. */
export interface DispatchGroup {
  readonly server: string
  readonly entry: number
  readonly plugin: string
  readonly id: string
  /** Number of hashes of each dispatch, in order. */
  readonly lens: readonly number[]
  readonly hashes: Int32Array
}

/** A worker's report (and, the other way, a worker's view of the others): each part optional. */
export interface PeerUpdate {
  /** In-flight per endpoint, a full view; absent = unchanged since the last message. */
  readonly load?: readonly LoadEntry[]
  /** Prefix blocks dispatched since the last message (packDispatches). */
  readonly d?: readonly DispatchGroup[]
}

/**
 * Dispatches grouped by (server, profile entry, plugin, endpoint), groups in order of first
 * appearance, dispatches in order within a group. Order across groups does not matter: each group
 * goes to a table of its own (one plugin's index, one endpoint; a shared index is fed by its owner
 * entry only).
 */
export function packDispatches(list: readonly PeerDispatch[]): DispatchGroup[] {
  const byKey = new Map<string, PeerDispatch[]>()
  for (const d of list) {
    const key = `${d.server}\u0000${d.entry}\u0000${d.plugin}\u0000${d.id}`
    const g = byKey.get(key)
    if (g === undefined) byKey.set(key, [d])
    else g.push(d)
  }
  const out: DispatchGroup[] = []
  for (const g of byKey.values()) {
    const first = g[0] as PeerDispatch
    let n = 0
    for (const d of g) n += d.hashes.length
    const hashes = new Int32Array(n)
    const lens: number[] = []
    let at = 0
    for (const d of g) {
      hashes.set(d.hashes, at)
      at += d.hashes.length
      lens.push(d.hashes.length)
    }
    out.push({
      server: first.server,
      entry: first.entry,
      plugin: first.plugin,
      id: first.id,
      lens,
      hashes,
    })
  }
  return out
}

/** The dispatches of `groups` again (hashes are views into the group's array, not copies). */
export function unpackDispatches(groups: readonly DispatchGroup[]): PeerDispatch[] {
  const out: PeerDispatch[] = []
  for (const g of groups) {
    let at = 0
    for (const len of g.lens) {
      const hashes = g.hashes.subarray(at, at + len)
      at += len
      out.push({ server: g.server, entry: g.entry, plugin: g.plugin, id: g.id, hashes })
    }
  }
  return out
}

/** Timers of ReportPacer (injected: tests drive them by hand). */
export interface PacerClock {
  now(): number
  /** Runs `fn` after `ms`; returns a handle for `cancel`. */
  after(ms: number, fn: () => void): unknown
  cancel(handle: unknown): void
  /** Runs `fn` later in this event-loop turn's wake-up (setImmediate), not at once. */
  soon(fn: () => void): void
}

/**
 * When a worker reports: at most every `intervalMs`, from the turn of the event (dispatch,
 * completion) that changed something once the interval has passed since the last report. When
 * events stop before that, a timer reports at `2 × intervalMs` after the last report (the only
 * wake-up of its own: a timer at exactly `intervalMs` would fire before the next event in most
 * cases, waking the process for nothing the event would not have done). So a change is reported
 * within `intervalMs` plus the gap to the next event under load, within `2 × intervalMs` without.
 */
export class ReportPacer {
  readonly #flush: () => void
  readonly #intervalMs: number
  readonly #clock: PacerClock
  #last = Number.NEGATIVE_INFINITY
  #timer: unknown
  #soon = false

  constructor(flush: () => void, intervalMs: number, clock: PacerClock) {
    this.#flush = flush
    this.#intervalMs = intervalMs
    this.#clock = clock
  }

  /** Something the report holds may have changed. */
  kick(): void {
    if (this.#soon) return
    const now = this.#clock.now()
    const due = this.#last + this.#intervalMs
    if (now >= due) {
      this.#soon = true
      this.#clock.soon(() => this.#run())
    } else if (this.#timer === undefined) {
      this.#timer = this.#clock.after(due + this.#intervalMs - now, () => {
        this.#timer = undefined
        this.#run()
      })
    }
  }

  /** Stop the timer (the worker is draining). */
  stop(): void {
    if (this.#timer !== undefined) this.#clock.cancel(this.#timer)
    this.#timer = undefined
  }

  #run(): void {
    this.#soon = false
    this.stop()
    this.#last = this.#clock.now()
    this.#flush()
  }
}

/**
 * Dispatch groups held for one worker at most between two broadcasts (a worker that does not read
 * must not grow the primary): the oldest go first, like the scheduler's own outbox.
 */
export const MAX_PENDING = 4096

/** The worker's side: what to send for one report tick, or undefined when nothing changed. */
export class ReportBuilder {
  #lastKey = ''

  build(load: readonly LoadEntry[], d: readonly DispatchGroup[]): PeerUpdate | undefined {
    const key = loadKey(load)
    const loadChanged = key !== this.#lastKey
    this.#lastKey = key
    if (!loadChanged && d.length === 0) return undefined
    if (!loadChanged) return { d }
    return d.length === 0 ? { load } : { load, d }
  }
}

/** The primary's side: the latest load of every worker and the dispatches owed to each. */
export class PeerRelay {
  readonly #load = new LoadAggregator()
  readonly #pending = new Map<number, DispatchGroup[]>()
  /** The load view last sent to each worker (its key), to send only changes. */
  readonly #sent = new Map<number, string>()

  /**
   * A report from `from`. Its dispatches are owed to every worker in `to` but `from`. Returns
   * whether any worker now has something to be sent (the caller schedules a broadcast).
   */
  report(from: number, u: PeerUpdate, to: Iterable<number>): boolean {
    if (u.load !== undefined) this.#load.report(from, u.load)
    let owed = u.load !== undefined
    if (u.d !== undefined && u.d.length > 0) {
      for (const w of to) {
        if (w === from) continue
        let q = this.#pending.get(w)
        if (q === undefined) {
          q = []
          this.#pending.set(w, q)
        }
        for (const x of u.d) q.push(x)
        if (q.length > MAX_PENDING) q.splice(0, q.length - MAX_PENDING)
        owed = true
      }
    }
    return owed
  }

  /** A worker exited: its requests died with it, and nothing is owed to it any more. */
  remove(worker: number): void {
    this.#load.remove(worker)
    this.#pending.delete(worker)
    this.#sent.delete(worker)
  }

  /** A (re)started worker knows nothing yet: its next message carries the full load view. */
  reset(worker: number): void {
    this.#pending.delete(worker)
    this.#sent.delete(worker)
  }

  /** What to send `worker` now (its owed dispatches, the others' load if it changed), or undefined. */
  take(worker: number): PeerUpdate | undefined {
    const others = this.#load.othersOf(worker)
    const key = loadKey(others)
    const loadChanged = this.#sent.get(worker) !== key
    this.#sent.set(worker, key)
    const d = this.#pending.get(worker) ?? []
    this.#pending.delete(worker)
    if (!loadChanged) return d.length > 0 ? { d } : undefined
    return d.length > 0 ? { load: others, d } : { load: others }
  }
}
