// `infer-gateway dataplane --workers N`: N worker processes behind one listening socket
// (node:cluster; the primary accepts and hands connections out round-robin), and a primary that
// serves no requests but keeps the scheduling state of the workers in agreement.
//
// Design (issue 11, item 3):
// - Config: every worker loads it itself (the same files or push channel, the same hot reload),
//   exactly as a single process does; the primary loads it too, only to know what to scrape.
//   Forwarding the primary's snapshot instead would add a second reload path to keep right, for
//   no gain: the snapshot compiles deterministically, so all processes converge on the same one
//   within a poll interval (the same window two data-plane replicas already live with).
// - Engine metrics are scraped ONCE, by the primary (engines/scraper.ts, same defaults as the
//   single-process scheduler). Each scrape's start and result (parsed metrics, unreachable /
//   bad answer, detected engine restart) are broadcast; workers feed them to their scheduler as
//   if they had scraped (`Scheduler.scrapeStarted` / `ingestScrape`, ScrapeOptions.external), so
//   health, staleness and restart handling are the single-process code. Workers never scrape.
// - One message each way (relay.ts): at most every LOAD_REPORT_MS a worker sends one report holding
//   what changed (its in-flight, the prefix blocks it dispatched); the primary relays at once (at
//   most every BROADCAST_MS) one message per worker holding what changed for it (the others'
//   in-flight, the blocks they dispatched). Each message wakes a process, which is most of what
//   this traffic costs (relay.ts has the figures).
// - In-flight agreed: at most every LOAD_REPORT_MS (25 ms; 50 ms after the last request event,
//   relay.ts ReportPacer), and only when it changed, a worker sends its in-flight requests and
//   tokens per endpoint; the primary sums the other workers' for each worker (load.ts) and sends
//   that view when it changed, at most every BROADCAST_MS. A worker's blended
//   load is then the engine's waiting+running at the last scrape plus ALL workers' in-flight change
//   since that scrape (own exactly, others' as of the latest view; scheduler/state.ts), never below
//   everyone's in-flight. Between two scrapes a burst on one worker is seen by the others within
//   tens of milliseconds instead of at the next scrape.
// - Prefix index shared: with the same reports a worker sends the prefix blocks it dispatched
//   (per server, profile plugin and endpoint: `Scheduler.takeDispatches`), the primary relays them
//   to the other workers with the next broadcast (at most BROADCAST_MS later), which record them in
//   the same plugin (`applyPeerDispatches`). Without
//   this each worker places prefixes on its own and a shared prefix can end up cached on up to N
//   pods. Dispatches arrive a few tens of milliseconds late; rendezvous tie-breaks on the prompt's
//   head make workers that see the same state agree in the meantime.
// - Local rate limits: the counters live here, once (cluster/ratelimit.ts); workers decide on
//   small leases of the budget and ask the primary when a lease does not cover a request, so a
//   tenant's limit holds across workers (bounds on the lease slack in that file).
// - /metrics: prom-client's AggregatorRegistry. Any worker asked for /metrics asks the primary,
//   which collects every worker's registry and answers the aggregate (sums; gauges like the
//   snapshot version are the same in every worker).
// - Signals: SIGTERM/SIGINT to the primary tells every worker to drain (readiness off, drain delay,
//   in-flight requests finish) and waits for them; workers ignore signals themselves. A worker that
//   exits otherwise is restarted (backoff doubling from 500 ms to 30 s while it keeps crashing
//   within 10 s of its start); if the primary dies, workers drain and exit (IPC disconnect).
import cluster, { type Worker } from 'node:cluster'
import process from 'node:process'
import { AggregatorRegistry } from 'prom-client'
import { untilSignal } from '../command.js'
import { MetricsScraper, type ScrapeResult } from '../engines/scraper.js'
import { configSources, type GatewayOptions } from '../gateway.js'
import type { Logger } from '../log.js'
import { GatewayMetrics } from '../metrics.js'
import { scrapeTargetsOf } from '../scheduler/index.js'
import { SnapshotStore } from '../snapshot-store.js'
import {
  isOurs,
  type ToPrimary,
  type ToWorker,
  WORKER_ARGS_ENV,
  WORKER_INDEX_ENV,
} from './protocol.js'
import { LeaseServer } from './ratelimit.js'
import { PeerRelay } from './relay.js'

/**
 * At most this often the primary sends each worker what the others changed (in-flight, dispatches).
 */
export const BROADCAST_MS = 10
const RESTART_MIN_MS = 500
const RESTART_MAX_MS = 30_000
/** A worker that ran this long before exiting restarts at once (not a crash loop). */
const STABLE_MS = 10_000

