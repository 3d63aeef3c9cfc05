// What one data-plane replica knows about one endpoint: the engine's last scrape, its own
// in-flight requests and tokens, the latency it measured on proxied responses, and passive health.
// Scrapes arrive every few hundred milliseconds; requests arrive every few microseconds. The
// blended signals below add the replica's own dispatches and completions since the last scrape to
// the scraped numbers, so a burst between two scrapes is seen immediately instead of piling onto
// whichever pod looked idle at the last scrape.

import type { SnapshotEndpoint } from '../../api/snapshot.js'
import type { RestartSignal } from '../engines/restart.js'
import { SCRAPE_TIMEOUT } from '../engines/scraper.js'
import { adapterBound, type EngineMetrics } from '../engines/view.js'
import type { DispatchOutcome } from '../picker.js'

export interface HealthOptions {
  // Liveness: is anything listening? Ends on the first sign of life after the ejection period.
  /** Consecutive connect failures (refused/reset/connect timeout) of proxied requests. Default 2. */
  readonly connectFailures: number
  /** Consecutive unreachable scrapes. Default 2. */
  readonly scrapeFailures: number
  // Outliers: the engine answers, but badly. Ends with successful trial requests.
  /**
   * Consecutive failed answers that eject: 5xx, response-header/idle timeouts, bodies cut
   * mid-way. Default 5. (Malformed HTTP and oversized bodies eject on the first: `DEFINITIVE`.)
   */
  readonly consecutiveFailures: number
  /** Share of failed answers over `failureRateWindowMs` that ejects (0..1; 1 = off). Default 0.25. */
  readonly failureRate: number
  /** Answers in the window before the failure rate is judged. Default 10. */
  readonly failureRateMinRequests: number
  /** Default 2 s. */
  readonly failureRateWindowMs: number
  /** Successful trial requests in a row that end an outlier ejection. Default 2. */
  readonly probationSuccesses: number
  /** First ejection period. Default 1 s. */
  readonly baseEjectionMs: number
  /**
   * Longest ejection period: outlier ejections double up to it (liveness ejections of a scraped
   * endpoint end on the first answer, so they never need to). Default 5 s: an engine that keeps
   * failing costs one trial request per 5 s, and one that recovered waits at most that long.
   */
  readonly maxEjectionMs: number
  /**
   * Below this share of non-ejected endpoints a server ignores ejection altogether (Envoy's panic
   * threshold); 0 = only when every endpoint is ejected. Default 0.5.
   */
  readonly panicThreshold: number
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
  consecutiveFailures: 5,
  failureRate: 0.25,
  failureRateMinRequests: 10,
  failureRateWindowMs: 2_000,
  probationSuccesses: 2,
  baseEjectionMs: 1_000,
  maxEjectionMs: 5_000,
  panicThreshold: 0.5,
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

/** Liveness reasons: nothing answered. */
export type LivenessReason = 'connect' | 'scrape'
/** Outlier reasons: answers that failed, by kind, or too many of them overall. */
export type OutlierReason =
  | '5xx'
  | 'timeout'
  | 'stream_cut'
  | 'protocol'
  | 'body_too_large'
  | 'failure_rate'
export type EjectReason = LivenessReason | OutlierReason

/**
 * One ejection track: active from an ejection until the track's own evidence ends it (the
 * period alone does not). `count` drives the doubling period.
 */
class Ejection<R extends EjectReason> {
  active = false
  count = 0
  at = Number.NEGATIVE_INFINITY
  until = Number.NEGATIVE_INFINITY
  reason: R | undefined
  /** When the track last ended (for the backoff reset and the debug view). */
  endedAt = Number.NEGATIVE_INFINITY

  start(now: number, reason: R, h: HealthOptions): void {
    this.active = true
    this.count++
    this.at = now
    this.until = now + Math.min(h.maxEjectionMs, h.baseEjectionMs * 2 ** (this.count - 1))
    this.reason = reason
  }

