// Engine scraping in a worker thread: the scraper's loops (scraper.ts, unchanged) run in
// scrape-worker.ts, and only each scrape's start and parsed result come back to this thread, as
// the callbacks of MetricsScraper would deliver them.
//
// Why (issue 13): a scrape is work on the thread that also decides. Reading one pod's /metrics
// and parsing it (the Prometheus text, the adapter's interval state) costs a few hundred µs of
// CPU — more under load and for real engines' larger expositions — and with 8 pods scraped every
// 200 ms that is 40 bursts a second that a decision arriving at the wrong moment waits behind.
// In `bench:epp` on the development machine the EPP spent ~70 ms per second in those parses, and
// most of its slowest streams had one inside them. Here each result costs this thread one small
// structured clone instead.
//
// Failure: a worker that ends is started again (its loops start over: the first scrape of each
// endpoint reports cumulative means, as after a snapshot change). One that cannot start (its code
// does not load, the Worker cannot be created) or keeps ending within QUICK_EXIT_MS of its start
// (MAX_QUICK_EXITS times in a row) is given up on: the loops then run on this thread
// (MetricsScraper), with a warning — slower decisions, never blind ones.
//
// Memory: the worker is its own V8 isolate with its own heap, sized by SCRAPE_WORKER_LIMITS (V8's
// defaults for a new isolate let its young generation grow to 48 MB, and to 64 MB of semi-spaces
// under the EPP's `--max-semi-space-size=32`, for a live set of ~10 MB). A worker that reaches the
// old-generation cap is ended by Node (ERR_WORKER_OUT_OF_MEMORY) and started again like any worker
// that ends: a leak in the scrape path costs a restart, never the process.
import type { ResourceLimits, Worker } from 'node:worker_threads'
import type { Logger } from '../log.js'
import { workerWithOwnHeap } from '../worker-heap.js'
import type { ScrapeWorkerData, ScrapeWorkerReply, ScrapeWorkerRequest } from './scrape-worker.js'
import { scrapeWorkerCode } from './scrape-worker-code.js'
import {
  MetricsScraper,
  type Scraper,
  type ScraperOptions,
  type ScrapeTarget,
  scrapeEvents,
  scrapeTiming,
} from './scraper.js'

/** A worker ending sooner than this after its start counts towards giving up on the thread. */
export const QUICK_EXIT_MS = 10_000
/** Quick exits in a row after which scraping moves to this thread. */
export const MAX_QUICK_EXITS = 3
/** How long close() waits for the worker to stop its loops before ending it. */
const CLOSE_WAIT_MS = 1_000

/**
 * The worker's heap. Measured (hack/bench/epp-memory.ts: idle EPPs from the bundle, 8 simulated
 * pods scraped every 200 ms, `--max-semi-space-size=32` as the manifests run the EPP, 10 minutes
 * after a 60 s settle): the worker's live set after mark-compacts stays 8-9.3 MB, while with V8's
 * sizing its committed heap went 28 -> 46 MB and still grew (its young generation, under the flag
 * up to 64 MB of semi-spaces), the process's RSS +17 MB with it. With an 8 MB young generation it
 * went 21.5 -> 26 MB (RSS 161 -> 151 MB) for ~1 scavenge a second in the worker (0.5 with V8's
 * sizing, 2 with 4 MB) at the same process CPU (62 ms/s, inline 64). The old generation gets
 * several times the live set, so only a leak reaches it.
 */
export const SCRAPE_WORKER_LIMITS: Readonly<ResourceLimits> = {
  maxYoungGenerationSizeMb: 8,
  maxOldGenerationSizeMb: 64,
}

export interface ScrapeThreadOptions extends ScraperOptions {
  readonly log?: Logger
  /** The worker's code. Default: scrape-worker.ts (tests: a worker that fails). */
  readonly workerCode?: () => Promise<string>
  /** The worker's heap. Default SCRAPE_WORKER_LIMITS. */
  readonly resourceLimits?: ResourceLimits
}

/** Where the loops run now. */
export type ScrapeThreadMode = 'starting' | 'thread' | 'inline' | 'closed'

type State =
  | { readonly kind: 'starting' }
  | { readonly kind: 'thread'; readonly worker: Worker; readonly startedAt: number }
  | { readonly kind: 'inline'; readonly scraper: MetricsScraper }
  | { readonly kind: 'closed' }

export class ScrapeThread implements Scraper {
  readonly intervalMs: number
  readonly timeoutMs: number
  readonly #opts: ScrapeThreadOptions
  readonly #data: ScrapeWorkerData
  #state: State = { kind: 'starting' }
  #targets: readonly ScrapeTarget[] = []
  #quickExits = 0
  #restarts = 0

