// The data plane's own view of every endpoint's engine: one scrape loop per endpoint of the live
// snapshot, sharing a small concurrency budget so a large fleet cannot open hundreds of sockets at
// once, each scrape bounded by a short timeout. Results go to a callback; the scheduler's endpoint
// state decides what a failure means (stale metrics degrade to local signals, unreachable
// endpoints get ejected).
//
// Why per-endpoint loops instead of one global tick: a slow or dead pod then only delays its own
// next scrape, never the fleet's. The loops' ticks are aligned in phases of at most
// SCRAPES_PER_TICK (alignedWait, phaseOf): a wake-up is the dear part of an idle process's scrape,
// and a small group per phase keeps each burst short.

import { Agent } from 'undici'
import type { InferenceEngine } from '../../api/snapshot.js'
import { RawPool } from '../proxy/engine-pool.js'
import type { GenericMapping } from './adapters/index.js'
import { originAddress, RawGet, RawGetTooLargeError } from './raw-get.js'
import type { RestartSignal } from './restart.js'
import { EngineMetricsTracker } from './tracker.js'
import type { EngineMetrics } from './view.js'

export interface ScrapeTarget {
  /** Stable key of the endpoint (the scheduler uses `address:port`). */
  readonly id: string
  /** `http://host:port` (IPv6 hosts in brackets). */
  readonly origin: string
  readonly engine: InferenceEngine
  readonly generic?: GenericMapping
  /** `engine` is an assumption: read the engine off the metric names (engines/detect.ts). */
  readonly detectEngine?: boolean
}

export type ScrapeFailureKind =
  /** No HTTP answer: refused, reset, DNS, or timed out. Counts against the endpoint's health. */
  | 'unreachable'
  /** An HTTP answer that is not usable metrics (non-200, oversized, nothing recognisable). */
  | 'bad_response'
  /**
   * Timed out, but the timeout itself fired late because this process's event loop was stalled:
   * the answer may well have been sitting in the socket. Says nothing about the endpoint.
   */
  | 'inconclusive'

export type ScrapeResult =
  | {
      readonly ok: true
      readonly metrics: EngineMetrics
      readonly durationMs: number
      /** The engine process restarted since the previous successful scrape (restart.ts). */
      readonly restart?: RestartSignal
    }
  | {
      readonly ok: false
      readonly kind: ScrapeFailureKind
      readonly error: string
      readonly durationMs: number
    }

export interface ScraperOptions {
  /** Time between the starts of two scrapes of one endpoint. Default 200 ms. */
  readonly intervalMs?: number
  /** Whole-scrape deadline (connect + headers + body). Default 500 ms. */
  readonly timeoutMs?: number
  /** Scrapes in flight at once across all endpoints. Default 16. */
  readonly concurrency?: number
  /** Largest body read; bigger answers are a `bad_response`. Default 8 MiB. */
  readonly maxBytes?: number
  /** Longest pause for an endpoint whose answers are not metrics. Default 30 s. */
  readonly maxBackoffMs?: number
  /** Called right before each scrape request goes out (to snapshot local counters). */
  readonly onStart?: (id: string) => void
  readonly onResult: (id: string, result: ScrapeResult) => void
  readonly random?: () => number
}

/**
 * What a scheduler needs of a scraper: this one (on the calling thread) or ScrapeThread
 * (scrape-thread.ts: the same loops in a worker thread, results posted back).
 */
export interface Scraper {
  readonly intervalMs: number
  readonly timeoutMs: number
  /** Make the running loops match `targets` (see MetricsScraper.sync). */
  sync(targets: readonly ScrapeTarget[]): void
  close(): Promise<void>
}

/** The interval and timeout the loops use: defaults and floors (one place for both scrapers). */
export function scrapeTiming(opts: Pick<ScraperOptions, 'intervalMs' | 'timeoutMs'>): {
  intervalMs: number
  timeoutMs: number
} {
  return {
    intervalMs: Math.max(10, opts.intervalMs ?? 200),
    timeoutMs: Math.max(10, opts.timeoutMs ?? 500),
  }
}

/**
 * Scrape events handled on this thread so far: a scrape's start and its result here, or a scrape
 * worker's message about either (scrape-thread.ts). The EPP's `--debug-phases` reads it around
 * each decision (which decisions shared their time with scraping).
 */
export const scrapeEvents = { count: 0 }

export class ScraperError extends Error {
  override readonly name = 'ScraperError'
  readonly code = 'SCRAPE_TOO_LARGE'
}

/** The abort reason of a scrape that ran out of time. */
class ScrapeTimeoutError extends Error {
  override readonly name = 'TimeoutError'
  readonly code = 'SCRAPE_TIMEOUT'
}