  end(now: number): void {
    this.active = false
    this.endedAt = now
  }
}

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
  /** #opts.staleAfterMs, read by `fresh` many times per decision (one load fewer each). */
  readonly #staleAfterMs: number
  /** #opts.latencyMaxAgeMs, read by `ttft` and `tpot` for every candidate (as #staleAfterMs). */
  readonly #latencyMaxAgeMs: number
  /**
   * ttftMs's and tpotMs's value and time, copied here on each add: read for every candidate of a
   * decision, the two Ewma objects were two more objects, each a cache miss, per candidate. The
   * values stay `number | undefined` as in the Ewma: a field that only ever held numbers is kept
   * unboxed, and returning it from ttft()/tpot() then allocated a HeapNumber per call.
   */
  #ttftOwn: number | undefined = undefined
  #ttftOwnAt = Number.NEGATIVE_INFINITY
  #tpotOwn: number | undefined = undefined
  #tpotOwnAt = Number.NEGATIVE_INFINITY
  /**
   * The last scrape's numbers that the load and latency signals read for every candidate of a
   * decision, copied here by scrapeSucceeded (the only place `metrics` is set): reading them off
   * the scrape's EngineMetrics was one more object, a cache miss, per candidate and decision.
   * Exactly the scrape's values (an EngineMetrics is not changed once handed over). `#loadUnknown`:
   * the scrape reported neither waiting nor running. The optional ones stay `number | undefined`
   * as on the scrape (see #ttftOwn).
   */
  #loadUnknown = false
  #scrapedWaiting = 0
  #scrapedRunning = 0
  #scrapedAdapterBound = false
  #scrapedTtftSec: number | undefined = undefined
  #scrapedTpotSec: number | undefined = undefined
  #scrapedHitRate: number | undefined = undefined

  // engine view
  metrics: EngineMetrics | undefined
  scrapedAt = Number.NEGATIVE_INFINITY
  lastReachableAt = Number.NEGATIVE_INFINITY
  /** Last HTTP answer to a proxied request (any status): the engine's API server is up. */
  lastAnsweredAt = Number.NEGATIVE_INFINITY
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
  /**
   * In flight here from the other worker processes of this data plane (`--workers`), as last
   * summed and broadcast by the primary; 0 in a single process. Counted in the blended load
   * like own traffic, so workers do not all pile onto the pod that looked idle at the last scrape.
   */
  peerInFlight = 0
  peerInFlightTokens = 0
  dispatched = 0
  completed = 0
  failures = 0
  readonly ttftMs = new Ewma(0.2)
  readonly tpotMs = new Ewma(0.2)
  /** Adapter → last time this replica sent it here (the engine only reports running ones). */
  readonly loraSeen = new Map<string, number>()
  /**
   * Adapter → this replica's requests for it in flight here: running or queued at the engine
   * right now, whatever the last scrape said (its adapter is held or about to be loaded there).
   */
  readonly loraInFlight = new Map<string, number>()
  /**
   * Bumped whenever this replica's own adapter traffic here changes what lora-affinity's view
   * reads (an adapter starts or stops being in flight here, or is first remembered; not another
   * request for one already in flight) and on a restart: the view of the endpoint holds while it is
   * unchanged and the engine's adapters (the fresh scrape's) are the same. Not by a scrape: the
   * view compares what a new scrape says with what it was made from (most scrapes report the
   * same adapters, and rebuilding every endpoint's view after each one landed in one decision).
   */
  loraVersion = 0

  // engine restarts (restart.ts): plugins drop what they remember when `generation` moves
  /** Engine restarts seen on this endpoint. */
  generation = 0
  lastRestart: RestartSignal | undefined
  lastRestartAt = Number.NEGATIVE_INFINITY

  // passive health: two independent tracks (see isEjected)
  connectFailures = 0
  /** Consecutive failed answers (outlier track). */
  consecutiveFailures = 0
  readonly #live = new Ejection<LivenessReason>()
  readonly #outlier = new Ejection<OutlierReason>()
  /**
   * Either track active (kept in step by #synced after every start and end): isEjected runs for
   * every candidate of every decision, and with this it reads no other object for a healthy
   * endpoint (the two tracks are objects of their own: a cache line each per candidate).
   */
  #ejecting = false
  /** The latest liveness evidence was positive (an answer, not a refusal or a dead scrape). */
  #liveUp = true
  /** Successful trials since the outlier period ended. */
  #trialsOk = 0
  /** When the last trial request left (one at a time while on probation). */
  #trialAt = Number.NEGATIVE_INFINITY
  /** Failure-rate window: two half-window buckets of [answers, failures]. */
  #winAt = Number.NEGATIVE_INFINITY
  #winCur = [0, 0]
  #winPrev = [0, 0]
  /** Ejections since this endpoint was last fully in rotation (log aggregation). */
  episodeEjections = 0

