// The floor of the proxy path (issue 11): the smallest honest Node proxy in front of one engine.
// `node:http` server, the request body read whole, one undici Pool to the engine (keep-alive, the
// data plane's connection cap), the engine's status, headers and body answered: a non-streamed
// body collected and written with its length (the data plane's wire shape), an event stream piped
// chunk by chunk. No routing, scheduling, metrics, limits or logging. Run by proxy-cost.ts
// `--floor` beside our data plane, under the same load and the same in-process probe, it says
// which part of a proxied request's CPU and allocation is Node's and undici's whatever a proxy
// does, and which part is ours.
//
// `--client raw|http` swaps the upstream half (FloorClient): is undici the floor, or would a
// cheaper client move it? `--server raw` swaps the inbound half (FloorServer): raw-inbound.ts, a
// strict HTTP/1.1 server on plain `node:net` sockets, instead of `node:http`'s (with the `raw`
// and `none` clients): what would a raw inbound server save?
//
// Bundled with esbuild like the data plane (floorBundle), started as
// `node [--import probe] proxy-floor.mjs --port P --upstream http://host:port [--client C] [--server S]`; prints
// `floor listening` when ready and stops on SIGTERM.
import {
  createServer,
  Agent as HttpAgent,
  request as httpRequest,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { Pool } from 'undici'
import { RawPool, type RawRequest } from '../../dataplane/proxy/engine-pool.js'
import {
  type InboundRequest,
  type RawHandler,
  type RawResponse,
  type RawServer,
  startRawServer,
} from './raw-inbound.js'

/**
 * The floor's upstream client: `undici` (a Pool, as the data plane), `raw` (the engine client's RawPool, dataplane/proxy/engine-pool.ts: plain
 * node:net sockets and a small parser), `raw-readable` (the same, its body handed on as a Node
 * Readable consumed as the undici variant consumes undici's: what of raw's saving survives the
 * data plane's body interface) or `http` (node:http's own client, a keep-alive Agent).
 * `none` is the inbound half alone: the engine's first answer to each distinct request (URL and
 * body) is recorded through the raw client and replayed from memory after, chunk by chunk as it
 * came, so the server side's cost can be told from the client side's.
 */
export type FloorClient = 'undici' | 'raw' | 'raw-readable' | 'http' | 'none'
export const FLOOR_CLIENTS: readonly FloorClient[] = [
  'undici',
  'raw',
  'raw-readable',
  'http',
  'none',
]

/**
 * The floor's inbound server: `node` (node:http's, as the data plane) or `raw` (raw-inbound.ts on
 * node:net; with the `raw` and `none` clients only).
 */
export type FloorServer = 'node' | 'raw'
export const FLOOR_SERVERS: readonly FloorServer[] = ['node', 'raw']
/** The clients the raw server is written for. */
export const RAW_SERVER_CLIENTS: readonly FloorClient[] = ['raw', 'none']

/** Request headers a proxy does not pass on (hop by hop, and what undici sets itself). */
const DROP_REQUEST = new Set([
  'host',
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'content-length',
  'expect',
])

/** Response headers a proxy does not pass on. */
const DROP_RESPONSE = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'content-length',
])

export interface Floor {
  readonly server: Server | RawServer['server']
  readonly port: number
  close(): Promise<void>
}

function copyHeaders(
  h: IncomingHttpHeaders | Record<string, string | string[] | undefined>,
  drop: ReadonlySet<string>,
): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {}
  for (const k in h) {
    const v = h[k]
    if (v !== undefined && !drop.has(k)) out[k] = v
  }
  return out
}

function isEventStream(contentType: unknown): boolean {
  return typeof contentType === 'string' && contentType.startsWith('text/event-stream')
}

/**
 * The raw client's response head (name, value, name, value, …) without the hop-by-hop fields,
 * and whether it is an event stream.
 */
function keptHead(h: readonly string[]): { lines: string[]; sse: boolean } {
  const lines: string[] = []
  let sse = false
  for (let k = 0; k < h.length; k += 2) {
    const name = h[k] as string
    const value = h[k + 1] as string
    const lower = name.toLowerCase()
    if (lower === 'content-type' && isEventStream(value)) sse = true
    if (!DROP_RESPONSE.has(lower)) lines.push(name, value)
  }
  return { lines, sse }
}

