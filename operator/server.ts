// The operator's HTTP listener(s): `/healthz`, `/readyz`, `/metrics` and the push channel
// (`/v1/snapshot`, operator/push-server.ts) on the same server, so one port serves everything a
// data plane or a kubelet needs. Extra ports (e.g. a separate probe port) serve the same routes.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { OperatorMetrics } from './metrics.js'
import type { SnapshotPushServer } from './push-server.js'

export interface HealthSource {
  /** Every informer has listed once (a replica that has not cannot answer correctly). */
  readonly synced: boolean
  readonly isLeader: boolean
}

export interface OperatorServerOptions {
  readonly host: string
  readonly ports: readonly number[]
  readonly push: SnapshotPushServer
  readonly metrics: OperatorMetrics
  readonly health: HealthSource
}

export interface OperatorServer {
  readonly urls: readonly string[]
  /** Readiness off (load balancers stop sending); liveness stays on. */
  drain(): void
  close(): Promise<void>
}

function text(res: ServerResponse, status: number, body: string, type = 'text/plain'): void {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' }).end(body)
}

export async function listenOperator(o: OperatorServerOptions): Promise<OperatorServer> {
  let draining = false
  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    if (o.push.handle(req, res)) return
    const path = (req.url ?? '/').split('?')[0]
    if (path === '/healthz') text(res, 200, 'ok\n')
    else if (path === '/readyz') {
      if (draining) text(res, 503, 'shutting down\n')
      else if (!o.health.synced) text(res, 503, 'informers not synced\n')
      else text(res, 200, `ok (${o.health.isLeader ? 'leader' : 'follower'})\n`)
    } else if (path === '/metrics') {
      o.metrics.registry.metrics().then(
        (body) => text(res, 200, body, o.metrics.registry.contentType),
        (e: unknown) => text(res, 500, `${e instanceof Error ? e.message : String(e)}\n`),
      )
    } else text(res, 404, 'not found\n')
  }
  const servers: Server[] = []
  const urls: string[] = []
  try {
    // The same port twice is one listener; 0 (ephemeral) twice is two.
    for (const port of o.ports.filter((p, i) => p === 0 || o.ports.indexOf(p) === i)) {
      const server = createServer({ keepAliveTimeout: 65_000, requestTimeout: 0 }, handler)
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject)
        server.listen(port, o.host, () => {
          server.off('error', reject)
          resolve()
        })
      })
      servers.push(server)
      const a = server.address() as AddressInfo
      urls.push(`http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`)
    }
  } catch (e) {
    for (const s of servers) s.close()
    throw e
  }
  return {
    urls,
    drain() {
      draining = true
    },
    async close() {
      draining = true
      // Waiting long-polls get 503 + Retry-After and move to another replica.
      o.push.close()
      await Promise.all(
        servers.map(
          (s) =>
            new Promise<void>((r) => {
              s.close(() => r())
              s.closeIdleConnections()
              setTimeout(() => s.closeAllConnections(), 1000).unref()
            }),
        ),
      )
    },
  }
}
