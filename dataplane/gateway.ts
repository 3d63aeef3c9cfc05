// Wires one data-plane instance: snapshot store, config source, app, listener. Used by the CLI,
// the demo, tests and benchmarks, so they all exercise the same assembly.
import type { Writable } from 'node:stream'
import { type AccessLogger, discardLogger, jsonLineLogger } from './access-log.js'
import { createApp, type Lifecycle } from './app.js'
import { type ConfigKind, FileConfigSource } from './config-source.js'
import { Filters } from './filters/index.js'
import type { RateLimitBackend } from './filters/ratelimit/backend.js'
import { SecretStore } from './filters/secrets.js'
import { type Logger, silentLogger } from './log.js'
import { GatewayMetrics } from './metrics.js'
import type { EndpointPicker } from './picker.js'
import { ProviderRuntime } from './providers/index.js'
import { type EngineClientKind, UpstreamPool } from './proxy/upstream-pool.js'
import { PushSource } from './push-source.js'
import { Scheduler, type SchedulerOptions } from './scheduler/index.js'
import { type ConnectionLimits, listen, type RunningServer } from './server.js'
import { SnapshotStore } from './snapshot-store.js'
import type { TracingOptions } from './telemetry/tracing-config.js'

export interface GatewayOptions {
  /** Files to load (standalone YAML, or a published snapshot file such as a ConfigMap mount). */
  readonly config?: { readonly kind: ConfigKind; readonly paths: readonly string[] }
  /** The operator's push channel (long-poll); combined with a snapshot file, the newest version wins. */
  readonly pushUrl?: string
  /** File with the push channel's bearer token (`--push-token-file`). */
  readonly pushTokenFile?: string
  readonly host?: string
  readonly port?: number
  readonly maxBodyBytes?: number
  /** Deepest JSON nesting accepted in a request body (default 128). */
  readonly maxJsonDepth?: number
  /** Cap of a non-streamed upstream response body (default 64 MiB). */
  readonly maxUpstreamBodyBytes?: number
  /** Cap of one SSE line from an upstream (default 1 MiB). */
  readonly maxSseLineBytes?: number
  /** Connections per engine pod (default 256); requests past it wait, visible in /metrics. */
  readonly upstreamConnections?: number
  /** The client requests to engines go through (default `raw`; CLI `--engine-client`). */
  readonly engineClient?: EngineClientKind
  /** Serve GET /debug/endpoints and the explain header (off by default: they reveal pod names and scores). */
  readonly explain?: boolean
  /** Old name of `explain` (same effect). */
  readonly debugEndpoints?: boolean
  readonly pollMs?: number
  /** Where access-log lines go; `undefined` discards them. */
  readonly accessLog?: Writable | AccessLogger
  readonly log?: Logger
  /** Default: the model-aware Scheduler (scraping every endpoint's /metrics). */
  readonly picker?: EndpointPicker
  /** Options of the default Scheduler (ignored when `picker` is given). */
  readonly scheduler?: SchedulerOptions
  /** OpenTelemetry traces over OTLP/HTTP (absent: off). */
  readonly tracing?: TracingOptions
  readonly processMetrics?: boolean
  readonly random?: () => number
  /** This fleet's Gateway ("namespace/name"): routes whose parentRefs name another are not served. */
  readonly gateway?: string
  /** Mounted credentials Secret (one file per entry): API-key hashes, client secrets, … */
  readonly secretsDir?: string
  /** Re-read interval of `secretsDir` (default 1000 ms). */
  readonly secretsPollMs?: number
  /** Client timeouts and the connection cap (server.ts has the defaults). */
  readonly connections?: ConnectionLimits
  /** Accept a config with no documents (otherwise refused as a file caught mid-write). */
  readonly allowEmptyConfig?: boolean
  /** Standalone: allow provider baseURLs on loopback/link-local addresses (tests, sidecars). */
  readonly allowPrivateProviderAddresses?: boolean
  /** Where `local` rate-limit counters live (default: this process; workers: the primary's). */
  readonly localRateLimit?: RateLimitBackend
}

export interface Gateway {
  readonly url: string
  readonly port: number
  readonly store: SnapshotStore
  readonly metrics: GatewayMetrics
  readonly source: FileConfigSource | undefined
  readonly push: PushSource | undefined
  readonly server: RunningServer
  readonly lifecycle: Lifecycle
  /** Authentication and rate limits. */
  readonly filters: Filters
  shutdown(opts?: { drainDelayMs?: number; deadlineMs?: number }): Promise<{ forced: number }>
}

/**
 * The config file source and/or push channel of `opts`, feeding `store` (not started). Also used
 * by the primary of `--workers N`, which needs the snapshot to know what to scrape.
 */