/**
 * The engine's answer, its body a Node Readable: an event stream piped chunk by chunk (the
 * engine's body given up when the client leaves), any other body collected and written with its
 * length (the data plane's wire shape).
 */
function answerReadable(
  res: ServerResponse,
  status: number,
  headers: Record<string, string | string[]>,
  sse: boolean,
  body: Readable,
): void {
  if (sse) {
    res.writeHead(status, headers)
    body.pipe(res)
    body.on('error', () => res.destroy())
    res.on('close', () => {
      if (!body.readableEnded) body.destroy()
    })
    return
  }
  const parts: Buffer[] = []
  body.on('data', (c: Buffer) => parts.push(c))
  body.on('error', () => res.destroy())
  body.on('end', () => {
    const whole = parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts)
    headers['content-length'] = String(whole.byteLength)
    res.writeHead(status, headers)
    res.end(whole)
  })
}

const BAD_GATEWAY = JSON.stringify({
  error: { message: 'upstream failed', type: 'server_error', code: 'upstream_error', param: null },
})

export async function startFloor(opts: {
  readonly host: string
  readonly port: number
  /** The engine's origin, e.g. http://127.0.0.6:18130. */
  readonly upstream: string
  /** Connections to the engine at most (the data plane's default cap). */
  readonly connections?: number
  /** The upstream client (default undici). */
  readonly client?: FloorClient
  /** The inbound server (default node). */
  readonly server?: FloorServer
}): Promise<Floor> {
  const client = opts.client ?? 'undici'
  if (opts.server === 'raw') return startRawFloor(opts, client)
  if (client === 'raw' || client === 'raw-readable') {
    const u = new URL(opts.upstream)
    const pool = new RawPool({
      host: u.hostname.replace(/^\[|\]$/g, ''),
      port: Number(u.port || 80),
      connections: opts.connections ?? 256,
    })
    const handler = client === 'raw' ? rawHandler(pool) : rawReadableHandler(pool)
    return listen(opts, handler, async () => pool.close())
  }
  if (client === 'none') {
    const u = new URL(opts.upstream)
    const pool = new RawPool({
      host: u.hostname.replace(/^\[|\]$/g, ''),
      port: Number(u.port || 80),
      connections: 1,
    })
    return listen(opts, replayHandler(pool), async () => pool.close())
  }
  if (client === 'http') {
    const agent = new HttpAgent({ keepAlive: true, maxSockets: opts.connections ?? 256 })
    return listen(opts, httpHandler(opts, agent), async () => agent.destroy())
  }
  const pool = new Pool(opts.upstream, {
    connections: opts.connections ?? 256,
    keepAliveTimeout: 60_000,
    keepAliveMaxTimeout: 60_000,
    headersTimeout: 0,
    bodyTimeout: 0,
  })
  return listen(
    opts,
    (req, res) => {
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => chunks.push(c))
      req.on('end', () => {
        const body = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks)
        pool
          .request({
            path: req.url ?? '/',
            method: req.method === 'GET' ? 'GET' : 'POST',
            headers: copyHeaders(req.headers, DROP_REQUEST),
            body: req.method === 'GET' ? null : body,
          })
          .then(
            (up) => {
              const ct = up.headers['content-type']
              const headers = copyHeaders(up.headers, DROP_RESPONSE)
              answerReadable(res, up.statusCode, headers, isEventStream(ct), up.body)
            },
            () => badGateway(res),
          )
      })
    },
    () => pool.destroy(),
  )
}

function badGateway(res: ServerResponse): void {
  if (res.headersSent) {
    res.destroy()
    return
  }
  res.writeHead(502, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(BAD_GATEWAY),
  })
  res.end(BAD_GATEWAY)
}

type Handler = (req: IncomingMessage, res: ServerResponse) => void

/** Reads the request body whole, then calls `then` with it (undefined for a GET). */
function readBody(req: IncomingMessage, then: (body: Buffer | undefined) => void): void {
  const chunks: Buffer[] = []
  req.on('data', (c: Buffer) => chunks.push(c))
  req.on('end', () => {
    if (req.method === 'GET') then(undefined)
    else then(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks))
  })
}

/** The raw client: header lines passed as text, the answer's raw header list written back. */
/** The request's header lines for the engine (hop by hop ones dropped), as the raw client takes them. */
function requestLines(req: IncomingMessage): string {
  let lines = ''
  const raw = req.rawHeaders
  for (let k = 0; k < raw.length; k += 2) {
    const name = raw[k] as string
    // node:http's parser already refused CR, LF and NUL in names and values.
    if (!DROP_REQUEST.has(name.toLowerCase())) lines += `${name}: ${raw[k + 1]}\r\n`
  }
  return lines
}