export class ClusterError extends Error {
  override readonly name = 'ClusterError'
  readonly code = 'WORKER_START_FAILED'
}

export interface PrimaryOptions {
  readonly workers: number
  /** The dataplane arguments, re-parsed by each worker. */
  readonly args: readonly string[]
  readonly gateway: GatewayOptions
  readonly drainDelayMs: number
  readonly deadlineMs: number
  readonly log: Logger
}

interface Slot {
  readonly index: number
  worker: Worker | undefined
  startedAt: number
  ready: boolean
  backoffMs: number
  restartTimer: NodeJS.Timeout | undefined
}

export async function runPrimary(o: PrimaryOptions): Promise<void> {
  const { log } = o
  const store = new SnapshotStore()
  const metrics = new GatewayMetrics({ processMetrics: false })
  const { source, push } = configSources(o.gateway, store, metrics, log)
  const slots: Slot[] = Array.from({ length: o.workers }, (_, i) => ({
    index: i + 1,
    worker: undefined,
    startedAt: 0,
    ready: false,
    backoffMs: RESTART_MIN_MS,
    restartTimer: undefined,
  }))
  const broadcast = (m: ToWorker): void => {
    for (const s of slots) if (s.worker?.isConnected()) s.worker.send(m)
  }
  const scrape = o.gateway.scheduler?.scrape
  // `--scrape off`: nobody scrapes (the workers' schedulers are told so too, worker.ts).
  const scraper =
    scrape === false
      ? undefined
      : new MetricsScraper({
          ...(scrape ?? {}),
          onStart: (id) => broadcast({ t: 'igw:scrape-start', id }),
          onResult: (id: string, r: ScrapeResult) => broadcast({ t: 'igw:scrape', id, r }),
        })
  store.onSwap((s) => scraper?.sync(scrapeTargetsOf(s)))

  const relay = new PeerRelay()
  const indices = slots.map((s) => s.index)
  let broadcastTimer: NodeJS.Timeout | undefined
  let lastBroadcast = Number.NEGATIVE_INFINITY
  const sendPeers = (): void => {
    if (broadcastTimer !== undefined) clearTimeout(broadcastTimer)
    broadcastTimer = undefined
    lastBroadcast = performance.now()
    for (const s of slots) {
      if (!s.worker?.isConnected()) continue
      const u = relay.take(s.index)
      if (u !== undefined) s.worker.send({ t: 'igw:peers', ...u } satisfies ToWorker)
    }
  }
  // Leading edge: relayed in the turn the report woke the primary for, unless a broadcast went out
  // less than BROADCAST_MS ago (then a timer sends what gathered). Waiting BROADCAST_MS after each
  // load report, as before, woke the primary a second time for it (relay.ts: wake-ups are most of
  // what this traffic costs).
  const schedulePeers = (): void => {
    if (broadcastTimer !== undefined) return
    const wait = lastBroadcast + BROADCAST_MS - performance.now()
    if (wait <= 0) sendPeers()
    else broadcastTimer = setTimeout(sendPeers, wait)
  }
  const aggregator = new AggregatorRegistry()
  // The one set of local rate-limit counters; workers lease from it (ratelimit.ts).
  const rateLimits = new LeaseServer({ workers: o.workers })

  let stopping = false
  let anyReady = false
  let startupFailed: (e: Error) => void = () => {}
  let allReady: (url: string) => void = () => {}
  const started = new Promise<string>((ok, fail) => {
    allReady = ok
    startupFailed = fail
  })

  const fork = (s: Slot): void => {
    s.restartTimer = undefined
    s.ready = false
    relay.reset(s.index)
    s.startedAt = performance.now()
    const w = cluster.fork({
      [WORKER_INDEX_ENV]: String(s.index),
      [WORKER_ARGS_ENV]: JSON.stringify(o.args),
    })
    log('info', 'worker starting', { worker: s.index, pid: w.process.pid })
    // A send racing the worker's exit fails with an 'error' event: the exit handler deals with it.
    w.on('error', (e: Error) =>
      log('warn', 'worker channel error', { worker: s.index, error: e.message }),
    )
    s.worker = w
  }

  // Workers run with this process's Node flags (Node's default, spelt out so that it stays): the
  // young generation the manifests give the data plane (cdk8s/dataplane-node.ts) must hold in the
  // processes that serve requests, not only in this one.
  cluster.setupPrimary({ serialization: 'advanced', execArgv: process.execArgv })
  cluster.on('message', (worker: Worker, m: unknown) => {
    if (!isOurs<ToPrimary>(m)) return
    const s = slots.find((x) => x.worker === worker)
    if (s === undefined) return
    switch (m.t) {
      case 'igw:ready':
        s.ready = true
        if (!anyReady && slots.every((x) => x.ready)) {
          anyReady = true
          allReady(m.url)
        }
        // A (re)started worker gets the others' in-flight view at once.
        if (anyReady) sendPeers()
        break
      case 'igw:report':
        if (relay.report(s.index, m, indices)) schedulePeers()
        break
      case 'igw:rl-reserve':
        if (worker.isConnected()) worker.send(rateLimits.reserve(m) satisfies ToWorker)
        break
      case 'igw:rl-adjust':
        rateLimits.adjust(m.ops)
        break
      case 'igw:metrics-req':
        aggregator.clusterMetrics().then(
          (text) => worker.isConnected() && worker.send({ t: 'igw:metrics', rid: m.rid, text }),
          (e: unknown) =>
            worker.isConnected() &&
            worker.send({ t: 'igw:metrics', rid: m.rid, error: String(e) } satisfies ToWorker),
        )
        break
    }
  })
  cluster.on('exit', (worker: Worker, code: number | null, signal: string | null) => {
    const s = slots.find((x) => x.worker === worker)
    if (s === undefined) return
    s.worker = undefined
    relay.remove(s.index)
    schedulePeers()
    if (stopping) return
    if (!anyReady) {
      startupFailed(
        new ClusterError(
          `worker ${s.index} exited (${signal ?? `code ${code}`}) before listening; see its log above`,
        ),
      )
      return
    }
    const ranMs = performance.now() - s.startedAt
    s.backoffMs =
      ranMs >= STABLE_MS ? 0 : Math.min(RESTART_MAX_MS, Math.max(RESTART_MIN_MS, s.backoffMs * 2))
    log('warn', 'worker exited; restarting', {
      worker: s.index,
      pid: worker.process.pid,
      code,
      signal,
      inMs: s.backoffMs,
    })
    s.restartTimer = setTimeout(() => fork(s), s.backoffMs)
  })

  const stopAll = async (): Promise<void> => {
    stopping = true
    for (const s of slots) if (s.restartTimer) clearTimeout(s.restartTimer)
    const alive = slots.flatMap((s) => (s.worker !== undefined ? [s.worker] : []))
    const exited = Promise.all(
      alive.map((w) => new Promise<void>((r) => (w.isDead() ? r() : w.once('exit', () => r())))),
    )
    for (const sl of slots) {
      if (sl.worker === undefined || sl.worker.isDead()) continue
      // A worker still starting may not listen for messages yet (the message would be lost) and
      // has served nothing: stop it outright. A ready one drains.
      if (sl.ready) sl.worker.send({ t: 'igw:shutdown' } satisfies ToWorker)
      else sl.worker.process.kill('SIGKILL')
    }
    // Workers drain within drain delay + shutdown timeout; past that (plus slack), kill them.
    const kill = setTimeout(
      () => {
        for (const w of alive) if (!w.isDead()) w.process.kill('SIGKILL')
      },
      o.drainDelayMs + o.deadlineMs + 5_000,
    )
    await exited
    clearTimeout(kill)
    if (broadcastTimer) clearTimeout(broadcastTimer)
    source?.stop()
    await push?.stop()
    await scraper?.close()
  }

  await push?.start()
  await source?.start()
  if (store.snapshot) scraper?.sync(scrapeTargetsOf(store.snapshot))
  // Listen for the stop signal before the first fork: a SIGTERM that arrives once "worker
  // starting" is logged but before a handler exists would kill the primary by default action and
  // orphan the workers.
  const signalled = untilSignal()
  for (const s of slots) fork(s)
  let first: { url: string } | { signal: string }
  try {
    first = await Promise.race([
      started.then((url) => ({ url })),
      signalled.then((signal) => ({ signal })),
    ])
  } catch (e) {
    await stopAll()
    throw e
  }
  if ('signal' in first) {
    // The kubelet may stop a pod before every worker listens (a rollout, a scale-down). That is a
    // normal stop, not a failure: ready workers drain, starting ones are stopped, exit 0.
    log('info', 'shutting down before all workers listened', { signal: first.signal })
    await stopAll()
    log('info', 'stopped')
    return
  }
  const { url } = first
  log('info', 'data plane listening', { url, workers: o.workers, pid: process.pid })
  await signalled
  log('info', 'shutting down: workers draining', { workers: o.workers })
  await stopAll()
  log('info', 'stopped')
}