export function configSources(
  opts: Pick<
    GatewayOptions,
    | 'config'
    | 'pushUrl'
    | 'pushTokenFile'
    | 'pollMs'
    | 'allowEmptyConfig'
    | 'allowPrivateProviderAddresses'
  >,
  store: SnapshotStore,
  metrics: GatewayMetrics,
  log: Logger,
): { source: FileConfigSource | undefined; push: PushSource | undefined } {
  if (!opts.config && !opts.pushUrl) throw new Error('a gateway needs config files or a push URL')
  const source = opts.config
    ? new FileConfigSource({
        kind: opts.config.kind,
        paths: opts.config.paths,
        store,
        metrics,
        log,
        ...(opts.pollMs !== undefined ? { pollMs: opts.pollMs } : {}),
        ...(opts.allowEmptyConfig ? { allowEmpty: true } : {}),
        ...(opts.allowPrivateProviderAddresses ? { allowPrivateProviderAddresses: true } : {}),
      })
    : undefined
  const push = opts.pushUrl
    ? new PushSource({
        url: opts.pushUrl,
        store,
        metrics,
        log,
        ...(opts.pushTokenFile !== undefined ? { tokenFile: opts.pushTokenFile } : {}),
      })
    : undefined
  return { source, push }
}

export async function startGateway(opts: GatewayOptions): Promise<Gateway> {
  const log = opts.log ?? silentLogger
  const metrics = new GatewayMetrics({ processMetrics: opts.processMetrics ?? false })
  const store = new SnapshotStore(opts.random, opts.gateway)
  const lifecycle: Lifecycle = { draining: false }
  const pool = new UpstreamPool({
    ...(opts.upstreamConnections !== undefined
      ? { connectionsPerOrigin: opts.upstreamConnections }
      : {}),
    ...(opts.engineClient !== undefined ? { engineClient: opts.engineClient } : {}),
  })
  metrics.upstreamPools = () => pool.serverStats(store.snapshot?.servers ?? {})
  const { source, push } = configSources(opts, store, metrics, log)
  const picker: EndpointPicker = opts.picker ?? new Scheduler({ log, ...opts.scheduler })
  if (picker.onSnapshot) {
    const onSnapshot = picker.onSnapshot.bind(picker)
    store.onSwap(onSnapshot)
  }
  // Scheduler series: decisions and health transitions as they happen, gauges read per scrape.
  picker.observe?.(metrics.schedulerObserver())
  if (picker.gauges) metrics.schedulerView = picker.gauges.bind(picker)
  store.onSwap((s) => metrics.onSnapshot(s))
  const secrets = new SecretStore({
    ...(opts.secretsDir !== undefined ? { dir: opts.secretsDir } : {}),
    ...(opts.secretsPollMs !== undefined ? { pollMs: opts.secretsPollMs } : {}),
    log,
  })
  // Secrets first: the first snapshot's API keys are resolved against them.
  await secrets.start()
  const filters = new Filters({
    registry: metrics.registry,
    log,
    secrets,
    ...(opts.localRateLimit !== undefined ? { localBackend: opts.localRateLimit } : {}),
  })
  store.onSwap((s) => filters.onSnapshot(s))
  // Provider keys are entries of the same mounted credentials (see api/provider.ts secretFileName).
  const providers = new ProviderRuntime({ secrets, log })
  await push?.start()
  await source?.start()
  // The OpenTelemetry SDK is loaded only when tracing is on (off costs nothing, startup included).
  const tracing =
    opts.tracing !== undefined
      ? new (await import('./telemetry/tracing.js')).Tracing(opts.tracing, {
          registry: metrics.registry,
          log,
        })
      : undefined
  const accessLog =
    opts.accessLog === undefined
      ? discardLogger
      : typeof opts.accessLog === 'function'
        ? opts.accessLog
        : jsonLineLogger(opts.accessLog)
  const app = createApp({
    store,
    picker,
    pool,
    metrics,
    accessLog,
    filters,
    providers,
    lifecycle,
    ...(tracing !== undefined ? { tracing } : {}),
    ...(opts.maxBodyBytes !== undefined ? { maxBodyBytes: opts.maxBodyBytes } : {}),
    ...(opts.maxJsonDepth !== undefined ? { maxJsonDepth: opts.maxJsonDepth } : {}),
    ...(opts.maxUpstreamBodyBytes !== undefined
      ? { maxUpstreamBodyBytes: opts.maxUpstreamBodyBytes }
      : {}),
    ...(opts.maxSseLineBytes !== undefined ? { maxSseLineBytes: opts.maxSseLineBytes } : {}),
    ...(opts.explain || opts.debugEndpoints ? { explain: true } : {}),
    ...(opts.random ? { random: opts.random } : {}),
  })
  let server: RunningServer
  try {
    server = await listen(app, {
      host: opts.host ?? '127.0.0.1',
      port: opts.port ?? 8080,
      lifecycle,
      registry: metrics.registry,
      ...opts.connections,
    })
  } catch (e) {
    source?.stop()
    await push?.stop()
    secrets.stop()
    await filters.close()
    await providers.close()
    // Only a picker we created (it scrapes engines); a caller's picker is the caller's.
    if (opts.picker === undefined) await picker.close?.()
    throw e
  }
  return {
    url: server.url,
    port: server.port,
    store,
    metrics,
    source,
    push,
    server,
    lifecycle,
    filters,
    async shutdown(o) {
      source?.stop()
      await push?.stop()
      secrets.stop()
      const r = await server.shutdown(o)
      // After the drain: in-flight requests settle their reservations first.
      await filters.close()
      await picker.close?.()
      await pool.close()
      await providers.close()
      // Spans still batched go out before the process ends.
      await tracing?.shutdown().catch(() => {})
      return r
    },
  }
}
