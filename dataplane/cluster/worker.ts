// One worker process of `--workers N`: the whole data plane (config, filters, app, listener on the
// shared socket), except that it does not scrape engines. Scrape results, and what the other
// workers have in flight, come from the primary; this worker reports its own in-flight back.
// Signals are the primary's business: a terminal's Ctrl-C reaches every process of the group, and
// a worker that drained on its own would be killed by the primary's SIGTERM that follows.
import process from 'node:process'
import { AggregatorRegistry } from 'prom-client'
import type { RoutingSnapshot, SnapshotEndpoint } from '../../api/snapshot.js'
import { type Gateway, type GatewayOptions, startGateway } from '../gateway.js'
import type { Logger } from '../log.js'
import type { DispatchOutcome, PickContext, ShadowPlan } from '../picker.js'
import { Scheduler, type SchedulerOptions } from '../scheduler/index.js'
import type { LoadEntry } from './load.js'
import { isOurs, type ToPrimary, type ToWorker, WORKER_INDEX_ENV } from './protocol.js'
import { LeasedBackend } from './ratelimit.js'
import { packDispatches, ReportBuilder, ReportPacer, unpackDispatches } from './relay.js'

/**
 * Gauges that must not be summed over workers (prom-client sums by default): every worker loads
 * the same config, so the aggregate is the worker that is furthest behind (an alert on a stale
 * version or an old last reload then fires when any worker lags).
 */
const NOT_ADDITIVE: readonly (readonly [string, 'min'])[] = [
  ['infer_gateway_snapshot_version', 'min'],
  ['infer_gateway_config_last_reload_success_timestamp_seconds', 'min'],
]

/**
 * At most this often in-flight counts and dispatches go to the primary (only when they changed;
 * relay.ts ReportPacer: from the turn of a request event, 2× this after the last without one).
 */
export const LOAD_REPORT_MS = 25
/**
 * A report is also considered this often whatever happens: in-flight may change without a request
 * event of this scheduler (an endpoint leaving the config), and this catches it. Slow on purpose:
 * it is the only wake-up an idle worker has for reports.
 */
const REPORT_SWEEP_MS = 1_000

/** The scheduler of a worker: scraped by the primary; says which worker decided, when asked. */
export class WorkerScheduler extends Scheduler {
  readonly worker: number
  /** Called after every event that may change what the worker reports (dispatch, completion…). */
  changed: () => void = () => {}
  constructor(worker: number, opts: SchedulerOptions) {
    super(opts)
    this.worker = worker
  }

  override onDispatch(ctx: PickContext, endpoint: SnapshotEndpoint): void {
    super.onDispatch(ctx, endpoint)
    this.changed()
  }

  override onComplete(
    ctx: PickContext,
    endpoint: SnapshotEndpoint,
    outcome: DispatchOutcome,
  ): void {
    super.onComplete(ctx, endpoint, outcome)
    this.changed()
  }

  override onSnapshot(snapshot: RoutingSnapshot): void {
    super.onSnapshot(snapshot)
    this.changed()
  }

  /** A shadow request counts in flight from its start to its end, like a dispatch. */
  override shadow(ctx: PickContext): ShadowPlan | undefined {
    const plan = super.shadow(ctx)
    if (plan === undefined) return undefined
    return {
      endpoint: plan.endpoint,
      start: () => {
        const end = plan.start()
        this.changed()
        return (ok) => {
          end(ok)
          this.changed()
        }
      },
    }
  }

  override pick(ctx: PickContext): readonly SnapshotEndpoint[] {
    const out = super.pick(ctx)
    // Only with --explain and the request header: the worker id stays out of normal responses.
    if (ctx.explain !== undefined)
      ctx.explain.text = `${ctx.explain.text ?? ''} | worker=${this.worker}`
    return out
  }

  override debug(): unknown {
    return { worker: { index: this.worker, pid: process.pid }, ...(super.debug() as object) }
  }
}

function send(m: ToPrimary): void {
  if (process.connected) process.send?.(m)
}

/** For rate limits: a reservation must fail at once (not wait out its timeout) without a primary. */
function sendOrThrow(m: ToPrimary): void {
  if (!process.connected || process.send === undefined) throw new Error('the primary is gone')
  process.send(m)
}

