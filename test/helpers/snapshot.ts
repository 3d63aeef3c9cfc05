// Hand-built snapshots for unit tests that must not depend on the compiler.
import {
  DEFAULT_RETRY,
  DEFAULT_TIMEOUTS,
  type RoutingSnapshot,
  type SnapshotEndpoint,
  type SnapshotRetry,
  type SnapshotRoute,
  type SnapshotServer,
  type SnapshotTimeouts,
} from '../../api/snapshot.js'
import { snapshotHash } from '../../api/snapshot-validate.js'

export function endpoint(
  name: string,
  address: string,
  port: number,
  ready = true,
): SnapshotEndpoint {
  return { name, address, port, ready, labels: {} }
}

export function server(
  name: string,
  endpoints: readonly SnapshotEndpoint[],
  opts: {
    model?: string
    timeouts?: Partial<SnapshotTimeouts>
    retry?: Partial<SnapshotRetry>
  } = {},
): SnapshotServer {
  return {
    key: `default/${name}`,
    namespace: 'default',
    name,
    ...(opts.model ? { model: opts.model } : {}),
    engine: 'vLLM',
    protocol: 'http',
    port: endpoints[0]?.port ?? 8000,
    trafficPolicy: {
      timeouts: { ...DEFAULT_TIMEOUTS, ...opts.timeouts },
      retry: { ...DEFAULT_RETRY, ...opts.retry },
    },
    endpoints,
  }
}

export function route(
  name: string,
  spec: Partial<Omit<SnapshotRoute, 'key' | 'namespace' | 'name'>> & Pick<SnapshotRoute, 'rules'>,
): SnapshotRoute {
  return {
    key: `default/${name}`,
    namespace: 'default',
    name,
    loraAdapters: [],
    creationTimestamp: '2026-01-01T00:00:00Z',
    ...spec,
  }
}

export function snapshot(
  routes: readonly SnapshotRoute[],
  servers: readonly SnapshotServer[],
  version = 1,
): RoutingSnapshot {
  const body = {
    schemaVersion: 1 as const,
    version,
    hash: '',
    routes,
    servers: Object.fromEntries(servers.map((s) => [s.key, s])),
  }
  return { ...body, hash: snapshotHash(body) }
}
