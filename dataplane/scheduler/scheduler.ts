// The model-aware scheduler: the data plane's EndpointPicker. Per request and per chosen
// ModelServer it runs admission (fairness, when the profile has it), then
// filters → weighted scorers → an ordered list: the target first, retry fallbacks after.
//
// - Engine view: a scrape loop per endpoint of the live snapshot (engines/scraper.ts), blended
//   with this replica's own in-flight counts and measured latency (state.ts).
// - Passive health (state.ts): two tracks per endpoint. Liveness (refused connections, dead
//   scrapes) ends on the first answer after a short period, with its backoff; outliers (5xx,
//   timeouts, cut bodies, malformed HTTP, by streak or failure rate) end after successful trial
//   requests. When fewer than `panicThreshold` (default half) of a server's ready endpoints are
//   in rotation, ejection is ignored for that server (panic mode, as Envoy does): so many
//   ejections are more likely a stale view or a shared cause than so many broken engines, and
//   piling all traffic on the rest would turn a partial outage into a total one.
// - Engine restarts (counters going backwards, a new process start time, seen by the scraper):
//   plugins drop what they remember about that endpoint (`onEndpointReset`).
// - Profiles: per ModelServer (`spec.scheduler`), else DEFAULT_PROFILE; taking effect on the
//   snapshot swap, keeping plugin state where name and arguments are unchanged.
// - Explain: with `ctx.explain` set, a one-line summary of the scores goes back to the caller.

import type { RoutingSnapshot, SnapshotEndpoint, SnapshotServer } from '../../api/snapshot.js'
import type { AbortLike } from '../abort.js'
import { ScrapeThread } from '../engines/scrape-thread.js'
import {
  MetricsScraper,
  type ScrapeResult,
  type Scraper,
  type ScrapeTarget,
} from '../engines/scraper.js'
import type { Logger } from '../log.js'
import type { EndpointGaugeView, SchedulerGaugeView, SchedulerObserver } from '../metrics.js'
import type {
  Admission,
  DispatchOutcome,
  EndpointPicker,
  PickContext,
  RewarmPlan,
  Saturation,
  ShadowPlan,
} from '../picker.js'
import { seededRandom } from '../seeded-random.js'
import { HealthLog } from './health-log.js'
import { withPdRoles } from './pd-pairs.js'
import { winningPlugin } from './pick-reason.js'
import { PredictedLatencyPlugin } from './plugins/predicted-latency.js'
import { buildProfile, DEFAULT_PROFILE, type ProfileEntry } from './profile.js'
import { chainSeed, expectedOutputTokens, headHash, promptPieces, rendezvous } from './prompt.js'
import { Scratch } from './scores.js'
import {
  DEFAULT_HEALTH,
  DEFAULT_STATE_OPTIONS,
  EndpointState,
  endpointKey,
  type HealthOptions,
  type LoadTicket,
  type StateOptions,
} from './state.js'
import type { Mirror, Plugin, PluginEnv, SchedRequest } from './types.js'
import { runWarmup, warmupServers } from './warmup.js'

export interface ScrapeOptions {
  /** Default 200 ms. */
  readonly intervalMs?: number
  /** Default 500 ms. */
  readonly timeoutMs?: number
  /** Default 16. */
  readonly concurrency?: number
  /**
   * Scraped elsewhere (the primary of `--workers N`, dataplane/cluster/): no scrape loop here;
   * results come in through `scrapeStarted` and `ingestScrape`. `intervalMs` still sets the
   * staleness default.
   */
  readonly external?: boolean
  /**
   * Scrape in a worker thread (engines/scrape-thread.ts): HTTP and parsing off the thread that
   * decides, results posted back. Default false. The EPP turns it on (issue 13).
   */
  readonly thread?: boolean
}

export interface SchedulerOptions {
  /** `false` = no scraping (local signals only: tests, or engines without metrics). */
  readonly scrape?: false | ScrapeOptions
  /** Default: 5 × the scrape interval, at least 1 s. */
  readonly staleAfterMs?: number
  readonly health?: Partial<HealthOptions>
  readonly random?: () => number
  readonly now?: () => number
  readonly log?: Logger
  /**
   * Keep each dispatch's prefix blocks for `takeDispatches` (a worker of `--workers N` sends them
   * to the others, which `applyPeerDispatches`), so every worker's prefix index sees every
   * worker's placements. Default false.
   */
  readonly shareDispatches?: boolean
  /**
   * Synthetic decisions per scheduling profile, run on a throwaway scheduler after the first
   * snapshot naming that profile (warmup.ts), so real requests meet optimised code rather than a
   * cold start. Nothing of this scheduler's state or decision figures sees them. Default 0 (off);
   * the data plane command turns it on.
   */
  readonly warmup?: number
  /**
   * Plan re-warms of the groups a dead or restarted engine held (`rewarm`). Default true; a
   * `--workers N` worker other than the first says false, so one process sends them.
   */
  readonly rewarm?: boolean
}

/** A dispatch's prefix blocks, as one worker tells the others (plain data: it crosses IPC). */
export interface PeerDispatch {
  readonly server: string
  /** Index of the plugin in the server's profile, and its name (a check: profiles may differ). */
  readonly entry: number
  readonly plugin: string
  /** Endpoint id, address:port. */
  readonly id: string
  readonly hashes: Int32Array
}