export async function runWorker(
  opts: GatewayOptions,
  drain: { readonly drainDelayMs: number; readonly deadlineMs: number },
  log: Logger,
): Promise<void> {
  const index = Number(process.env[WORKER_INDEX_ENV] ?? '0')
  const scheduler = new WorkerScheduler(index, {
    log,
    ...opts.scheduler,
    // Scraped by the primary; `--scrape off` is off here too (not "scraped elsewhere, never heard").
    scrape:
      opts.scheduler?.scrape === false
        ? false
        : { ...(opts.scheduler?.scrape || {}), external: true },
    shareDispatches: true,
    // Re-warms of a dead engine's groups (scheduler/plugins/rewarm.ts) from the first worker only:
    // the bodies are in the workers (the primary never sees one), and one sender keeps a kill from
    // sending each lost group N times. Its warm groups are those it sees (its share of the
    // traffic); its index has every worker's placements (shared dispatches).
    rewarm: index === 0,
  })
  // Local rate-limit counters are the primary's (one budget for all workers); see ratelimit.ts.
  const rateLimits = new LeasedBackend({ send: sendOrThrow })
  const waiting = new Map<number, { ok: (t: string) => void; fail: (e: Error) => void }>()
  let stop: () => void = () => {}
  const stopped = new Promise<void>((r) => {
    stop = r
  })
  process.on('message', (m: unknown) => {
    if (!isOurs<ToWorker>(m)) return
    switch (m.t) {
      case 'igw:scrape-start':
        scheduler.scrapeStarted(m.id)
        break
      case 'igw:scrape':
        scheduler.ingestScrape(m.id, m.r)
        break
      case 'igw:peers':
        if (m.d !== undefined) scheduler.applyPeerDispatches(unpackDispatches(m.d))
        if (m.load !== undefined)
          scheduler.setPeerLoad(new Map(m.load.map(([id, n, t]) => [id, [n, t] as const])))
        break
      case 'igw:metrics': {
        const w = waiting.get(m.rid)
        waiting.delete(m.rid)
        if (m.text !== undefined) w?.ok(m.text)
        else w?.fail(new Error(m.error ?? 'no metrics from the primary'))
        break
      }
      case 'igw:rl-result':
        rateLimits.onResult(m)
        break
      case 'igw:shutdown':
        stop()
        break
    }
  })
  // The primary is gone (killed): nobody scrapes or coordinates any more, so leave too.
  process.on('disconnect', () => stop())
  const ignore = (): void => {}
  process.on('SIGINT', ignore)
  process.on('SIGTERM', ignore)

  let gw: Gateway
  try {
    gw = await startGateway({ ...opts, picker: scheduler, localRateLimit: rateLimits })
  } catch (e) {
    await scheduler.close()
    throw e
  }
  // /metrics on any worker answers the sum over all workers: prom-client's AggregatorRegistry
  // (the primary asks every worker for its registry as JSON and aggregates). app.ts renders
  // `registry.metrics()`, so that one method of this instance asks the primary instead.
  for (const [name, how] of NOT_ADDITIVE) {
    const m = gw.metrics.registry.getSingleMetric(name) as { aggregator?: string } | undefined
    if (m !== undefined) m.aggregator = how
  }
  AggregatorRegistry.setRegistries([gw.metrics.registry])
  new AggregatorRegistry() // installs the worker-side listener prom-client answers the primary with
  let rid = 0
  gw.metrics.registry.metrics = () =>
    new Promise<string>((ok, fail) => {
      const id = rid++
      const timer = setTimeout(() => {
        waiting.delete(id)
        fail(new Error('the primary did not answer for /metrics in time'))
      }, 6_000)
      waiting.set(id, {
        ok: (t) => {
          clearTimeout(timer)
          ok(t)
        },
        fail: (e) => {
          clearTimeout(timer)
          fail(e)
        },
      })
      send({ t: 'igw:metrics-req', rid: id })
    })

  // One message for both (relay.ts), none when nothing changed, sent from the turn of a request
  // event rather than from a timer waking the process for it.
  const reports = new ReportBuilder()
  const pacer = new ReportPacer(
    () => {
      const load: LoadEntry[] = []
      for (const [id, [n, t]] of scheduler.localLoad()) load.push([id, n, t])
      const d = scheduler.takeDispatches()
      const u = reports.build(load, d.length > 0 ? packDispatches(d) : [])
      if (u !== undefined) send({ t: 'igw:report', ...u })
    },
    LOAD_REPORT_MS,
    {
      now: () => performance.now(),
      after: (ms, fn) => setTimeout(fn, ms).unref(),
      cancel: (h) => clearTimeout(h as NodeJS.Timeout),
      soon: (fn) => setImmediate(fn),
    },
  )
  scheduler.changed = () => pacer.kick()
  const report = setInterval(() => pacer.kick(), REPORT_SWEEP_MS)
  report.unref()
  send({ t: 'igw:ready', url: gw.url })
  log('info', 'worker listening', { worker: index, pid: process.pid, url: gw.url })

  await stopped
  log('info', 'worker draining', { worker: index })
  const { forced } = await gw.shutdown(drain)
  clearInterval(report)
  pacer.stop()
  scheduler.changed = () => {}
  await scheduler.close()
  log('info', 'worker stopped', { worker: index, forcedConnections: forced })
  // The IPC channel would keep the process alive; everything is closed by now.
  process.exit(0)
}
