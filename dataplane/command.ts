// `infer-gateway dataplane`: run the data plane, as one process or as `--workers N` processes
// sharing the listening socket (dataplane/cluster/).
import cluster from 'node:cluster'
import { parseArgs } from 'node:util'
import { defaultWorkers } from './cluster/count.js'
import { runPrimary } from './cluster/primary.js'
import { WORKER_ARGS_ENV } from './cluster/protocol.js'
import { runWorker } from './cluster/worker.js'
import { type GatewayOptions, startGateway } from './gateway.js'
import { stderrLogger } from './log.js'
import { ENGINE_CLIENTS, type EngineClientKind } from './proxy/upstream-pool.js'
import type { SchedulerOptions } from './scheduler/index.js'
import {
  type OtlpProtocol,
  otlpProtocol,
  protocolFromEnv,
  tracesUrl,
  tracingFromEnv,
} from './telemetry/tracing-config.js'

export const dataplaneHelp = `Usage: infer-gateway dataplane (--config <file|dir>... | [--snapshot <file>] [--push-url <url>]) [options]

Runs the data plane: an OpenAI-compatible gateway routing by ModelRoute/ModelServer.

Config (one of):
  --config <path>          ModelRoute/ModelServer/StaticEndpoints YAML (file or directory;
                           repeatable). Compiled in-process; hot-reloaded on change.
  --snapshot <path>        A compiled routing snapshot (JSON, optionally gzipped), as the operator
                           publishes it to a ConfigMap. Hot-reloaded on change.
  --push-url <url>         The operator's push channel (long-poll); may be combined with
                           --snapshot (the newest version wins).
  --push-token-file <path> File holding the push channel's bearer token (the mounted
                           push-token Secret); re-read before every poll
Options:
  --workers <n>            Processes serving requests on the one port (default: the CPUs this
                           container may use, cgroup quota included; 1 = a single process).
                           Engines are scraped once, by the primary; in-flight load is shared
                           between workers (docs/scheduling.md)
  --host <addr>            Listen address (default 0.0.0.0)
  --port <n>               Listen port (default 8080)
  --gateway <ns/name>      This fleet's Gateway: ModelRoutes whose parentRefs name other Gateways
                           are not served (unbound routes are served by every data plane)
  --max-body-bytes <n>     Request body limit (default 10485760)
  --max-json-depth <n>     Deepest object/array nesting in a request body (default 128); deeper
                           is a 400 json_too_deep
  --max-upstream-body-bytes <n>
                           Largest non-streamed engine/provider response (default 67108864);
                           larger is a 502 and the engine is reported as failing
  --max-sse-line-bytes <n> Longest line of an upstream event stream (default 1048576); longer ends
                           the stream with an error event and reports the engine
  --upstream-connections <n>
                           Connections per engine pod (default 256); requests past it wait for a
                           free one (infer_gateway_upstream_waiting_requests)
  --engine-client <c>      The client requests to engines go through: raw (default: plain
                           sockets, a keep-alive pool per engine, docs/proxy-cost.md) or undici.
                           https engines and providers always use undici
  --poll-interval <ms>     Config re-read interval (default 500)
  --drain-delay <ms>       On SIGTERM, keep serving this long after /readyz fails (default 5000)
  --shutdown-timeout <ms>  Then wait at most this long for in-flight requests (default 30000)
  --scrape <where>         Engine /metrics scraping: inline (default: on the thread serving
                           requests), thread (in a worker thread: the parse off that thread, but
                           a second V8 heap; not the default until a soak shows its memory flat),
                           or off (no engine metrics: in-flight counts and measured latency
                           only). With --workers above 1 the primary scrapes.
  --scheduler-warmup <n>   Synthetic scheduling decisions per profile at start-up, on a throwaway
                           scheduler, so the first requests run optimised code (default 2000;
                           0 = off). Real state and decision figures never see them
  --no-access-log          Do not write JSON access-log lines to stdout
  --explain                Explain routing: answer the request header x-infer-gateway-explain: 1
                           with the decision (scores per endpoint) and serve GET /debug/endpoints
                           (the scheduler's view of every endpoint). Off by default: both reveal
                           pod names, load and scores. --debug-endpoints is an alias.
  --secrets-dir <dir>      Credentials, one file per entry (a mounted Kubernetes Secret): API-key
                           sha256 digests, OAuth2 client secret, trusted-proxy secret, Redis
                           password, provider API keys. Re-read on change.
Client limits (hostile or broken clients never hold the gateway; docs/install.md):
  --headers-timeout <ms>   Time for a client to send the request headers (default 10000)
  --request-timeout <ms>   Time to receive a whole request, body included (default 60000; 0 =
                           none). Responses may stream longer.
  --keep-alive-timeout <ms>  Close a keep-alive connection idle this long (default 65000: longer
                           than common load balancers' 60 s, so they close first)
  --max-connections <n>    Open client connections at most (default 10000, or half the open-files
                           limit if lower). At the cap a new connection evicts the oldest one that
                           has not sent a request yet, else it is refused with a 503.
Config safety:
  --allow-empty-config     Accept a config with no documents (by default an empty or
                           comments-only file is refused as one caught mid-write; the last good
                           config stays live)
  --allow-private-provider-addresses
                           Allow ExternalModelProvider baseURLs on loopback or link-local
                           addresses (127.0.0.0/8, ::1, 169.254.0.0/16, fe80::/10, localhost);
                           refused by default (cloud metadata, the gateway's own ports)
  --otlp-endpoint <url>    Export OpenTelemetry traces over OTLP/HTTP to this collector (e.g.
                           http://otel-collector:4318; /v1/traces is appended unless given).
                           Default: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or
                           OTEL_EXPORTER_OTLP_ENDPOINT when set, else tracing is off.
  --trace-sample-ratio <r> Share of new traces recorded, 0..1 (default 1; a client's sampled
                           traceparent is always followed)
  --otlp-protocol <p>      Span encoding: http/protobuf or http/json. Default:
                           OTEL_EXPORTER_OTLP_TRACES_PROTOCOL or OTEL_EXPORTER_OTLP_PROTOCOL
                           when set, else http/protobuf
  -h, --help               Show this help
`

