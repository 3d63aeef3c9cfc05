// The oracle column of the KV cache-pressure benchmark (routing-kv.ts): a router that reads the
// engines' caches directly. For each request it asks every simulated engine what it holds of the
// prompt (`POST /sim/kv/peek`, the engine's own lookup) and picks as the kv-cache profile would if
// its index were perfect and instantaneous: the resident fraction of the prompt × `kvWeight` while
// the pod is within `loadMargin` pending requests of the least loaded, plus least-pending ×
// `loadWeight` (the same tie-break by load). No real router can do this (engines expose no such
// query, and asking every engine per request costs a round trip); it bounds what KV events can
// reach. It proxies straight to the chosen engine, so it also skips the data plane's own cost.
import {
  Agent,
  createServer,
  type IncomingMessage,
  request,
  type Server,
  type ServerResponse,
} from 'node:http'
import type { AddressInfo } from 'node:net'
import { wordId } from '../../dataplane/kv-events/tokens.js'
import { rendezvous } from '../../dataplane/scheduler/prompt.js'
import { inverseMinMax } from '../../dataplane/scheduler/scores.js'

export interface OraclePod {
  readonly host: string
  readonly port: number
}

export interface OracleOptions {
  readonly kvWeight: number
  readonly loadWeight: number
  readonly loadMargin: number
}

export interface Oracle {
  readonly url: string
  close(): Promise<void>
}

interface Peek {
  promptTokens: number
  cachedTokens: number
}

function readAll(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = []
    req.on('data', (b: Buffer) => parts.push(b))
    req.on('end', () => resolve(Buffer.concat(parts)))
    req.on('error', reject)
  })
}

/**
 * Index of the best pod by the kv-cache profile's formula, with perfect knowledge of the caches.
 * Equal scores go by rendezvous hashing of `tieKey` (the prompt's head) over the pods, as the
 * scheduler breaks its ties: not always the first pod, which would take every cold prompt.
 */
export function oracleChoice(
  peeks: readonly Peek[],
  pending: readonly number[],
  o: OracleOptions,
  tieKey = 0,
): number {
  const n = peeks.length
  const load = new Float64Array(n)
  inverseMinMax(pending, n, load)
  const minPending = Math.min(...pending)
  let best = 0
  let bestScore = Number.NEGATIVE_INFINITY
  for (let i = 0; i < n; i++) {
    const p = peeks[i] as Peek
    const near = (pending[i] as number) - minPending <= o.loadMargin
    const hit = near && p.promptTokens > 0 ? p.cachedTokens / p.promptTokens : 0
    const tie = rendezvous(tieKey, i + 1) / 4_294_967_296
    const s = o.kvWeight * hit + o.loadWeight * (load[i] as number) + tie * 1e-9
    if (s > bestScore) {
      bestScore = s
      best = i
    }
  }
  return best
}

export async function startOracle(
  pods: readonly OraclePod[],
  listen: { host: string; port: number },
  o: OracleOptions,
): Promise<Oracle> {
  // A connection per call: reusing idle keep-alive sockets raced the engines' keep-alive timeout
  // (a POST on a socket the server was closing failed the request); loopback connects are cheap.
  const agent = new Agent({ keepAlive: false, maxSockets: 1024 })
  const pending = pods.map(() => 0)
  const peek = (pod: OraclePod, body: Buffer): Promise<Peek> =>
    new Promise((resolve, reject) => {
      const r = request(
        {
          host: pod.host,
          port: pod.port,
          method: 'POST',
          path: '/sim/kv/peek',
          headers: { 'content-type': 'application/json', 'content-length': body.length },
          agent,
        },
        (res) => {
          readAll(res).then((b) => resolve(JSON.parse(b.toString()) as Peek), reject)
        },
      )
      r.on('error', reject)
      r.end(body)
    })
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const body = await readAll(req)
    const peeks = await Promise.all(pods.map((p) => peek(p, body)))
    const i = oracleChoice(peeks, pending, o, wordId(body.subarray(0, 512).toString('latin1')))
    const pod = pods[i] as OraclePod
    pending[i] = (pending[i] as number) + 1
    let done = false
    const finish = (): void => {
      if (done) return
      done = true
      pending[i] = (pending[i] as number) - 1
    }
    const up = request(
      {
        host: pod.host,
        port: pod.port,
        method: req.method,
        path: req.url,
        headers: { ...req.headers, 'content-length': body.length },
        agent,
      },
      (ur) => {
        res.writeHead(ur.statusCode ?? 502, ur.headers)
        ur.pipe(res)
        ur.on('end', finish)
        ur.on('error', () => res.destroy())
      },
    )
    up.on('error', () => {
      finish()
      if (!res.headersSent) res.writeHead(502)
      res.end()
    })
    res.on('close', () => {
      finish()
      if (!res.writableFinished) up.destroy()
    })
    up.end(body)
  }
  const server: Server = createServer((req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent) res.writeHead(502)
      res.end()
    })
  })
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
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
        agent.destroy()
      }),
  }
}
