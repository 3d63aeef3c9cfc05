// HTTP listener with graceful shutdown: readiness flips first (so load balancers stop sending),
// then the listener closes, in-flight requests get until the deadline to finish, and only then are
// remaining connections cut.
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { getRequestListener } from '@hono/node-server'
import type { Hono } from 'hono'
import type { Lifecycle } from './app.js'

export interface ListenOptions {
  readonly host: string
  readonly port: number
  readonly lifecycle: Lifecycle
}

export interface RunningServer {
  readonly server: Server
  readonly url: string
  readonly port: number
  inflight(): number
  /** Drain then close. `drainDelayMs`: time to keep serving after readiness flips. */
  shutdown(opts?: { drainDelayMs?: number; deadlineMs?: number }): Promise<{ forced: number }>
}

export async function listen(app: Hono, opts: ListenOptions): Promise<RunningServer> {
  const listener = getRequestListener(app.fetch)
  let inflight = 0
  let idleWaiters: (() => void)[] = []
  const server = createServer({ keepAliveTimeout: 65_000, requestTimeout: 0 }, (req, res) => {
    inflight++
    if (opts.lifecycle.draining) res.setHeader('connection', 'close')
    res.once('close', () => {
      inflight--
      if (inflight === 0) {
        const w = idleWaiters
        idleWaiters = []
        for (const f of w) f()
      }
    })
    void listener(req, res)
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  const addr = server.address() as AddressInfo
  const hostForUrl = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address
  return {
    server,
    url: `http://${hostForUrl}:${addr.port}`,
    port: addr.port,
    inflight: () => inflight,
    async shutdown({ drainDelayMs = 0, deadlineMs = 30_000 } = {}) {
      opts.lifecycle.draining = true
      if (drainDelayMs > 0) await new Promise((r) => setTimeout(r, drainDelayMs))
      const closed = new Promise<void>((r) => server.close(() => r()))
      server.closeIdleConnections()
      if (inflight > 0) {
        await Promise.race([
          new Promise<void>((r) => idleWaiters.push(r)),
          new Promise<void>((r) => setTimeout(r, deadlineMs).unref()),
        ])
      }
      const forced = inflight
      server.closeAllConnections()
      await closed
      return { forced }
    },
  }
}