export async function runDataplaneCommand(argv: readonly string[]): Promise<void> {
  // A worker of --workers N takes the primary's arguments from its environment (protocol.ts): in
  // the single executable (hack/sea) a forked worker's argv holds the executable's path twice.
  const passed = cluster.isWorker ? process.env[WORKER_ARGS_ENV] : undefined
  const args: readonly string[] = passed !== undefined ? (JSON.parse(passed) as string[]) : argv
  const { values } = parseArgs({
    args: [...args],
    options: {
      config: { type: 'string', multiple: true },
      snapshot: { type: 'string' },
      'push-url': { type: 'string' },
      'push-token-file': { type: 'string' },
      host: { type: 'string', default: '0.0.0.0' },
      port: { type: 'string', default: '8080' },
      workers: { type: 'string' },
      'max-body-bytes': { type: 'string' },
      'max-json-depth': { type: 'string' },
      'max-upstream-body-bytes': { type: 'string' },
      'max-sse-line-bytes': { type: 'string' },
      'upstream-connections': { type: 'string' },
      'engine-client': { type: 'string' },
      'poll-interval': { type: 'string' },
      'drain-delay': { type: 'string', default: '5000' },
      'shutdown-timeout': { type: 'string', default: '30000' },
      'no-access-log': { type: 'boolean', default: false },
      explain: { type: 'boolean', default: false },
      'debug-endpoints': { type: 'boolean', default: false },
      'secrets-dir': { type: 'string' },
      'headers-timeout': { type: 'string' },
      'request-timeout': { type: 'string' },
      'keep-alive-timeout': { type: 'string' },
      'max-connections': { type: 'string' },
      'allow-empty-config': { type: 'boolean', default: false },
      'allow-private-provider-addresses': { type: 'boolean', default: false },
      gateway: { type: 'string' },
      'otlp-endpoint': { type: 'string' },
      'trace-sample-ratio': { type: 'string' },
      'otlp-protocol': { type: 'string' },
      scrape: { type: 'string', default: 'inline' },
      'scheduler-warmup': { type: 'string', default: String(DEFAULT_SCHEDULER_WARMUP) },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  })
  if (values.help) {
    process.stdout.write(dataplaneHelp)
    return
  }
  const source = snapshotSourceArgs(values)
  const log = stderrLogger('dataplane')
  const drain = {
    drainDelayMs: intArg('drain-delay', values['drain-delay']),
    deadlineMs: intArg('shutdown-timeout', values['shutdown-timeout']),
  }
  const workers =
    values.workers !== undefined ? intArg('workers', values.workers) : defaultWorkers()
  if (workers === 0) throw new UsageError('--workers must be at least 1')
  const gatewayOptions: GatewayOptions = {
    ...source,
    host: values.host,
    port: intArg('port', values.port),
    ...(values['max-body-bytes']
      ? { maxBodyBytes: intArg('max-body-bytes', values['max-body-bytes']) }
      : {}),
    ...positiveArgs(values, {
      'max-json-depth': 'maxJsonDepth',
      'max-upstream-body-bytes': 'maxUpstreamBodyBytes',
      'max-sse-line-bytes': 'maxSseLineBytes',
      'upstream-connections': 'upstreamConnections',
    } as const),
    ...(values['engine-client'] !== undefined
      ? { engineClient: engineClientArg(values['engine-client']) }
      : {}),
    ...(values['poll-interval']
      ? { pollMs: intArg('poll-interval', values['poll-interval']) }
      : {}),
    ...(values['no-access-log'] ? {} : { accessLog: process.stdout }),
    ...(values.explain || values['debug-endpoints'] ? { explain: true } : {}),
    ...(values['secrets-dir'] !== undefined ? { secretsDir: values['secrets-dir'] } : {}),
    connections: {
      ...(values['headers-timeout'] !== undefined
        ? { headersTimeoutMs: intArg('headers-timeout', values['headers-timeout']) }
        : {}),
      ...(values['request-timeout'] !== undefined
        ? { requestTimeoutMs: intArg('request-timeout', values['request-timeout']) }
        : {}),
      ...(values['keep-alive-timeout'] !== undefined
        ? { keepAliveTimeoutMs: intArg('keep-alive-timeout', values['keep-alive-timeout']) }
        : {}),
      ...(values['max-connections'] !== undefined
        ? { maxConnections: intArg('max-connections', values['max-connections']) }
        : {}),
    },
    ...(values['allow-empty-config'] ? { allowEmptyConfig: true } : {}),
    ...(values['allow-private-provider-addresses'] ? { allowPrivateProviderAddresses: true } : {}),
    ...(values.gateway !== undefined ? { gateway: gatewayArg(values.gateway) } : {}),
    ...tracingArgs({
      endpoint: values['otlp-endpoint'],
      ratio: values['trace-sample-ratio'],
      protocol: values['otlp-protocol'],
    }),
    scheduler: {
      scrape: scrapeOption(scrapeModeArg(values.scrape)),
      warmup: intArg('scheduler-warmup', values['scheduler-warmup']),
    },
    log,
    processMetrics: true,
  }
  if (cluster.isWorker) return runWorker(gatewayOptions, drain, log)
  if (workers > 1) {
    return runPrimary({ workers, args, gateway: gatewayOptions, ...drain, log })
  }
  const gw = await startGateway(gatewayOptions)
  log('info', 'data plane listening', { url: gw.url })
  await untilSignal()
  log('info', 'shutting down: readiness off, draining')
  const { forced } = await gw.shutdown(drain)
  log('info', 'stopped', { forcedConnections: forced })
}

/**
 * --otlp-endpoint / --trace-sample-ratio / --otlp-protocol, falling back to OpenTelemetry's
 * environment variables.
 */
export function tracingArgs(
  flags: {
    readonly endpoint?: string | undefined
    readonly ratio?: string | undefined
    readonly protocol?: string | undefined
  },
  env: Readonly<Record<string, string | undefined>> = process.env,
): Pick<GatewayOptions, 'tracing'> {
  const { ratio: ratioFlag, protocol: protocolFlag } = flags
  const endpoint = flags.endpoint ?? tracingFromEnv(env)?.endpoint
  if (endpoint === undefined) {
    if (ratioFlag !== undefined || protocolFlag !== undefined)
      throw new UsageError(
        `--${ratioFlag !== undefined ? 'trace-sample-ratio' : 'otlp-protocol'} needs --otlp-endpoint (or OTEL_EXPORTER_OTLP_ENDPOINT)`,
      )
    return {}
  }
  let protocol: OtlpProtocol | undefined
  try {
    protocol =
      protocolFlag !== undefined
        ? otlpProtocol(protocolFlag, '--otlp-protocol')
        : protocolFromEnv(env)
  } catch (e) {
    throw new UsageError((e as Error).message)
  }
  let sampleRatio = 1
  if (ratioFlag !== undefined) {
    sampleRatio = Number(ratioFlag)
    if (ratioFlag.trim() === '' || !(sampleRatio >= 0 && sampleRatio <= 1))
      throw new UsageError(`--trace-sample-ratio must be a number within 0..1, got "${ratioFlag}"`)
  }
  try {
    tracesUrl(endpoint)
  } catch (e) {
    throw new UsageError(`--otlp-endpoint: ${(e as Error).message}`)
  }
  return { tracing: { endpoint, sampleRatio, ...(protocol !== undefined ? { protocol } : {}) } }
}

export class UsageError extends Error {
  override readonly name = 'UsageError'
  readonly code = 'USAGE'
}

/** Where engine metrics are scraped (`--scrape`, data plane and EPP). */
export type ScrapeMode = 'thread' | 'inline' | 'off'

/**
 * Synthetic decisions per profile at start-up (`--scheduler-warmup`): about what it took V8 to
 * optimise the decision path in bench:decision-live (TurboFan compiled pick and the default
 * profile's scorers within the first ~600-1,000 decisions). It costs 0.4-0.6 s of CPU at start-up
 * per process (in-process, 4 endpoints, default profile, load 5), in 16-decision turns.
 */
export const DEFAULT_SCHEDULER_WARMUP = 2000
const SCRAPE_MODES: readonly ScrapeMode[] = ['thread', 'inline', 'off']

export function engineClientArg(v: string): EngineClientKind {
  const kind = ENGINE_CLIENTS.find((k) => k === v)
  if (kind === undefined)
    throw new UsageError(`--engine-client must be one of ${ENGINE_CLIENTS.join(', ')}, got "${v}"`)
  return kind
}

export function scrapeModeArg(v: string): ScrapeMode {
  const mode = SCRAPE_MODES.find((m) => m === v)
  if (mode === undefined)
    throw new UsageError(`--scrape must be one of ${SCRAPE_MODES.join(', ')}, got "${v}"`)
  return mode
}

/**
 * The scheduler's scrape option for a mode. `thread` takes each scrape's parse off the thread that
 * decides (inline it is a burst the requests arriving meanwhile wait behind: 63-71 ms/s of that
 * thread's CPU with 8 pods, ~9 threaded; docs/epp.md). The EPP defaults to it; the data plane not
 * yet: its 30-minute soak with it showed RSS after GC +16 % (the worker's own heap, which the
 * soak's GC of the main isolate does not collect, is the suspect; not yet measured apart).
 */
export function scrapeOption(mode: ScrapeMode): NonNullable<SchedulerOptions['scrape']> {
  return mode === 'off' ? false : { thread: mode === 'thread' }
}

export function intArg(name: string, v: string): number {
  const n = Number(v)
  if (!Number.isInteger(n) || n < 0)
    throw new UsageError(`--${name} must be a non-negative integer, got "${v}"`)
  return n
}

/** `--gateway namespace/name`: the Gateway whose routes (by parentRefs) this fleet serves. */
function gatewayArg(v: string): string {
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?\/[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(v))
    throw new UsageError(`--gateway must be namespace/name, got "${v}"`)
  return v
}

/** Optional positive-integer flags → the gateway options they set (absent flags: defaults). */
function positiveArgs<const M extends Record<string, string>>(
  values: Readonly<Record<string, unknown>>,
  map: M,
): { [K in M[keyof M]]?: number } {
  const out: Record<string, number> = {}
  for (const [flag, option] of Object.entries(map)) {
    const v = values[flag]
    if (typeof v !== 'string') continue
    const n = intArg(flag, v)
    if (n === 0) throw new UsageError(`--${flag} must be at least 1`)
    out[option] = n
  }
  return out as { [K in M[keyof M]]?: number }
}

export function untilSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const on = (s: NodeJS.Signals): void => {
      process.off('SIGINT', on)
      process.off('SIGTERM', on)
      resolve(s)
    }
    process.on('SIGINT', on)
    process.on('SIGTERM', on)
  })
}

