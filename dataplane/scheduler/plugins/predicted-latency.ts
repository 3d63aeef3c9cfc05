// predicted-latency: send each request where its time to first token is expected to be lowest.
//
// Per candidate: predicted TTFT = overhead + uncached prompt tokens × prefill cost per token
// + wait for a batch slot (latency-model.ts), where
// - the uncached tokens are what the prefix index (the prefix-cache plugin's block tables and
//   prompt hashes, reused, recorded at dispatch) says the endpoint does not hold;
// - the wait is 0 while the engine has a free slot (pending < capacity), else the queue position
//   over the capacity times the time a request holds a slot. Pending is the engine's
//   running + waiting blended with this replica's dispatches since the scrape (state.ts); the
//   capacity is the batch limit learned from the engine (running while it also queued), else
//   `maxNumSeqs`, else the most it was seen running (at least 8);
// - overhead, prefill cost, TPOT and a correction of the queueing estimate are calibrated online
//   from the TTFT and TPOT observed per endpoint.
// So affinity wins exactly when the prefill it saves outweighs the queueing it adds: a cached pod
// with free slots is preferred, a cached pod at its batch limit only while its queue is shorter
// than the prefill elsewhere. With nothing cached anywhere it degrades to least-loaded: pods
// with free slots first, then the shortest queue.
//
// Replicas agree. Candidates whose prediction is within `tolerance` of the best (and at least
// one decode step, the engine's time granularity) count as equally good, and are ordered by
// weighted rendezvous hashing of the prompt's leading blocks and the pod name. The weight is the
// pod's free batch slots capped at half the batch (once full, 1 / (queued + 2)), divided by
// (1 + excess)² where excess is how far its pending count exceeds the least loaded candidate's
// beyond a quarter batch (at least 1). Replicas that never talk therefore put the same new prefix
// on the same pod, a one-request difference in their in-flight views moves few prefixes if any,
// and load still spreads: in proportion to headroom, steeply away from pods well ahead of the
// least loaded. A prefix no pod holds yet skips the band: it goes to its rendezvous home among
// the pods with a free slot, weighted by free slots alone (#placeCold), since the band's
// calibration and load terms differ between replicas and put a group's first request on a
// different pod in each. A prefix whose pod went down is re-homed with bounded load (#rehome):
// no survivor more than one move ahead of the least while their prefills run, room in KV caches
// preferred (a pod back from a restart takes its share again), and a request refused by a pod
// that died since the last scrape is retried on that same re-home.

import type { DispatchOutcome } from '../../picker.js'
import { intArg, numArg } from '../args.js'
import { rendezvous } from '../prompt.js'
import { Scratch } from '../scores.js'
import type { EndpointState } from '../state.js'
import type { Plugin, PluginArgs, PluginEnv, SchedRequest } from '../types.js'
import { type EndpointModel, LatencyModel, type Prefill } from './latency-model.js'
import { type AdapterNeed, adapterNeed, adapterNeeds } from './lora-affinity.js'
import { PrefixCachePlugin } from './prefix-cache.js'
import { groupWarm, lostGroups, pickRewarm, type RewarmTarget, type RewarmView } from './rewarm.js'

/** Batch slots assumed before the engine showed its limit and none was configured. */
export const ASSUMED_CAPACITY = 8
/** Best score outside the band of equally good candidates: below every score inside it. */
const OUT_OF_BAND_MAX = 0.85
/** Spread of scores inside the band (1 − this .. 1): every one above OUT_OF_BAND_MAX. */
const IN_BAND_SPREAD = 0.1
const HEADROOM_CAP = 0.5
const LOAD_SLACK = 0.25
/** How much a full KV cache lowers a pod's share of new prefixes (0 = not at all, 1 = to none). */
const ROOM_WEIGHT = 0.9
/**
 * Moves in flight a pod may have beyond the fewest and still take a displaced group (#rehome).
 * 0 spread a restarted pod's groups strictly one per survivor and ignored where they fit best;
 * 1 lets free slots and room in the KV cache choose among pods within one move of the least.
 */
const MOVES_SLACK = 1
/**
 * Hot groups (#replicate): request counts decay with this time constant (ms); a group gets no
 * rate (no copy) before it is HOT_MIN_AGE_MS old, so a few early requests close together do not
 * read as a hot group; groups tracked at most (least recently seen dropped).
 */
const HOT_TAU_MS = 5_000
const HOT_MIN_AGE_MS = 1_000
const HOT_GROUPS = 4_096
/** Copies started at most per second (token bucket, this many at once at most). */
const COPIES_PER_SECOND = 4
/**
 * Prefill interference (#interference): a request's prefill counts as backlog for the requests
 * sent to its pod after it while its uncached part is predicted at least this long (ms); below
 * it a hit request's TTFT is a no-backlog sample.
 */
const BACKLOG_MIN_MS = 20
/** Per-sample forgetting of the backlog samples (about the last 20 count). */
const INTERFERENCE_DECAY = 0.95
/**
 * Backlog samples (decayed) before the estimate is believed: one. They come only while cold
 * prefills run (a group's placement, a move, a copy), rare once the groups are placed; with 3,
 * 5 of 20 seeds had none before the first kill of the restart regime, and copies made late, for
 * some groups only, cost up to 2.2x off's TTFT p90 (virtual time, seed 20).
 */
const INTERFERENCE_MIN_SAMPLES = 1
/** At or above this share of a backlog showing in hit requests' TTFT, no hot-group copies. */
const INTERFERENCE_MAX = 0.5
/** EWMA weight of a no-backlog sample in the baseline residual. */
const BASELINE_ALPHA = 0.05

/** A prefix group's request rate as this replica sees it, and its copy (#replicate). */
export interface HotGroup {
  /** Requests, decayed with HOT_TAU_MS. */
  n: number
  /** When `n` was last decayed. */
  t: number
  readonly first: number
  /** A shadow making a copy of it is in flight. */
  copying: boolean
  /** The pod of its last copy, and when that copy's prefill should be done. */
  copyEp: EndpointState | undefined
  warmUntil: number
  /** The last kept prompt's blocks and tokens (keepGroup), what a re-warm records (rewarm.ts). */
  kept: { readonly hashes: Int32Array; readonly tokens: number } | undefined
}

/** Learning the time an adapter load adds (onComplete): EWMA weight, and the most one counts. */
const LORA_LOAD_ALPHA = 0.2
const LORA_LOAD_MAX_MS = 10_000
/** Smallest band (ms) when no TPOT is known at all. */
const MIN_TOLERANCE_MS = 1

/** Decisions kept for /debug/endpoints once it is read (at ~15 req/s, 4 s of them). */
const RECENT_DECISIONS = 64

/** One candidate of a recent decision: what was predicted for it. */
interface RecentCandidate {
  readonly name: string
  readonly pending: number
  readonly capacity: number
  /** Predicted wait for a batch slot (ms). */
  readonly waitMs: number
  /** Prefill the prefix index says this pod saves (cached tokens × prefill cost, ms). */
  readonly prefillSavedMs: number
  readonly ttftMs: number
  /** This plugin's score (0..1; above 0.85 = inside the band of equally good). */
  readonly score: number
}