interface Loop {
  readonly target: ScrapeTarget
  readonly tracker: EngineMetricsTracker
  readonly abort: AbortController
  /** Consecutive answers that were not metrics: drives the slow-down. */
  useless: number
  /** Offset (ms) of this loop's ticks within the interval (phaseOf). */
  phase: number
  timer: NodeJS.Timeout | undefined
  wake: (() => void) | undefined
  /** The engine's connection for `http:` origins (raw-get.ts); undefined: undici's agent. */
  readonly pool: RawPool | undefined
}

/** Counting semaphore; waiters are served in arrival order. */
class Semaphore {
  #free: number
  readonly #waiters: (() => void)[] = []
  constructor(n: number) {
    this.#free = n
  }
  acquire(): Promise<void> {
    if (this.#free > 0) {
      this.#free--
      return Promise.resolve()
    }
    return new Promise((resolve) => this.#waiters.push(resolve))
  }
  release(): void {
    const next = this.#waiters.shift()
    if (next) next()
    else this.#free++
  }
}

const TEXT_ACCEPT = 'text/plain;version=0.0.4;q=1,*/*;q=0.1'
const TEXT_ACCEPT_LINE = `accept: ${TEXT_ACCEPT}\r\n`
/** Idle keep-alive connections of the raw path are closed within this of their expiry. */
const RAW_SWEEP_MS = 1000

export class MetricsScraper implements Scraper {
  readonly intervalMs: number
  readonly timeoutMs: number
  readonly #opts: ScraperOptions
  readonly #maxBytes: number
  readonly #maxBackoffMs: number
  readonly #random: () => number
  readonly #sem: Semaphore
  readonly #agent: Agent
  readonly #loops = new Map<string, Loop>()
  #closed = false