/** Where a snapshot-following process (data plane, EPP) reads its config, from its flags. */
export interface SnapshotSourceArgs {
  readonly config?: { readonly kind: 'manifests' | 'snapshot'; readonly paths: string[] }
  readonly pushUrl?: string
  readonly pushTokenFile?: string
}

/**
 * `--config` (standalone YAML) or `--snapshot` and/or `--push-url` (+ `--push-token-file`): the
 * one parsing of these flags for every command that follows a routing snapshot.
 */
export function snapshotSourceArgs(values: {
  readonly config?: string[] | undefined
  readonly snapshot?: string | undefined
  readonly 'push-url'?: string | undefined
  readonly 'push-token-file'?: string | undefined
}): SnapshotSourceArgs {
  const configPaths = values.config ?? []
  const pushUrl = values['push-url']
  if (configPaths.length > 0 && (values.snapshot !== undefined || pushUrl !== undefined)) {
    throw new UsageError(
      '--config (standalone YAML) cannot be combined with --snapshot or --push-url',
    )
  }
  if (configPaths.length === 0 && values.snapshot === undefined && pushUrl === undefined) {
    throw new UsageError('give --config, or --snapshot and/or --push-url')
  }
  return {
    ...(values.snapshot !== undefined
      ? { config: { kind: 'snapshot' as const, paths: [values.snapshot] } }
      : configPaths.length > 0
        ? { config: { kind: 'manifests' as const, paths: configPaths } }
        : {}),
    ...(pushUrl !== undefined ? { pushUrl } : {}),
    ...(values['push-token-file'] !== undefined
      ? { pushTokenFile: values['push-token-file'] }
      : {}),
  }
}