/** The raw client with a Readable body, used as the undici variant uses undici's. */
function rawReadableHandler(pool: RawPool): Handler {
  return (req, res) => {
    readBody(req, (body) => {
      let up: RawRequest | undefined
      const stream = new Readable({
        read() {
          up?.resume()
        },
      })
      let headed = false
      up = pool.request(
        req.method === 'GET' ? 'GET' : 'POST',
        req.url ?? '/',
        requestLines(req),
        body,
        {
          onHead(status, h) {
            headed = true
            const head = keptHead(h)
            const headers: Record<string, string> = {}
            for (let k = 0; k < head.lines.length; k += 2) {
              headers[(head.lines[k] as string).toLowerCase()] = head.lines[k + 1] as string
            }
            answerReadable(res, status, headers, head.sse, stream)
          },
          onBody(chunk) {
            if (!stream.push(chunk)) up?.pause()
          },
          onEnd() {
            stream.push(null)
          },
          onError(e) {
            if (headed) stream.destroy(e)
            else badGateway(res)
          },
        },
      )
      stream.on('close', () => {
        if (!stream.readableEnded) up?.abort()
      })
    })
  }
}

function rawHandler(pool: RawPool): Handler {
  return (req, res) => {
    readBody(req, (body) => {
      const lines = requestLines(req)
      let stream = false
      let status = 0
      let out: string[] = []
      const parts: Buffer[] = []
      const up = pool.request(req.method === 'GET' ? 'GET' : 'POST', req.url ?? '/', lines, body, {
        onHead(s, h) {
          status = s
          const head = keptHead(h)
          out = head.lines
          stream = head.sse
          if (stream) {
            res.writeHead(status, out)
            res.on('drain', () => up.resume())
          }
        },
        onBody(chunk) {
          if (!stream) parts.push(chunk)
          else if (!res.write(chunk)) up.pause()
        },
        onEnd() {
          if (stream) {
            res.end()
            return
          }
          const whole = parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts)
          out.push('content-length', String(whole.byteLength))
          res.writeHead(status, out)
          res.end(whole)
        },
        onError() {
          badGateway(res)
        },
      })
      res.on('close', () => {
        if (!res.writableFinished) up.abort()
      })
    })
  }
}

interface Recorded {
  readonly status: number
  /** With the Content-Length of a non-streamed body (node:http's writeHead takes it). */
  readonly headers: string[]
  /** Without it (the raw server writes its own). */
  readonly bare: string[]
  readonly chunks: readonly Buffer[]
  readonly stream: boolean
}

/**
 * The engine's answer to one request, recorded (through the raw client) for `none`: a
 * non-streamed body joined and given its length, a stream's chunks as they came.
 */
function record(
  pool: RawPool,
  method: string,
  path: string,
  body: Buffer | undefined,
): Promise<Recorded> {
  return new Promise((resolve, reject) => {
    let status = 0
    let headers: string[] = []
    let stream = false
    const chunks: Buffer[] = []
    pool.request(method, path, 'content-type: application/json\r\n', body, {
      onHead(s, h) {
        status = s
        const head = keptHead(h)
        headers = head.lines
        stream = head.sse
      },
      onBody: (c) => chunks.push(Buffer.from(c)),
      onEnd() {
        const bare = headers.slice()
        if (!stream) {
          const whole = Buffer.concat(chunks)
          chunks.length = 0
          chunks.push(whole)
          headers.push('content-length', String(whole.byteLength))
        }
        resolve({ status, headers, bare, chunks, stream })
      },
      onError: reject,
    })
  })
}

/**
 * `none`'s memory, for either server: the recorded answer to `method path body`, or the recording
 * under way (started here on the first ask; forgotten if it fails, so the next ask tries again).
 */
function recordingFor(
  recorded: Map<string, Recorded | Promise<Recorded>>,
  pool: RawPool,
  method: string,
  path: string,
  body: Buffer | undefined,
): Recorded | Promise<Recorded> {
  const key = `${method} ${path} ${body?.toString('latin1') ?? ''}`
  let r = recorded.get(key)
  if (r === undefined) {
    r = record(pool, method, path, body)
    recorded.set(key, r)
    r.then(
      (done) => recorded.set(key, done),
      () => recorded.delete(key),
    )
  }
  return r
}

