// A tiny HTTP load balancer for the multi-replica routing benchmark: each request goes to the next
// backend in turn (per request, not per connection, so every data-plane replica sees an equal
// share of the traffic however the client reuses connections), streamed through both ways. It
// stands for the Kubernetes Service or cloud load balancer in front of several gateway replicas;
// it knows nothing about models or prefixes.
import {
  Agent,
  createServer,
  type IncomingMessage,
  request,
  type Server,
  type ServerResponse,
} from 'node:http'
import type { AddressInfo } from 'node:net'

export interface Backend {
  readonly host: string
  readonly port: number
}

export interface Balancer {
  readonly url: string
  /** Requests sent to each backend so far, in the order given. */
  counts(): number[]
  close(): Promise<void>
}

export async function startBalancer(
  backends: readonly Backend[],
  listen: { host: string; port: number },
): Promise<Balancer> {
  if (backends.length === 0) throw new Error('a balancer needs at least one backend')
  const agent = new Agent({ keepAlive: true, maxSockets: 1024 })
  const counts = backends.map(() => 0)
  let next = 0
  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const i = next
    next = (next + 1) % backends.length
    counts[i] = (counts[i] ?? 0) + 1
    const b = backends[i] as Backend
    const up = request(
      {
        host: b.host,
        port: b.port,
        method: req.method,
        path: req.url,
        headers: req.headers,
        agent,
      },
      (ur) => {
        res.writeHead(ur.statusCode ?? 502, ur.headers)
        ur.pipe(res)
        ur.on('error', () => res.destroy())
      },
    )
    up.on('error', (e) => {
      if (res.headersSent) {
        res.destroy()
        return
      }
      const body = JSON.stringify({
        error: { message: `balancer: ${e.message}`, type: 'bad_gateway', code: 'bad_gateway' },
      })
      res.writeHead(502, { 'content-type': 'application/json' })
      res.end(body)
    })
    res.on('close', () => {
      if (!res.writableFinished) up.destroy()
    })
    req.pipe(up)
  }
  const server: Server = createServer(handle)
  server.keepAliveTimeout = 30_000
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(listen.port, listen.host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  const port = (server.address() as AddressInfo).port
  return {
    url: `http://${listen.host}:${port}`,
    counts: () => [...counts],
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
        agent.destroy()
      }),
  }
}
