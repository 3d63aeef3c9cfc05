// A scriptable upstream on loopback for proxy tests: each test installs the handler it needs.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

export type Handler = (req: IncomingMessage, res: ServerResponse, body: string) => void

export interface TestUpstream {
  readonly host: string
  readonly port: number
  readonly server: Server
  handler: Handler
  readonly requests: { path: string; headers: IncomingMessage['headers']; body: string }[]
  close(): Promise<void>
}

export async function startUpstream(host: string, handler: Handler): Promise<TestUpstream> {
  const requests: TestUpstream['requests'] = []
  const up: { handler: Handler } = { handler }
  const server = createServer((req, res) => {
    // Not an engine: the data plane's scheduler scrapes GET /metrics on every endpoint; answer
    // those with 404 (no metrics) and keep the scripted handler for inference requests.
    if (req.method === 'GET' && req.url?.startsWith('/metrics')) {
      res.writeHead(404).end()
      return
    }
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8')
      requests.push({ path: req.url ?? '', headers: req.headers, body })
      up.handler(req, res, body)
    })
  })
  await new Promise<void>((r) => server.listen(0, host, r))
  const port = (server.address() as AddressInfo).port
  return {
    host,
    port,
    server,
    get handler() {
      return up.handler
    },
    set handler(h: Handler) {
      up.handler = h
    },
    requests,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections()
        server.close(() => r())
      }),
  }
}

export function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body)
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
  })
  res.end(text)
}

/** A free port with nothing listening (connect → ECONNREFUSED). */
export async function deadPort(host: string): Promise<number> {
  const s = createServer()
  await new Promise<void>((r) => s.listen(0, host, r))
  const port = (s.address() as AddressInfo).port
  await new Promise<void>((r) => s.close(() => r()))
  return port
}