/** `none`: answers from memory what the engine answered the first time. */
function replayHandler(pool: RawPool): Handler {
  const recorded = new Map<string, Recorded | Promise<Recorded>>()
  const replay = (r: Recorded, res: ServerResponse): void => {
    res.writeHead(r.status, r.headers)
    if (!r.stream) {
      res.end(r.chunks[0])
      return
    }
    for (const c of r.chunks) res.write(c)
    res.end()
  }
  return (req, res) => {
    readBody(req, (body) => {
      const method = req.method === 'GET' ? 'GET' : 'POST'
      const r = recordingFor(recorded, pool, method, req.url ?? '/', body)
      if (r instanceof Promise)
        r.then(
          (done) => replay(done, res),
          () => badGateway(res),
        )
      else replay(r, res)
    })
  }
}

/** node:http's client with a keep-alive Agent. */
function httpHandler(
  opts: { readonly upstream: string; readonly connections?: number },
  agent: HttpAgent,
): Handler {
  const u = new URL(opts.upstream)
  const host = u.hostname.replace(/^\[|\]$/g, '')
  const port = Number(u.port || 80)
  return (req, res) => {
    readBody(req, (body) => {
      const headers = copyHeaders(req.headers, DROP_REQUEST)
      if (body !== undefined) headers['content-length'] = String(body.byteLength)
      const up = httpRequest(
        {
          host,
          port,
          agent,
          method: req.method === 'GET' ? 'GET' : 'POST',
          path: req.url ?? '/',
          headers,
        },
        (ur) => {
          const out = copyHeaders(ur.headers, DROP_RESPONSE)
          answerReadable(
            res,
            ur.statusCode ?? 502,
            out,
            isEventStream(ur.headers['content-type']),
            ur,
          )
        },
      )
      up.on('error', () => badGateway(res))
      res.on('close', () => {
        if (!res.writableFinished) up.destroy()
      })
      up.end(body)
    })
  }
}

/** The raw server's floor: `raw` (the raw client) or `none` (replayed answers). */
async function startRawFloor(
  opts: {
    readonly host: string
    readonly port: number
    readonly upstream: string
    readonly connections?: number
  },
  client: FloorClient,
): Promise<Floor> {
  if (client !== 'raw' && client !== 'none')
    throw new Error(
      `--server raw runs with --client ${RAW_SERVER_CLIENTS.join(' or ')}, not ${client}`,
    )
  const u = new URL(opts.upstream)
  const pool = new RawPool({
    host: u.hostname.replace(/^\[|\]$/g, ''),
    port: Number(u.port || 80),
    connections: client === 'none' ? 1 : (opts.connections ?? 256),
  })
  const raw = await startRawServer({
    host: opts.host,
    port: opts.port,
    handler: client === 'raw' ? rawServerRawHandler(pool) : rawServerReplayHandler(pool),
    // The data plane's default cap, as the node:http floor's pool.
    maxConnections: 16_384,
  })
  return {
    server: raw.server,
    port: raw.port,
    async close() {
      await raw.close()
      pool.close()
    },
  }
}

/** The raw server's request header lines for the engine (hop by hop ones dropped). */
function rawRequestLines(raw: readonly string[]): string {
  let lines = ''
  for (let k = 0; k < raw.length; k += 2) {
    const name = raw[k] as string
    // raw-inbound's parser already refused CR, LF and NUL in names and values.
    if (!DROP_REQUEST.has(name.toLowerCase())) lines += `${name}: ${raw[k + 1]}\r\n`
  }
  return lines
}

function rawBadGateway(res: RawResponse): void {
  if (res.finished) return
  try {
    res.end(502, ['content-type', 'application/json'], BAD_GATEWAY)
  } catch {
    // The head went out already (a stream that failed midway): only a cut says so.
    res.destroy()
  }
}

const methodOf = (req: InboundRequest): string => (req.method === 'GET' ? 'GET' : 'POST')

