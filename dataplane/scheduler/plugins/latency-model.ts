// The online latency model behind predicted-latency: what one request's time to first token on
// an endpoint is expected to be, learned from what the gateway observes.
//
//   TTFT ≈ overhead + uncachedTokens × prefillMsPerToken + waitForSlot
//   waitForSlot = 0 while the engine has a free batch slot, else
//                 (queue position / capacity) × slot time × waitScale
//   slot time   ≈ overhead + mean uncached tokens × prefillMsPerToken + mean output tokens × TPOT
//
// - overhead and prefillMsPerToken: a least-squares line of observed TTFT against the uncached
//   tokens the prefix index predicted, over requests dispatched with a free slot (so the TTFT is
//   prefill, not queueing), with exponential forgetting. One line per endpoint (GPUs differ) shrunk
//   towards the line pooled over all endpoints while an endpoint has few samples of its own.
// - waitScale: how far observed queueing exceeded or fell short of the predicted wait (EWMA of the
//   ratio, clamped), pooled: queue dynamics are a property of the engine type, not of one pod.
// - TPOT: the endpoint's own (state.ts: proxied streams, else the engine's histogram mean), else
//   the pooled mean, else the configured prior.

import type { EndpointState } from '../state.js'

/** Per-sample forgetting factor of the fits: about the last 30 samples dominate. */
const DECAY = 0.97
/** Below this spread of uncached tokens (std², tokens²) the slope is not identifiable. */
const MIN_VARIANCE = 32 * 32
/** Samples of its own after which an endpoint's line counts as much as the pooled one. */
const SHRINK_SAMPLES = 4
/** Bounds of the queueing correction: a wrong model must not switch queueing off or explode. */
const WAIT_SCALE_MIN = 0.25
const WAIT_SCALE_MAX = 4
/** Predicted waits shorter than this say too little to calibrate the scale. */
const MIN_WAIT_SAMPLE_MS = 5
const EWMA_ALPHA = 0.1
/** Pooled samples after which a TTFT far above the prefill line is clamped (see `observed`). */
const CLAMP_AFTER_SAMPLES = 8
const CLAMP_FACTOR = 3
/** Below this predicted hit rate an interval says too little about the index (see `trust`). */
const MIN_PREDICTED_HIT = 0.25
/** Weight of one scrape interval in `trust`: a wrong index is distrusted within a few scrapes. */
const TRUST_ALPHA = 0.5
/** Engine hits at or above this share of the predicted ones leave the index fully trusted. */
const TRUST_FLOOR = 0.5

export interface LatencyPriors {
  /** Prefill cost per uncached prompt token before anything was observed (ms). */
  readonly prefillMsPerToken: number
  /** Fixed part of TTFT (scheduling, first forward pass, network) before observations (ms). */
  readonly overheadMs: number
  /** Time per output token before any TPOT is known (ms). */
  readonly decodeMsPerToken: number
}

/** Observed TTFT (y, ms) against uncached prompt tokens (u), exponentially forgotten. */
export class PrefillFit {
  n = 0
  /** Samples added so far: what a line computed from this fit is valid for (see LatencyModel). */
  version = 0
  #su = 0
  #sy = 0
  #suu = 0
  #suy = 0

  add(u: number, y: number): void {
    this.version++
    this.n = this.n * DECAY + 1
    this.#su = this.#su * DECAY + u
    this.#sy = this.#sy * DECAY + y
    this.#suu = this.#suu * DECAY + u * u
    this.#suy = this.#suy * DECAY + u * y
  }

  /** ms per uncached token; `prior` while the samples cannot tell (too few, or all alike). */
  slope(prior: number): number {
    if (this.n < 2) return prior
    const mu = this.#su / this.n
    const variance = this.#suu / this.n - mu * mu
    if (variance < MIN_VARIANCE) return prior
    const cov = this.#suy / this.n - mu * (this.#sy / this.n)
    return Math.min(100, Math.max(0, cov / variance))
  }

