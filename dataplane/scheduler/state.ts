// What one data-plane replica knows about one endpoint: the engine's last scrape, its own
// in-flight requests and tokens, the latency it measured on proxied responses, and passive health.
// Scrapes arrive every few hundred milliseconds; requests arrive every few microseconds. The
// blended signals below add the replica's own dispatches and completions since the last scrape to
// the scraped numbers, so a burst between two scrapes is seen immediately instead of piling onto
// whichever pod looked idle at the last scrape.

import type { SnapshotEndpoint } from '../../api/snapshot.js'
import type { EngineMetrics } from '../engines/view.js'
import type { DispatchOutcome } from '../picker.js'

export interface HealthOptions {
  /** Consecutive connect failures of proxied requests that eject the endpoint. Default 2. */
  readonly connectFailures: number
  /** Consecutive unreachable scrapes that eject the endpoint. Default 2. */
  readonly scrapeFailures: number
  /** Consecutive 5xx answers that eject the endpoint. Default 5. */
  readonly consecutive5xx: number
  /** First ejection period; doubles on each ejection without a success in between. Default 1 s. */
  readonly baseEjectionMs: number
  /** Longest ejection period. Default 30 s. */
  readonly maxEjectionMs: number
}

export interface StateOptions {
  /** Scraped metrics older than this are ignored (local signals only). Default 1 s. */
  readonly staleAfterMs: number
  /** Locally measured latency older than this yields to the engine's numbers. Default 30 s. */
  readonly latencyMaxAgeMs: number
  readonly health: HealthOptions
}

export const DEFAULT_HEALTH: HealthOptions = {
  connectFailures: 2,
  scrapeFailures: 2,
  consecutive5xx: 5,
  baseEjectionMs: 1_000,
  maxEjectionMs: 30_000,
}

export const DEFAULT_STATE_OPTIONS: StateOptions = {
  staleAfterMs: 1_000,
  latencyMaxAgeMs: 30_000,
  health: DEFAULT_HEALTH,
}

/** Exponentially weighted mean that also remembers when it was last fed. */
export class Ewma {
  value: number | undefined
  at = Number.NEGATIVE_INFINITY
  readonly #alpha: number
  constructor(alpha: number) {
    this.#alpha = alpha
  }
  add(v: number, now: number): void {
    this.value = this.value === undefined ? v : this.value + this.#alpha * (v - this.value)
    this.at = now
  }
}

export type EjectReason = 'connect' | 'scrape' | '5xx'

/** Per-request facts the state needs at dispatch and completion. */
export interface LoadTicket {
  /** Estimated from the prompt's length. */
  readonly promptTokens: number
  /** The request's cap on output (max_tokens), or a typical answer length. */
  readonly outputTokens: number
  readonly stream: boolean
  readonly lora?: string
}

export class EndpointState {
  readonly id: string
  readonly name: string
  readonly address: string
  readonly port: number
  labels: Readonly<Record<string, string>>
  /** Small integer unique among live states: plugins index arrays with it. */
  readonly slot: number
  /** Rendezvous-hash identity: the same on every replica (the pod name). */
  readonly nameHash: number
  readonly #opts: StateOptions

  // engine view
  metrics: EngineMetrics | undefined
  scrapedAt = Number.NEGATIVE_INFINITY
  lastReachableAt = Number.NEGATIVE_INFINITY
  lastScrapeError: string | undefined
  scrapeFailures = 0
  /** Is a scraper watching this endpoint (then ejections end only on evidence it is back)? */
  probed = false
  /** Highest `running` seen while the engine also queued: its concurrency limit. 0 = unknown. */
  learnedCapacity = 0
  #inFlightAtScrape = 0
  #inFlightAtScrapeStart = 0
  #tokensAtScrape = 0
  #tokensAtScrapeStart = 0

  // own traffic
  inFlight = 0
  inFlightTokens = 0
  dispatched = 0
  completed = 0
  failures = 0
  readonly ttftMs = new Ewma(0.2)
  readonly tpotMs = new Ewma(0.2)
  /** Adapter → last time this replica sent it here (the engine only reports running ones). */
  readonly loraSeen = new Map<string, number>()

  // passive health
  connectFailures = 0
  consecutive5xx = 0
  ejections = 0
  ejectedAt = Number.NEGATIVE_INFINITY
  ejectedUntil = Number.NEGATIVE_INFINITY
  ejectReason: EjectReason | undefined

  constructor(ep: SnapshotEndpoint, slot: number, opts: StateOptions = DEFAULT_STATE_OPTIONS) {
    this.id = endpointKey(ep)
    this.name = ep.name
    this.address = ep.address
    this.port = ep.port
    this.labels = ep.labels
    this.slot = slot
    this.nameHash = hashString(ep.name)
    this.#opts = opts
  }