/** The raw server with the raw client: rawHandler's work, without node:http on either side. */
function rawServerRawHandler(pool: RawPool): RawHandler {
  return (req, res) => {
    let stream = false
    let status = 0
    let out: string[] = []
    const parts: Buffer[] = []
    const up = pool.request(methodOf(req), req.target, rawRequestLines(req.rawHeaders), req.body, {
      onHead(s, h) {
        status = s
        const head = keptHead(h)
        out = head.lines
        stream = head.sse
        if (stream) {
          res.writeHead(status, out)
          res.onDrain = () => up.resume()
        }
      },
      onBody(chunk, last) {
        if (!stream) parts.push(chunk)
        else if (!res.write(chunk, last)) up.pause()
      },
      onEnd() {
        if (stream) {
          res.finish()
          return
        }
        res.end(status, out, parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts))
      },
      onError() {
        rawBadGateway(res)
      },
    })
    res.onAbort = () => up.abort()
  }
}

/** The raw server answering from memory (`none`): the inbound half alone. */
function rawServerReplayHandler(pool: RawPool): RawHandler {
  const recorded = new Map<string, Recorded | Promise<Recorded>>()
  const replay = (r: Recorded, res: RawResponse): void => {
    if (!r.stream) {
      res.end(r.status, r.bare, r.chunks[0])
      return
    }
    // One system call for the lot: the raw server corks a stream's frames within a turn, as
    // node:http does.
    res.writeHead(r.status, r.bare)
    const n = r.chunks.length
    for (let k = 0; k < n; k++) res.write(r.chunks[k] as Buffer, k === n - 1)
    res.finish()
  }
  return (req, res) => {
    const r = recordingFor(recorded, pool, methodOf(req), req.target, req.body)
    if (r instanceof Promise)
      r.then(
        (done) => replay(done, res),
        () => rawBadGateway(res),
      )
    else replay(r, res)
  }
}

async function listen(
  opts: { readonly host: string; readonly port: number },
  handler: Handler,
  closeClient: () => Promise<void>,
): Promise<Floor> {
  const server = createServer({ keepAliveTimeout: 65_000 }, handler)
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen({ host: opts.host, port: opts.port, backlog: 4096 }, () => {
      server.off('error', reject)
      resolve()
    })
  })
  return {
    server,
    port: (server.address() as AddressInfo).port,
    async close() {
      const closed = new Promise<void>((r) => server.close(() => r()))
      server.closeAllConnections()
      await closed
      await closeClient()
    },
  }
}

/** Bundles this file (esbuild, as the data plane is bundled) into `outdir`; returns its path. */
export async function floorBundle(outdir: string): Promise<string> {
  const { build } = await import('esbuild')
  const outfile = join(outdir, 'proxy-floor.mjs')
  await build({
    entryPoints: [fileURLToPath(import.meta.url)],
    outfile,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'esm',
    logLevel: 'warning',
    // proxy-cost --cpu-prof names undici's and engine-client's files through it.
    sourcemap: true,
    // esbuild itself stays out: only floorBundle imports it, never the floor's server.
    external: ['esbuild'],
    banner: {
      js: "import{createRequire as __cr}from'module';const require=__cr(import.meta.url);",
    },
  })
  return outfile
}

const main = process.argv[1]
if (main !== undefined && import.meta.url === pathToFileURL(main).href) {
  const { values } = parseArgs({
    options: {
      host: { type: 'string', default: '127.0.0.1' },
      port: { type: 'string', default: '0' },
      upstream: { type: 'string' },
      connections: { type: 'string', default: '256' },
      client: { type: 'string', default: 'undici' },
      server: { type: 'string', default: 'node' },
    },
  })
  if (values.upstream === undefined) throw new Error('--upstream is required')
  const client = FLOOR_CLIENTS.find((c) => c === values.client)
  if (client === undefined)
    throw new Error(`--client must be one of ${FLOOR_CLIENTS.join(', ')}, got ${values.client}`)
  const server = FLOOR_SERVERS.find((c) => c === values.server)
  if (server === undefined)
    throw new Error(`--server must be one of ${FLOOR_SERVERS.join(', ')}, got ${values.server}`)
  startFloor({
    client,
    server,
    host: values.host,
    port: Number(values.port),
    upstream: values.upstream,
    connections: Number(values.connections),
  }).then(
    (f) => {
      process.stdout.write(`floor listening on ${values.host}:${f.port}\n`)
      process.once('SIGTERM', () => {
        void f.close()
      })
    },
    (e: unknown) => {
      process.stderr.write(`floor failed: ${e instanceof Error ? e.message : String(e)}\n`)
      process.exitCode = 1
    },
  )
}