  constructor(ep: SnapshotEndpoint, slot: number, opts: StateOptions = DEFAULT_STATE_OPTIONS) {
    this.id = endpointKey(ep)
    this.name = ep.name
    this.address = ep.address
    this.port = ep.port
    this.labels = ep.labels
    this.slot = slot
    this.nameHash = hashString(ep.name)
    this.#opts = opts
    this.#staleAfterMs = opts.staleAfterMs
    this.#latencyMaxAgeMs = opts.latencyMaxAgeMs
  }

  /** Scraped metrics young enough to trust. */
  fresh(now: number): EngineMetrics | undefined {
    return now - this.scrapedAt <= this.#staleAfterMs ? this.metrics : undefined
  }

  /**
   * `fresh(now) !== undefined` without reading the scrape (scrapedAt is finite only once a scrape
   * set `metrics`). The `scraped*` getters below are that scrape's values; read them only when
   * fresh, as `fresh(now)?.x` would.
   */
  isFresh(now: number): boolean {
    return now - this.scrapedAt <= this.#staleAfterMs
  }

  /** The last scrape's `waiting`. */
  get scrapedWaiting(): number {
    return this.#scrapedWaiting
  }

  /** The last scrape's `running`. */
  get scrapedRunning(): number {
    return this.#scrapedRunning
  }

  /** `adapterBound` of the last scrape. */
  get scrapedAdapterBound(): boolean {
    return this.#scrapedAdapterBound
  }

  /** The last scrape's `ttftMeanSec`. */
  get scrapedTtftSec(): number | undefined {
    return this.#scrapedTtftSec
  }

  /** The last scrape's `prefixCacheHitRate`. */
  get scrapedHitRate(): number | undefined {
    return this.#scrapedHitRate
  }