  /** Scraped metrics young enough to trust. */
  fresh(now: number): EngineMetrics | undefined {
    return now - this.scrapedAt <= this.#opts.staleAfterMs ? this.metrics : undefined
  }

  /**
   * Requests outstanding at the engine (running + queued), including other replicas' traffic as
   * of the last scrape plus this replica's change since. Never below this replica's own in-flight
   * count, which it knows exactly.
   */
  pending(now: number): number {
    const m = this.fresh(now)
    if (m === undefined || m.missing.length === 2) return this.inFlight
    return Math.max(this.inFlight, m.waiting + m.running + this.inFlight - this.#inFlightAtScrape)
  }

  /** Requests queued at the engine (not running), estimated between scrapes. */
  waiting(now: number): number {
    if (this.learnedCapacity > 0) return Math.max(0, this.pending(now) - this.learnedCapacity)
    const m = this.fresh(now)
    return m === undefined ? 0 : m.waiting
  }

  /**
   * KV-cache usage 0..1: the engine's at the last scrape plus the tokens this replica sent or
   * finished since, over the cache's size when the engine reports it (so a burst between scrapes
   * does not all land on the pod that looked emptiest).
   */
  kvCacheUsage(now: number): number | undefined {
    const m = this.fresh(now)
    if (m?.kvCacheUsage === undefined) return undefined
    if (m.numGpuBlocks === undefined || m.blockSize === undefined) return m.kvCacheUsage
    const delta = (this.inFlightTokens - this.#tokensAtScrape) / (m.numGpuBlocks * m.blockSize)
    return Math.min(1, Math.max(0, m.kvCacheUsage + delta))
  }

  /** Time to first token in ms: own measurement when recent, else the engine's interval mean. */
  ttft(now: number): number | undefined {
    if (this.ttftMs.value !== undefined && now - this.ttftMs.at <= this.#opts.latencyMaxAgeMs) {
      return this.ttftMs.value
    }
    const s = this.fresh(now)?.ttftMeanSec
    return s === undefined ? undefined : s * 1000
  }

  /** Time per output token in ms, same preference as `ttft`. */
  tpot(now: number): number | undefined {
    if (this.tpotMs.value !== undefined && now - this.tpotMs.at <= this.#opts.latencyMaxAgeMs) {
      return this.tpotMs.value
    }
    const s = this.fresh(now)?.tpotMeanSec
    return s === undefined ? undefined : s * 1000
  }

  // -------------------------------------------------------------------------------------------
  // inputs

  /** A scrape request is about to leave: the engine's answer describes the world as of now. */
  scrapeStarted(): void {
    this.#inFlightAtScrapeStart = this.inFlight
    this.#tokensAtScrapeStart = this.inFlightTokens
  }

  scrapeSucceeded(now: number, metrics: EngineMetrics): void {
    this.metrics = metrics
    this.scrapedAt = now
    this.lastReachableAt = now
    this.scrapeFailures = 0
    this.lastScrapeError = undefined
    this.#inFlightAtScrape = this.#inFlightAtScrapeStart
    this.#tokensAtScrape = this.#tokensAtScrapeStart
    // An engine only queues once its batch is full, so `running` at that moment is its limit.
    if (metrics.waiting > 0 && metrics.running > this.learnedCapacity) {
      this.learnedCapacity = metrics.running
    }
  }

  /** `reachable`: the endpoint answered HTTP, just not with usable metrics. */
  scrapeFailed(now: number, reachable: boolean, error: string): void {
    this.lastScrapeError = error
    if (reachable) {
      this.lastReachableAt = now
      this.scrapeFailures = 0
      return
    }
    this.scrapeFailures++
    if (this.scrapeFailures >= this.#opts.health.scrapeFailures) this.#eject(now, 'scrape')
  }

  dispatchStarted(t: LoadTicket, now: number): void {
    this.inFlight++
    this.inFlightTokens += t.promptTokens + t.outputTokens
    this.dispatched++
    if (t.lora !== undefined) {
      // Re-insert so iteration order is recency order (oldest first).
      this.loraSeen.delete(t.lora)
      this.loraSeen.set(t.lora, now)
      if (this.loraSeen.size > 64) {
        const oldest = this.loraSeen.keys().next()
        if (oldest.done !== true) this.loraSeen.delete(oldest.value)
      }
    }
  }

  dispatchEnded(t: LoadTicket, o: DispatchOutcome, now: number): void {
    this.inFlight = Math.max(0, this.inFlight - 1)
    this.inFlightTokens = Math.max(0, this.inFlightTokens - t.promptTokens - t.outputTokens)
    this.completed++
    const h = this.#opts.health
    if (o.failure === 'connect') {
      this.failures++
      this.connectFailures++
      if (this.connectFailures >= h.connectFailures) this.#eject(now, 'connect')
      return
    }
    if (o.status >= 500) {
      this.failures++
      this.consecutive5xx++
      if (this.consecutive5xx >= h.consecutive5xx) this.#eject(now, '5xx')
      return
    }
    if (o.status === 0 || o.failure === 'timeout' || o.failure === 'stream_cut') {
      // Neither proof of life nor of death (a slow engine, a client leaving): leave health alone.
      if (o.failure !== undefined) this.failures++
      return
    }
    this.connectFailures = 0
    this.consecutive5xx = 0
    this.ejections = 0
    this.lastReachableAt = now
    if (t.stream && o.firstByteMs !== undefined && o.status < 300) {
      this.ttftMs.add(o.firstByteMs, now)
      const n = o.completionTokens ?? 0
      if (n > 1) this.tpotMs.add((o.durationMs - o.firstByteMs) / (n - 1), now)
    }
  }

  // -------------------------------------------------------------------------------------------
  // health

  /**
   * Out of rotation: during the backoff period, and after it until the endpoint shows it is back
   * (answers a scrape or a request). Without a scraper, the next request after the backoff is the
   * probe.
   */
  isEjected(now: number): boolean {
    if (this.ejectedAt === Number.NEGATIVE_INFINITY) return false
    if (now < this.ejectedUntil) return true
    return this.probed && this.lastReachableAt < this.ejectedAt
  }

  #eject(now: number, reason: EjectReason): void {
    if (this.isEjected(now)) return
    this.ejections++
    const h = this.#opts.health
    const period = Math.min(h.maxEjectionMs, h.baseEjectionMs * 2 ** (this.ejections - 1))
    this.ejectedAt = now
    this.ejectedUntil = now + period
    this.ejectReason = reason
    this.connectFailures = 0
    this.consecutive5xx = 0
    this.scrapeFailures = 0
  }

  /** The debug endpoint's view. */
  view(now: number): Record<string, unknown> {
    const m = this.fresh(now)
    return {
      name: this.name,
      address: `${this.address}:${this.port}`,
      labels: this.labels,
      ejected: this.isEjected(now),
      ...(this.ejectReason !== undefined && this.ejectedAt > Number.NEGATIVE_INFINITY
        ? {
            lastEjection: {
              reason: this.ejectReason,
              agoMs: round(now - this.ejectedAt),
              periodMs: round(this.ejectedUntil - this.ejectedAt),
              count: this.ejections,
            },
          }
        : {}),
      scrape: {
        fresh: m !== undefined,
        ageMs: Number.isFinite(this.scrapedAt) ? round(now - this.scrapedAt) : null,
        ...(this.lastScrapeError !== undefined ? { lastError: this.lastScrapeError } : {}),
        failures: this.scrapeFailures,
      },
      engine:
        this.metrics === undefined
          ? null
          : {
              waiting: this.metrics.waiting,
              running: this.metrics.running,
              ...(this.metrics.kvCacheUsage !== undefined
                ? { kvCacheUsage: this.metrics.kvCacheUsage }
                : {}),
              ...(this.metrics.numGpuBlocks !== undefined
                ? { numGpuBlocks: this.metrics.numGpuBlocks }
                : {}),
              ...(this.metrics.lora !== undefined ? { lora: this.metrics.lora } : {}),
              ...(this.metrics.prefixCacheHitRate !== undefined
                ? { prefixCacheHitRate: this.metrics.prefixCacheHitRate }
                : {}),
            },
      local: {
        inFlight: this.inFlight,
        inFlightTokens: this.inFlightTokens,
        dispatched: this.dispatched,
        failures: this.failures,
      },
      blended: {
        pending: this.pending(now),
        waiting: this.waiting(now),
        ...(this.learnedCapacity > 0 ? { learnedCapacity: this.learnedCapacity } : {}),
        ttftMs: roundOrNull(this.ttft(now)),
        tpotMs: roundOrNull(this.tpot(now)),
      },
    }
  }
}

export function endpointKey(e: { readonly address: string; readonly port: number }): string {
  return `${e.address}:${e.port}`
}

/** FNV-1a over UTF-16 code units, then fmix32: a well-spread 32-bit hash of a short string. */
export function hashString(s: string, seed = 0x811c9dc5): number {
  let h = seed | 0
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193)
  return fmix32(h)
}

/** MurmurHash3's finaliser: every input bit affects every output bit. */
export function fmix32(x: number): number {
  let h = x | 0
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

function round(n: number): number {
  return Math.round(n * 10) / 10
}

function roundOrNull(n: number | undefined): number | null {
  return n === undefined ? null : round(n)
}
