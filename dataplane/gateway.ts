// Wires one data-plane instance: snapshot store, config source, app, listener. Used by the CLI,
// the demo, tests and benchmarks, so they all exercise the same assembly.
import type { Writable } from 'node:stream'
import { type AccessLogger, discardLogger, jsonLineLogger } from './access-log.js'
import { createApp, type Lifecycle } from './app.js'
import { type ConfigKind, FileConfigSource } from './config-source.js'
import { type Logger, silentLogger } from './log.js'
import { GatewayMetrics } from './metrics.js'
import { type EndpointPicker, RoundRobinPicker } from './picker.js'
import { UpstreamPool } from './proxy/upstream-pool.js'
import { PushSource } from './push-source.js'
import { listen, type RunningServer } from './server.js'
import { SnapshotStore } from './snapshot-store.js'

export interface GatewayOptions {
  /** Files to load (standalone YAML, or a published snapshot file such as a ConfigMap mount). */
  readonly config?: { readonly kind: ConfigKind; readonly paths: readonly string[] }
  /** The operator's push channel (long-poll); combined with a snapshot file, the newest version wins. */
  readonly pushUrl?: string
  readonly host?: string
  readonly port?: number
  readonly maxBodyBytes?: number
  readonly pollMs?: number
  /** Where access-log lines go; `undefined` discards them. */
  readonly accessLog?: Writable | AccessLogger
  readonly log?: Logger
  readonly picker?: EndpointPicker
  readonly processMetrics?: boolean
  readonly random?: () => number
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
  shutdown(opts?: { drainDelayMs?: number; deadlineMs?: number }): Promise<{ forced: number }>
}

export async function startGateway(opts: GatewayOptions): Promise<Gateway> {
  const log = opts.log ?? silentLogger
  const metrics = new GatewayMetrics({ processMetrics: opts.processMetrics ?? false })
  const store = new SnapshotStore(opts.random)
  const lifecycle: Lifecycle = { draining: false }
  const pool = new UpstreamPool()
  if (!opts.config && !opts.pushUrl) throw new Error('a gateway needs config files or a push URL')
  const source = opts.config
    ? new FileConfigSource({
        kind: opts.config.kind,
        paths: opts.config.paths,
        store,
        metrics,
        log,
        ...(opts.pollMs !== undefined ? { pollMs: opts.pollMs } : {}),
      })
    : undefined
  const push = opts.pushUrl ? new PushSource({ url: opts.pushUrl, store, metrics, log }) : undefined
  const picker: EndpointPicker = opts.picker ?? new RoundRobinPicker()
  if (picker.onSnapshot) {
    const onSnapshot = picker.onSnapshot.bind(picker)
    store.onSwap(onSnapshot)
  }
  await push?.start()
  await source?.start()
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
    lifecycle,
    ...(opts.maxBodyBytes !== undefined ? { maxBodyBytes: opts.maxBodyBytes } : {}),
    ...(opts.random ? { random: opts.random } : {}),
  })
  let server: RunningServer
  try {
    server = await listen(app, {
      host: opts.host ?? '127.0.0.1',
      port: opts.port ?? 8080,
      lifecycle,
    })
  } catch (e) {
    source?.stop()
    await push?.stop()
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
    async shutdown(o) {
      source?.stop()
      await push?.stop()
      const r = await server.shutdown(o)
      await picker.close?.()
      await pool.close()
      return r
    },
  }
}