  constructor(opts: ScraperOptions) {
    this.#opts = opts
    const timing = scrapeTiming(opts)
    this.intervalMs = timing.intervalMs
    this.timeoutMs = timing.timeoutMs
    this.#maxBytes = opts.maxBytes ?? 8 * 1024 * 1024
    this.#maxBackoffMs = opts.maxBackoffMs ?? 30_000
    this.#random = opts.random ?? Math.random
    this.#sem = new Semaphore(Math.max(1, opts.concurrency ?? 16))
    // One keep-alive socket per engine is plenty at a few scrapes per second; a dedicated agent
    // keeps scrapes out of the proxy pool so they never queue behind inference streams.
    this.#agent = new Agent({
      connections: 1,
      keepAliveTimeout: 10_000,
      connect: { timeout: this.timeoutMs },
      headersTimeout: this.timeoutMs,
      bodyTimeout: this.timeoutMs,
    })
  }

  /** The endpoints currently scraped. */
  get targets(): string[] {
    return [...this.#loops.keys()]
  }

  /**
   * Make the running loops match `targets`: new ones start at once (with a small random delay so
   * a snapshot with many endpoints does not scrape them all in the same millisecond), missing
   * ones stop, and an endpoint whose engine or origin changed starts over with fresh state.
   */
  sync(targets: readonly ScrapeTarget[]): void {
    if (this.#closed) return
    const want = new Map(targets.map((t) => [t.id, t]))
    for (const [id, loop] of this.#loops) {
      const t = want.get(id)
      if (
        t === undefined ||
        t.engine !== loop.target.engine ||
        t.origin !== loop.target.origin ||
        !sameGeneric(t.generic, loop.target.generic) ||
        t.detectEngine !== loop.target.detectEngine
      ) {
        this.#stop(loop)
        this.#loops.delete(id)
      }
    }
    for (const t of want.values()) {
      if (this.#loops.has(t.id)) continue
      const addr = originAddress(t.origin)
      const loop: Loop = {
        target: t,
        tracker: new EngineMetricsTracker(t.engine, {
          ...(t.generic ? { generic: t.generic } : {}),
          ...(t.detectEngine === true ? { detect: true } : {}),
        }),
        abort: new AbortController(),
        useless: 0,
        phase: 0,
        timer: undefined,
        wake: undefined,
        // One connection per engine, as the undici agent had. The scrape's own timer bounds it
        // (no per-request timeouts in the pool); the pool's timer only closes idle connections.
        pool:
          addr !== undefined
            ? new RawPool({ ...addr, connections: 1, keepAliveMs: 10_000, tickMs: RAW_SWEEP_MS })
            : undefined,
      }
      this.#loops.set(t.id, loop)
      void this.#run(loop)
    }
    let k = 0
    for (const loop of this.#loops.values())
      loop.phase = phaseOf(k++, this.#loops.size, this.intervalMs)
  }

  async close(): Promise<void> {
    this.#closed = true
    for (const loop of this.#loops.values()) this.#stop(loop)
    this.#loops.clear()
    await this.#agent.close().catch(() => {})
  }

  #stop(loop: Loop): void {
    loop.abort.abort()
    if (loop.timer) clearTimeout(loop.timer)
    loop.wake?.()
    loop.pool?.destroy()
  }

  #sleep(loop: Loop, ms: number): Promise<void> {
    return new Promise((resolve) => {
      loop.wake = resolve
      loop.timer = setTimeout(resolve, ms)
      // Scrapes must never keep a process alive on their own.
      loop.timer.unref()
    })
  }

  async #run(loop: Loop): Promise<void> {
    await this.#sleep(loop, this.#random() * Math.min(50, this.intervalMs / 2))
    while (!loop.abort.signal.aborted) {
      const started = performance.now()
      await this.#sem.acquire()
      let result: ScrapeResult
      try {
        if (loop.abort.signal.aborted) break
        scrapeEvents.count++
        this.#opts.onStart?.(loop.target.id)
        result = await this.#scrapeOnce(loop)
      } finally {
        this.#sem.release()
      }
      if (loop.abort.signal.aborted) break
      loop.useless = result.ok || result.kind !== 'bad_response' ? 0 : loop.useless + 1
      scrapeEvents.count++
      try {
        this.#opts.onResult(loop.target.id, result)
      } catch {
        // A consumer bug must not kill the loop; the next result is another chance.
      }
      const now = performance.now()
      if (loop.useless === 0) {
        await this.#sleep(
          loop,
          alignedWait(now, started + this.intervalMs, this.intervalMs, loop.phase),
        )
        continue
      }
      // An endpoint that answers but exports nothing we understand is polled ever more slowly:
      // hammering it every 200 ms would buy nothing.
      const base = Math.min(this.#maxBackoffMs, this.intervalMs * 2 ** Math.min(loop.useless, 16))
      const jitter = 1 + (this.#random() - 0.5) * 0.2
      await this.#sleep(loop, Math.max(0, base * jitter - (now - started)))
    }
  }

  async #scrapeOnce(loop: Loop): Promise<ScrapeResult> {
    const t0 = performance.now()
    const elapsed = (): number => performance.now() - t0
    // A timer we clear ourselves: AbortSignal.timeout would fire after a completed scrape and
    // abort a body nobody listens to any more.
    let late = 0
    let timedOut = false
    let stop: (reason: unknown) => void
    const timer = setTimeout(() => {
      late = performance.now() - t0 - this.timeoutMs
      timedOut = true
      stop(new ScrapeTimeoutError())
    }, this.timeoutMs)
    const onStop = (): void => stop(new DOMException('This operation was aborted', 'AbortError'))
    loop.abort.signal.addEventListener('abort', onStop, { once: true })
    let text: string
    try {
      let status: number
      if (loop.pool !== undefined) {
        const get = new RawGet(
          loop.pool,
          loop.tracker.metricsPath,
          TEXT_ACCEPT_LINE,
          this.#maxBytes,
        )
        stop = (reason) => get.abort(reason)
        try {
          ;({ status, text } = await get.done)
        } catch (e) {
          if (e instanceof RawGetTooLargeError) {
            return { ok: false, kind: 'bad_response', error: e.message, durationMs: elapsed() }
          }
          throw e
        }
      } else {
        ;({ status, text } = await this.#undiciGet(loop, (f) => {
          stop = f
        }))
      }
      if (status !== 200) {
        return { ok: false, kind: 'bad_response', error: `HTTP ${status}`, durationMs: elapsed() }
      }
    } catch (e) {
      if (e instanceof ScraperError) {
        return { ok: false, kind: 'bad_response', error: e.message, durationMs: elapsed() }
      }
      // A gateway busy elsewhere must not eject every engine it failed to listen to in time.
      if (timedOut && late > lateLimit(this.timeoutMs)) {
        return {
          ok: false,
          kind: 'inconclusive',
          error: `timeout (event loop ${Math.round(late)} ms late)`,
          durationMs: elapsed(),
        }
      }
      return { ok: false, kind: 'unreachable', error: describe(e), durationMs: elapsed() }
    } finally {
      clearTimeout(timer)
      loop.abort.signal.removeEventListener('abort', onStop)
    }
    const { metrics, parsed, restart } = loop.tracker.ingestText(text)
    if (parsed.sampleCount === 0 || metrics.missing.length === 2) {
      return {
        ok: false,
        kind: 'bad_response',
        error:
          parsed.sampleCount === 0
            ? 'no Prometheus samples in the answer'
            : `no load signals for engine ${loop.target.engine}`,
        durationMs: elapsed(),
      }
    }
    return restart !== undefined
      ? { ok: true, metrics, durationMs: elapsed(), restart }
      : { ok: true, metrics, durationMs: elapsed() }
  }

  /** The GET through undici (origins that are not `http:`); `onStop` receives its abort. */
  async #undiciGet(
    loop: Loop,
    onStop: (stop: (reason: unknown) => void) => void,
  ): Promise<{ status: number; text: string }> {
    const ac = new AbortController()
    onStop((reason) => ac.abort(reason))
    const res = await this.#agent.request({
      origin: loop.target.origin,
      path: loop.tracker.metricsPath,
      method: 'GET',
      headers: { accept: TEXT_ACCEPT },
      signal: ac.signal,
    })
    // Errors after this point surface through the reads below, never as a stray event.
    res.body.on('error', () => {})
    if (res.statusCode !== 200) {
      await res.body.dump().catch(() => {})
      return { status: res.statusCode, text: '' }
    }
    try {
      return { status: 200, text: await readLimited(res.body, this.#maxBytes) }
    } catch (e) {
      res.body.destroy()
      throw e
    }
  }
}

