// The push channel's server side (docs/snapshot-protocol.md): holds the latest published snapshot
// and answers long-polls. `GET /v1/snapshot?after=N&timeoutSeconds=T` → 200 with the snapshot at
// once when its version > N, else waits until one is published (200) or T passes (304). Bodies
// are gzipped once per publish, not per request: hundreds of data-plane replicas may poll.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { gzipSync } from 'node:zlib'
import type { RoutingSnapshot } from '../api/snapshot.js'
import { bearerMatches } from './push-token.js'

const MAX_WAIT_SECONDS = 300

interface Waiter {
  readonly after: number
  readonly res: ServerResponse
  readonly timer: NodeJS.Timeout
}

export interface PushServerOptions {
  /** When set, every poll must send `Authorization: Bearer <token>` (operator/push-token.ts). */
  readonly token?: string
}

export class SnapshotPushServer {
  private readonly token: string | undefined
  private current: { version: number; hash: string; json: Buffer; gz: Buffer } | undefined
  private waiters = new Set<Waiter>()

  constructor(opts: PushServerOptions = {}) {
    this.token = opts.token
  }

  /** Publish a snapshot; waiting pollers with an older version get it now. Older versions are ignored. */
  publish(snapshot: RoutingSnapshot): void {
    if (this.current && snapshot.version <= this.current.version) return
    const json = Buffer.from(JSON.stringify(snapshot))
    this.current = { version: snapshot.version, hash: snapshot.hash, json, gz: gzipSync(json) }
    for (const w of this.waiters) {
      if (w.after < snapshot.version) {
        this.waiters.delete(w)
        clearTimeout(w.timer)
        this.send(w.res, true)
      }
    }
  }

  get version(): number | undefined {
    return this.current?.version
  }

  get waiting(): number {
    return this.waiters.size
  }

  /** The request handler; mount it on any node:http server. Returns false if the path is not ours. */
  handle(req: IncomingMessage, res: ServerResponse): boolean {
    const url = new URL(req.url ?? '/', 'http://x')
    if (url.pathname !== '/v1/snapshot') return false
    if (req.method !== 'GET') {
      res.writeHead(405, { allow: 'GET' }).end()
      return true
    }
    if (this.token !== undefined && !bearerMatches(req.headers.authorization, this.token)) {
      res
        .writeHead(401, {
          'content-type': 'application/json',
          'www-authenticate': 'Bearer realm="infer-gateway-push"',
        })
        .end(
          JSON.stringify({
            error: {
              message: 'the push channel needs Authorization: Bearer <push token>',
              type: 'authentication_error',
              code: 'push_token_required',
            },
          }),
        )
      return true
    }
    const after = Number(url.searchParams.get('after') ?? '0')
    const wait = Math.min(
      MAX_WAIT_SECONDS,
      Math.max(0, Number(url.searchParams.get('timeoutSeconds') ?? '0')),
    )
    if (!Number.isFinite(after) || !Number.isFinite(wait)) {
      res
        .writeHead(400, { 'content-type': 'application/json' })
        .end('{"error":"after and timeoutSeconds must be numbers"}')
      return true
    }
    const gzip = /\bgzip\b/.test(String(req.headers['accept-encoding'] ?? ''))
    if (this.current && this.current.version > after) {
      this.send(res, gzip)
      return true
    }
    if (wait === 0) {
      res.writeHead(304).end()
      return true
    }
    const w: Waiter = {
      after,
      res,
      timer: setTimeout(() => {
        this.waiters.delete(w)
        res.writeHead(304).end()
      }, wait * 1000),
    }
    this.waiters.add(w)
    res.once('close', () => {
      clearTimeout(w.timer)
      this.waiters.delete(w)
    })
    return true
  }

  /** Ends all waiting polls (shutdown); data planes reconnect to another replica. */
  close(): void {
    for (const w of this.waiters) {
      clearTimeout(w.timer)
      w.res.writeHead(503, { 'retry-after': '1' }).end()
    }
    this.waiters.clear()
  }

  private send(res: ServerResponse, gzip: boolean): void {
    const c = this.current
    if (!c) return
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      'x-snapshot-version': String(c.version),
      'x-snapshot-hash': c.hash,
      'cache-control': 'no-store',
    }
    if (gzip) headers['content-encoding'] = 'gzip'
    res.writeHead(200, headers).end(gzip ? c.gz : c.json)
  }
}

/** A standalone listener for the push channel (the operator mounts the handler on its own server). */
export async function listenPushServer(
  push: SnapshotPushServer,
  host: string,
  port: number,
): Promise<{ server: Server; url: string; close(): Promise<void> }> {
  const server = createServer((req, res) => {
    if (!push.handle(req, res)) res.writeHead(404).end()
  })
  await new Promise<void>((r) => server.listen(port, host, r))
  const a = server.address() as AddressInfo
  return {
    server,
    url: `http://${a.address}:${a.port}/v1/snapshot`,
    close: () =>
      new Promise<void>((r) => {
        push.close()
        server.closeAllConnections()
        server.close(() => r())
      }),
  }
}