  /**
   * Requests outstanding at the engine (running + queued), including other replicas' traffic as
   * of the last scrape plus this replica's change since. Never below this replica's own in-flight
   * count, which it knows exactly.
   */
  pending(now: number): number {
    const mine = this.inFlight + this.peerInFlight
    if (!this.isFresh(now) || this.#loadUnknown) return mine
    return Math.max(
      mine,
      this.#scrapedWaiting + this.#scrapedRunning + mine - this.#inFlightAtScrape,
    )
  }

  /** Requests queued at the engine (not running), estimated between scrapes. */
  waiting(now: number): number {
    if (this.learnedCapacity > 0) return Math.max(0, this.pending(now) - this.learnedCapacity)
    return this.isFresh(now) ? this.#scrapedWaiting : 0
  }

  /**
   * KV-cache usage 0..1: the engine's at the last scrape plus the tokens this replica sent or
   * finished since, over the cache's size when the engine reports it (so a burst between scrapes
   * does not all land on the pod that looked emptiest).
   */
  kvCacheUsage(now: number): number | undefined {
    const u = this.kvCacheUsageOrNaN(now)
    return Number.isNaN(u) ? undefined : u
  }

  /**
   * `kvCacheUsage(now)`, NaN for undefined (a usage is never NaN: engines/view.ts keeps finite
   * ones, block counts and sizes above 0): what least-kv-cache reads for every candidate. A
   * `number | undefined` result is a tagged value, a new HeapNumber per call for a fractional
   * usage (a sixth of the bytes a decision allocated); a plain number stays unboxed where the call
   * is inlined.
   */
  kvCacheUsageOrNaN(now: number): number {
    const m = this.fresh(now)
    if (m === undefined) return Number.NaN
    const usage = m.kvCacheUsage
    if (usage === undefined) return Number.NaN
    if (m.numGpuBlocks === undefined || m.blockSize === undefined) return usage
    const delta =
      (this.inFlightTokens + this.peerInFlightTokens - this.#tokensAtScrape) /
      (m.numGpuBlocks * m.blockSize)
    return Math.min(1, Math.max(0, usage + delta))
  }

  /** Time to first token in ms: own measurement when recent, else the engine's interval mean. */
  ttft(now: number): number | undefined {
    const own = this.#ttftOwn
    if (own !== undefined && now - this.#ttftOwnAt <= this.#latencyMaxAgeMs) return own
    const s = this.isFresh(now) ? this.#scrapedTtftSec : undefined
    return s === undefined ? undefined : s * 1000
  }

  /** Time per output token in ms, same preference as `ttft`. */
  tpot(now: number): number | undefined {
    const own = this.#tpotOwn
    if (own !== undefined && now - this.#tpotOwnAt <= this.#latencyMaxAgeMs) return own
    const s = this.isFresh(now) ? this.#scrapedTpotSec : undefined
    return s === undefined ? undefined : s * 1000
  }

  // -------------------------------------------------------------------------------------------
  // inputs

  /** A scrape request is about to leave: the engine's answer describes the world as of now. */
  scrapeStarted(): void {
    this.#inFlightAtScrapeStart = this.inFlight + this.peerInFlight
    this.#tokensAtScrapeStart = this.inFlightTokens + this.peerInFlightTokens
  }

  /** The other workers' in-flight requests and tokens here (latest broadcast of the primary). */
  setPeerLoad(requests: number, tokens: number): void {
    this.peerInFlight = Math.max(0, requests)
    this.peerInFlightTokens = Math.max(0, tokens)
  }

  /**
   * A usable scrape. `restart`: the engine process started over since the previous one (see
   * `#restarted`); returns true then, so the scheduler tells the plugins to forget the endpoint.
   */
  scrapeSucceeded(now: number, metrics: EngineMetrics, restart?: RestartSignal): boolean {
    this.metrics = metrics
    this.#loadUnknown = metrics.missing.length === 2
    this.#scrapedWaiting = metrics.waiting
    this.#scrapedRunning = metrics.running
    this.#scrapedAdapterBound = adapterBound(metrics)
    this.#scrapedTtftSec = metrics.ttftMeanSec
    this.#scrapedTpotSec = metrics.tpotMeanSec
    this.#scrapedHitRate = metrics.prefixCacheHitRate
    this.scrapedAt = now
    this.scrapeFailures = 0
    this.lastScrapeError = undefined
    this.#inFlightAtScrape = this.#inFlightAtScrapeStart
    this.#tokensAtScrape = this.#tokensAtScrapeStart
    this.#alive(now)
    this.#outlierQuiet(now)
    if (restart !== undefined) this.#restarted(now, restart)
    // An engine only queues once its batch is full, so `running` at that moment is its limit —
    // unless what waits is an adapter without a slot (adapterBound): then it is not.
    if (
      metrics.waiting > 0 &&
      metrics.running > this.learnedCapacity &&
      !this.#scrapedAdapterBound
    ) {
      this.learnedCapacity = metrics.running
    }
    return restart !== undefined
  }

  /**
   * `reachable`: the endpoint answered HTTP, just not with usable metrics. `error` is the
   * scraper's: SCRAPE_TIMEOUT for no answer within the deadline (not refused, not reset).
   */
  scrapeFailed(now: number, reachable: boolean, error: string): void {
    this.lastScrapeError = error
    if (reachable) {
      this.scrapeFailures = 0
      this.#alive(now)
      return
    }
    // A slow /metrics from an engine that answered a proxied request within the last ejection
    // period is a busy engine, not a dead one (vLLM serves /metrics from the same event loop as
    // inference, and a loaded one answers it late). Ejecting it would push its share of traffic
    // onto the others, which then answer their scrapes late too. Its metrics go stale (local
    // signals only) and requests that fail still eject it on their own track. A refused
    // connection is no such doubt.
    if (error === SCRAPE_TIMEOUT && now - this.lastAnsweredAt < this.#opts.health.baseEjectionMs)
      return
    this.scrapeFailures++
    this.#liveUp = false
    if (this.scrapeFailures >= this.#opts.health.scrapeFailures) this.#liveDown(now, 'scrape')
  }

  dispatchStarted(t: LoadTicket, now: number): void {
    this.inFlight++
    this.inFlightTokens += t.promptTokens + t.outputTokens
    this.dispatched++
    // On probation, this request is the trial: no other goes here until it ends (see isEjected).
    if (this.#outlier.active && now >= this.#outlier.until) this.#trialAt = now
    if (t.lora !== undefined) {
      const held = this.loraInFlight.get(t.lora) ?? 0
      // Another request for an adapter already in flight here and remembered: the view of its
      // adapters (lora-affinity's viewOf reads which adapters are in flight, not how many, and
      // the idle ones' order, which skips those in flight) is the same, so it is not made again.
      if (held === 0 || !this.loraSeen.has(t.lora)) this.loraVersion++
      this.loraInFlight.set(t.lora, held + 1)
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
    if (t.lora !== undefined) {
      const left = (this.loraInFlight.get(t.lora) ?? 0) - 1
      if (left > 0) this.loraInFlight.set(t.lora, left)
      else {
        // The adapter is no longer in flight here (idle now): the view changes. With others of
        // its requests still in flight it does not (see dispatchStarted).
        this.loraInFlight.delete(t.lora)
        this.loraVersion++
      }
    }
    this.completed++
    // A client that left says nothing about the engine.
    if (o.failure === 'aborted') return
    if (o.failure === 'connect') {
      this.failures++
      this.connectFailures++
      this.#liveUp = false
      if (this.#live.active || this.connectFailures >= this.#opts.health.connectFailures) {
        this.#liveDown(now, 'connect')
      }
      return
    }
    if (o.status > 0) {
      // Any HTTP answer, even a 5xx, proves something listens there.
      this.lastAnsweredAt = now
      this.connectFailures = 0
      this.#alive(now)
    }
    const sentAt = now - Math.max(0, o.durationMs)
    const bad = outlierKind(o)
    if (bad !== undefined) {
      this.failures++
      this.#outlierFailed(now, sentAt, bad)
      return
    }
    // No answer and no named failure: nothing learned.
    if (o.status === 0) return
    this.#outlierSucceeded(now, sentAt)
    if (t.stream && o.firstByteMs !== undefined && o.status < 300) {
      this.ttftMs.add(o.firstByteMs, now)
      this.#ttftOwn = this.ttftMs.value
      this.#ttftOwnAt = now
      const n = o.completionTokens ?? 0
      if (n > 1) {
        this.tpotMs.add((o.durationMs - o.firstByteMs) / (n - 1), now)
        this.#tpotOwn = this.tpotMs.value
        this.#tpotOwnAt = now
      }
    }
  }

  // -------------------------------------------------------------------------------------------
  // health
  //
  // Two tracks, each with its own counters, reasons and evidence that ends it:
  // - liveness (connect failures, unreachable scrapes): nothing listens. Ends on the first answer
  //   (a scrape, or any proxied HTTP response) once the period is over, and that answer also
  //   resets the doubling: an engine restarted in place is back in rotation at its next scrape.
  // - outlier (5xx, timeouts, cut bodies: consecutive or by failure rate; malformed HTTP and
  //   oversized bodies: the first one): the engine answers, badly. Its /metrics may be fine all along, so a scrape
  //   proves nothing here; after the period, trial requests do (one per period, `probationSuccesses`
  //   in a row end it; a failed trial ejects again for twice as long, up to `maxEjectionMs`).
  // A request's outcome counts only if it was sent after the track's last ejection began: the
  // backlog a hung engine times out on long after it was ejected is old news.

  /**
   * Out of rotation: during either track's period; after a liveness period until the endpoint
   * answers (when scraped; else the next request is the probe); after an outlier period while a
   * trial request is outstanding (for at most another such period).
   */
  isEjected(now: number): boolean {
    if (!this.#ejecting) return false
    const l = this.#live
    if (l.active && (now < l.until || (this.probed && !this.#liveUp))) return true
    const o = this.#outlier
    if (!o.active) return false
    if (now < o.until) return true
    // One trial per ejection period: a trial still running after that (hung, or slowly reading
    // an endless body) lets the next one go, so it cannot keep a recovered engine out for long.
    const h = this.#opts.health
    const block = Math.max(h.baseEjectionMs, o.until - o.at) // a restart may have cut the period
    return this.#trialsOk < h.probationSuccesses && now - this.#trialAt < block
  }

  /** An ejection is running on either track (the endpoint is not yet fully back). */
  get ejectionActive(): boolean {
    return this.#live.active || this.#outlier.active
  }

  /** The most recent ejection of either track, active or not. */
  get lastEjection():
    | { reason: EjectReason; at: number; periodMs: number; count: number; active: boolean }
    | undefined {
    const t: Ejection<EjectReason> = this.#outlier.at > this.#live.at ? this.#outlier : this.#live
    if (t.reason === undefined) return undefined
    return {
      reason: t.reason,
      at: t.at,
      periodMs: t.until - t.at,
      count: t.count,
      active: t.active,
    }
  }

  /** Sign of life: ends a liveness ejection whose period is over, with its doubling. */
  #alive(now: number): void {
    this.lastReachableAt = now
    this.#liveUp = true
    const l = this.#live
    if (l.active && now >= l.until) {
      l.end(now)
      this.#synced()
      l.count = 0
      this.connectFailures = 0
      this.scrapeFailures = 0
    }
  }

  #liveDown(now: number, reason: LivenessReason): void {
    const l = this.#live
    // Out already: a continuing outage of a scraped endpoint does not lengthen its ejection (it
    // ends on the first answer anyway). Unscraped, the failure after the period was the probe.
    if (l.active && (now < l.until || this.probed)) return
    this.#begin(l, now, reason)
    this.connectFailures = 0
    this.scrapeFailures = 0
  }

  #outlierFailed(now: number, sentAt: number, reason: OutlierReason): void {
    const o = this.#outlier
    if (sentAt < o.at) return
    if (o.active) {
      // Failures of requests sent while out (panic mode) add nothing; a failed trial ejects again.
      if (now >= o.until) this.#ejectOutlier(now, reason)
      return
    }
    this.consecutiveFailures++
    this.#count(now, true)
    const h = this.#opts.health
    if (DEFINITIVE.has(reason) || this.consecutiveFailures >= h.consecutiveFailures)
      this.#ejectOutlier(now, reason)
    else if (this.#rateExceeded()) this.#ejectOutlier(now, 'failure_rate')
  }

  #outlierSucceeded(now: number, sentAt: number): void {
    const o = this.#outlier
    if (sentAt < o.at) return
    if (!o.active) {
      this.consecutiveFailures = 0
      this.#count(now, false)
      return
    }
    this.#trialsOk++
    if (now >= o.until && this.#trialsOk >= this.#opts.health.probationSuccesses) {
      o.end(now)
      this.#synced()
      this.consecutiveFailures = 0
      this.#resetWindow()
    }
  }

  /**
   * Back in rotation for a whole max period, nothing in flight there and no failed trial (a
   * failure would have ejected it again): the scorers simply had no reason to send it the
   * trials. It is back. (Trials still in flight, e.g. hung ones, keep the ejection going.)
   */
  #outlierQuiet(now: number): void {
    const o = this.#outlier
    if (o.active && this.inFlight === 0 && now >= o.until + this.#opts.health.maxEjectionMs) {
      o.end(now)
      this.#synced()
      this.consecutiveFailures = 0
      this.#resetWindow()
    }
  }

  #ejectOutlier(now: number, reason: OutlierReason): void {
    const o = this.#outlier
    // Back in full rotation for a whole max period since the last one: start from the base again.
    if (!o.active && now - o.endedAt >= this.#opts.health.maxEjectionMs) o.count = 0
    this.#begin(o, now, reason)
    this.#trialsOk = 0
    this.#trialAt = Number.NEGATIVE_INFINITY
    this.consecutiveFailures = 0
    this.#resetWindow()
  }

  #begin<R extends EjectReason>(t: Ejection<R>, now: number, reason: R): void {
    this.episodeEjections = this.ejectionActive ? this.episodeEjections + 1 : 1
    t.start(now, reason, this.#opts.health)
    this.#synced()
  }

  /** #ejecting after a track started or ended. */
  #synced(): void {
    this.#ejecting = this.#live.active || this.#outlier.active
  }

  /**
   * The engine process started over (a container restart keeps the address): the batch limit
   * is learned again (the new process may run with another `max_num_seqs`) and no adapter is
   * loaded any more. Latency estimates stay: the hardware did not change. An outlier ejection
   * ends at once, probation included: its evidence was about the old process (typically the
   * streams cut as it died), and one trial at a time would keep an engine that is back out of
   * rotation for seconds while the rest of the fleet queues. A new process that fails again is
   * ejected again, for a doubled period (the count stays).
   */
  #restarted(now: number, signal: RestartSignal): void {
    this.generation++
    this.lastRestart = signal
    this.lastRestartAt = now
    this.learnedCapacity = 0
    this.loraSeen.clear()
    this.loraVersion++
    const o = this.#outlier
    if (o.active) {
      o.end(now)
      this.#synced()
      this.consecutiveFailures = 0
      this.#resetWindow()
    }
  }

  /** Feed the failure-rate window: two buckets of half the window each. */
  #count(now: number, failed: boolean): void {
    const half = this.#opts.health.failureRateWindowMs / 2
    if (now - this.#winAt >= half) {
      const stale = now - this.#winAt >= 2 * half
      this.#winPrev[0] = stale ? 0 : (this.#winCur[0] as number)
      this.#winPrev[1] = stale ? 0 : (this.#winCur[1] as number)
      this.#winCur[0] = 0
      this.#winCur[1] = 0
      this.#winAt = now
    }
    this.#winCur[0] = (this.#winCur[0] as number) + 1
    if (failed) this.#winCur[1] = (this.#winCur[1] as number) + 1
  }

  #rateExceeded(): boolean {
    const h = this.#opts.health
    const n = (this.#winCur[0] as number) + (this.#winPrev[0] as number)
    const f = (this.#winCur[1] as number) + (this.#winPrev[1] as number)
    return h.failureRate < 1 && n >= h.failureRateMinRequests && f >= h.failureRate * n
  }

  #resetWindow(): void {
    this.#winAt = Number.NEGATIVE_INFINITY
    this.#winCur.fill(0)
    this.#winPrev.fill(0)
  }

  /** The debug endpoint's view. */
  view(now: number): Record<string, unknown> {
    const m = this.fresh(now)
    return {
      name: this.name,
      address: `${this.address}:${this.port}`,
      labels: this.labels,
      ejected: this.isEjected(now),
      ...lastEjectionView(this.lastEjection, now),
      health: {
        connectFailures: this.connectFailures,
        consecutiveFailures: this.consecutiveFailures,
        recent: {
          answers: (this.#winCur[0] as number) + (this.#winPrev[0] as number),
          failures: (this.#winCur[1] as number) + (this.#winPrev[1] as number),
        },
        ...(this.#outlier.active ? { probation: { trialsOk: this.#trialsOk } } : {}),
      },
      ...(this.generation > 0
        ? {
            restarts: {
              count: this.generation,
              last: this.lastRestart,
              agoMs: round(now - this.lastRestartAt),
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
        ...(this.peerInFlight > 0 || this.peerInFlightTokens > 0
          ? { peerInFlight: this.peerInFlight, peerInFlightTokens: this.peerInFlightTokens }
          : {}),
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

/**
 * Failures that eject on the first occurrence. A 5xx, a timeout or a cut stream can be one bad
 * moment of a healthy engine (a request it cannot serve, a slow batch, a network blip), so they
 * need a streak or a rate. Malformed HTTP and a response past the gateway's body cap cannot: a
 * healthy engine never sends either, and every further request sent there while a streak builds
 * costs its client (up to 5 × a 64 MiB read for an endless body, 7.5–15 % of traffic still on the
 * bad engine 2 s later in the hardening suite). Trials still readmit it once it recovers.
 */
const DEFINITIVE: ReadonlySet<OutlierReason> = new Set(['protocol', 'body_too_large'])

/** The outlier-track name of a failed answer; undefined for an answer that counts as success. */
function outlierKind(o: DispatchOutcome): OutlierReason | undefined {
  if (o.status >= 500) return '5xx'
  switch (o.failure) {
    case 'timeout':
    case 'stream_cut':
    case 'protocol':
    case 'body_too_large':
      return o.failure
    default:
      // No failure, or a retried 429: the engine answered properly, if busily. `other` (a reset
      // mid-request, or an error of the gateway's own) is not held against the engine either: an
      // engine may close on a client's oversized request body, and counting that would let one
      // client eject every engine in turn. A crashed engine shows up as refused connections.
      return undefined
  }
}

function lastEjectionView(
  e: EndpointState['lastEjection'],
  now: number,
): { lastEjection?: Record<string, unknown> } {
  if (e === undefined) return {}
  return {
    lastEjection: {
      reason: e.reason,
      agoMs: round(now - e.at),
      periodMs: round(e.periodMs),
      count: e.count,
      active: e.active,
    },
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
