// The operator's Prometheus metrics, in its own registry (never the global one: tests and a
// process running several components must not collide). Label sets are bounded: informer names,
// kinds and fixed result/reason words, never object names.
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client'

export class OperatorMetrics {
  readonly registry = new Registry()
  readonly reconciles: Counter<'kind' | 'result'>
  readonly reconcileSeconds: Histogram<'kind'>
  readonly queueDepth: Gauge
  readonly informerRestarts: Counter<'informer' | 'reason'>
  readonly informerObjects: Gauge<'informer'>
  readonly lastEventAge: Gauge<'informer'>
  readonly compileSeconds: Histogram
  readonly snapshotVersion: Gauge
  readonly snapshotBytes: Gauge<'encoding'>
  readonly publishes: Counter<'result'>
  readonly publishFailures: Counter<'reason'>
  readonly statusPatches: Counter<'kind' | 'result'>
  readonly events: Counter<'type' | 'result'>
  readonly leader: Gauge

  /** Informer name → wall-clock ms of its last activity; set by whoever owns the informers. */
  lastActivitySource: (() => Record<string, number>) | undefined

  constructor(opts: { processMetrics?: boolean } = {}) {
    const registers = [this.registry]
    const p = 'infer_gateway_operator_'
    this.reconciles = new Counter({
      name: `${p}reconcile_total`,
      help: 'Work-queue items processed, by kind (snapshot, ModelRoute, ModelServer) and result.',
      labelNames: ['kind', 'result'],
      registers,
    })
    this.reconcileSeconds = new Histogram({
      name: `${p}reconcile_duration_seconds`,
      help: 'Time per work-queue item.',
      labelNames: ['kind'],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    })
    this.queueDepth = new Gauge({
      name: `${p}queue_depth`,
      help: 'Keys waiting in the work queue (ready to run).',
      registers,
    })
    this.informerRestarts = new Counter({
      name: `${p}informer_restarts_total`,
      help: 'List/watch restarts: error (backoff), stall (watchdog) or gone (410, re-list).',
      labelNames: ['informer', 'reason'],
      registers,
    })
    this.informerObjects = new Gauge({
      name: `${p}informer_objects`,
      help: 'Objects in each informer cache.',
      labelNames: ['informer'],
      registers,
    })
    const source = (): (() => Record<string, number>) | undefined => this.lastActivitySource
    this.lastEventAge = new Gauge({
      name: `${p}informer_last_event_age_seconds`,
      help: 'Seconds since each informer last received a list, event or bookmark.',
      labelNames: ['informer'],
      registers,
      collect() {
        const read = source()
        if (read === undefined) return
        const now = Date.now()
        for (const [informer, at] of Object.entries(read())) {
          if (at > 0) this.set({ informer }, (now - at) / 1000)
        }
      },
    })
    this.compileSeconds = new Histogram({
      name: `${p}compile_duration_seconds`,
      help: 'Endpoint derivation plus snapshot compilation per rebuild.',
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2],
      registers,
    })
    this.snapshotVersion = new Gauge({
      name: `${p}snapshot_version`,
      help: 'Version of the snapshot this replica serves on its push channel.',
      registers,
    })
    this.snapshotBytes = new Gauge({
      name: `${p}snapshot_bytes`,
      help: 'Size of the last built snapshot (json, gzip).',
      labelNames: ['encoding'],
      registers,
    })
    this.publishes = new Counter({
      name: `${p}snapshot_publishes_total`,
      help: 'Snapshot ConfigMap writes by the leader, by result.',
      labelNames: ['result'],
      registers,
    })
    this.publishFailures = new Counter({
      name: `${p}snapshot_publish_failures_total`,
      help: 'Snapshots that could not be published: too_large, conflict, api_error.',
      labelNames: ['reason'],
      registers,
    })
    this.statusPatches = new Counter({
      name: `${p}status_patches_total`,
      help: 'Status subresource patches, by kind and result.',
      labelNames: ['kind', 'result'],
      registers,
    })
    this.events = new Counter({
      name: `${p}events_total`,
      help: 'Kubernetes Events emitted on condition transitions, by type and result.',
      labelNames: ['type', 'result'],
      registers,
    })
    this.leader = new Gauge({
      name: `${p}leader`,
      help: '1 while this replica holds the leader Lease (or runs without leader election).',
      registers,
    })
    if (opts.processMetrics) collectDefaultMetrics({ register: this.registry, prefix: p })
  }
}