/** Dispatches kept for `takeDispatches` at most (a stalled reader must not grow the process). */
const MAX_OUTBOX = 4096

/** Where a request's scheduling record lives on its PickContext. */
const REQUEST: unique symbol = Symbol('infer-gateway.scheduler.request')

/** Characters per token when estimating prompt tokens from text. */
const CHARS_PER_TOKEN = 4
/** Endpoints shown per explain line. */
const EXPLAIN_TOP = 4
/** Bytes of the prompt's head that key the tie-break order. */
const TIE_KEY_BYTES = 256

class Request implements SchedRequest {
  readonly ctx: PickContext
  now: number
  readonly lora: string | undefined
  readonly ticket: LoadTicket
  readonly scratch = new Map<object, unknown>()
  readonly pieces: readonly string[]
  mirror: Mirror | undefined = undefined

  constructor(ctx: PickContext, now: number) {
    this.ctx = ctx
    this.now = now
    this.lora = ctx.isLora ? ctx.model : undefined
    this.pieces = promptPieces(ctx.body)
    let chars = 0
    for (const p of this.pieces) chars += p.length
    this.ticket = {
      promptTokens: Math.ceil(chars / CHARS_PER_TOKEN),
      outputTokens: expectedOutputTokens(ctx.body),
      stream: ctx.body['stream'] === true,
      ...(this.lora !== undefined ? { lora: this.lora } : {}),
    }
  }

  text(): string {
    return this.pieces.join('')
  }

  #tieKey: number | undefined
  /** Hash of the model and the prompt's first bytes: the same on every replica. */
  tieKey(): number {
    if (this.#tieKey === undefined) {
      this.#tieKey = headHash(this.pieces, TIE_KEY_BYTES, chainSeed(this.ctx.model))
    }
    return this.#tieKey
  }
}

/** A profile entry that filters, its method resolved (see ServerScheduler). */
interface FilterStep {
  readonly plugin: Plugin
  readonly filter: NonNullable<Plugin['filter']>
}

/** A profile entry that scores with a positive weight, its method resolved. */
interface ScoreStep {
  readonly name: string
  readonly weight: number
  readonly plugin: Plugin
  readonly score: NonNullable<Plugin['score']>
  /** Its `single`, called instead of score for one candidate (absent: score is). */
  readonly single: Plugin['single']
}

class ServerScheduler {
  readonly key: string
  server: SnapshotServer
  entries: ProfileEntry[]
  custom: boolean
  /**
   * The entries' filters and scorers, looked up once per snapshot: the plugins are objects of a
   * dozen shapes, so reading `entry.plugin.filter` and `.score` in every decision went through
   * megamorphic lookups, two per plugin (a sixth of pick's own time).
   */
  readonly filters: FilterStep[] = []
  readonly scorers: ScoreStep[] = []
  /** Ready endpoints, snapshot order, and the snapshot object each stands for. */
  ready: EndpointState[] = []
  readonly endpointOf = new Map<EndpointState, SnapshotEndpoint>()
  /** Every endpoint of the server (ready or not): plugins forget the ones that leave. */
  members = new Set<EndpointState>()
  admission: Plugin | undefined
  /** The profile's predicted-latency plugin (re-warms), if it has one. */
  readonly predicted: PredictedLatencyPlugin | undefined

  constructor(server: SnapshotServer, entries: ProfileEntry[], custom: boolean) {
    this.key = server.key
    this.server = server
    this.entries = entries
    this.custom = custom
    this.admission = entries.find((e) => e.plugin.admit !== undefined)?.plugin
    const pl = entries.find((e) => e.plugin instanceof PredictedLatencyPlugin)?.plugin
    this.predicted = pl instanceof PredictedLatencyPlugin ? pl : undefined
    for (const e of entries) {
      const { filter, score, single } = e.plugin
      if (filter !== undefined) this.filters.push({ plugin: e.plugin, filter })
      if (score !== undefined && e.weight > 0) {
        this.scorers.push({ name: e.name, weight: e.weight, plugin: e.plugin, score, single })
      }
    }
  }
}

