// `infer-gateway operator`: flags → KubeConfig, Controller, HTTP listener; SIGTERM → graceful stop.
import { randomUUID } from 'node:crypto'
import { hostname } from 'node:os'
import { parseArgs } from 'node:util'
import { KubeConfig } from '@kubernetes/client-node'
import { OPERATOR_LEASE, SYSTEM_NAMESPACE } from '../api/crd.js'
import { parseDuration } from '../api/index.js'
import { Controller, type ControllerOptions } from './controller.js'
import { OperatorError } from './errors.js'
import { GAIE_MODES, type GaieMode, resolveGaie } from './gaie.js'
import { KTHENA_MODES, type KthenaMode, resolveKthena } from './kthena.js'
import { type Logger, type LogLevel, stderrLogger } from './log.js'
import { OperatorMetrics } from './metrics.js'
import { SnapshotPushServer } from './push-server.js'
import { ensurePushToken } from './push-token.js'
import { listenOperator } from './server.js'
import { DEFAULT_MAX_SNAPSHOT_BYTES } from './snapshot-configmap.js'

export const operatorHelp = `Usage: infer-gateway operator [options]

Runs the operator: watches ModelRoute, ModelServer and Pods, compiles the routing snapshot,
publishes it to the ConfigMap ${'`'}infer-gateway-snapshot${'`'} and the push channel (GET /v1/snapshot),
and writes status conditions and Events on every ModelRoute/ModelServer.

Cluster:
  --kubeconfig <path>       Kubeconfig file (default: $KUBECONFIG, ~/.kube/config, then the
                            in-cluster service account)
  --namespace <ns>          Own namespace: snapshot ConfigMap and Lease
                            (default: $POD_NAMESPACE or ${SYSTEM_NAMESPACE})
  --pod-selector <sel>      Only watch Pods matching this label selector (default: all Pods)
  --secrets-namespace <ns>  Watch credential source Secrets in this namespace only (default: all
                            namespaces); RBAC can then grant Secrets by a Role there
  --kthena <auto|on|off>    Also reconcile Kthena's networking.serving.volcano.sh/v1alpha1
                            ModelRoutes, ModelServers and ExternalModelProviders (default auto:
                            on when API discovery finds the group)
  --gateway <ns/name>       Our Gateway identity: HTTPRoutes naming it as a parent are served
                            and get status; it is the parent of our InferencePool status entries
  --gaie <auto|on|off>      Watch InferencePool (inference.networking.k8s.io/v1), InferenceObjective
                            (llm-d.ai and inference.networking.x-k8s.io v1alpha2) and, with
                            --gateway, HTTPRoute (default auto: each kind its CRD is installed for)
Serving:
  --host <addr>             Listen address (default 0.0.0.0)
  --port <n>                Push channel, /healthz, /readyz and /metrics (default 8082)
  --push-port <n>           Same as --port
  --http-port <n>           An extra listener with the same routes (e.g. for probes)
  --push-token-secret <name>
                            Require a bearer token on the push channel, kept in this Secret of
                            the own namespace (created with a random token if missing); data
                            planes mount it and send it (default: no token)
Leader election (one writer among replicas):
  --leader-elect            Use a coordination.k8s.io/v1 Lease (default: off, single writer)
  --identity <id>           Lease holder identity (default: $POD_NAME, else host_random)
  --lease-name <name>       Lease name (default ${OPERATOR_LEASE})
  --lease-duration <d>      Lease validity without renewal (default 15s)
  --renew-deadline <d>      Leader steps down after failing to renew this long (default 10s)
  --retry-period <d>        Time between acquire/renew attempts (default 2s)
Tuning:
  --debounce <d>            Batching window for snapshot rebuilds (default 50ms)
  --resync <d>              Full reconcile period, 0 = off (default 5m)
  --relist <d>              Informer full re-list period, 0 = off (default 10m)
  --watch-timeout <d>       Server-side watch timeout; each watch draws from [d, 2d] (default 5m)
  --stall-timeout <d>       Restart a watch silent for this long (default 2×watch-timeout + 30s)
  --max-backoff <d>         Cap of the list/watch retry backoff (default 30s)
  --max-snapshot-bytes <n>  Largest gzipped snapshot written to the ConfigMap (default ${DEFAULT_MAX_SNAPSHOT_BYTES})
  --shutdown-timeout <d>    On SIGTERM, wait this long for in-flight writes (default 10s)
  --log-level <level>       debug, info, warn or error (default info)
  -h, --help                Show this help

Durations are Go-style: 500ms, 15s, 1m30s.
`

export class OperatorUsageError extends Error {
  override readonly name = 'UsageError'
  readonly code = 'USAGE'
}