  constructor(opts: ScrapeThreadOptions) {
    this.#opts = opts
    // The scraper's own defaults and floors, so both sides report what the loops use.
    const timing = scrapeTiming(opts)
    this.intervalMs = timing.intervalMs
    this.timeoutMs = timing.timeoutMs
    const data: { -readonly [K in keyof ScrapeWorkerData]: ScrapeWorkerData[K] } = {}
    if (opts.intervalMs !== undefined) data.intervalMs = opts.intervalMs
    if (opts.timeoutMs !== undefined) data.timeoutMs = opts.timeoutMs
    if (opts.concurrency !== undefined) data.concurrency = opts.concurrency
    if (opts.maxBytes !== undefined) data.maxBytes = opts.maxBytes
    if (opts.maxBackoffMs !== undefined) data.maxBackoffMs = opts.maxBackoffMs
    this.#data = data
    this.#start()
  }

  get mode(): ScrapeThreadMode {
    return this.#state.kind
  }

  /** Workers started again after one ended. */
  get restarts(): number {
    return this.#restarts
  }

  /** The worker thread while it runs (tests end it as a crash would). */
  worker(): Worker | undefined {
    return this.#state.kind === 'thread' ? this.#state.worker : undefined
  }

  sync(targets: readonly ScrapeTarget[]): void {
    this.#targets = targets
    const s = this.#state
    if (s.kind === 'thread') this.#post(s.worker, { op: 'sync', targets })
    else if (s.kind === 'inline') s.scraper.sync(targets)
    // 'starting': the worker gets the latest targets once it exists.
  }

  async close(): Promise<void> {
    const s = this.#state
    this.#state = { kind: 'closed' }
    if (s.kind === 'inline') await s.scraper.close()
    else if (s.kind === 'thread') {
      const w = s.worker
      const exited = new Promise<void>((r) => w.once('exit', () => r()))
      this.#post(w, { op: 'close' })
      let timer: NodeJS.Timeout | undefined
      await Promise.race([
        exited,
        new Promise<void>((r) => {
          timer = setTimeout(r, CLOSE_WAIT_MS)
        }),
      ])
      clearTimeout(timer)
      await w.terminate()
    }
  }

  #start(): void {
    this.#state = { kind: 'starting' }
    const code = this.#opts.workerCode ?? scrapeWorkerCode
    code().then(
      (script) => {
        if (this.#state.kind !== 'starting') return
        let w: Worker
        // The process's young-generation flags would override this worker's resourceLimits.
        try {
          w = workerWithOwnHeap(script, {
            eval: true,
            workerData: this.#data,
            resourceLimits: this.#opts.resourceLimits ?? SCRAPE_WORKER_LIMITS,
          })
        } catch (e) {
          this.#inline('the scrape worker could not be created', e)
          return
        }
        // Like the scraper's timers: scraping never keeps a process alive on its own.
        w.unref()
        w.on('message', (m: ScrapeWorkerReply) => this.#message(w, m))
        w.on('error', (e: Error) =>
          this.#opts.log?.('error', 'scrape worker failed', { error: e.message }),
        )
        w.on('exit', (exitCode: number) => this.#exited(w, exitCode))
        this.#state = { kind: 'thread', worker: w, startedAt: performance.now() }
        // Posted before the worker listens: a port queues messages until then.
        if (this.#targets.length > 0) this.#post(w, { op: 'sync', targets: this.#targets })
      },
      (e: unknown) => {
        if (this.#state.kind === 'starting') this.#inline('the scrape worker could not load', e)
      },
    )
  }

  #message(w: Worker, m: ScrapeWorkerReply): void {
    const s = this.#state
    // A worker being replaced or closed may still have a few messages on the way: dropped.
    if (s.kind !== 'thread' || s.worker !== w) return
    scrapeEvents.count++
    if (m.t === 'start') this.#opts.onStart?.(m.id)
    else if (m.t === 'result') {
      try {
        this.#opts.onResult(m.id, m.r)
      } catch {
        // A consumer bug must not stop the results (as in MetricsScraper's loop).
      }
    }
  }

  #exited(w: Worker, exitCode: number): void {
    const s = this.#state
    if (s.kind !== 'thread' || s.worker !== w) return
    const ranMs = performance.now() - s.startedAt
    this.#quickExits = ranMs < QUICK_EXIT_MS ? this.#quickExits + 1 : 0
    if (this.#quickExits >= MAX_QUICK_EXITS) {
      this.#inline(`the scrape worker ended ${this.#quickExits} times within seconds of its start`)
      return
    }
    this.#opts.log?.('warn', 'scrape worker ended; starting it again', {
      exitCode,
      ranMs: Math.round(ranMs),
    })
    this.#restarts++
    this.#start()
  }

  /** Gives up on the thread: the same loops on this thread from now on. */
  #inline(why: string, e?: unknown): void {
    this.#opts.log?.('warn', 'scraping engines on the main thread', {
      reason: why,
      ...(e !== undefined ? { error: e instanceof Error ? e.message : String(e) } : {}),
    })
    const { log: _log, workerCode: _code, resourceLimits: _limits, ...scraperOpts } = this.#opts
    const scraper = new MetricsScraper(scraperOpts)
    this.#state = { kind: 'inline', scraper }
    scraper.sync(this.#targets)
  }

  #post(w: Worker, m: ScrapeWorkerRequest): void {
    w.postMessage(m)
  }
}
