// `infer-gateway epp`: our scheduler as a Gateway API Inference Extension Endpoint Picker. An
// Envoy-based gateway (Envoy Gateway, Istio, kgateway, …) asks it over ext_proc which pod of the
// pool gets each request (docs/epp.md).
import { parseArgs } from 'node:util'
import {
  DEFAULT_SCHEDULER_WARMUP,
  intArg,
  type ScrapeMode,
  scrapeModeArg,
  scrapeOption,
  snapshotSourceArgs,
  UsageError,
  untilSignal,
} from '../command.js'
import { configSources } from '../gateway.js'
import { type Logger, stderrLogger } from '../log.js'
import { GatewayMetrics } from '../metrics.js'
import { Scheduler } from '../scheduler/index.js'
import { SnapshotStore } from '../snapshot-store.js'
import { EppCore, type PoolRef } from './core.js'
import { PhaseRecorder } from './phases.js'
import { BodyMode } from './proto.js'
import { type EppServer, startEppServer } from './server.js'

export const eppHelp = `Usage: infer-gateway epp (--pool <ns/name> | --server <ns/name>) (--config <file|dir>... | [--snapshot <file>] [--push-url <url>]) [options]

Runs the Endpoint Picker (EPP) of the Gateway API Inference Extension: serves Envoy's
envoy.service.ext_proc.v3.ExternalProcessor over gRPC (h2c) and picks, per request, the pod of one
pool with the data plane's scheduler (same profiles, prefix index, engine metrics, in-flight
load). Answers with the x-gateway-destination-endpoint header and envoy.lb dynamic metadata
(primary, then fallbacks), honours envoy.lb.subset_hint, answers 503/429 as ImmediateResponse.

Pool (one of):
  --pool <ns/name>         The InferencePool this EPP serves (its endpointPickerRef points here)
  --server <ns/name>       A ModelServer's endpoints as the pool
Config (one of, as for 'infer-gateway dataplane'):
  --config <path>          ModelServer/InferencePool/StaticEndpoints YAML (file or directory;
                           repeatable); hot-reloaded
  --snapshot <path>        A compiled routing snapshot (JSON, optionally gzipped); hot-reloaded
  --push-url <url>         The operator's push channel (long-poll); may be combined with --snapshot
  --push-token-file <path> File holding the push channel's bearer token (the mounted Secret)
Options:
  --host <addr>            Listen address (default 0.0.0.0)
  --grpc-port <n>          ext_proc + grpc.health.v1 port (default 9002)
  --metrics-port <n>       HTTP port for /metrics, /healthz, /readyz (default 9090; 'off' = none)
  --fallbacks <n>          Endpoints listed after the primary (default 2)
  --body-mode <mode>       Request/response body mode when Envoy does not announce it in
                           protocol_config: full-duplex-streamed (default, GAIE's), buffered,
                           streamed or none (the last two pick on headers alone)
  --max-body-bytes <n>     Largest request body buffered (default 10485760); larger is a 413
  --poll-interval <ms>     Config re-read interval (default 500)
  --allow-empty-config     Accept a config with no documents
  --scrape <where>         Engine /metrics scraping: thread (default: in a worker thread, off the
                           thread that decides), inline (on that thread), or off (no engine
                           metrics: in-flight counts and measured latency only)
  --scheduler-warmup <n>   Synthetic scheduling decisions per profile at start-up, on a throwaway
                           scheduler, so the first requests run optimised code (default 2000;
                           0 = off), as the data plane does
  --explain                Serve GET /debug/endpoints on the metrics port (pod names, load, scores)
  --debug-phases           Time each decision's steps (body parse, pick, answers, writes) and
                           serve GET /debug/phases on the metrics port (?reset=1 starts over)
  -h, --help               Show this help
`

const BODY_MODES: Record<string, BodyMode> = {
  'full-duplex-streamed': BodyMode.FULL_DUPLEX_STREAMED,
  buffered: BodyMode.BUFFERED,
  streamed: BodyMode.STREAMED,
  none: BodyMode.NONE,
}

export interface EppOptions {
  readonly pool: PoolRef
  readonly config?: { readonly kind: 'manifests' | 'snapshot'; readonly paths: readonly string[] }
  readonly pushUrl?: string
  readonly pushTokenFile?: string
  readonly host: string
  readonly grpcPort: number
  readonly metricsPort?: number
  readonly fallbacks: number
  readonly bodyMode: BodyMode
  readonly maxBodyBytes: number
  readonly pollMs?: number
  readonly allowEmptyConfig?: boolean
  readonly explain?: boolean
  /** Time each decision's steps, GET /debug/phases (phases.ts). */
  readonly debugPhases?: boolean
  /** Default 'thread'. */
  readonly scrape?: ScrapeMode
  /** Synthetic decisions per profile at start-up (scheduler/warmup.ts); default 0 (off). */
  readonly warmup?: number
  readonly log: Logger
}

export interface RunningEpp {
  readonly server: EppServer
  readonly store: SnapshotStore
  readonly scheduler: Scheduler
  close(): Promise<void>
}