/**
 * Two generic mappings read the same metrics. By value, not identity: targets that crossed to a
 * worker thread (scrape-thread.ts) are copies, and a copy must not restart the endpoint's loop.
 */
function sameGeneric(a: GenericMapping | undefined, b: GenericMapping | undefined): boolean {
  if (a === b) return true
  if (a === undefined || b === undefined) return false
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]) as Set<keyof GenericMapping>
  for (const k of keys) if (a[k] !== b[k]) return false
  return true
}

/**
 * Scrapes that share a tick at most (phaseOf): a burst of this many is ~0.5-1.5 ms of the thread
 * that also serves requests. 64 engines on one tick made ~24 ms of its CPU per tick (1.2 s per
 * 10 s at 5 ticks a second, load 2), in one stretch but for the waits on the engines' answers.
 */
export const SCRAPES_PER_TICK = 4

/**
 * The offset within the interval of the `k`-th of `n` loops' ticks: the loops are dealt over
 * ceil(n / SCRAPES_PER_TICK) evenly spaced phases, so at most SCRAPES_PER_TICK share a wake-up.
 */
export function phaseOf(k: number, n: number, intervalMs: number): number {
  const phases = Math.max(1, Math.ceil(n / SCRAPES_PER_TICK))
  return ((k % phases) * intervalMs) / phases
}

/**
 * How long to wait for a scrape due at `due`: until the nearest tick of the loop's phase (a
 * multiple of `intervalMs` plus `phase`) on the monotonic clock, never before `now`. Loops of one
 * phase land on the same ticks, so one timer wake-up starts their scrapes and their answers tend
 * to arrive together. A wake-up is the
 * dear part of an idle data plane's scrape: the same GET and parse cost ~0.1 ms back to back
 * and 0.9-1.5 ms each 50 ms apart (undici GET of the sim's 10 KB text, in-process loop, load 4-5;
 * hack/bench/scrape-cost.ts measures the gateway). The burst is bounded by the concurrency limit.
 */
export function alignedWait(now: number, due: number, intervalMs: number, phase = 0): number {
  return Math.max(0, Math.round((due - phase) / intervalMs) * intervalMs + phase - now)
}

/** How late a scrape timeout may fire before it says more about this process than the engine. */
export function lateLimit(timeoutMs: number): number {
  return Math.max(250, timeoutMs / 2)
}

async function readLimited(body: AsyncIterable<unknown>, max: number): Promise<string> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of body) {
    const b = chunk as Buffer
    size += b.byteLength
    if (size > max) throw new ScraperError(`metrics larger than ${max} bytes`)
    chunks.push(b)
  }
  return Buffer.concat(chunks).toString('utf8')
}

/** The `error` of an `unreachable` scrape that hit its deadline (not refused, not reset). */
export const SCRAPE_TIMEOUT = 'timeout'

function describe(e: unknown): string {
  if (typeof e === 'object' && e !== null) {
    const code = (e as { code?: unknown }).code
    const name = (e as { name?: unknown }).name
    if (name === 'TimeoutError' || code === 'UND_ERR_ABORTED' || name === 'AbortError') {
      return SCRAPE_TIMEOUT
    }
    if (typeof code === 'string') return code
  }
  return e instanceof Error ? e.message : String(e)
}