/** A bounded sample of recent decision costs (µs), for the debug view. */
class CostSample {
  readonly #ring = new Float64Array(1024)
  #n = 0
  add(us: number): void {
    this.#ring[this.#n % this.#ring.length] = us
    this.#n++
  }
  summary(): { decisions: number; p50Us: number | null; p99Us: number | null } {
    const k = Math.min(this.#n, this.#ring.length)
    if (k === 0) return { decisions: 0, p50Us: null, p99Us: null }
    const s = Array.from(this.#ring.subarray(0, k)).sort((a, b) => a - b)
    const at = (p: number): number =>
      Math.round((s[Math.min(k - 1, Math.ceil(p * k) - 1)] ?? 0) * 10) / 10
    return { decisions: this.#n, p50Us: at(0.5), p99Us: at(0.99) }
  }
}

export class Scheduler implements EndpointPicker {
  readonly #now: () => number
  readonly #random: () => number
  readonly #log: Logger | undefined
  readonly #stateOpts: StateOptions
  readonly #env: PluginEnv
  readonly #scraper: Scraper | undefined
  /** Someone scrapes the endpoints (this scheduler, or the primary for it). */
  readonly #probed: boolean
  #states = new Map<string, EndpointState>()
  #servers = new Map<string, ServerScheduler>()
  readonly #freeSlots: number[] = []
  #nextSlot = 0
  readonly #total = new Scratch()
  readonly #part = new Scratch()
  readonly #costs = new CostSample()
  readonly #share: boolean
  #outbox: PeerDispatch[] = []
  readonly #health: HealthLog
  // Metrics (see observe): nothing of this runs without an observer.
  #observer: SchedulerObserver | undefined
  readonly #rows = new Scratch()
  /** pick's topK, refilled by each pick (nothing keeps it past the call). */
  readonly #order: number[] = []
  readonly #rowNames: string[] = []
  readonly #wasEjected = new WeakMap<EndpointState, boolean>()
  readonly #warmup: number
  readonly #rewarm: boolean
  /** Profiles (canonical JSON) warmed up or being warmed, and the runs still going. */
  readonly #warmed = new Set<string>()
  readonly #warming = new Set<{ readonly done: Promise<number>; cancel(): void }>()
  /** The first snapshot's warm-up, until it ends (`warming()`, what /readyz waits for). */
  #startupWarm: { readonly done: Promise<number> } | undefined
  /** Whether a warm-up has started yet: only the first one gates readiness. */
  #firstWarmSeen = false

  constructor(opts: SchedulerOptions = {}) {
    this.#now = opts.now ?? (() => performance.now())
    this.#random = opts.random ?? Math.random
    this.#log = opts.log
    const scrape = opts.scrape === false ? undefined : (opts.scrape ?? {})
    const interval = scrape?.intervalMs ?? 200
    this.#stateOpts = {
      ...DEFAULT_STATE_OPTIONS,
      staleAfterMs: opts.staleAfterMs ?? Math.max(1_000, 5 * interval),
      health: { ...DEFAULT_HEALTH, ...opts.health },
    }
    this.#env = { random: this.#random, now: this.#now }
    this.#health = new HealthLog(opts.log)
    this.#probed = scrape !== undefined
    this.#share = opts.shareDispatches === true
    this.#warmup = opts.warmup ?? 0
    this.#rewarm = opts.rewarm !== false
    if (scrape !== undefined && scrape.external !== true) {
      const o = {
        intervalMs: interval,
        ...(scrape.timeoutMs !== undefined ? { timeoutMs: scrape.timeoutMs } : {}),
        ...(scrape.concurrency !== undefined ? { concurrency: scrape.concurrency } : {}),
        random: this.#random,
        onStart: (id: string) => this.#states.get(id)?.scrapeStarted(),
        onResult: (id: string, r: ScrapeResult) => this.#onScrape(id, r),
      }
      this.#scraper =
        scrape.thread === true
          ? new ScrapeThread({ ...o, ...(opts.log !== undefined ? { log: opts.log } : {}) })
          : new MetricsScraper(o)
    }
  }

  /** Endpoint state by `address:port` (tests, benchmarks). */
  state(id: string): EndpointState | undefined {
    return this.#states.get(id)
  }

  /** The plugin instances of a server's profile (tests, benchmarks). */
  plugins(serverKey: string): readonly Plugin[] {
    return this.#servers.get(serverKey)?.entries.map((e) => e.plugin) ?? []
  }

  onSnapshot(snapshot: RoutingSnapshot): void {
    // Prefill/decode servers are scheduled per role too (pd-pairs.ts): those keep state here.
    const servers = withPdRoles(Object.values(snapshot.servers)).sort((a, b) =>
      a.key < b.key ? -1 : 1,
    )
    // One state per address:port, shared by every server listing it (one engine, one load).
    const states = new Map<string, EndpointState>()
    for (const s of servers) {
      for (const ep of s.endpoints) {
        const id = endpointKey(ep)
        if (states.has(id)) continue
        let st = this.#states.get(id)
        if (st === undefined) st = new EndpointState(ep, this.#allocSlot(), this.#stateOpts)
        st.labels = ep.labels
        st.probed = this.#probed
        states.set(id, st)
      }
    }
    const next = new Map<string, ServerScheduler>()
    for (const s of servers) {
      const prev = this.#servers.get(s.key)
      const profile = s.scheduler ?? DEFAULT_PROFILE
      const { entries, dropped } = buildProfile(profile, prev?.entries ?? [], this.#env)
      for (const p of dropped) p.close?.()
      const ss = new ServerScheduler(s, entries, s.scheduler !== undefined)
      for (const ep of s.endpoints) {
        const st = states.get(endpointKey(ep)) as EndpointState
        ss.members.add(st)
        if (ep.ready && !ss.endpointOf.has(st)) {
          ss.ready.push(st)
          ss.endpointOf.set(st, ep)
        }
      }
      if (prev !== undefined) {
        for (const st of prev.members) {
          if (ss.members.has(st)) continue
          for (const e of entries) e.plugin.forget?.(st)
        }
      }
      next.set(s.key, ss)
    }
    for (const [key, prev] of this.#servers) {
      if (!next.has(key)) for (const e of prev.entries) e.plugin.close?.()
    }
    // Slots of departed endpoints are reused only now, after every plugin forgot them.
    for (const [id, st] of this.#states) if (!states.has(id)) this.#freeSlots.push(st.slot)
    this.#states = states
    this.#servers = next
    this.#scraper?.sync(scrapeTargetsOf(snapshot))
    if (this.#warmup > 0) this.#warm(snapshot)
  }

  /** Settles once every warm-up started so far has finished or been cancelled (tests, benches). */
  async warmedUp(): Promise<void> {
    while (this.#warming.size > 0) await Promise.all([...this.#warming].map((w) => w.done))
  }

  /** The first snapshot's warm-up is still running (EndpointPicker.warming). */
  warming(): boolean {
    return this.#startupWarm !== undefined
  }

  /** Profiles of `snapshot` not warmed yet: warmed on a throwaway scheduler (warmup.ts). */
  #warm(snapshot: RoutingSnapshot): void {
    const servers = warmupServers(snapshot, this.#warmed)
    if (servers.length === 0) return
    // The first snapshot with an engine server to warm; a config of providers only has none.
    const first = !this.#firstWarmSeen
    this.#firstWarmSeen = true
    // Scraped "externally" (by the warm-up itself), as the data plane's own endpoints are scraped.
    const target = new Scheduler({ scrape: { external: true }, random: seededRandom(1) })
    const run = runWarmup(target, servers, { decisions: this.#warmup })
    this.#warming.add(run)
    if (first) this.#startupWarm = run
    void run.done.then(() => {
      this.#warming.delete(run)
      if (this.#startupWarm === run) this.#startupWarm = undefined
    })
  }

  admit(ctx: PickContext, signal: AbortLike): Admission | Promise<Admission> | undefined {
    const ss = this.#serverFor(ctx.server)
    if (ss.admission?.admit === undefined) return undefined
    const req = this.#request(ctx)
    return ss.admission.admit(req, () => ss.ready, signal)
  }

  /**
   * Spill-over's view of the server (`fallback.on: [saturated]`), before admission: the lowest
   * time to first token the profile's predicted-latency plugin expects over the healthy endpoints
   * (absent without that plugin), and the fewest requests waiting per endpoint — the engine's
   * queue beyond its batch (the plugin's pending and capacity, else the scraped queue) plus the
   * admission queue spread over the endpoints. Both count this replica's in-flight requests
   * exactly, so a burst is seen as it arrives, not one scrape later.
   */
  saturation(ctx: PickContext): Saturation | undefined {
    const ss = this.#serverFor(ctx.server)
    const now = this.#now()
    const req = this.#request(ctx)
    req.now = now
    const pl = ss.entries.find((e) => e.plugin instanceof PredictedLatencyPlugin)?.plugin as
      | PredictedLatencyPlugin
      | undefined
    let ttft = Number.POSITIVE_INFINITY
    let queue = Number.POSITIVE_INFINITY
    let n = 0
    for (const ep of ss.ready) {
      if (ep.isEjected(now)) continue
      n++
      if (pl !== undefined) {
        const p = pl.predict(req, ep)
        if (p.ttftMs < ttft) ttft = p.ttftMs
        queue = Math.min(queue, Math.max(0, p.pending - p.capacity))
      } else queue = Math.min(queue, ep.waiting(now))
    }
    if (n === 0) return undefined
    const gateway = (ss.admission?.queued ?? 0) / n
    return { ...(pl !== undefined ? { ttftMs: ttft } : {}), queuePerEndpoint: queue + gateway }
  }

  pick(ctx: PickContext): readonly SnapshotEndpoint[] {
    const t0 = this.#now()
    const ss = this.#serverFor(ctx.server)
    const req = this.#request(ctx)
    req.now = t0
    req.mirror = undefined
    const subset = ctx.subset
    // The gateway's subset hint (EPP mode) narrows before anything else: nothing outside it may
    // be picked, not even in panic mode.
    const all = subset === undefined ? ss.ready : ss.ready.filter((e) => subset.has(e.id))
    if (all.length === 0) return []
    let list: readonly EndpointState[] = all
    let ejected = 0
    for (const e of all) if (e.isEjected(t0)) ejected++
    const panic = this.#panic(all.length, ejected)
    if (ejected > 0 && !panic) list = all.filter((e) => !e.isEjected(t0))
    for (const step of ss.filters) {
      const kept = step.filter.call(step.plugin, req, list)
      if (kept.length > 0) list = kept
    }
    const n = list.length
    // One candidate (a one-endpoint server, or filters left one): its order needs no scores, the
    // tie key (the prompt's head hashed) nor a sort. With explain the scores are shown as usual.
    if (n === 1 && ctx.explain === undefined) return this.#single(ss, req, list, t0)
    const total = this.#total.get(n)
    total.fill(0, 0, n)
    const part = this.#part.get(n)
    const explain = ctx.explain
    // Only with explain (an array per decision otherwise).
    const rows: { name: string; weight: number; scores: number[] }[] | undefined =
      explain === undefined ? undefined : []
    const observer = this.#observer
    const names = this.#rowNames
    // Filled only with an observer; emptied only when filled (setting an array's length calls the
    // length setter even to the same value: 0.4 % of a 64-endpoint decision in a CPU profile).
    if (names.length > 0) names.length = 0
    const byPlugin = observer === undefined ? undefined : this.#rows.get(n * ss.entries.length)
    for (const entry of ss.scorers) {
      if (!entry.score.call(entry.plugin, req, list, part)) continue
      const row = names.length * n
      for (let i = 0; i < n; i++) {
        // Clamped to 0..1 (NaN counts as 0) so one misbehaving plugin cannot swamp the rest.
        const v = part[i] as number
        const w = entry.weight * (v > 0 ? Math.min(1, v) : 0)
        total[i] = (total[i] as number) + w
        if (byPlugin !== undefined) byPlugin[row + i] = w
      }
      if (byPlugin !== undefined) names.push(entry.name)
      if (rows !== undefined) {
        rows.push({
          name: entry.name,
          weight: entry.weight,
          scores: Array.from(part.subarray(0, n)),
        })
      }
    }
    // Equal totals are ordered by rendezvous hashing of the prompt's head and the pod name: not
    // by snapshot position (that would favour one pod), and not at random, so replicas that see
    // the same state pick the same pod for the same prompt.
    const key = req.tieKey()
    for (let i = 0; i < n; i++) {
      const rv = rendezvous(key, (list[i] as EndpointState).nameHash) / 4_294_967_296
      total[i] = (total[i] as number) + rv * 1e-9
    }
    const k = Math.min(n, Math.max(1, ctx.server.trafficPolicy.retry.attempts))
    // The order in a kept array (read only below); the answer is the caller's, a new array.
    const order = topK(total, n, k, this.#order)
    const out: SnapshotEndpoint[] = []
    for (const i of order) out.push(ss.endpointOf.get(list[i] as EndpointState) as SnapshotEndpoint)
    // A copy where the request itself goes is no copy (another plugin outweighed the holder).
    // (Set by a plugin's score above: not visible to the compiler's narrowing.)
    const mirror = req.mirror as Mirror | undefined
    if (mirror !== undefined && mirror.ep === list[order[0] ?? 0]) req.mirror = undefined
    const us = (this.#now() - t0) * 1000
    this.#costs.add(us)
    if (observer !== undefined && byPlugin !== undefined)
      observer.decision(ss.key, us / 1e6, winningPlugin(names, byPlugin, n, total, order[0] ?? 0))
    if (explain !== undefined && rows !== undefined) {
      explain.text = explainLine(ss, list, total, rows, topK(total, n, Math.min(n, EXPLAIN_TOP)), {
        panic,
        ejected,
        total: all.length,
        us,
      })
    }
    return out
  }

  /**
   * pick for one candidate: each scorer does what its score does besides scoring (Plugin.single),
   * or scores as before when it does not say. For a one-endpoint server under the proxy's load,
   * scoring its one candidate was about half of pick's time (docs/proxy-cost.md, 2026-12-03 late).
   */
  #single(
    ss: ServerScheduler,
    req: Request,
    list: readonly EndpointState[],
    t0: number,
  ): readonly SnapshotEndpoint[] {
    const part = this.#part.get(1)
    for (const step of ss.scorers) {
      if (step.single !== undefined) step.single.call(step.plugin, req, list)
      else step.score.call(step.plugin, req, list, part)
    }
    const ep = list[0] as EndpointState
    // As pick: a copy where the request itself goes is no copy.
    const mirror = req.mirror as Mirror | undefined
    if (mirror !== undefined && mirror.ep === ep) req.mirror = undefined
    const us = (this.#now() - t0) * 1000
    this.#costs.add(us)
    this.#observer?.decision(ss.key, us / 1e6, 'single')
    return [ss.endpointOf.get(ep) as SnapshotEndpoint]
  }

  /**
   * The shadow request the last pick for `ctx` asked for (a plugin's Mirror), taken once. Started,
   * it counts in flight on its endpoint like a request (a ticket of one output token) and its
   * prefix goes to the other workers as a dispatch would; ended, it only leaves: its outcome is
   * not held against the endpoint (reported as a client that left) nor learned from.
   */
  shadow(ctx: PickContext): ShadowPlan | undefined {
    const req = (ctx as PickContext & { [REQUEST]?: Request })[REQUEST]
    const m = req?.mirror
    if (req === undefined || m === undefined) return undefined
    req.mirror = undefined
    const ss = this.#servers.get(ctx.server.key)
    const endpoint = ss?.endpointOf.get(m.ep)
    if (ss === undefined || endpoint === undefined) return undefined
    const st = m.ep
    const ticket: LoadTicket = {
      promptTokens: req.ticket.promptTokens,
      outputTokens: 1,
      stream: false,
    }
    return {
      endpoint,
      start: () =>
        this.#shadowStart(
          st,
          ticket,
          (t0) => {
            m.started(t0)
            if (this.#share) this.#shareDispatch(ss, req, st)
          },
          (ok, now) => m.ended(ok, now),
        ),
    }
  }

  /** The request's group key when its prompt is worth keeping for a re-warm (EndpointPicker). */
  rewarmGroup(ctx: PickContext): number | undefined {
    if (!this.#rewarm) return undefined
    const req = (ctx as PickContext & { [REQUEST]?: Request })[REQUEST]
    if (req === undefined) return undefined
    return this.#servers.get(ctx.server.key)?.predicted?.keepGroup(req)
  }

  /**
   * One re-warm of a group a dead or restarted engine held (EndpointPicker.rewarm), among the
   * server's ready endpoints in rotation: none in panic mode, none when the profile filters
   * (a filter may confine a tenant or adapter to some pods; a re-warm has no request to filter
   * for). Started, it counts in flight on its endpoint as a shadow does, and its blocks go to
   * the other workers; ended, it only leaves.
   */
  rewarm(server: SnapshotServer, has: (group: number) => boolean): RewarmPlan | undefined {
    if (!this.#rewarm) return undefined
    const ss = this.#servers.get(server.key)
    const pl = ss?.predicted
    // Asked after every pick: nothing below (the live list, the clock) unless a group is lost.
    if (ss === undefined || pl === undefined || !pl.rewarmPending || ss.filters.length > 0) {
      return undefined
    }
    const now = this.#now()
    const list: EndpointState[] = []
    for (const e of ss.ready) if (!e.isEjected(now)) list.push(e)
    if (this.#panic(ss.ready.length, ss.ready.length - list.length)) return undefined
    const t = pl.planRewarm(list, now, has)
    if (t === undefined) return undefined
    const endpoint = ss.endpointOf.get(t.ep)
    if (endpoint === undefined) return undefined
    const st = t.ep
    const ticket: LoadTicket = { promptTokens: t.tokens, outputTokens: 1, stream: false }
    const entry = ss.entries.findIndex((e) => e.plugin === pl)
    return {
      endpoint,
      group: t.key,
      start: () =>
        this.#shadowStart(
          st,
          ticket,
          (t0) => {
            t.started(t0)
            const blocks = pl.keptBlocks(t.key)
            if (this.#share && blocks !== undefined) this.#shareBlocks(ss, entry, st, blocks)
          },
          (ok) => t.ended(ok),
        ),
    }
  }

  onDispatch(ctx: PickContext, endpoint: SnapshotEndpoint): void {
    const st = this.#states.get(endpointKey(endpoint))
    if (st === undefined) return
    const req = this.#request(ctx)
    req.now = this.#now()
    st.dispatchStarted(req.ticket, req.now)
    const ss = this.#servers.get(ctx.server.key)
    if (ss === undefined) return
    for (const e of ss.entries) e.plugin.onDispatch?.(req, st)
    if (this.#share) this.#shareDispatch(ss, req, st)
  }

  /** A dispatch's prefix blocks for the other workers (`shareDispatches`). */
  #shareDispatch(ss: ServerScheduler, req: SchedRequest, st: EndpointState): void {
    for (let i = 0; i < ss.entries.length; i++) {
      const blocks = (ss.entries[i] as ProfileEntry).plugin.blocksOf?.(req)
      if (blocks !== undefined) this.#shareBlocks(ss, i, st, blocks)
    }
  }

  /** One plugin's prefix blocks recorded on `st`, for the other workers (bounded outbox). */
  #shareBlocks(
    ss: ServerScheduler,
    entry: number,
    st: EndpointState,
    blocks: ArrayLike<number>,
  ): void {
    if (blocks.length === 0) return
    if (this.#outbox.length >= MAX_OUTBOX) this.#outbox.shift()
    this.#outbox.push({
      server: ss.key,
      entry,
      plugin: (ss.entries[entry] as ProfileEntry).name,
      id: st.id,
      hashes: Int32Array.from(blocks),
    })
  }

  /**
   * Panic mode (Envoy's panic threshold): some of `total` endpoints are ejected and fewer than
   * `panicThreshold` of them, or none, are healthy; ejection is then ignored (the header).
   */
  #panic(total: number, ejected: number): boolean {
    const healthy = total - ejected
    return ejected > 0 && (healthy === 0 || healthy < this.#stateOpts.health.panicThreshold * total)
  }

  /**
   * A shadow's start (a copy or a re-warm): it counts in flight on its endpoint while it runs and
   * ends, once, as an aborted dispatch (never a latency sample or a failure held against it).
   */
  #shadowStart(
    st: EndpointState,
    ticket: LoadTicket,
    started: (t0: number) => void,
    ended: (ok: boolean, now: number) => void,
  ): (ok: boolean) => void {
    const t0 = this.#now()
    st.dispatchStarted(ticket, t0)
    started(t0)
    let done = false
    return (ok) => {
      if (done) return
      done = true
      const now = this.#now()
      st.dispatchEnded(ticket, { status: 0, failure: 'aborted', durationMs: now - t0 }, now)
      ended(ok, now)
    }
  }

  /** Prefix blocks dispatched since the last call (with `shareDispatches`). */
  takeDispatches(): PeerDispatch[] {
    const out = this.#outbox
    this.#outbox = []
    return out
  }

  /** Another worker's dispatches: each goes to the same plugin of the same server here. */
  applyPeerDispatches(list: readonly PeerDispatch[]): void {
    for (const d of list) {
      const ss = this.#servers.get(d.server)
      const e = ss?.entries[d.entry]
      const st = this.#states.get(d.id)
      if (e === undefined || e.name !== d.plugin || st === undefined) continue
      if (!ss?.members.has(st)) continue
      e.plugin.recordPeer?.(st, d.hashes)
    }
  }

  onComplete(ctx: PickContext, endpoint: SnapshotEndpoint, outcome: DispatchOutcome): void {
    const st = this.#states.get(endpointKey(endpoint))
    const req = this.#request(ctx)
    req.now = this.#now()
    if (st === undefined) return
    st.dispatchEnded(req.ticket, outcome, req.now)
    this.#note(st, req.now)
    const ss = this.#servers.get(ctx.server.key)
    if (ss === undefined) return
    for (const e of ss.entries) e.plugin.onComplete?.(req, st, outcome)
  }

  /** Metrics of decisions and health transitions go to `o` from now on. */
  observe(o: SchedulerObserver): void {
    this.#observer = o
  }

  /** Health log, and the ejection/readmission counters on a transition. */
  #note(st: EndpointState, now: number): void {
    this.#health.note(st, now)
    const active = st.ejectionActive
    if (active === (this.#wasEjected.get(st) ?? false)) return
    this.#wasEjected.set(st, active)
    // Out of rotation: the plugins may re-home what it held (predicted-latency's re-warms).
    if (active) this.#endpointDown(st, now)
    const o = this.#observer
    if (o === undefined) return
    if (active) o.ejected(st.lastEjection?.reason ?? 'unknown')
    else o.readmitted()
  }

  #endpointDown(st: EndpointState, now: number): void {
    for (const ss of this.#servers.values()) {
      if (!ss.members.has(st)) continue
      for (const e of ss.entries) e.plugin.onEndpointDown?.(st, now)
    }
  }

  /** Per-endpoint load and engine numbers, and admission queues, for the /metrics gauges. */
  gauges(): SchedulerGaugeView {
    const now = this.#now()
    const endpoints: EndpointGaugeView[] = []
    const queues = new Map<string, number>()
    for (const ss of this.#servers.values()) {
      const q = ss.admission?.queued
      if (q !== undefined) queues.set(ss.key, q)
      for (const st of ss.members) {
        const m = st.fresh(now)
        const kv = st.kvCacheUsage(now)
        endpoints.push({
          server: ss.key,
          endpoint: st.id,
          inFlight: st.inFlight,
          ejected: st.isEjected(now),
          ...(m !== undefined && !m.missing.includes('waiting') ? { waiting: m.waiting } : {}),
          ...(m !== undefined && !m.missing.includes('running') ? { running: m.running } : {}),
          ...(kv !== undefined ? { kvCacheUsage: kv } : {}),
        })
      }
    }
    return { endpoints, queues }
  }

  debug(): unknown {
    const now = this.#now()
    const servers: Record<string, unknown> = {}
    for (const ss of this.#servers.values()) {
      const plugins: Record<string, unknown> = {}
      for (const e of ss.entries) {
        const d = e.plugin.debug?.(now)
        if (d !== undefined) plugins[e.name] = d
      }
      servers[ss.key] = {
        profile: ss.custom ? 'custom' : 'default',
        plugins: ss.entries.map((e) => ({ name: e.name, weight: e.weight })),
        endpoints: ss.ready.map((s) => s.name),
        ...(Object.keys(plugins).length > 0 ? { state: plugins } : {}),
      }
    }
    return {
      scrape:
        this.#scraper !== undefined
          ? {
              enabled: true,
              intervalMs: this.#scraper.intervalMs,
              timeoutMs: this.#scraper.timeoutMs,
              staleAfterMs: this.#stateOpts.staleAfterMs,
              // Where a threaded scraper's loops run ('inline': it gave up on its worker).
              ...(this.#scraper instanceof ScrapeThread ? { thread: this.#scraper.mode } : {}),
            }
          : this.#probed
            ? { enabled: true, by: 'primary', staleAfterMs: this.#stateOpts.staleAfterMs }
            : { enabled: false },
      decisions: this.#costs.summary(),
      servers,
      endpoints: [...this.#states.values()].map((s) => s.view(now)),
    }
  }

  async close(): Promise<void> {
    for (const w of this.#warming) w.cancel()
    for (const ss of this.#servers.values()) for (const e of ss.entries) e.plugin.close?.()
    await this.#scraper?.close()
  }

  /** A scrape of endpoint `id` (address:port) is leaving (external scraping, see ScrapeOptions). */
  scrapeStarted(id: string): void {
    this.#states.get(id)?.scrapeStarted()
  }

  /** The result of a scrape made elsewhere (external scraping): as if this scheduler made it. */
  ingestScrape(id: string, r: ScrapeResult): void {
    this.#onScrape(id, r)
  }

  /** This process's in-flight requests and tokens per endpoint id (only endpoints with some). */
  localLoad(): Map<string, readonly [requests: number, tokens: number]> {
    const out = new Map<string, readonly [number, number]>()
    for (const [id, st] of this.#states) {
      if (st.inFlight > 0 || st.inFlightTokens > 0) out.set(id, [st.inFlight, st.inFlightTokens])
    }
    return out
  }

  /** Other processes' in-flight per endpoint id; endpoints absent from `load` have none. */
  setPeerLoad(load: ReadonlyMap<string, readonly [requests: number, tokens: number]>): void {
    for (const [id, st] of this.#states) {
      const l = load.get(id)
      st.setPeerLoad(l?.[0] ?? 0, l?.[1] ?? 0)
    }
  }

  #onScrape(id: string, r: ScrapeResult): void {
    const st = this.#states.get(id)
    if (st === undefined) return
    const now = this.#now()
    if (r.ok) {
      if (st.scrapeSucceeded(now, r.metrics, r.restart)) this.#endpointReset(st, now)
    } else if (r.kind === 'inconclusive') st.lastScrapeError = r.error
    else st.scrapeFailed(now, r.kind === 'bad_response', r.error)
    this.#note(st, now)
  }

  /** The engine behind `st` restarted: every server's plugins forget what they knew about it. */
  #endpointReset(st: EndpointState, now: number): void {
    for (const ss of this.#servers.values()) {
      if (!ss.members.has(st)) continue
      for (const e of ss.entries) e.plugin.onEndpointReset?.(st, now)
    }
    this.#log?.('info', 'engine restart detected', {
      endpoint: st.name,
      address: st.id,
      signal: st.lastRestart,
      restarts: st.generation,
    })
    this.#note(st, now)
  }

  /**
   * The scheduling record of a request, kept on its context under a private symbol: a WeakMap
   * would do the same, but every request's entry costs the garbage collector an ephemeron.
   */
  #request(ctx: PickContext): Request {
    const holder = ctx as PickContext & { [REQUEST]?: Request }
    let r = holder[REQUEST]
    if (r === undefined) {
      r = new Request(ctx, this.#now())
      holder[REQUEST] = r
    }
    return r
  }

  /**
   * The scheduler of the request's server. A request resolved against a snapshot that is no
   * longer live (it waited in admission across a swap) gets a throwaway default scheduler over
   * its own server object, so it is still served.
   */
  #serverFor(server: SnapshotServer): ServerScheduler {
    const ss = this.#servers.get(server.key)
    if (ss !== undefined) return ss
    const tmp = new ServerScheduler(
      server,
      buildProfile(DEFAULT_PROFILE, [], this.#env).entries,
      false,
    )
    for (const ep of server.endpoints) {
      if (!ep.ready) continue
      // An endpoint the live snapshot no longer has gets a throwaway state; its slot only indexes
      // the throwaway plugins above, so it need not be unique.
      const st = this.#states.get(endpointKey(ep)) ?? new EndpointState(ep, 0, this.#stateOpts)
      tmp.ready.push(st)
      tmp.endpointOf.set(st, ep)
    }
    return tmp
  }

  #allocSlot(): number {
    return this.#freeSlots.pop() ?? this.#nextSlot++
  }
}

/**
 * What to scrape for a snapshot: one target per address:port (the first server listing it, in key
 * order, names the engine), every endpoint whether ready or not (readiness may come back).
 */
export function scrapeTargetsOf(snapshot: RoutingSnapshot): ScrapeTarget[] {
  const servers = Object.values(snapshot.servers).sort((a, b) => (a.key < b.key ? -1 : 1))
  const targets = new Map<string, ScrapeTarget>()
  for (const s of servers) {
    for (const ep of s.endpoints) {
      const id = endpointKey(ep)
      if (targets.has(id)) continue
      const host = ep.address.includes(':') ? `[${ep.address}]` : ep.address
      targets.set(id, {
        id,
        origin: `${s.protocol}://${host}:${ep.port}`,
        engine: s.engine,
        ...(s.inferencePool?.engineDetect === true ? { detectEngine: true } : {}),
      })
    }
  }
  return [...targets.values()]
}

/**
 * Indices of the k largest values, largest first, equal values in index order (k is small: the
 * retry budget), in `into` when given (emptied first: pick's kept array). One pass keeping the k
 * best in order, where picking each rank by a scan of all values did k passes with a lookup of
 * the ones taken per value.
 */
export function topK(values: Float64Array, n: number, k: number, into?: number[]): number[] {
  const out = into ?? []
  // Filled in place, the first `m` so far; the length set once at the end, only when it differs
  // (emptying a kept array first trimmed its store and grew it again: ~0.5 % of a decision).
  let m = 0
  if (k > 0) {
    for (let i = 0; i < n; i++) {
      const v = values[i] as number
      // Full, and not strictly above the last: an equal value keeps the earlier index ahead.
      if (m === k && !(v > (values[out[m - 1] as number] as number))) continue
      if (m < k) out[m++] = i
      else out[m - 1] = i
      // Up past the values it beats strictly.
      for (let at = m - 1; at > 0 && v > (values[out[at - 1] as number] as number); at--) {
        out[at] = out[at - 1] as number
        out[at - 1] = i
      }
    }
  }
  if (out.length !== m) out.length = m
  return out
}

function fmt(n: number): string {
  return (Math.round(n * 100) / 100).toString()
}

/**
 * `server=default/m profile=default pick=pod-a | pod-a 4.85 = prefix-cache 0.95x3 +
 * least-pending 1x2 | pod-b … | 12.3us` — ASCII only, one header line.
 */
function explainLine(
  ss: ServerScheduler,
  list: readonly EndpointState[],
  total: Float64Array,
  rows: readonly { name: string; weight: number; scores: number[] }[],
  top: readonly number[],
  info: { panic: boolean; ejected: number; total: number; us: number },
): string {
  const first = top[0]
  const parts = [
    `server=${ss.key} profile=${ss.custom ? 'custom' : 'default'} pick=${first === undefined ? '-' : (list[first]?.name ?? '-')}${info.panic ? ` panic=${info.ejected === info.total ? 'all' : `${info.ejected}/${info.total}`}-ejected` : info.ejected > 0 ? ` ejected=${info.ejected}` : ''}`,
  ]
  for (const i of top) {
    const terms = rows.map((r) => `${r.name} ${fmt(r.scores[i] ?? 0)}x${fmt(r.weight)}`)
    parts.push(
      `${list[i]?.name ?? '?'} ${fmt(total[i] ?? 0)}${terms.length > 0 ? ` = ${terms.join(' + ')}` : ''}`,
    )
  }
  parts.push(`${fmt(info.us)}us`)
  return parts.join(' | ').replace(/[^\x20-\x7e]/g, '?')
}