interface RecentDecision {
  /** Counts decisions since recording began: a poller's key to skip the ones it has. */
  readonly seq: number
  /** The decision's clock (ms, the gateway's performance.now()). */
  readonly at: number
  readonly pick: string
  readonly candidates: readonly RecentCandidate[]
}

/** What the plugin predicted for the endpoint a request was dispatched to. */
interface Dispatched {
  readonly ep: EndpointState
  /** When it was sent (its entry in the endpoint model's `starts`). */
  readonly at: number
  readonly uncached: number
  readonly waitMs: number
  readonly slotKnownFree: boolean
  /**
   * Predicted prefill left (ms) of this replica's other-prefix requests and copies on the endpoint
   * at dispatch (#interference); undefined when copies are off.
   */
  readonly backlog?: number
  /** LoRA requests: what the adapter needed there (see #adapterMs). */
  readonly adapter?: AdapterNeed
  /** A move of a known prefix: counted in the endpoint model's `movesInFlight` until it ends. */
  readonly move: boolean
}

/** Prefix keys whose rendezvous draws are kept (#drawsWith; 2 × 8 bytes per endpoint slot each). */
const MAX_DRAW_KEYS = 512

/** log(u) of rendezvous draws for one prefix key by endpoint slot, and the name hash drawn for. */
interface Draws {
  /** -1: none drawn at this slot (name hashes are unsigned). */
  readonly nameHash: Float64Array
  readonly logU: Float64Array
}

function newDraws(slots: number): Draws {
  return { nameHash: new Float64Array(slots).fill(-1), logU: new Float64Array(slots) }
}

/** What a LoRA request's adapter needed on each candidate (by position in `eps`) when scored. */
interface Needs {
  readonly eps: readonly EndpointState[]
  readonly needs: readonly AdapterNeed[]
}

export interface Prediction {
  /** Predicted TTFT (ms). */
  readonly ttftMs: number
  readonly uncachedTokens: number
  /** Prompt tokens the prefix index says the endpoint holds (before `trust`). */
  readonly indexedTokens: number
  readonly waitMs: number
  readonly pending: number
  readonly capacity: number
}

export class PredictedLatencyPlugin implements Plugin {
  readonly name = 'predicted-latency'
  /** The prompt hashing and per-endpoint block tables of prefix-cache, reused as they are. */
  readonly index: PrefixCachePlugin
  readonly model: LatencyModel
  readonly maxNumSeqs: number
  readonly tolerance: number
  readonly affinityBlocks: number
  readonly #ttft = new Scratch()
  readonly #pending = new Scratch()
  readonly #capacity = new Scratch()
  readonly #weighted = new Scratch()
  readonly #waitMs = new Scratch()
  readonly #uncachedTokens = new Scratch()
  /** Scores of `single` when it scores in full (debug recording on): read by no one. */
  readonly #singleOut = new Scratch()
  /**
   * The last decisions' per-candidate predictions, for /debug/endpoints (bench:routing --trace):
   * recorded only once `debug` was read (--explain), so a gateway nobody inspects pays nothing.
   */
  #recent: RecentDecision[] | undefined
  #decisions = 0
  /** The decision scored last, waiting for its dispatch (recording only). */
  #scored: RecentDecision | undefined
  #scoredReq: SchedRequest | undefined
  /**
   * req.scratch key marking requests whose prefix some pod held at the decision, candidate or not
   * (see onDispatch). On the request, not in a WeakSet: each entry of one is an ephemeron the
   * garbage collector has to visit, one per request.
   */
  readonly #known = {}
  /**
   * The model of each candidate of the decision being scored, by position (#score fills it; #rehome,
   * called from it, reads it): six Map lookups per candidate were a third of this plugin's time.
   */
  readonly #models: (EndpointModel | undefined)[] = []
  /** req.scratch key of the adapter needs per candidate as scored (adapterNeeds), for onDispatch. */
  readonly #needs = {}
  /**
   * log(u) of rendezvous draws by prefix key, by endpoint slot (see #drawsWith): the band,
   * #placeCold, #rehome and #replicate weigh the same draws, and a group's requests repeat them.
   */
  readonly #draws = new Map<number, Draws>()
  #drawKey = 0
  #drawsOfKey: Draws | undefined
  /** Hot-group rates by prefix key, least recently seen first (#replicate). */
  readonly #groups = new Map<number, HotGroup>()
  /** Groups a dead or restarted engine held, waiting for a re-warm (plugins/rewarm.ts). */
  readonly #lost = new Set<number>()
  /** Re-warms started and ended with a 2xx (for /debug/endpoints). */
  #rewarmsStarted = 0
  #rewarmsOk = 0
  /** Copy tokens left (COPIES_PER_SECOND bucket) and when it was refilled. */
  #copyTokens = COPIES_PER_SECOND
  #copyRefill = Number.NEGATIVE_INFINITY
  /** Copies started and ended with a 2xx (for /debug/endpoints). */
  #copiesStarted = 0
  #copiesOk = 0
  /**
   * This replica's prefills in flight by endpoint, long enough to delay others' (BACKLOG_MIN_MS):
   * the prefix key and the predicted end (#interference).
   */
  readonly #prefills = new Map<EndpointState, { key: number; end: number }[]>()
  /** Hit requests' TTFT above the prefill line with no backlog ahead (EWMA, ms). */
  #baseResidual: number | undefined
  /** Decayed sums over the backlog samples: weight, backlog², backlog × excess residual. */
  #ifN = 0
  #ifBB = 0
  #ifBR = 0
  /**
   * A group whose own rate × a cold prefill reaches this many requests (arriving during one cold
   * prefill) gets a second warm copy, made by a shadow request (#replicate); 0 = never.
   */
  readonly hotCopyTheta: number

  constructor(args: PluginArgs) {
    this.index = new PrefixCachePlugin(args)
    this.affinityBlocks = this.index.affinityBlocks
    this.maxNumSeqs = intArg(args, 'maxNumSeqs', 0, 0, 1_000_000)
    this.tolerance = numArg(args, 'tolerance', 0.05, 0, 1)
    this.loraLoadMs = numArg(args, 'loraLoadMs', 100, 0, 60_000)
    this.hotCopyTheta = numArg(args, 'hotCopyTheta', 1, 0, 1_000)
    this.model = new LatencyModel({
      prefillMsPerToken: numArg(args, 'prefillMsPerToken', 0.1, 0, 100),
      overheadMs: numArg(args, 'overheadMs', 10, 0, 60_000),
      decodeMsPerToken: numArg(args, 'decodeMsPerToken', 20, 0, 10_000),
    })
  }

  /**
   * What loading a LoRA adapter adds to a request's TTFT (ms): the `loraLoadMs` prior, then
   * learned from requests sent where their adapter had to be loaded (onComplete).
   */
  loraLoadMs: number

  /**
   * The batch limit learned on any endpoint of this server: its pods run the same engine with the
   * same flags, so the first pod that shows its limit tells it for the others, which then need not
   * each be overfilled once to show it too. 0 = none learned yet.
   */
  pooledCapacity = 0

  /**
   * Batch slots of `ep`: learned from the engine, else configured, else learned on another pod
   * of the server, else the most seen running.
   * An engine queueing right now is full at what it runs, whatever its limit: a KV cache too full
   * for the next prompt stops admission below `max_num_seqs`.
   */
  capacity(ep: EndpointState, now: number): number {
    return this.#capacityOf(ep, this.model.peek(ep), now)
  }

