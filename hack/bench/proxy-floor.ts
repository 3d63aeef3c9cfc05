// The floor of the proxy path (issue 11): the smallest honest Node proxy in front of one engine.
// `node:http` server, the request body read whole, one undici Pool to the engine (keep-alive, the
// data plane's connection cap), the engine's status, headers and body answered: a non-streamed
// body collected and written with its length (the data plane's wire shape), an event stream piped
// chunk by chunk. No routing, scheduling, metrics, limits or logging. Run by proxy-cost.ts
// `--floor` beside our data plane, under the same load and the same in-process probe, it says
// which part of a proxied request's CPU and allocation is Node's and undici's whatever a proxy
// does, and which part is ours.
//
// Bundled with esbuild like the data plane (floorBundle), started as
// `node [--import probe] proxy-floor.mjs --port P --upstream http://host:port`; prints
// `floor listening` when ready and stops on SIGTERM.
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { Pool } from 'undici'

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
  readonly server: Server
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
}): Promise<Floor> {
  const pool = new Pool(opts.upstream, {
    connections: opts.connections ?? 256,
    keepAliveTimeout: 60_000,
    keepAliveMaxTimeout: 60_000,
    headersTimeout: 0,
    bodyTimeout: 0,
  })
  const server = createServer({ keepAliveTimeout: 65_000 }, (req, res) => {
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
            const headers = copyHeaders(up.headers, DROP_RESPONSE)
            const ct = up.headers['content-type']
            if (typeof ct === 'string' && ct.startsWith('text/event-stream')) {
              res.writeHead(up.statusCode, headers)
              up.body.pipe(res)
              up.body.on('error', () => res.destroy())
              res.on('close', () => {
                if (!up.body.readableEnded) up.body.destroy()
              })
              return
            }
            const parts: Buffer[] = []
            up.body.on('data', (c: Buffer) => parts.push(c))
            up.body.on('error', () => res.destroy())
            up.body.on('end', () => {
              const whole = parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts)
              headers['content-length'] = String(whole.byteLength)
              res.writeHead(up.statusCode, headers)
              res.end(whole)
            })
          },
          () => {
            res.writeHead(502, {
              'content-type': 'application/json',
              'content-length': Buffer.byteLength(BAD_GATEWAY),
            })
            res.end(BAD_GATEWAY)
          },
        )
    })
  })
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
      await pool.destroy()
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
    },
  })
  if (values.upstream === undefined) throw new Error('--upstream is required')
  startFloor({
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