/** Wires one EPP: snapshot sources, scheduler (scraping engines), decision core, listeners. */
export async function startEpp(opts: EppOptions): Promise<RunningEpp> {
  const metrics = new GatewayMetrics({ processMetrics: false })
  const store = new SnapshotStore()
  const scheduler = new Scheduler({
    log: opts.log,
    scrape: scrapeOption(opts.scrape ?? 'thread'),
    warmup: opts.warmup ?? 0,
  })
  store.onSwap((s) => scheduler.onSnapshot(s))
  const { source, push } = configSources(
    {
      ...(opts.config !== undefined ? { config: opts.config } : {}),
      ...(opts.pushUrl !== undefined ? { pushUrl: opts.pushUrl } : {}),
      ...(opts.pushTokenFile !== undefined ? { pushTokenFile: opts.pushTokenFile } : {}),
      ...(opts.pollMs !== undefined ? { pollMs: opts.pollMs } : {}),
      ...(opts.allowEmptyConfig ? { allowEmptyConfig: true } : {}),
    },
    store,
    metrics,
    opts.log,
  )
  await push?.start()
  await source?.start()
  const core = new EppCore({
    store,
    picker: scheduler,
    pool: opts.pool,
    fallbacks: opts.fallbacks,
    log: opts.log,
  })
  const phases = opts.debugPhases === true ? new PhaseRecorder() : undefined
  let server: EppServer
  try {
    server = await startEppServer({
      core,
      scheduler,
      metrics,
      host: opts.host,
      grpcPort: opts.grpcPort,
      ...(opts.metricsPort !== undefined ? { metricsPort: opts.metricsPort } : {}),
      bodyMode: opts.bodyMode,
      maxBodyBytes: opts.maxBodyBytes,
      ...(opts.explain ? { explain: true } : {}),
      ...(phases !== undefined ? { phases } : {}),
      log: opts.log,
    })
  } catch (e) {
    phases?.stop()
    source?.stop()
    await push?.stop()
    await scheduler.close()
    throw e
  }
  if (!core.ready())
    opts.log('warn', 'pool not in the routing snapshot yet', {
      pool: opts.pool.key,
      kind: opts.pool.kind,
    })
  return {
    server,
    store,
    scheduler,
    async close() {
      source?.stop()
      await push?.stop()
      await server.close()
      await scheduler.close()
      phases?.stop()
    },
  }
}

export function parseEppArgs(argv: readonly string[], log: Logger): EppOptions | undefined {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      pool: { type: 'string' },
      server: { type: 'string' },
      config: { type: 'string', multiple: true },
      snapshot: { type: 'string' },
      'push-url': { type: 'string' },
      'push-token-file': { type: 'string' },
      host: { type: 'string', default: '0.0.0.0' },
      'grpc-port': { type: 'string', default: '9002' },
      'metrics-port': { type: 'string', default: '9090' },
      fallbacks: { type: 'string', default: '2' },
      'body-mode': { type: 'string', default: 'full-duplex-streamed' },
      'max-body-bytes': { type: 'string', default: String(10 * 1024 * 1024) },
      'poll-interval': { type: 'string' },
      'allow-empty-config': { type: 'boolean', default: false },
      explain: { type: 'boolean', default: false },
      'debug-phases': { type: 'boolean', default: false },
      scrape: { type: 'string', default: 'thread' },
      'scheduler-warmup': { type: 'string', default: String(DEFAULT_SCHEDULER_WARMUP) },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  })
  if (values.help) return undefined
  if ((values.pool === undefined) === (values.server === undefined))
    throw new UsageError(
      'give exactly one of --pool <ns/name> (InferencePool) or --server <ns/name> (ModelServer)',
    )
  const pool: PoolRef =
    values.pool !== undefined
      ? { kind: 'pool', key: nsName('pool', values.pool) }
      : { kind: 'server', key: nsName('server', values.server ?? '') }
  const source = snapshotSourceArgs(values)
  const bodyMode = BODY_MODES[values['body-mode']]
  if (bodyMode === undefined)
    throw new UsageError(
      `--body-mode must be one of ${Object.keys(BODY_MODES).join(', ')}, got "${values['body-mode']}"`,
    )
  const maxBodyBytes = intArg('max-body-bytes', values['max-body-bytes'])
  if (maxBodyBytes === 0) throw new UsageError('--max-body-bytes must be at least 1')
  const metricsPort = values['metrics-port']
  const scrape = scrapeModeArg(values.scrape)
  return {
    pool,
    ...source,
    host: values.host,
    grpcPort: intArg('grpc-port', values['grpc-port']),
    ...(metricsPort !== 'off' ? { metricsPort: intArg('metrics-port', metricsPort) } : {}),
    fallbacks: intArg('fallbacks', values.fallbacks),
    bodyMode,
    maxBodyBytes,
    ...(values['poll-interval'] !== undefined
      ? { pollMs: intArg('poll-interval', values['poll-interval']) }
      : {}),
    ...(values['allow-empty-config'] ? { allowEmptyConfig: true } : {}),
    ...(values.explain ? { explain: true } : {}),
    ...(values['debug-phases'] ? { debugPhases: true } : {}),
    scrape,
    warmup: intArg('scheduler-warmup', values['scheduler-warmup']),
    log,
  }
}

function nsName(flag: string, v: string): string {
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?\/[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(v))
    throw new UsageError(`--${flag} must be namespace/name, got "${v}"`)
  return v
}

export async function runEppCommand(argv: readonly string[]): Promise<void> {
  const log = stderrLogger('epp')
  const opts = parseEppArgs(argv, log)
  if (opts === undefined) {
    process.stdout.write(eppHelp)
    return
  }
  const epp = await startEpp(opts)
  log('info', 'epp listening', {
    grpc: epp.server.grpcAddress,
    ...(epp.server.metricsUrl !== undefined ? { metrics: epp.server.metricsUrl } : {}),
    pool: opts.pool.key,
  })
  await untilSignal()
  log('info', 'shutting down')
  await epp.close()
  log('info', 'stopped')
}