  /** `capacity` of `ep` whose model (looked up by the caller) is `own`. */
  #capacityOf(ep: EndpointState, own: EndpointModel | undefined, now: number): number {
    const seen = own?.maxRunning ?? 0
    let c =
      ep.learnedCapacity > 0
        ? ep.learnedCapacity
        : this.maxNumSeqs > 0
          ? this.maxNumSeqs
          : this.pooledCapacity > 0
            ? Math.max(this.pooledCapacity, seen)
            : Math.max(ASSUMED_CAPACITY, seen)
    // The scrape's numbers as copied on the state (no read of the EngineMetrics object).
    if (ep.isFresh(now)) {
      const running = ep.scrapedRunning
      if (ep.scrapedWaiting > 0 && running > 0 && running < c && !ep.scrapedAdapterBound)
        c = running
    }
    return c
  }

  /**
   * Batch slots `ep` surely has: its learned or configured limit, else the most it was seen
   * running, and at least one (nothing pending: nothing to wait for). `capacity` may assume
   * more; calibration trusts only these.
   */
  knownSlots(ep: EndpointState): number {
    if (ep.learnedCapacity > 0) return ep.learnedCapacity
    if (this.maxNumSeqs > 0) return this.maxNumSeqs
    return Math.max(1, this.model.peek(ep)?.maxRunning ?? 0)
  }

  /** The prediction for one endpoint (tests, debug); `pendingOffset` excludes a just-sent request. */
  predict(req: SchedRequest, ep: EndpointState, pendingOffset = 0): Prediction {
    const hashes = this.index.hashes(req)
    const depth = hashes.length > 0 ? (this.index.matchDepths(hashes, [ep])[ep.slot] ?? 0) : 0
    const pending = Math.max(0, ep.pending(req.now) - pendingOffset)
    const capacity = this.capacity(ep, req.now)
    const p = this.model.prefill(ep)
    const uncachedTokens = this.#uncached(req, depth, ep)
    // Without this request's own start (it is in `pending` no more either).
    const m = this.model.peek(ep)
    const mine = m !== undefined && pendingOffset > 0 && m.starts.at(-1) === req.now
    const admit = mine ? m.admits.pop() : undefined
    if (mine) m.starts.pop()
    const own = this.#ages(req, ep, mine ? 1 : 0)
    const waitMs = this.model.wait(pending, capacity, this.#slotMs(req, ep, p), own, req.now)
    if (mine) {
      m.starts.push(req.now)
      m.admits.push(admit as number)
    }
    return {
      ttftMs: p.overhead + uncachedTokens * p.perToken + waitMs + this.#adapterMs(req, ep, p).ms,
      uncachedTokens,
      indexedTokens: Math.min(req.ticket.promptTokens, depth * this.index.blockTokens),
      waitMs,
      pending,
      capacity,
    }
  }

  score(req: SchedRequest, eps: readonly EndpointState[], out: Float64Array): boolean {
    const scored = this.#score(req, eps, out)
    if (scored && this.#recent !== undefined) this.#record(req, eps, out)
    return scored
  }

  #score(req: SchedRequest, eps: readonly EndpointState[], out: Float64Array): boolean {
    const n = eps.length
    const hashes = this.index.hashes(req)
    const blocks = hashes.length
    const match = blocks > 0 ? this.index.matchDepths(hashes, eps) : undefined
    const ttft = this.#ttft.get(n)
    const pending = this.#pending.get(n)
    const capacity = this.#capacity.get(n)
    const waits = this.#waitMs.get(n)
    const uncachedS = this.#uncachedTokens.get(n)
    const needs = adapterNeeds(req, eps)
    if (needs !== undefined) req.scratch.set(this.#needs, { eps, needs })
    const models = this.#refresh(req, eps)
    // A shared prefix's group (#keyOf), counted when copies are on.
    const groupKey = this.hotCopyTheta > 0 && req.lora === undefined ? this.#keyOf(req) : Number.NaN
    const group = Number.isNaN(groupKey) ? undefined : this.#group(groupKey, req.now)
    let best = Number.POSITIVE_INFINITY
    let minTpot = Number.POSITIVE_INFINITY
    for (let i = 0; i < n; i++) {
      const ep = eps[i] as EndpointState
      const own = models[i]
      const p = this.model.prefillOf(own)
      const pend = ep.pending(req.now)
      const cap = this.#capacityOf(ep, own, req.now)
      const depth = match === undefined ? 0 : (match[ep.slot] ?? 0)
      const uncached = this.#uncachedOf(req, depth, own)
      // With a free slot there is no wait (model.wait's first line): its slot time and the
      // requests' ages are not worked out for nothing.
      const wait =
        pend < cap
          ? 0
          : this.model.wait(
              pend,
              cap,
              this.#slotMs(req, ep, p),
              this.#agesOf(req, ep, own),
              req.now,
            )
      let adapter = 0
      if (needs !== undefined) adapter = this.#adapterCost(req, ep, p, needs[i] as AdapterNeed)
      let t = p.overhead + uncached * p.perToken + wait + adapter
      // A copy still being computed is a hit only once its prefill ends (the engine holds the
      // request until then).
      if (group?.copyEp === ep && req.now < group.warmUntil) t += group.warmUntil - req.now
      ttft[i] = t
      waits[i] = wait
      uncachedS[i] = uncached
      pending[i] = pend
      capacity[i] = cap
      const d = this.model.tpot(ep, req.now)
      if (t < best) best = t
      if (d < minTpot) minTpot = d
    }
    // Differences below one decode step, or `tolerance` of the prediction, are not signal.
    const band =
      best +
      Math.max(MIN_TOLERANCE_MS, this.tolerance * best, Number.isFinite(minTpot) ? minTpot : 0)
    // Among the equally good, weighted rendezvous (HRW) on this prompt's leading blocks, weighted
    // by headroom (see the header): the same order on every replica for the same prefix, a new
    // prefix lands on a pod with a probability proportional to its weight, and a small change in
    // one pod's load (another replica's in-flight) moves only a small share of prefixes.
    const key = blocks > 0 ? (hashes[Math.min(this.affinityBlocks, blocks) - 1] as number) : 0
    // A prefix no candidate holds goes to its rendezvous home (see #placeCold). Only prompts
    // longer than the key: a shorter one's key ends in its own last block, no shared prefix.
    const shared = blocks > this.affinityBlocks
    if (shared && match !== undefined) this.#markKnown(req, key, match, eps)
    // Not for an adapter's request: where its adapter is loaded matters more (#adapterMs).
    if (shared && req.lora === undefined && this.#placeCold(key, match, eps, out)) return true
    if (group !== undefined && match !== undefined) this.#replicate(req, group, key, match, eps)
    const weighted = this.#weighted.get(n)
    let minPending = Number.POSITIVE_INFINITY
    for (let i = 0; i < n; i++) {
      const pend = pending[i] as number
      if ((ttft[i] as number) <= band && pend < minPending) minPending = pend
    }
    let top = 0
    for (let i = 0; i < n; i++) {
      if ((ttft[i] as number) > band) continue
      const cap = capacity[i] as number
      const pend = pending[i] as number
      const free = cap - pend
      // Ahead of the least loaded by more than a quarter batch: a steeply smaller share.
      const over = Math.max(0, pend - minPending - Math.max(1, Math.round(cap * LOAD_SLACK)))
      // A full cache pays for a new prefix with another one's eviction (misses later): prefer
      // room, e.g. an engine that restarted empty, over one holding as much as it can.
      const ep = eps[i] as EndpointState
      const room = 1 - ROOM_WEIGHT * this.index.occupancy(ep)
      const w =
        ((free >= 1 ? Math.min(free, cap * HEADROOM_CAP) : 1 / (2 - free)) * room) / (1 + over) ** 2
      const v = -w / (this.#drawsWith(key, ep).logU[ep.slot] as number)
      weighted[i] = v
      if (v > top) top = v
    }
    for (let i = 0; i < n; i++) {
      const t = ttft[i] as number
      out[i] =
        t > band
          ? Math.min(OUT_OF_BAND_MAX, best / t)
          : 1 - IN_BAND_SPREAD * (1 - (weighted[i] as number) / top)
    }
    if (shared) this.#orderFallbacks(key, match, eps, best, band, out)
    return true
  }

  /** The per-candidate models array, `n` long. */
  #sizedModels(n: number): (EndpointModel | undefined)[] {
    const models = this.#models
    // Only when it differs: the length setter runs even for the same value (0.3-0.4 % of a
    // 64-endpoint decision in a CPU profile).
    if (models.length !== n) models.length = n
    return models
  }

  /**
   * Each candidate's model, looked up once for the decision (#models), and refreshed from the
   * candidates' last scrapes: the batch limit seen, the engine's hit rate, its fastest TTFT.
   */
  #refresh(req: SchedRequest, eps: readonly EndpointState[]): (EndpointModel | undefined)[] {
    const n = eps.length
    let engineTtft = Number.POSITIVE_INFINITY
    const models = this.#sizedModels(n)
    for (let i = 0; i < n; i++) {
      const ep = eps[i] as EndpointState
      // The scrape's numbers as copied on the state (no read of the EngineMetrics object).
      if (!ep.isFresh(req.now)) {
        models[i] = this.model.peek(ep)
        continue
      }
      if (ep.learnedCapacity > this.pooledCapacity) this.pooledCapacity = ep.learnedCapacity
      const running = ep.scrapedRunning
      const own = running > 0 ? this.model.of(ep) : this.model.peek(ep)
      models[i] = own
      if (own !== undefined) {
        if (running > own.maxRunning) own.maxRunning = running
        own.scraped(ep.scrapedAt, ep.scrapedHitRate)
      }
      const ttftSec = ep.scrapedTtftSec
      if (ttftSec !== undefined && ttftSec * 1000 < engineTtft) engineTtft = ttftSec * 1000
    }
    this.model.engineTtftMs = Number.isFinite(engineTtft) ? engineTtft : undefined
    return models
  }

  /**
   * One candidate (Plugin.single): what #score does besides scoring. The candidate's model
   * refreshed from its scrape (#refresh), the request counted in its prefix's hot group, and what
   * its dispatch reads: the adapter need, and whether some pod held the prefix (a move). Not the
   * predictions, the band, the draws nor the placements: they only order candidates, and a copy
   * needs a second candidate (#replicate). With decisions recorded for debug, scored in full.
   */
  single(req: SchedRequest, eps: readonly EndpointState[]): void {
    if (this.#recent !== undefined) {
      this.score(req, eps, this.#singleOut.get(eps.length))
      return
    }
    const needs = adapterNeeds(req, eps)
    if (needs !== undefined) req.scratch.set(this.#needs, { eps, needs })
    this.#refresh(req, eps)
    if (this.hotCopyTheta > 0 && req.lora === undefined) {
      const groupKey = this.#keyOf(req)
      if (!Number.isNaN(groupKey)) this.#group(groupKey, req.now)
    }
    const hashes = this.index.hashes(req)
    if (hashes.length > this.affinityBlocks) {
      const key = hashes[this.affinityBlocks - 1] as number
      this.#markKnown(req, key, this.index.matchDepths(hashes, eps), eps)
    }
  }

  /**
   * Marks the request's prefix as known (its dispatch reads it as a move, not a new prefix) when a
   * candidate holds its key's blocks or a pod outside the candidates does.
   */
  #markKnown(
    req: SchedRequest,
    key: number,
    match: ArrayLike<number>,
    eps: readonly EndpointState[],
  ): void {
    let held = false
    for (const ep of eps) if ((match[ep.slot] ?? 0) >= this.affinityBlocks) held = true
    if (held || this.index.heldOutside(key, eps)) req.scratch.set(this.#known, true)
  }

  /** The group of prefix `key`, this request counted (most recently seen last). */
  #group(key: number, now: number): HotGroup {
    let g = this.#groups.get(key)
    if (g === undefined) {
      g = {
        n: 0,
        t: now,
        first: now,
        copying: false,
        copyEp: undefined,
        warmUntil: 0,
        kept: undefined,
      }
      if (this.#groups.size >= HOT_GROUPS) {
        const oldest = this.#groups.keys().next()
        if (oldest.done !== true) this.#groups.delete(oldest.value)
      }
    } else this.#groups.delete(key)
    this.#groups.set(key, g)
    g.n = g.n * Math.exp(-(now - g.t) / HOT_TAU_MS) + 1
    g.t = now
    return g
  }

  /** The engine behind `ep` went out of rotation (ejected): its groups may need a re-warm. */
  onEndpointDown(ep: EndpointState, now: number): void {
    lostGroups(this.#rewarmView(), ep, now)
  }

  /** The request's group key when its prompt is worth keeping for a re-warm (rewarm.ts). */
  keepGroup(req: SchedRequest): number | undefined {
    if (this.hotCopyTheta <= 0 || req.lora !== undefined) return undefined
    const key = this.#keyOf(req)
    const g = Number.isNaN(key) ? undefined : this.#groups.get(key)
    if (g === undefined || !groupWarm(g, req.now, HOT_TAU_MS)) return undefined
    g.kept = { hashes: this.index.hashes(req).slice(), tokens: req.ticket.promptTokens }
    // This request is the group's re-home (placed by #rehome as it lost its pod): no re-warm.
    this.#lost.delete(key)
    return key
  }

  /** Whether any group waits for a re-warm: false on almost every pick (no engine died lately). */
  get rewarmPending(): boolean {
    return this.#lost.size > 0
  }

  /** The blocks kept for group `key` (keepGroup), for the other workers (Scheduler.rewarm). */
  keptBlocks(key: number): Int32Array | undefined {
    return this.#groups.get(key)?.kept?.hashes
  }

  /** One re-warm of a lost group among `eps` (live candidates), or undefined (rewarm.ts). */
  planRewarm(
    eps: readonly EndpointState[],
    now: number,
    has: (group: number) => boolean,
  ): RewarmTarget | undefined {
    const n = eps.length
    if (n < 2 || this.#lost.size === 0) return undefined
    // #rehome reads pending, capacity and each candidate's model by position: filled for `eps`.
    const pending = this.#pending.get(n)
    const capacity = this.#capacity.get(n)
    const models = this.#sizedModels(n)
    for (let i = 0; i < n; i++) {
      const ep = eps[i] as EndpointState
      const own = this.model.peek(ep)
      models[i] = own
      pending[i] = ep.pending(now)
      capacity[i] = this.#capacityOf(ep, own, now)
    }
    return pickRewarm(this.#rewarmView(), eps, now, has, (key, match) =>
      this.#rehome(key, match, eps),
    )
  }

  /** What rewarm.ts reads and updates of this plugin's state. */
  #rewarmView(): RewarmView {
    return {
      groups: this.#groups,
      lost: this.#lost,
      index: this.index,
      affinityBlocks: this.affinityBlocks,
      tauMs: HOT_TAU_MS,
      coldMs: (ep, tokens) => {
        const p = this.model.prefill(ep)
        return p.overhead + tokens * p.perToken
      },
      started: (ep, key, g, at, cold) => {
        this.#rewarmsStarted++
        g.copying = true
        g.copyEp = ep
        g.warmUntil = at + cold
        this.#prefillStarted(ep, key, at + cold)
        // A move of the group: #rehome bounds those in flight per pod.
        this.model.of(ep).movesInFlight++
      },
      ended: (ep, g, ok) => {
        g.copying = false
        if (ok) this.#rewarmsOk++
        const own = this.model.peek(ep)
        if (own !== undefined && own.movesInFlight > 0) own.movesInFlight--
      },
    }
  }

  /**
   * Hot groups get a second warm copy, made by a shadow request (req.mirror; the caller sends the
   * prompt with one output token and drops the answer). Why: when the engine holding a group goes
   * down (a container restart), the group's next request pays a cold prefill on another pod and
   * its requests arriving meanwhile wait for it; with a copy elsewhere they hit. A group is hot
   * when its own rate (as this replica sees it, from HOT_MIN_AGE_MS of age on) × a cold prefill on
   * the copy's pod reaches `hotCopyTheta`: a request would arrive during such a prefill. Only
   * while exactly one candidate holds it (a lost copy is made again once its pod is gone), one
   * copy in flight per group, COPIES_PER_SECOND at most. The copy's pod: among the pods with a
   * free batch slot that do not hold it and are not ejected, by rendezvous on the group's key
   * weighted by free slots (as #placeCold), so replicas that decide to copy pick the same pod.
   * Only once the engines are measured not to hold a request up behind other prefills
   * (prefillInterference below INTERFERENCE_MAX): where they do, a copy's prefill delays everyone
   * sent to its pod meanwhile (virtual time, 40 % load: fresh TTFT p90 up to 13.5x without copies).
   * Copies made by client requests instead (the next request sent cold to the copy's pod) did not
   * pay: each waited a cold prefill, and every kill displaced twice the groups (docs/scheduling.md).
   */
  #replicate(
    req: SchedRequest,
    g: HotGroup,
    key: number,
    match: ArrayLike<number>,
    eps: readonly EndpointState[],
  ): void {
    const now = req.now
    const age = Math.min(HOT_TAU_MS, now - g.first)
    if (g.copying || age < HOT_MIN_AGE_MS) return
    const n = eps.length
    const pending = this.#pending.get(n)
    const capacity = this.#capacity.get(n)
    let holders = 0
    let target = -1
    let top = 0
    for (let i = 0; i < n; i++) {
      const ep = eps[i] as EndpointState
      if ((match[ep.slot] ?? 0) >= this.affinityBlocks) {
        holders++
        continue
      }
      const cap = capacity[i] as number
      const free = cap - (pending[i] as number)
      if (free < 1 || ep.isEjected(now)) continue
      const v =
        -Math.min(free, cap * HEADROOM_CAP) / (this.#drawsWith(key, ep).logU[ep.slot] as number)
      if (v > top) {
        top = v
        target = i
      }
    }
    if (holders !== 1 || target < 0) return
    // The group's requests per ms (this one not counted: it is the one looking) × the cold
    // prefill on the copy's pod (its predicted TTFT without the wait for a slot).
    const cold = (this.#ttft.get(n)[target] as number) - (this.#waitMs.get(n)[target] as number)
    if (((g.n - 1) / age) * cold < this.hotCopyTheta) return
    // An engine whose prefills hold up its other requests pays a copy with the TTFT of everyone
    // sent to the copy's pod during its prefill, for a gain only if the holder dies: copies only
    // once the engines are seen not to (unknown is not safe: one copy on such an engine can tip
    // its pod into a queue it does not leave).
    const kappa = this.prefillInterference()
    if (kappa === undefined || kappa >= INTERFERENCE_MAX) return
    if (this.#copyTokensAt(now) < 1) return
    const ep = eps[target] as EndpointState
    req.mirror = {
      ep,
      started: (at) => {
        this.#copyTokens = this.#copyTokensAt(at) - 1
        this.#copiesStarted++
        g.copying = true
        g.copyEp = ep
        g.warmUntil = at + cold
        this.#prefillStarted(ep, key, at + cold)
        // Recorded as a dispatch is: the group's next requests see the copy at once.
        this.index.onDispatch(req, ep)
      },
      ended: (ok) => {
        g.copying = false
        if (ok) this.#copiesOk++
      },
    }
  }

  /**
   * How much of the prefill work ahead on a pod shows in a hit request's TTFT there (0..~1;
   * undefined until INTERFERENCE_MIN_SAMPLES backlog samples). An engine that computes prompts
   * between decode steps (vLLM without chunked prefill; the simulator's prefillInterference) makes
   * a request wait for the prefills scheduled before its own: ~1. One that overlaps them (the
   * simulator's default model) does not: ~0. Measured on this replica's own traffic: a hit
   * request sent with a free batch slot (its TTFT is its short prefill) while other prefixes'
   * prefills this replica sent there were still predicted to run (the backlog), its TTFT's excess
   * over the prefill line beyond the no-backlog baseline, regressed on the backlog through the
   * origin. Requests of the same prefix are not backlog: they wait for the blocks that prefill
   * computes whatever the engine.
   */
  prefillInterference(): number | undefined {
    return this.#ifN >= INTERFERENCE_MIN_SAMPLES && this.#ifBB > 0
      ? this.#ifBR / this.#ifBB
      : undefined
  }

  /** A completed request's sample for prefillInterference (only hits sent with a free slot). */
  #interference(ep: EndpointState, rec: Dispatched, ttftMs: number): void {
    const b = rec.backlog as number
    if (Number.isNaN(b) || rec.waitMs > 0 || !rec.slotKnownFree) return
    if (rec.uncached >= this.affinityBlocks * this.index.blockTokens) return
    const p = this.model.prefill(ep)
    const r = ttftMs - p.overhead - rec.uncached * p.perToken
    if (b < BACKLOG_MIN_MS) {
      this.#baseResidual =
        this.#baseResidual === undefined
          ? r
          : this.#baseResidual + BASELINE_ALPHA * (r - this.#baseResidual)
      return
    }
    this.#ifN = this.#ifN * INTERFERENCE_DECAY + 1
    this.#ifBB = this.#ifBB * INTERFERENCE_DECAY + b * b
    this.#ifBR = this.#ifBR * INTERFERENCE_DECAY + b * (r - (this.#baseResidual ?? 0))
  }

  /**
   * The prefix key of a request (its group's, for hot-group copies and the backlog of
   * prefills), NaN for a prompt no longer than it (no group).
   */
  #keyOf(req: SchedRequest): number {
    const hashes = this.index.hashes(req)
    return hashes.length > this.affinityBlocks
      ? (hashes[this.affinityBlocks - 1] as number)
      : Number.NaN
  }

  /**
   * Predicted prefill left (ms) on `ep` of prefixes other than `key` (ended ones dropped); NaN
   * while a prefill of `key` itself runs there: the request then waits for its blocks whatever
   * the engine, and says nothing about interference.
   */
  #backlog(ep: EndpointState, key: number, now: number): number {
    const list = this.#prefills.get(ep)
    if (list === undefined) return 0
    let b = 0
    let keep = 0
    for (const x of list) {
      if (x.end <= now) continue
      list[keep++] = x
      b += x.key === key ? Number.NaN : x.end - now
    }
    list.length = keep
    return b
  }

  #prefillStarted(ep: EndpointState, key: number, end: number): void {
    const list = this.#prefills.get(ep)
    if (list === undefined) this.#prefills.set(ep, [{ key, end }])
    else list.push({ key, end })
  }

  /** Copy tokens available at `now` (the bucket refilled, not taken). */
  #copyTokensAt(now: number): number {
    const t = Math.min(
      COPIES_PER_SECOND,
      this.#copyTokens + ((now - this.#copyRefill) * COPIES_PER_SECOND) / 1000,
    )
    this.#copyTokens = t
    this.#copyRefill = now
    return t
  }

  /**
   * The retry order after the pods that hold this prefix: if they refuse (an engine that went
   * down since the last scrape), the request goes where the prefix will be re-homed once they
   * are known to be down (#placeCold, displaced), so the group's later requests find it computed
   * there instead of each paying a cold prefill somewhere else. Only pods that do not hold it and
   * lie outside the band; their predicted TTFTs are the same cold prefill up to calibration noise.
   */
  #orderFallbacks(
    key: number,
    match: ArrayLike<number> | undefined,
    eps: readonly EndpointState[],
    best: number,
    band: number,
    out: Float64Array,
  ): void {
    if (match === undefined) return
    const n = eps.length
    const ttft = this.#ttft.get(n)
    let held = false
    let coldBest = Number.POSITIVE_INFINITY
    for (let i = 0; i < n; i++) {
      const ep = eps[i] as EndpointState
      if ((match[ep.slot] ?? 0) >= this.affinityBlocks) held = true
      else if ((ttft[i] as number) <= band) return
      else if ((ttft[i] as number) < coldBest) coldBest = ttft[i] as number
    }
    if (!held || !Number.isFinite(coldBest)) return
    const hrw = this.#rehome(key, match, eps)
    if (hrw === undefined) return
    let top = 0
    for (let i = 0; i < n; i++) if ((hrw[i] as number) > top) top = hrw[i] as number
    // Below every in-band score, the re-home first, then the others by their prediction.
    const base = Math.min(OUT_OF_BAND_MAX, best / coldBest)
    for (let i = 0; i < n; i++) {
      const ep = eps[i] as EndpointState
      if ((match[ep.slot] ?? 0) >= this.affinityBlocks) continue
      const v = hrw[i] as number
      out[i] = v > 0 ? base * (1 - 0.05 * (1 - v / top)) : Math.min(0.9 * base, out[i] as number)
    }
  }

  /**
   * Weights of the pods a prefix that lost its home is moved to (0 = not one of them): those
   * with a free batch slot and, among them, at most MOVES_SLACK more such moves in flight than
   * the fewest (bounded load: the displaced groups of a pod spread over the others instead of
   * three or four landing on one by rendezvous chance — each move's prefill holds its group's
   * next requests in batch slots there, and a pod taking several overflows its own groups), by
   * rendezvous weighted by free slots (as #placeCold) and room in the KV cache (as the band).
   * The slack lets room weigh: a pod back empty from a restart takes two moves to another's one,
   * so the groups a second restart displaces mostly return to it and the fleet ends balanced,
   * where strictly one each left the survivors hosting most groups for good (virtual time,
   * regimes-restart.test.ts: seeds 30-49 within 10 % of fresh 11 of 20 → 17; rate-weighting
   * the moves by each group's recent request rate was tried on top and gained nothing more).
   * Undefined when no pod qualifies.
   */
  #rehome(
    key: number,
    match: ArrayLike<number>,
    eps: readonly EndpointState[],
  ): Float64Array | undefined {
    const n = eps.length
    const pending = this.#pending.get(n)
    const capacity = this.#capacity.get(n)
    const hrw = this.#weighted.get(n)
    // First pass: each eligible pod's moves in flight (in hrw, -1 = not eligible), the fewest.
    let fewest = Number.POSITIVE_INFINITY
    for (let i = 0; i < n; i++) {
      const ep = eps[i] as EndpointState
      hrw[i] = -1
      if ((match[ep.slot] ?? 0) >= this.affinityBlocks) continue
      if ((pending[i] as number) >= (capacity[i] as number)) continue
      const m = this.#models[i]?.movesInFlight ?? 0
      hrw[i] = m
      if (m < fewest) fewest = m
    }
    if (!Number.isFinite(fewest)) return undefined
    for (let i = 0; i < n; i++) {
      const ep = eps[i] as EndpointState
      const moves = hrw[i] as number
      hrw[i] = 0
      if (moves < 0 || moves > fewest + MOVES_SLACK) continue
      const cap = capacity[i] as number
      const free = cap - (pending[i] as number)
      // Room in its KV cache as in the band: a pod that restarted empty takes moves before one
      // that must evict another group for them.
      const room = 1 - ROOM_WEIGHT * this.index.occupancy(ep)
      hrw[i] =
        (-Math.min(free, cap * HEADROOM_CAP) * room) /
        (this.#drawsWith(key, ep).logU[ep.slot] as number)
    }
    return hrw
  }

  /**
   * A prefix that no candidate holds (as far as this replica's index knows: fewer than
   * `affinityBlocks` of its leading blocks anywhere) goes to its rendezvous home among the pods
   * with a free batch slot, weighted only by free slots capped at half the batch. Not by the
   * calibrated prefill cost, nor by the load and cache-room terms of the band below: those differ
   * between replicas (each sees its own in-flight requests and its own index; each calibrates
   * from TTFTs that include hits on prefixes the others placed, so a pod where another replica
   * put many groups looks 2–4× faster to prefill), and with them the first request of a group
   * went to a different pod in each replica, each paying its own cold prefill (3 replicas on
   * virtual time: first placements of 1–6 of 16 groups agreed; prefix hit 77–79 % vs 85 % with
   * one replica). With pods of plenty of room the home is the same on every replica, so the
   * others' first request of a group finds what the first one cached. Pods without a free slot
   * score out of the band; with no free slot anywhere, or a prefix some pod holds, the band
   * below decides. Returns false when it does not apply. Cost: a pod with a slower GPU and a free
   * slot is not avoided here for a new prefix (gpu-aware weighs GPU types).
   */
  #placeCold(
    key: number,
    match: ArrayLike<number> | undefined,
    eps: readonly EndpointState[],
    out: Float64Array,
  ): boolean {
    const n = eps.length
    if (match !== undefined) {
      for (const ep of eps) if ((match[ep.slot] ?? 0) >= this.affinityBlocks) return false
    }
    const ttft = this.#ttft.get(n)
    const pending = this.#pending.get(n)
    const capacity = this.#capacity.get(n)
    let hrw: Float64Array | undefined
    // A prefix whose pod is down (ejected, filtered out): re-homed with bounded load (#rehome).
    if (match !== undefined && this.index.heldOutside(key, eps)) hrw = this.#rehome(key, match, eps)
    if (hrw === undefined) {
      hrw = this.#weighted.get(n)
      for (let i = 0; i < n; i++) {
        hrw[i] = 0
        if ((pending[i] as number) >= (capacity[i] as number)) continue
        // Free slots capped at half the batch: pods with plenty of room are alike.
        const cap = capacity[i] as number
        const ep = eps[i] as EndpointState
        hrw[i] =
          -Math.min(cap - (pending[i] as number), cap * HEADROOM_CAP) /
          (this.#drawsWith(key, ep).logU[ep.slot] as number)
      }
    }
    let top = 0
    let bestFree = Number.POSITIVE_INFINITY
    for (let i = 0; i < n; i++) {
      const v = hrw[i] as number
      if (v <= 0) continue
      if (v > top) top = v
      if ((ttft[i] as number) < bestFree) bestFree = ttft[i] as number
    }
    if (top === 0) return false
    for (let i = 0; i < n; i++) {
      const v = hrw[i] as number
      out[i] =
        v > 0
          ? 1 - IN_BAND_SPREAD * (1 - v / top)
          : Math.min(OUT_OF_BAND_MAX, bestFree / (ttft[i] as number))
    }
    return true
  }

  /** Keeps this decision's per-candidate predictions until its dispatch (see #recent). */
  #record(req: SchedRequest, eps: readonly EndpointState[], out: Float64Array): void {
    const n = eps.length
    const ttft = this.#ttft.get(n)
    const pending = this.#pending.get(n)
    const capacity = this.#capacity.get(n)
    const waits = this.#waitMs.get(n)
    const uncachedS = this.#uncachedTokens.get(n)
    const candidates: RecentCandidate[] = []
    for (let i = 0; i < n; i++) {
      const ep = eps[i] as EndpointState
      const p = this.model.prefill(ep)
      const uncached = uncachedS[i] as number
      candidates.push({
        name: ep.name,
        pending: pending[i] as number,
        capacity: capacity[i] as number,
        waitMs: round(waits[i] as number, 1),
        prefillSavedMs: round((req.ticket.promptTokens - uncached) * p.perToken, 1),
        ttftMs: round(ttft[i] as number, 1),
        score: round(out[i] as number, 3),
      })
    }
    this.#scored = { seq: 0, at: round(req.now, 1), pick: '', candidates }
    this.#scoredReq = req
  }

  onDispatch(req: SchedRequest, ep: EndpointState): void {
    const scored = this.#scored
    if (this.#recent !== undefined && scored !== undefined && this.#scoredReq === req) {
      this.#scored = undefined
      this.#scoredReq = undefined
      this.#recent.push({ ...scored, seq: ++this.#decisions, pick: ep.name })
      if (this.#recent.length > RECENT_DECISIONS) this.#recent.shift()
    }
    const own = this.model.of(ep)
    // Admitted now if this replica's requests there leave a batch slot, else queued (see admits).
    own.started(req.now, this.capacity(ep, req.now))
    // The scheduler counted this request in the endpoint's pending already: predict without it.
    const p = this.predict(req, ep, 1)
    // A prefix some pod held (candidate or not) sent where it is not held: a move, whose prefill
    // draws the group's next requests here (#rehome counts them).
    const move =
      p.indexedTokens < this.affinityBlocks * this.index.blockTokens &&
      req.scratch.get(this.#known) === true
    if (move) own.movesInFlight++
    // As scored: this request is in the endpoint's in-flight adapters by now.
    const scoredNeeds = req.scratch.get(this.#needs) as Needs | undefined
    const adapter = scoredNeeds?.needs[scoredNeeds.eps.indexOf(ep)]
    let backlog: number | undefined
    if (this.hotCopyTheta > 0 && req.lora === undefined) {
      const key = this.#keyOf(req)
      backlog = this.#backlog(ep, key, req.now)
      if (p.uncachedTokens * this.model.prefill(ep).perToken >= BACKLOG_MIN_MS) {
        this.#prefillStarted(ep, key, req.now + p.ttftMs)
      }
    }
    const rec: Dispatched = {
      ep,
      move,
      at: req.now,
      uncached: p.uncachedTokens,
      waitMs: p.waitMs,
      slotKnownFree: p.pending < this.knownSlots(ep),
      ...(backlog !== undefined ? { backlog } : {}),
      ...(adapter !== undefined ? { adapter } : {}),
    }
    req.scratch.set(this, rec)
    this.model.dispatched(p.uncachedTokens)
    // What the index (untrusted) promised, for the next scrape's hit rate to confirm or not.
    own.predQuery += req.ticket.promptTokens
    own.predHit += p.indexedTokens
    this.index.onDispatch(req, ep)
  }

  blocksOf(req: SchedRequest): ArrayLike<number> {
    return this.index.hashes(req)
  }

  recordPeer(ep: EndpointState, hashes: ArrayLike<number>): void {
    this.index.record(ep, hashes)
  }

  onComplete(req: SchedRequest, ep: EndpointState, o: DispatchOutcome): void {
    // The index learns how many engine tokens its blocks are (prefix-cache #learn).
    this.index.onComplete(req, ep, o)
    const rec = req.scratch.get(this) as Dispatched | undefined
    if (rec === undefined || rec.ep !== ep) return
    const own = this.model.peek(ep)
    own?.ended(rec.at, rec.at + o.durationMs, this.capacity(ep, rec.at + o.durationMs))
    if (rec.move && own !== undefined && own.movesInFlight > 0) own.movesInFlight--
    if (o.failure !== undefined || o.status < 200 || o.status >= 300) return
    if (rec.adapter !== undefined && rec.adapter !== 'resident') {
      // Its TTFT includes loading the adapter: not a prefill or queueing sample. Sent to a free
      // batch slot with no adapter to wait for, the excess over the prefill line is the load.
      const y = req.ticket.stream ? o.firstByteMs : undefined
      if (y !== undefined && rec.adapter !== 'blocked' && rec.waitMs <= 0 && rec.slotKnownFree) {
        const p = this.model.prefill(ep)
        const load = Math.min(
          LORA_LOAD_MAX_MS,
          Math.max(0, y - p.overhead - rec.uncached * p.perToken),
        )
        this.loraLoadMs += LORA_LOAD_ALPHA * (load - this.loraLoadMs)
      }
      return
    }
    // Only a stream's first byte is its first token; a plain response's is the whole answer.
    const stream = req.ticket.stream && o.firstByteMs !== undefined
    const tokens = o.completionTokens
    // Before the line learns from this answer: the residual is against what was predicted.
    if (stream && rec.backlog !== undefined) this.#interference(ep, rec, o.firstByteMs as number)
    this.model.observed(ep, rec, {
      ...(stream ? { ttftMs: o.firstByteMs } : {}),
      ...(stream && tokens !== undefined && tokens > 1
        ? { tpotMs: (o.durationMs - (o.firstByteMs as number)) / (tokens - 1) }
        : {}),
      ...(tokens !== undefined ? { completionTokens: tokens } : {}),
    })
  }

  forget(ep: EndpointState): void {
    this.index.forget(ep)
    this.model.forget(ep)
    this.#prefills.delete(ep)
  }

  /** The engine restarted: its KV cache is empty and what was learned of it may not hold. */
  onEndpointReset(ep: EndpointState, now?: number): void {
    if (now !== undefined) lostGroups(this.#rewarmView(), ep, now)
    this.forget(ep)
  }

  debug(now: number): Record<string, unknown> {
    const recent = this.#recent ?? []
    this.#recent ??= []
    const interference = this.prefillInterference()
    const endpoints: Record<string, unknown> = {}
    for (const [ep, m] of this.model.endpoints) {
      const p = this.model.prefill(ep)
      endpoints[ep.name] = {
        prefillMsPerToken: round(p.perToken, 4),
        overheadMs: round(p.overhead, 1),
        tpotMs: round(this.model.tpot(ep, now), 2),
        samples: round(m.fit.n, 1),
        prefixTrust: round(m.trust, 2),
        capacity: this.capacity(ep, now),
        pending: ep.pending(now),
        movesInFlight: m.movesInFlight,
      }
    }
    return {
      prefix: {
        blockChars: this.index.blockChars,
        blocksPerEndpoint: this.index.debug()['blocksPerEndpoint'],
        tokensPerBlock: round(this.index.tokensPerBlock, 2),
      },
      hotCopies: {
        theta: this.hotCopyTheta,
        groups: this.#groups.size,
        started: this.#copiesStarted,
        ok: this.#copiesOk,
        interference: interference === undefined ? null : round(interference, 2),
      },
      rewarms: { started: this.#rewarmsStarted, ok: this.#rewarmsOk, lost: this.#lost.size },
      waitScale: round(this.model.waitScale, 3),
      meanOutputTokens: roundOrNull(this.model.meanOutputTokens),
      meanUncachedTokens: roundOrNull(this.model.meanUncachedTokens),
      endpoints,
      recentDecisions: recent.slice(),
    }
  }

  /**
   * The endpoint's model when its `starts` are exactly this replica's requests in flight there
   * (else undefined: the wait falls back to counting). Another server's requests to the same pod,
   * or an answer never reported, must not pass for ages. Not for adapter requests: an engine
   * admits those out of order (one whose adapter cannot get a slot is skipped), so the oldest
   * request is not the next to leave and the wait includes loading the adapter.
   */
  #ages(req: SchedRequest, ep: EndpointState, offset = 0): EndpointModel | undefined {
    return this.#agesOf(req, ep, this.model.peek(ep), offset)
  }

  /** `#ages` of `ep` whose model (looked up by the caller) is `own`. */
  #agesOf(
    req: SchedRequest,
    ep: EndpointState,
    own: EndpointModel | undefined,
    offset = 0,
  ): EndpointModel | undefined {
    if (req.lora !== undefined) return undefined
    return own !== undefined && own.starts.length === ep.inFlight - offset ? own : undefined
  }

  /** Prompt tokens `ep` will have to prefill: what the index says it holds, as far as trusted. */
  #uncached(req: SchedRequest, depth: number, ep: EndpointState): number {
    return this.#uncachedOf(req, depth, this.model.peek(ep))
  }

  /** `#uncached` on an endpoint whose model (looked up by the caller) is `own`. */
  #uncachedOf(req: SchedRequest, depth: number, own: EndpointModel | undefined): number {
    const cached = Math.min(req.ticket.promptTokens, depth * this.index.blockTokens)
    return req.ticket.promptTokens - cached * (own?.trust ?? 1)
  }

  /**
   * The adapter's part of a LoRA request's TTFT on `ep` (0 for base-model requests): nothing where
   * it is resident, a load where a slot is free, a load and the evicted adapter's reload where an
   * idle one must go (evictions cascade when each is taken for free: the evicted adapter's next
   * request must then load it somewhere, evicting another), and with every slot's adapter busy
   * also a request's slot time (the engine skips the request until one of them drains; it can
   * starve behind their traffic, so this is a floor).
   */
  #adapterMs(req: SchedRequest, ep: EndpointState, p: Prefill): { ms: number; need: AdapterNeed } {
    if (req.lora === undefined) return { ms: 0, need: 'resident' }
    const need = adapterNeed(ep, req.lora, req.now)
    return { ms: this.#adapterCost(req, ep, p, need), need }
  }

  /** The ms of `#adapterMs` for what the adapter needs (`need`, found by the caller). */
  #adapterCost(req: SchedRequest, ep: EndpointState, p: Prefill, need: AdapterNeed): number {
    const load = this.loraLoadMs
    return need === 'resident'
      ? 0
      : need === 'freeSlot'
        ? load
        : need === 'evictIdle'
          ? 2 * load
          : 2 * load + this.#slotMs(req, ep, p)
  }

  /**
   * The draws of `key` with `ep`'s filled in: log(u) of its rendezvous draw (u in (0, 1)) is
   * `.logU[ep.slot]`, read it at once (a later call may replace the arrays). It depends on the key
   * and the pod's name hash only, so it is kept per key and slot (checked against the name hash
   * there): Math.log was the costliest line of a decision, taken up to three times per candidate.
   * The arrays are handed out rather than the number: a number returned from here came back boxed,
   * a HeapNumber per candidate and use (~0.8 KiB per decision).
   */
  #drawsWith(key: number, ep: EndpointState): Draws {
    let d = this.#drawsOfKey
    if (d === undefined || this.#drawKey !== key) {
      d = this.#draws.get(key)
      if (d === undefined) {
        if (this.#draws.size >= MAX_DRAW_KEYS) {
          const oldest = this.#draws.keys().next()
          if (oldest.done !== true) this.#draws.delete(oldest.value)
        }
        d = newDraws(64)
        this.#draws.set(key, d)
      }
      this.#drawKey = key
      this.#drawsOfKey = d
    }
    const s = ep.slot
    if (s >= d.nameHash.length) {
      const grown = newDraws(Math.max(s + 1, d.nameHash.length * 2))
      grown.nameHash.set(d.nameHash)
      grown.logU.set(d.logU)
      d = grown
      this.#draws.set(key, d)
      this.#drawsOfKey = d
    }
    if (d.nameHash[s] !== ep.nameHash) {
      d.nameHash[s] = ep.nameHash
      d.logU[s] = Math.log((rendezvous(key, ep.nameHash) + 0.5) / 4_294_967_296)
    }
    return d
  }

  #slotMs(req: SchedRequest, ep: EndpointState, p: Prefill): number {
    return this.model.slotMs(ep, req.now, p, req.ticket.outputTokens)
  }
}

function round(n: number, digits: number): number {
  const f = 10 ** digits
  return Math.round(n * f) / f
}

function roundOrNull(n: number | undefined): number | null {
  return n === undefined ? null : round(n, 1)
}

export function predictedLatency(args: PluginArgs, _env?: PluginEnv): Plugin {
  return new PredictedLatencyPlugin(args)
}