function duration(name: string, v: string): number {
  try {
    return parseDuration(v)
  } catch {
    throw new OperatorUsageError(`--${name} must be a duration like 500ms, 15s or 1m, got "${v}"`)
  }
}

function port(name: string, v: string): number {
  const n = Number(v)
  if (!Number.isInteger(n) || n < 0 || n > 65535)
    throw new OperatorUsageError(`--${name} must be a port number (0-65535), got "${v}"`)
  return n
}

const LEVELS = ['debug', 'info', 'warn', 'error'] as const

export interface OperatorConfig {
  readonly kubeconfig: string | undefined
  readonly host: string
  readonly ports: readonly number[]
  readonly logLevel: LogLevel
  readonly shutdownTimeoutMs: number
  readonly kthena: KthenaMode
  readonly gaie: GaieMode
  /** Secret (own namespace) holding the push channel's bearer token; unset = no token. */
  readonly pushTokenSecret?: string
  readonly controller: Omit<ControllerOptions, 'kc' | 'push' | 'metrics' | 'log'>
}

/** Parses flags (exported for tests); throws OperatorUsageError on bad input. */
export function parseOperatorArgs(
  args: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
): OperatorConfig | 'help' {
  const { values } = parseArgs({
    args: [...args],
    options: {
      kubeconfig: { type: 'string' },
      namespace: { type: 'string' },
      'pod-selector': { type: 'string' },
      'secrets-namespace': { type: 'string' },
      kthena: { type: 'string', default: 'auto' },
      gateway: { type: 'string' },
      gaie: { type: 'string', default: 'auto' },
      host: { type: 'string', default: '0.0.0.0' },
      port: { type: 'string' },
      'push-port': { type: 'string' },
      'http-port': { type: 'string' },
      'push-token-secret': { type: 'string' },
      'leader-elect': { type: 'boolean', default: false },
      identity: { type: 'string' },
      'lease-name': { type: 'string', default: OPERATOR_LEASE },
      'lease-duration': { type: 'string', default: '15s' },
      'renew-deadline': { type: 'string', default: '10s' },
      'retry-period': { type: 'string', default: '2s' },
      debounce: { type: 'string', default: '50ms' },
      resync: { type: 'string', default: '5m' },
      relist: { type: 'string', default: '10m' },
      'watch-timeout': { type: 'string', default: '5m' },
      'stall-timeout': { type: 'string' },
      'max-backoff': { type: 'string', default: '30s' },
      'max-snapshot-bytes': { type: 'string', default: String(DEFAULT_MAX_SNAPSHOT_BYTES) },
      'shutdown-timeout': { type: 'string', default: '10s' },
      'log-level': { type: 'string', default: 'info' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
    allowPositionals: false,
  })
  if (values.help) return 'help'
  if (
    values.port !== undefined &&
    values['push-port'] !== undefined &&
    values.port !== values['push-port']
  )
    throw new OperatorUsageError('--port and --push-port are the same setting; give one')
  const main = port('port', values.port ?? values['push-port'] ?? '8082')
  const ports =
    values['http-port'] !== undefined ? [main, port('http-port', values['http-port'])] : [main]
  const kthena = values.kthena as KthenaMode
  const gaie = values.gaie as GaieMode
  if (!GAIE_MODES.includes(gaie))
    throw new OperatorUsageError(`--gaie must be one of ${GAIE_MODES.join(', ')}`)
  if (
    values.gateway !== undefined &&
    !/^[a-z0-9][-a-z0-9]*\/[a-z0-9][-a-z0-9.]*$/.test(values.gateway)
  )
    throw new OperatorUsageError('--gateway must be namespace/name')
  if (!KTHENA_MODES.includes(kthena))
    throw new OperatorUsageError(`--kthena must be one of ${KTHENA_MODES.join(', ')}`)
  const logLevel = values['log-level'] as LogLevel
  if (!LEVELS.includes(logLevel))
    throw new OperatorUsageError(`--log-level must be one of ${LEVELS.join(', ')}`)
  const leaseDurationMs = duration('lease-duration', values['lease-duration'])
  const renewDeadlineMs = duration('renew-deadline', values['renew-deadline'])
  const retryPeriodMs = duration('retry-period', values['retry-period'])
  if (
    values['leader-elect'] &&
    !(retryPeriodMs < renewDeadlineMs && renewDeadlineMs < leaseDurationMs)
  )
    throw new OperatorUsageError('need --retry-period < --renew-deadline < --lease-duration')
  if (leaseDurationMs < 1000) throw new OperatorUsageError('--lease-duration must be at least 1s')
  const watchMs = duration('watch-timeout', values['watch-timeout'])
  if (watchMs < 1000) throw new OperatorUsageError('--watch-timeout must be at least 1s')
  const watchS = Math.round(watchMs / 1000)
  const maxBytes = Number(values['max-snapshot-bytes'])
  if (!Number.isInteger(maxBytes) || maxBytes < 1)
    throw new OperatorUsageError('--max-snapshot-bytes must be a positive integer')
  const maxBackoff = duration('max-backoff', values['max-backoff'])
  const namespace = values.namespace ?? env['POD_NAMESPACE'] ?? SYSTEM_NAMESPACE
  const identity = values.identity ?? env['POD_NAME'] ?? `${hostname()}_${randomUUID().slice(0, 8)}`
  return {
    kubeconfig: values.kubeconfig,
    host: values.host,
    ports,
    logLevel,
    shutdownTimeoutMs: duration('shutdown-timeout', values['shutdown-timeout']),
    kthena,
    gaie,
    ...(values['push-token-secret'] !== undefined
      ? { pushTokenSecret: values['push-token-secret'] }
      : {}),
    controller: {
      namespace,
      identity,
      leaderElection: values['leader-elect']
        ? { leaseName: values['lease-name'], leaseDurationMs, renewDeadlineMs, retryPeriodMs }
        : undefined,
      debounceMs: duration('debounce', values.debounce),
      resyncMs: duration('resync', values.resync),
      relistMs: duration('relist', values.relist),
      watchTimeoutSeconds: [watchS, watchS * 2],
      stallMs:
        values['stall-timeout'] !== undefined
          ? duration('stall-timeout', values['stall-timeout'])
          : watchS * 2000 + 30_000,
      watchdogMs: Math.min(5000, Math.max(100, Math.round(watchMs / 4))),
      listTimeoutMs: Math.min(60_000, Math.max(1000, watchMs)),
      watchBackoff: { baseMs: Math.min(1000, maxBackoff), maxMs: maxBackoff },
      ...(values.gateway !== undefined ? { gateway: values.gateway } : {}),
      ...(values['pod-selector'] !== undefined ? { podLabelSelector: values['pod-selector'] } : {}),
      ...(values['secrets-namespace'] !== undefined
        ? { secretsNamespace: values['secrets-namespace'] }
        : {}),
      maxSnapshotBytes: maxBytes,
    },
  }
}

/** Kubeconfig file when given; otherwise client-node's default chain (env, home, in-cluster). */
export function loadKubeConfig(path: string | undefined): KubeConfig {
  const kc = new KubeConfig()
  try {
    if (path !== undefined) kc.loadFromFile(path)
    else kc.loadFromDefault()
  } catch (e) {
    throw new OperatorError(
      'KUBECONFIG',
      `cannot load kubeconfig${path !== undefined ? ` ${path}` : ''}: ${e instanceof Error ? e.message : String(e)}`,
      { cause: e },
    )
  }
  if (kc.getCurrentCluster() === null)
    throw new OperatorError(
      'KUBECONFIG',
      'no Kubernetes cluster configured: give --kubeconfig, set $KUBECONFIG, or run in a cluster',
    )
  return kc
}

export async function runOperatorCommand(args: readonly string[]): Promise<void> {
  const cfg = parseOperatorArgs(args)
  if (cfg === 'help') {
    process.stdout.write(operatorHelp)
    return
  }
  const log: Logger = stderrLogger('operator', cfg.logLevel)
  const kc = loadKubeConfig(cfg.kubeconfig)
  const metrics = new OperatorMetrics({ processMetrics: true })
  const push = new SnapshotPushServer(
    cfg.pushTokenSecret !== undefined
      ? { token: await ensurePushToken(kc, cfg.controller.namespace, cfg.pushTokenSecret) }
      : {},
  )
  const kthena = await resolveKthena(cfg.kthena, kc)
  const gaie = await resolveGaie(cfg.gaie, kc)
  const controller = new Controller({ ...cfg.controller, kc, push, metrics, log, kthena, gaie })
  const server = await listenOperator({
    host: cfg.host,
    ports: cfg.ports,
    push,
    metrics,
    health: controller,
  })
  controller.start()
  log('info', 'operator listening', {
    urls: server.urls,
    namespace: cfg.controller.namespace,
    identity: cfg.controller.identity,
    leaderElection: cfg.controller.leaderElection !== undefined,
    kthena,
    gaie,
    cluster: kc.getCurrentCluster()?.server,
  })
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    const on = (s: NodeJS.Signals): void => {
      process.off('SIGINT', on)
      process.off('SIGTERM', on)
      resolve(s)
    }
    process.on('SIGINT', on)
    process.on('SIGTERM', on)
  })
  log('info', 'shutting down', { signal })
  server.drain()
  await controller.stop(cfg.shutdownTimeoutMs)
  await server.close()
  log('info', 'stopped')
}
