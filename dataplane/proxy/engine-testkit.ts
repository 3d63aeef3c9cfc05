// A loopback HTTP/1.1 engine for the raw engine client's tests (engine-pool.test.ts,
// engine-client.test.ts): one node:http server per test file at a time, on 127.0.0.181, its
// sockets counted (reuse is what several tests check).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'

let server: Server | undefined

/** Starts the engine with `handler`; its port and the sockets it accepted (so far and later). */
export async function listen(
  handler: Parameters<typeof createServer>[1],
): Promise<{ port: number; sockets: Set<Socket> }> {
  const sockets = new Set<Socket>()
  server = createServer(handler)
  server.on('connection', (s: Socket) => sockets.add(s))
  await new Promise<void>((r) => server?.listen(0, '127.0.0.181', () => r()))
  return { port: (server.address() as AddressInfo).port, sockets }
}

/** The engine started by `listen`, if it is still up. */
export function engineServer(): Server | undefined {
  return server
}

/** Resolves with the next request the server gets (its socket too). */
export function nextRequest(): Promise<{ req: IncomingMessage; res: ServerResponse }> {
  return new Promise((resolve) => server?.once('request', (req, res) => resolve({ req, res })))
}

/** Stops the engine (its open connections torn down); for an afterEach, or a refused port. */
export async function closeEngine(): Promise<void> {
  if (server === undefined) return
  const s = server
  server = undefined
  s.closeAllConnections()
  await new Promise<void>((r) => s.close(() => r()))
}
