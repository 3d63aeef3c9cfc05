// The Node process metrics of /metrics (prom-client's defaults), less the collectors whose cost
// grows with the number of open connections. Each of those runs synchronously on the event loop
// at every scrape: `process_open_fds` lists /proc/self/fd with readdirSync, `nodejs_active_handles`
// (and `_total`) build an array of every libuv handle (one per socket) twice, and
// `nodejs_active_resources` (and `_total`) one string per resource. With 9,000 idle connections
// held (issue 10's flood at the connection cap) one scrape blocked the loop for 80–150 ms on a
// busy 2-core machine, and every real request waited it out. Here `process_open_fds` is counted
// off the loop (the directory read runs in libuv's thread pool) and the handle/resource counts,
// which have no constant-time source, are not exported: `infer_gateway_client_connections`
// counts client connections.
import { readdir } from 'node:fs/promises'
import { collectDefaultMetrics, Gauge, type Registry } from 'prom-client'

/** Default metrics whose collection walks every handle: not exported. */
export const PER_HANDLE_METRICS = [
  'nodejs_active_handles',
  'nodejs_active_handles_total',
  'nodejs_active_resources',
  'nodejs_active_resources_total',
] as const

const OPEN_FDS = 'process_open_fds'

/** prom-client's default process metrics on `registry`, each cheap to collect at any fd count. */
export function collectProcessMetrics(registry: Registry): void {
  collectDefaultMetrics({ register: registry })
  for (const name of PER_HANDLE_METRICS) registry.removeSingleMetric(name)
  // Only registered by prom-client where /proc exists (Linux): replaced there only.
  if (registry.getSingleMetric(OPEN_FDS) === undefined) return
  registry.removeSingleMetric(OPEN_FDS)
  new Gauge({
    name: OPEN_FDS,
    help: 'Number of open file descriptors.',
    registers: [registry],
    async collect() {
      try {
        // Less the descriptor the listing itself held open (as prom-client counts).
        this.set((await readdir('/proc/self/fd')).length - 1)
      } catch {
        // /proc unreadable (a sandbox): the gauge keeps its last value.
      }
    },
  })
}