  /** The line's value at u = 0 for a given slope (never negative). */
  intercept(slope: number): number {
    if (this.n <= 0) return 0
    return Math.max(0, (this.#sy - slope * this.#su) / this.n)
  }

  /**
   * This fit's line shrunk towards `pool` (weight n / (n + SHRINK_SAMPLES) on its own), written
   * into `to`: `slope(pool.perToken)` and `intercept` of it worked out in place, the same
   * arithmetic. A decision asks for every candidate's line after each pooled-line change, and
   * slope and intercept called from LatencyModel.prefillOf returned their numbers boxed, two
   * HeapNumbers per candidate (~0.8 KiB per decision); here they are locals.
   */
  shrunkInto(pool: Prefill, to: { perToken: number; overhead: number }): void {
    const n = this.n
    let slope = pool.perToken
    if (n >= 2) {
      const mu = this.#su / n
      const variance = this.#suu / n - mu * mu
      // As slope(): only a variance below the bound keeps the prior (NaN goes on, as there).
      if (!(variance < MIN_VARIANCE)) {
        const cov = this.#suy / n - mu * (this.#sy / n)
        slope = Math.min(100, Math.max(0, cov / variance))
      }
    }
    const intercept = n <= 0 ? 0 : Math.max(0, (this.#sy - slope * this.#su) / n)
    const w = n / (n + SHRINK_SAMPLES)
    to.perToken = w * slope + (1 - w) * pool.perToken
    to.overhead = w * intercept + (1 - w) * pool.overhead
  }
}

/**
 * What is learned about one endpoint. Its prefill fit and its line are fields of this one object
 * (it is its own PrefillFit, `fit`, and its own Prefill): a decision reads them for every
 * candidate, and as three objects (model, fit, line) they were three cache misses each, the
 * first reads of prefillOf and #score being the costliest lines of the plugin.
 */
export class EndpointModel extends PrefillFit implements Prefill {
  /** The endpoint's own fit (this object). */
  get fit(): PrefillFit {
    return this
  }
  /**
   * The endpoint's prefill line as last computed (LatencyModel.prefillOf), valid while neither its
   * fit (`lineFit`: its version) nor the pooled line (`linePool`) changed since; updated in place.
   */
  perToken = 0
  overhead = 0
  lineFit = -1
  linePool = -1
  /** Highest `running` the engine reported: its batch holds at least that many. */
  maxRunning = 0
  /**
   * How far the prefix index can be believed for this endpoint (0..1): the engine's prefix-cache
   * hit rate over the index's predicted one, per scrape interval, smoothed. The index only knows
   * what was sent; an engine whose cache holds less than that (evicted under the blocks of
   * running requests, other replicas' traffic, a cache smaller than it says) reports fewer hits,
   * and a cached-looking pod that in fact recomputes everything must not keep attracting its
   * prefixes.
   */
  trust = 1
  /** Prompt and predicted-cached tokens dispatched since the last scrape seen (see `trust`). */
  predQuery = 0
  predHit = 0
  seenScrapeAt = Number.NEGATIVE_INFINITY
  /** Dispatch times of this replica's requests in flight here, oldest first (see `wait`). */
  readonly starts: number[] = []
  /**
   * When each of `starts` got a batch slot (NaN: still queued), from events this replica sees:
   * at dispatch if the batch had a free slot, else when one of the requests ahead of it ended
   * (the engine admits first come first served). A request that queued has decoded for its time
   * since admission, not since dispatch: timed from dispatch, the slot it holds looked about to
   * free, and affinity stacked more requests behind it (a real run: predicted ~150 ms of wait on
   * a pod with 4 running and 3 queued, waited 951 ms; see `wait`).
   */
  readonly admits: number[] = []
  /**
   * This replica's requests in flight here that moved a prefix another pod held (a displaced
   * group's first request on its new pod): each draws its group's next requests, which hold batch
   * slots here while they wait for that prefill (see predicted-latency #rehome).
   */
  movesInFlight = 0

  /** A request was sent at `at` to a batch of `capacity` slots. */
  started(at: number, capacity: number): void {
    this.starts.push(at)
    this.admits.push(this.#admitted() < capacity ? at : Number.NaN)
  }

  /**
   * The request sent at `at` is done (answered, failed or cut) at `end`: its slot goes to the
   * oldest queued request, which is admitted then.
   */
  ended(at: number, end: number, capacity: number): void {
    const i = this.starts.indexOf(at)
    if (i < 0) return
    this.starts.splice(i, 1)
    this.admits.splice(i, 1)
    let admitted = this.#admitted()
    for (let j = 0; j < this.admits.length && admitted < capacity; j++) {
      if (Number.isNaN(this.admits[j] as number)) {
        this.admits[j] = Math.max(end, this.starts[j] as number)
        admitted++
      }
    }
  }

  /**
   * Time left (ms) until the k-th batch slot (0 = first) frees, of `capacity`, each request
   * holding one `slotMs` from its admission: free slots first (0), then the running requests
   * oldest admission first.
   */
  slotLeft(k: number, capacity: number, slotMs: number, now: number): number {
    const running = Math.min(capacity, this.#admitted())
    const free = capacity - running
    if (k < free) return 0
    let seen = 0
    for (const a of this.admits) {
      if (Number.isNaN(a)) continue
      if (seen === k - free) return Math.max(0, slotMs - (now - a))
      seen++
    }
    return 0
  }

  #admitted(): number {
    let n = 0
    for (const a of this.admits) if (!Number.isNaN(a)) n++
    return n
  }

  /** A scrape at `scrapedAt` reported `engineHitRate` for the interval: update `trust`. */
  scraped(scrapedAt: number, engineHitRate: number | undefined): void {
    if (scrapedAt <= this.seenScrapeAt) return
    const predicted = this.predQuery > 0 ? this.predHit / this.predQuery : 0
    if (
      Number.isFinite(this.seenScrapeAt) &&
      engineHitRate !== undefined &&
      predicted >= MIN_PREDICTED_HIT
    ) {
      // Down to TRUST_FLOOR of the predicted hits is the ordinary gap (other replicas' first
      // placements, requests sent while their prefix was still being computed): believed in full,
      // or replicas would undo each other's affinity. Below it the engine evicts what was sent.
      const ratio = Math.min(1, Math.max(0, engineHitRate / predicted / TRUST_FLOOR))
      this.trust += TRUST_ALPHA * (ratio - this.trust)
    }
    this.seenScrapeAt = scrapedAt
    this.predQuery = 0
    this.predHit = 0
  }
}

export interface Prefill {
  /** ms per uncached prompt token. */
  readonly perToken: number
  /** ms at zero uncached tokens. */
  readonly overhead: number
}

export class LatencyModel {
  readonly priors: LatencyPriors
  readonly pool = new PrefillFit()
  /** Observed queueing ÷ predicted wait. */
  waitScale = 1
  waitSamples = 0
  /** Pooled means used for the slot time of requests already in an engine. */
  meanOutputTokens: number | undefined
  meanUncachedTokens: number | undefined
  meanTpotMs: number | undefined
  readonly #endpoints = new Map<EndpointState, EndpointModel>()

  constructor(priors: LatencyPriors) {
    this.priors = priors
  }

  of(ep: EndpointState): EndpointModel {
    let m = this.#endpoints.get(ep)
    if (m === undefined) {
      m = new EndpointModel()
      this.#endpoints.set(ep, m)
    }
    return m
  }

  peek(ep: EndpointState): EndpointModel | undefined {
    return this.#endpoints.get(ep)
  }

  forget(ep: EndpointState): void {
    this.#endpoints.delete(ep)
  }

  get endpoints(): ReadonlyMap<EndpointState, EndpointModel> {
    return this.#endpoints
  }

  /**
   * Lowest TTFT mean the engines' histograms report among the current candidates (ms), set per
   * decision. Until the gateway has timed a first token itself (e.g. no streamed traffic yet), it
   * stands in for the overhead. The lowest, and for all endpoints alike: an engine's mean also
   * holds its past queueing, which must not count against it a second time.
   */
  engineTtftMs: number | undefined

  /** Prefill line for `ep`: its own fit shrunk towards the pooled one. */
  prefill(ep: EndpointState): Prefill {
    return this.prefillOf(this.#endpoints.get(ep))
  }

  /**
   * `prefill` for the endpoint whose model is `m` (undefined: none yet), the caller having looked
   * it up. A decision asks for every candidate's line several times and the lines change only when
   * a TTFT is observed, so they are kept (the pooled line, and each endpoint's on its model) and
   * handed out as long as what they were computed from is unchanged: not recomputed, with two
   * divisions per fit, per candidate and call. The same values as computing afresh. The object
   * is the model's own (or the pool's), updated in place when a TTFT moves the line: read it at
   * once, do not keep it across an observation. (A new object per candidate and decision, each
   * with its two numbers boxed, was a fifth of the bytes a decision allocated.)
   */
  prefillOf(m: EndpointModel | undefined): Prefill {
    const pool = this.#poolLine()
    if (m === undefined || m.n < 0.5) return pool
    if (m.lineFit === m.version && m.linePool === this.#poolVersion) return m
    m.shrunkInto(pool, m)
    m.lineFit = m.version
    m.linePool = this.#poolVersion
    return m
  }

  /** The pooled line (updated in place) and what it was computed from (see #poolLine). */
  readonly #pool: { perToken: number; overhead: number } = { perToken: 0, overhead: 0 }
  #poolFit = -1
  #poolEngine: number | undefined
  #poolMeanUncached: number | undefined
  /** Counts changes of the pooled line's value: endpoint lines computed from an older one are stale. */
  #poolVersion = 0

  /** The line pooled over all endpoints (the priors, or the engines' TTFT, until samples come). */
  #poolLine(): Prefill {
    const p = this.#pool
    if (
      this.#poolVersion > 0 &&
      this.#poolFit === this.pool.version &&
      this.#poolEngine === this.engineTtftMs &&
      this.#poolMeanUncached === this.meanUncachedTokens
    ) {
      return p
    }
    const poolSlope = this.pool.slope(this.priors.prefillMsPerToken)
    const poolOverhead =
      this.pool.n > 0
        ? this.pool.intercept(poolSlope)
        : this.engineTtftMs !== undefined
          ? Math.max(0, this.engineTtftMs - poolSlope * (this.meanUncachedTokens ?? 0))
          : this.priors.overheadMs
    this.#poolFit = this.pool.version
    this.#poolEngine = this.engineTtftMs
    this.#poolMeanUncached = this.meanUncachedTokens
    if (this.#poolVersion > 0 && p.perToken === poolSlope && p.overhead === poolOverhead) return p
    p.perToken = poolSlope
    p.overhead = poolOverhead
    this.#poolVersion++
    return p
  }

  tpot(ep: EndpointState, now: number): number {
    return ep.tpot(now) ?? this.meanTpotMs ?? this.priors.decodeMsPerToken
  }

  /**
   * How long a request holds a batch slot on `ep` (ms): its prefill plus its decode. Used to turn
   * a queue position into a wait; `outputTokens` is the fallback before completions were seen.
   */
  slotMs(ep: EndpointState, now: number, p: Prefill, outputTokens: number): number {
    const u = this.meanUncachedTokens ?? 0
    const out = this.meanOutputTokens ?? outputTokens
    return p.overhead + u * p.perToken + out * this.tpot(ep, now)
  }

  /**
   * Requests ahead in the engine's queue → expected wait for a batch slot (ms). With `own` (the
   * endpoint's model) and every pending request one of this replica's own, the wait is when the
   * slot this request queues for frees: the engine admits first come first served, so the k-th
   * slot to free is held by the k-th oldest running request, which has `slotMs` minus its time
   * since admission left (`EndpointModel.admits`: a request that queued started late). A
   * batch whose requests are about to finish is then told apart from one that just filled.
   * Otherwise (other replicas' requests, unknown ages) the queue position over the batch size.
   */
  wait(pending: number, capacity: number, slotMs: number, own?: EndpointModel, now = 0): number {
    if (pending < capacity) return 0
    const q = pending - capacity
    if (own !== undefined && own.starts.length >= pending && capacity >= 1) {
      const left = own.slotLeft(q % capacity, capacity, slotMs, now)
      return (left + Math.floor(q / capacity) * slotMs) * this.waitScale
    }
    return ((q + 1) / capacity) * slotMs * this.waitScale
  }

  /** One request was dispatched with `uncached` tokens the prefix index did not hold. */
  dispatched(uncached: number): void {
    this.meanUncachedTokens = ewma(this.meanUncachedTokens, uncached)
  }

  /**
   * An answer came back. `ttftMs` only for streams (else the first byte is the whole answer);
   * `predicted` is what was predicted at dispatch for this endpoint.
   */
  observed(
    ep: EndpointState,
    predicted: {
      readonly uncached: number
      readonly waitMs: number
      /** False: the free slot was an assumption (see `observed`); default true. */
      readonly slotKnownFree?: boolean
    },
    o: { readonly ttftMs?: number; readonly tpotMs?: number; readonly completionTokens?: number },
  ): void {
    if (o.completionTokens !== undefined && o.completionTokens > 0) {
      this.meanOutputTokens = ewma(this.meanOutputTokens, o.completionTokens)
    }
    if (o.tpotMs !== undefined && o.tpotMs >= 0) this.meanTpotMs = ewma(this.meanTpotMs, o.tpotMs)
    const y = o.ttftMs
    if (y === undefined || !Number.isFinite(y) || y < 0) return
    if (predicted.waitMs <= 0) {
      // Dispatched with a free slot: the TTFT measures prefill (plus overheads) — but only if the
      // slot surely was free. A slot merely assumed free (batch limit not yet seen, a scrape
      // behind) may have meant queueing, and a queued TTFT taken for prefill inflates the line:
      // hundreds of ms of "overhead" on the pods that happened to queue, which then look slow
      // for the next 30 samples while the others are flooded.
      if (predicted.slotKnownFree === false) return
      // TTFT = prefill + queueing ≥ prefill: an answer far above the line is queueing the view
      // missed, not a slower GPU. Clamped, a truly slower engine still lifts the line within a
      // few samples.
      const p = this.prefill(ep)
      const line = p.overhead + predicted.uncached * p.perToken
      const v = this.pool.n >= CLAMP_AFTER_SAMPLES ? Math.min(y, CLAMP_FACTOR * line) : y
      this.of(ep).add(predicted.uncached, v)
      this.pool.add(predicted.uncached, v)
      return
    }
    if (predicted.waitMs < MIN_WAIT_SAMPLE_MS) return
    const p = this.prefill(ep)
    const queued = y - p.overhead - predicted.uncached * p.perToken
    const ratio = Math.min(WAIT_SCALE_MAX, Math.max(WAIT_SCALE_MIN, queued / predicted.waitMs))
    // The prediction already carried the old scale: move the scale by the ratio, not onto it.
    const target = Math.min(WAIT_SCALE_MAX, Math.max(WAIT_SCALE_MIN, this.waitScale * ratio))
    this.waitScale += EWMA_ALPHA * (target - this.waitScale)
    this.waitSamples++
  }
}

function ewma(prev: number | undefined, v: number): number {
  return prev === undefined ? v : prev + EWMA_ALPHA * (v - prev)
}
