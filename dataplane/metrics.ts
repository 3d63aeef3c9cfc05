// The data plane's own Prometheus metrics, on a registry per instance (tests run several gateways
// in one process). Labels are bounded: model names come from the snapshot (anything else is
// "unknown"), statuses are classes, never raw paths or client identities.
import { Counter, Gauge, Histogram, Registry } from 'prom-client'
import type { RoutingSnapshot } from '../api/snapshot.js'
import {
  type BoundCounter,
  type BoundHistogram,
  bindCounter,
  bindHistogram,
} from './metrics-bound.js'
import { collectProcessMetrics } from './process-metrics.js'
import type { ServerPoolStats } from './proxy/upstream-pool.js'
import { promptHasher } from './scheduler/prompt-hasher.js'

const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300]
/** Time per output token: engines decode a token in ~5-100 ms; past 1 s a stream is stalling. */
const TPOT_BUCKETS = [
  0.001, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.5, 1, 2.5,
]
/** A scheduling decision is microseconds to a millisecond; past 10 ms something is wrong. */
const DECISION_BUCKETS = [5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 1e-2, 5e-2]

/**
 * One endpoint as the scheduler sees it at scrape time (engine numbers from its last fresh
 * scrape, absent when stale or unreported).
 */
export interface EndpointGaugeView {
  readonly server: string
  readonly endpoint: string
  readonly inFlight: number
  readonly ejected: boolean
  readonly waiting?: number
  readonly running?: number
  readonly kvCacheUsage?: number
}

/** What the scheduler reports as it decides (see GatewayMetrics.schedulerObserver). */
export interface SchedulerObserver {
  decision(server: string, seconds: number, plugin: string): void
  ejected(reason: string): void
  readmitted(): void
}

/** The scheduler's state read at scrape time for the gauges (nothing on the request path). */
export interface SchedulerGaugeView {
  readonly endpoints: readonly EndpointGaugeView[]
  /** Requests waiting in the gateway's admission queue, per server (servers with one). */
  readonly queues: ReadonlyMap<string, number>
}

