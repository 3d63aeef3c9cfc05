// The data plane's own Prometheus metrics, on a registry per instance (tests run several gateways
// in one process). Labels are bounded: model names come from the snapshot (anything else is
// "unknown"), statuses are classes, never raw paths or client identities.
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client'
import type { ServerPoolStats } from './proxy/upstream-pool.js'

const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300]

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
  }

  constructor(opts: { processMetrics?: boolean } = {}) {
    // Reload counters exist from the start so "no failures yet" reads 0, not absent.
    this.reloads.inc({ result: 'success' }, 0)
    this.reloads.inc({ result: 'failure' }, 0)
    if (opts.processMetrics) collectDefaultMetrics({ register: this.registry })
  }
}

type CounterChild = ReturnType<Counter<string>['labels']>
type HistogramChild = ReturnType<Histogram<string>['labels']>

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
    this.duration = metrics.duration.labels({ model, api })
    this.ttft = metrics.ttft.labels({ model, api })
    this.inputTokens = metrics.tokens.labels({ model, type: 'input' })
    this.outputTokens = metrics.tokens.labels({ model, type: 'output' })
  }

  /** The requests counter for one status and error code (both bounded: codes are the catalogue's). */
  requests(status: number, code: string): CounterChild {
    const key = `${status}:${code}`
    let c = this.#requests.get(key)
    if (c === undefined) {
      c = this.#metrics.requests.labels({
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