export class GatewayMetrics {
  readonly registry = new Registry()
  readonly requests = new Counter({
    name: 'infer_gateway_requests_total',
    help: 'Requests handled, by model, endpoint kind and status class.',
    labelNames: ['model', 'api', 'status_class', 'code'] as const,
    registers: [this.registry],
  })
  readonly duration = new Histogram({
    name: 'infer_gateway_request_duration_seconds',
    help: 'Time from request received to last response byte.',
    labelNames: ['model', 'api'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  })
  readonly ttft = new Histogram({
    name: 'infer_gateway_time_to_first_byte_seconds',
    help: 'Time from request received to the first upstream body byte (TTFT for streams).',
    labelNames: ['model', 'api'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  })
  readonly tokens = new Counter({
    name: 'infer_gateway_tokens_total',
    help: 'Tokens reported by upstream usage, by model and type (input|output).',
    labelNames: ['model', 'type'] as const,
    registers: [this.registry],
  })
  readonly inflight = new Gauge({
    name: 'infer_gateway_inflight_requests',
    help: 'Requests currently being proxied.',
    registers: [this.registry],
  })
  readonly upstreamFailures = new Counter({
    name: 'infer_gateway_upstream_attempt_failures_total',
    help: 'Failed upstream attempts (each may be retried), by server and reason.',
    labelNames: ['server', 'reason'] as const,
    registers: [this.registry],
  })
  readonly reloads = new Counter({
    name: 'infer_gateway_config_reloads_total',
    help: 'Configuration reload attempts by result (success|failure).',
    labelNames: ['result'] as const,
    registers: [this.registry],
  })
  readonly snapshotVersion = new Gauge({
    name: 'infer_gateway_snapshot_version',
    help: 'Version of the routing snapshot in use.',
    registers: [this.registry],
  })
  readonly lastReloadSuccess = new Gauge({
    name: 'infer_gateway_config_last_reload_success_timestamp_seconds',
    help: 'Unix time of the last successful configuration load.',
    registers: [this.registry],
  })
  // External providers (dataplane/providers/). Provider and model values come from the snapshot;
  // tiers from the authenticated identity, bounded by the policy ("none" without a tier). Never the
  // tenant: callers choose tenants (10k tenants made 30k series on an unauthenticated /metrics).
  readonly providerRequests = new Counter({
    name: 'infer_gateway_provider_requests_total',
    help: 'Requests sent to external providers, by provider, type and outcome (status class, code).',
    labelNames: ['provider', 'provider_type', 'status_class', 'code'] as const,
    registers: [this.registry],
  })
  readonly providerTokens = new Counter({
    name: 'infer_gateway_provider_tokens_total',
    help: 'Tokens reported by external providers, by provider, upstream model, caller tier and type (input|output|cached_input).',
    labelNames: ['provider', 'model', 'tier', 'type'] as const,
    registers: [this.registry],
  })
  readonly providerCost = new Counter({
    name: 'infer_gateway_provider_cost_total',
    help: 'Estimated cost of provider requests from the configured prices per 1M tokens, by provider, upstream model, caller tier and currency.',
    labelNames: ['provider', 'model', 'tier', 'currency'] as const,
    registers: [this.registry],
  })
  readonly fallbacks = new Counter({
    name: 'infer_gateway_fallbacks_total',
    help: 'Requests handed from one route target to the next fallback target, by route, from, to and reason.',
    labelNames: ['route', 'from', 'to', 'reason'] as const,
    registers: [this.registry],
  })
  // Prefill/decode disaggregation (serve/pd-target.ts), one observation per phase that ran.
  readonly prefillDuration = new Histogram({
    name: 'infer_gateway_prefill_duration_seconds',
    help: 'Prefill phase of a prefill/decode request: prefill request sent to its answer read, by server, connector and outcome (ok|error).',
    labelNames: ['server', 'connector', 'outcome'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  })
  readonly decodeDuration = new Histogram({
    name: 'infer_gateway_decode_duration_seconds',
    help: 'Decode phase of a prefill/decode request: decode request sent to its last byte, by server, connector and outcome (ok|error).',
    labelNames: ['server', 'connector', 'outcome'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  })

  // Per-request latency as the router measures it, by model, route and target (`server:<key>` or
  // `provider:<key>`): all three bounded by the snapshot.
  readonly timeToFirstToken = new Histogram({
    name: 'infer_gateway_time_to_first_token_seconds',
    help: 'Time from request received to the first generated token (first SSE event with content; the whole body when not streamed).',
    labelNames: ['model', 'route', 'target'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  })
  readonly timePerOutputToken = new Histogram({
    name: 'infer_gateway_time_per_output_token_seconds',
    help: 'Mean inter-token latency of a stream: (end - first token) / (output tokens - 1), streams with 2+ output tokens.',
    labelNames: ['model', 'route', 'target'] as const,
    buckets: TPOT_BUCKETS,
    registers: [this.registry],
  })
  readonly e2e = new Histogram({
    name: 'infer_gateway_e2e_request_duration_seconds',
    help: 'Time from request received to the end of the response, for requests that reached a target.',
    labelNames: ['model', 'route', 'target'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  })
  // The endpoint label is `upstream_host` (address:port, as Envoy names it), not `endpoint`:
  // prometheus-operator adds an `endpoint` target label to every series it scrapes, which would
  // rename ours to `exported_endpoint`.
  // Per endpoint (pod `address:port`) of a model server; series of endpoints that left the
  // snapshot are removed (`pruneEndpoints`).
  readonly endpointRequests = new Counter({
    name: 'infer_gateway_endpoint_requests_total',
    help: 'Responses from an engine endpoint (the attempt that answered), by server, endpoint and status class.',
    labelNames: ['server', 'upstream_host', 'status_class'] as const,
    registers: [this.registry],
  })
  readonly endpointErrors = new Counter({
    name: 'infer_gateway_endpoint_errors_total',
    help: 'Failed attempts and cut responses of an engine endpoint, by server, endpoint and reason.',
    labelNames: ['server', 'upstream_host', 'reason'] as const,
    registers: [this.registry],
  })
  /** Where the scheduler gauges read from at scrape time (set by the gateway's assembly). */
  schedulerView: (() => SchedulerGaugeView | undefined) | undefined
  readonly endpointInflight = new Gauge({
    name: 'infer_gateway_endpoint_inflight_requests',
    help: 'Requests this gateway has outstanding at an engine endpoint.',
    labelNames: ['server', 'upstream_host'] as const,
    registers: [this.registry],
    collect: () => this.#collectScheduler(),
  })
  // Engine numbers are the same in every worker (the primary scrapes once): not summed.
  readonly endpointEjected = new Gauge({
    name: 'infer_gateway_endpoint_ejected',
    help: '1 while passive health keeps the endpoint out of rotation.',
    labelNames: ['server', 'upstream_host'] as const,
    aggregator: 'max',
    registers: [this.registry],
  })
  readonly engineWaiting = new Gauge({
    name: 'infer_gateway_engine_waiting_requests',
    help: 'Requests queued inside the engine (its own metric, from the last scrape).',
    labelNames: ['server', 'upstream_host'] as const,
    aggregator: 'max',
    registers: [this.registry],
  })
  readonly engineRunning = new Gauge({
    name: 'infer_gateway_engine_running_requests',
    help: "Requests in the engine's running batch (from the last scrape).",
    labelNames: ['server', 'upstream_host'] as const,
    aggregator: 'max',
    registers: [this.registry],
  })
  readonly engineKvUsage = new Gauge({
    name: 'infer_gateway_engine_kv_cache_usage_ratio',
    help: 'Engine KV-cache usage 0..1 (from the last scrape).',
    labelNames: ['server', 'upstream_host'] as const,
    aggregator: 'max',
    registers: [this.registry],
  })
  readonly queueDepth = new Gauge({
    name: 'infer_gateway_queue_depth',
    help: "Requests waiting in the gateway's admission queue of a model server (fairness plugin).",
    labelNames: ['server'] as const,
    registers: [this.registry],
  })
  readonly schedulerDecision = new Histogram({
    name: 'infer_gateway_scheduler_decision_duration_seconds',
    help: 'Time the scheduler took to order the endpoints of one request.',
    labelNames: ['server'] as const,
    buckets: DECISION_BUCKETS,
    registers: [this.registry],
  })
  readonly schedulerPicks = new Counter({
    name: 'infer_gateway_scheduler_picks_total',
    help: "Decisions by the plugin that contributed most to the winner's lead (single: one candidate; tie: no score separated them).",
    labelNames: ['server', 'plugin'] as const,
    registers: [this.registry],
  })
  readonly ejections = new Counter({
    name: 'infer_gateway_endpoint_ejections_total',
    help: 'Endpoints taken out of rotation by passive health (one per episode), by reason.',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  })
  readonly readmissions = new Counter({
    name: 'infer_gateway_endpoint_readmissions_total',
    help: 'Ejected endpoints fully back in rotation.',
    registers: [this.registry],
  })
  readonly shadowRequests = new Counter({
    name: 'infer_gateway_shadow_requests_total',
    help: "Shadow requests (the prompt with one output token, answer dropped) by reason: copy (a hot prefix group's warm copy on a second engine), rewarm (a group a dead or restarted engine held, computed on its new pod); and by outcome: ok, failed, dropped (over the in-flight bound).",
    labelNames: ['outcome', 'reason'] as const,
    registers: [this.registry],
  })

  /** The scheduler's observer: children bound per server and (server, plugin). */
  schedulerObserver(): SchedulerObserver {
    const decisions = new Map<string, HistogramChild>()
    const picks = new Map<string, CounterChild>()
    return {
      decision: (server, seconds, plugin) => {
        let h = decisions.get(server)
        if (h === undefined) {
          h = bindHistogram(this.schedulerDecision, { server })
          decisions.set(server, h)
        }
        h.observe(seconds)
        const key = `${server}\u0000${plugin}`
        let c = picks.get(key)
        if (c === undefined) {
          c = bindCounter(this.schedulerPicks, { server, plugin })
          picks.set(key, c)
        }
        c.inc()
      },
      ejected: (reason) => this.ejections.inc({ reason }),
      readmitted: () => this.readmissions.inc(),
    }
  }

  /** A new snapshot: endpoint series of pods it no longer lists go (see pruneEndpoints). */
  onSnapshot(snapshot: RoutingSnapshot): void {
    const live = new Set<string>()
    for (const s of Object.values(snapshot.servers))
      for (const ep of s.endpoints) live.add(`${s.key}\u0000${ep.address}:${ep.port}`)
    this.pruneEndpoints(live)
  }

  #collectScheduler(): void {
    this.endpointInflight.reset()
    this.endpointEjected.reset()
    this.engineWaiting.reset()
    this.engineRunning.reset()
    this.engineKvUsage.reset()
    this.queueDepth.reset()
    const v = this.schedulerView?.()
    if (v === undefined) return
    for (const e of v.endpoints) {
      const l = { server: e.server, upstream_host: e.endpoint }
      this.endpointInflight.set(l, e.inFlight)
      this.endpointEjected.set(l, e.ejected ? 1 : 0)
      if (e.waiting !== undefined) this.engineWaiting.set(l, e.waiting)
      if (e.running !== undefined) this.engineRunning.set(l, e.running)
      if (e.kvCacheUsage !== undefined) this.engineKvUsage.set(l, e.kvCacheUsage)
    }
    for (const [server, n] of v.queues) this.queueDepth.set({ server }, n)
  }

  /** Bound children per (server, endpoint): see `endpoint`. */
  readonly #endpoints = new Map<string, EndpointSeries>()

  /** One endpoint's counters, children bound once (forgotten by `pruneEndpoints`). */
  endpoint(server: string, endpoint: string): EndpointSeries {
    const key = `${server}\u0000${endpoint}`
    let s = this.#endpoints.get(key)
    if (s === undefined) {
      s = new EndpointSeries(this, server, endpoint)
      this.#endpoints.set(key, s)
    }
    return s
  }

  /**
   * A new snapshot went live: the series of (server, endpoint) pairs it no longer has are
   * removed, so a churning deployment does not grow /metrics forever.
   */
  pruneEndpoints(live: ReadonlySet<string>): void {
    for (const [key, s] of this.#endpoints) {
      if (live.has(key)) continue
      s.remove()
      this.#endpoints.delete(key)
    }
  }

  /** Bound children per (model, route, target): see `latency`. */
  readonly #latency = new Map<string, LatencySeries>()

  latency(model: string, route: string, target: string): LatencySeries {
    const key = `${model}\u0000${route}\u0000${target}`
    let s = this.#latency.get(key)
    if (s === undefined) {
      const l = { model, route, target }
      s = {
        ttft: bindHistogram(this.timeToFirstToken, l),
        tpot: bindHistogram(this.timePerOutputToken, l),
        e2e: bindHistogram(this.e2e, l),
      }
      this.#latency.set(key, s)
    }
    return s
  }

  /** Where the upstream pool gauges read from at scrape time (set by the gateway's assembly). */
  upstreamPools: (() => ReadonlyMap<string, ServerPoolStats>) | undefined
  readonly upstreamWaiting = new Gauge({
    name: 'infer_gateway_upstream_waiting_requests',
    help: 'Requests waiting for a connection to an engine of the model server (past the per-engine connection limit, --upstream-connections, or while connecting).',
    labelNames: ['server'] as const,
    registers: [this.registry],
    collect: () => this.#collectPools(),
  })
  readonly upstreamConnections = new Gauge({
    name: 'infer_gateway_upstream_connections',
    help: 'Open connections to the engines of the model server, by state (active: carrying a request; idle).',
    labelNames: ['server', 'state'] as const,
    registers: [this.registry],
  })

  /** Fills both pool gauges from one read; labels only for servers of the live snapshot. */
  #collectPools(): void {
    this.upstreamWaiting.reset()
    this.upstreamConnections.reset()
    const stats = this.upstreamPools?.()
    if (stats === undefined) return
    for (const [server, s] of stats) {
      this.upstreamWaiting.set({ server }, s.waiting)
      const active = Math.min(s.active, s.connections)
      this.upstreamConnections.set({ server, state: 'active' }, active)
      this.upstreamConnections.set({ server, state: 'idle' }, s.connections - active)
    }
  }

  // The process-wide cache of hashed long prompt pieces (scheduler/prompt-hasher.ts): bounded,
  // but it fills with the long pieces of traffic over hours, so the heap keeps rising by up to
  // its cap long after start; these say how much of that rise it is.
  readonly promptCacheBytes = new Gauge({
    name: 'infer_gateway_prompt_cache_bytes',
    help: 'Bytes held by the cache of hashed long prompt pieces, counted against its cap (text at 2 bytes a character, plus block hashes).',
    registers: [this.registry],
    collect: () => {
      const s = promptHasher.stats()
      this.promptCacheBytes.set(s.bytes)
      this.promptCacheEntries.set(s.entries)
    },
  })
  readonly promptCacheEntries = new Gauge({
    name: 'infer_gateway_prompt_cache_entries',
    help: 'Entries (a piece in one chain state) in the cache of hashed long prompt pieces.',
    registers: [this.registry],
  })

  /** Bound children per (model, api): see `series`. */
  readonly #series = new Map<string, RequestSeries>()

  /**
   * The request metrics of one model label and API with their label children bound once
   * (prom-client's `inc(labels)` hashes the label object on every call). Model labels are bounded
   * by the snapshot; `forgetSeries` drops the bindings when a new snapshot goes live.
   */
  series(model: string, api: string): RequestSeries {
    const key = `${model}\u0000${api}`
    let s = this.#series.get(key)
    if (s === undefined) {
      s = new RequestSeries(this, model, api)
      this.#series.set(key, s)
    }
    return s
  }

  forgetSeries(): void {
    this.#series.clear()
    this.#latency.clear()
  }

  constructor(opts: { processMetrics?: boolean } = {}) {
    // Reload counters exist from the start so "no failures yet" reads 0, not absent.
    this.reloads.inc({ result: 'success' }, 0)
    this.reloads.inc({ result: 'failure' }, 0)
    if (opts.processMetrics) collectProcessMetrics(this.registry)
  }
}

// Bound once (metrics-bound.ts): prom-client's own children hash their labels on every call.
type CounterChild = BoundCounter
type HistogramChild = BoundHistogram

export interface LatencySeries {
  readonly ttft: HistogramChild
  readonly tpot: HistogramChild
  readonly e2e: HistogramChild
}

/** One endpoint's request and error counters (status classes and reasons are small sets). */
export class EndpointSeries {
  readonly #children = new Map<string, CounterChild>()
  readonly #metrics: GatewayMetrics
  readonly #server: string
  readonly #endpoint: string

  constructor(metrics: GatewayMetrics, server: string, endpoint: string) {
    this.#metrics = metrics
    this.#server = server
    this.#endpoint = endpoint
  }

  response(status: number): void {
    const key = `s${status}`
    let c = this.#children.get(key)
    if (c === undefined) {
      c = bindCounter(this.#metrics.endpointRequests, {
        server: this.#server,
        upstream_host: this.#endpoint,
        status_class: statusClass(status),
      })
      this.#children.set(key, c)
    }
    c.inc()
  }

  error(reason: string): void {
    const key = `e${reason}`
    let c = this.#children.get(key)
    if (c === undefined) {
      c = bindCounter(this.#metrics.endpointErrors, {
        server: this.#server,
        upstream_host: this.#endpoint,
        reason,
      })
      this.#children.set(key, c)
    }
    c.inc()
  }

  /** Drops this endpoint's series from the registry. */
  remove(): void {
    const l = { server: this.#server, upstream_host: this.#endpoint }
    for (const key of this.#children.keys()) {
      if (key.startsWith('s'))
        this.#metrics.endpointRequests.remove({ ...l, status_class: `${key.slice(1, 2)}xx` })
      else this.#metrics.endpointErrors.remove({ ...l, reason: key.slice(1) })
    }
    this.#children.clear()
  }
}

/** One model label and API's request metrics, children bound (see GatewayMetrics.series). */
export class RequestSeries {
  readonly duration: HistogramChild
  readonly ttft: HistogramChild
  readonly inputTokens: CounterChild
  readonly outputTokens: CounterChild
  readonly #requests = new Map<string, CounterChild>()
  readonly #metrics: GatewayMetrics
  readonly #model: string
  readonly #api: string

  constructor(metrics: GatewayMetrics, model: string, api: string) {
    this.#metrics = metrics
    this.#model = model
    this.#api = api
    this.duration = bindHistogram(metrics.duration, { model, api })
    this.ttft = bindHistogram(metrics.ttft, { model, api })
    this.inputTokens = bindCounter(metrics.tokens, { model, type: 'input' })
    this.outputTokens = bindCounter(metrics.tokens, { model, type: 'output' })
  }

  /** The requests counter for one status and error code (both bounded: codes are the catalogue's). */
  requests(status: number, code: string): CounterChild {
    const key = `${status}:${code}`
    let c = this.#requests.get(key)
    if (c === undefined) {
      c = bindCounter(this.#metrics.requests, {
        model: this.#model,
        api: this.#api,
        status_class: statusClass(status),
        code,
      })
      this.#requests.set(key, c)
    }
    return c
  }
}

export function statusClass(status: number): string {
  return `${Math.floor(status / 100)}xx`
}
