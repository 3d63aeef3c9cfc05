// A misbehaving engine for the hardening suite: one loopback address, an OpenAI-compatible engine
// behind it (the project's simulator, hack/sim), and a mode switchable at run time that decides
// how inference requests are (mis)treated. Failures the simulator already injects are reused from
// it (hang = its stall, cut = its mid-body drop, error-500 = its forced status); the ones no real
// engine should ever do but some do (malformed HTTP, endless bodies, SSE without line ends,
// headers then silence, closing on a large upload) are made here on the raw socket.
//
// Only inference requests misbehave: GET /metrics, /health and /v1/models keep answering from the
// simulator in every mode. That is the hard case for passive health: the scraper says the pod is
// alive, so the gateway must learn from the proxied requests themselves.
import {
  Agent,
  createServer,
  request as httpRequest,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { type SimFailures, type SimHandle, type SimOptions, startSimulator } from '../sim/index.js'

export const BAD_MODES = [
  /** Behave: every request goes to the simulator. */
  'ok',
  /** Read the request, never answer (simulator stall of one hour). */
  'hang',
  /** Send 200 and headers at once, then nothing, ever. */
  'hang-after-headers',
  /** Cut the body mid-way: half a JSON body, or one SSE event (simulator's dropMidStream). */
  'cut',
  /** Answer with bytes that are not HTTP (several kinds, in turn), then close. */
  'garbage',
  /** A 200 JSON body that never ends (chunked, as fast as the reader takes it). */
  'endless',
  /** A 200 SSE stream of one `data:` line that never ends (no newline, ever). */
  'sse-no-newlines',
  /** Close the connection without answering when the request body exceeds `oversizedBytes`. */
  'oversized-close',
  /** OpenAI-shaped 500 for every request (simulator's forceStatus). */
  'error-500',
] as const
export type BadMode = (typeof BAD_MODES)[number]

export function isBadMode(v: unknown): v is BadMode {
  return typeof v === 'string' && (BAD_MODES as readonly string[]).includes(v)
}

export class BadEngineError extends Error {
  override readonly name = 'BadEngineError'
  readonly code: 'invalid_mode' | 'listen_failed'
  constructor(code: BadEngineError['code'], message: string) {
    super(message)
    this.code = code
  }
}

export interface BadEngineOptions {
  readonly name: string
  /** Loopback address of its own, e.g. 127.0.0.9. */
  readonly host: string
  /** 0 = ephemeral. */
  readonly port?: number
  readonly model: string
  readonly mode?: BadMode
  /** `oversized-close` threshold in bytes (default 64 KiB). */
  readonly oversizedBytes?: number
  /** Options of the simulator behind it (zero latency by default). */
  readonly sim?: Partial<Omit<SimOptions, 'name' | 'host' | 'port' | 'model'>>
}

export interface BadEngineStats {
  readonly mode: BadMode
  /** Inference requests received, in total and by the mode in force when each arrived. */
  readonly requests: number
  readonly byMode: Readonly<Record<BadMode, number>>
  /** Body bytes written by `endless` and `sse-no-newlines` so far. */
  readonly endlessBytes: number
}

export interface BadEngine {
  readonly name: string
  readonly host: string
  readonly port: number
  readonly url: string
  readonly sim: SimHandle
  mode(): BadMode
  setMode(m: BadMode): void
  stats(): BadEngineStats
  close(): Promise<void>
}

const INFERENCE_PATHS = new Set(['/v1/chat/completions', '/v1/completions', '/v1/embeddings'])
const READ_LIMIT = 64 * 1024 * 1024
const HOUR_MS = 3_600_000

/** Raw replies that no HTTP parser should accept, used in turn by `garbage`. */
const GARBAGE: readonly string[] = [
  'SSH-2.0-OpenSSH_9.6\r\n',
  'HTTP/1.1 2x0 OK\r\ncontent-length: 2\r\n\r\n{}',
  'HTTP/1.1 200 OK\r\ncontent-length: 10\r\ncontent-length: 20\r\n\r\n{"id":"x"}',
  'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nZZZZ\r\n{"id":"x"}\r\n0\r\n\r\n',
  'HTTP/1.1 200 OK\r\nbad header line without colon\r\n\r\n{}',
  '\u0000\u0001\u0002\u00ff\r\n\r\n',
]

function simFailuresFor(mode: BadMode): Partial<SimFailures> {
  return {
    stallMs: mode === 'hang' ? HOUR_MS : 0,
    dropMidStream: mode === 'cut' ? 1 : null,
    forceStatus: mode === 'error-500' ? 500 : null,
  }
}

/** End the connection after what was written (the reader sees a truncated body), then drop it. */
function cut(sock: Socket | null): void {
  if (sock === null) return
  sock.end(() => sock.destroy())
}

function readBody(
  req: IncomingMessage,
  onChunk: (total: number) => boolean,
): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = []
    let total = 0
    let stopped = false
    req.on('data', (c: Buffer) => {
      if (stopped) return
      total += c.length
      if (!onChunk(total) || total > READ_LIMIT) {
        stopped = true
        resolve(undefined)
        return
      }
      chunks.push(c)
    })
    req.on('end', () => {
      if (!stopped) resolve(Buffer.concat(chunks))
    })
    req.on('error', () => resolve(undefined))
  })
}

function wantsStream(body: Buffer): boolean {
  // A cheap look is enough: the simulator does the real parsing where it matters.
  return /"stream"\s*:\s*true/.test(body.subarray(0, 64 * 1024).toString('utf8'))
}

export async function startBadEngine(opts: BadEngineOptions): Promise<BadEngine> {
  let mode: BadMode = opts.mode ?? 'ok'
  const oversized = opts.oversizedBytes ?? 64 * 1024
  const sim = await startSimulator({
    metricsFormat: 'vllm',
    zeroLatency: true,
    ...opts.sim,
    name: opts.name,
    host: opts.host,
    port: 0,
    model: opts.model,
    failures: simFailuresFor(mode),
  })
  const agent = new Agent({ keepAlive: true, maxSockets: 256 })
  const byMode = Object.fromEntries(BAD_MODES.map((m) => [m, 0])) as Record<BadMode, number>
  let requests = 0
  let endlessBytes = 0
  let garbageSent = 0
  // Responses held open by a mode (endless writers, headers-then-silence): ended on a mode switch.
  const held = new Set<ServerResponse>()
  const filler = Buffer.alloc(64 * 1024, 'a')

  const toSim = (req: IncomingMessage, res: ServerResponse, body: Buffer | undefined): void => {
    const up = httpRequest(
      {
        host: sim.host,
        port: sim.port,
        method: req.method,
        path: req.url,
        headers: { ...req.headers, host: `${sim.host}:${sim.port}` },
        agent,
      },
      (upRes) => {
        res.writeHead(upRes.statusCode ?? 502, upRes.headers)
        upRes.on('data', (c: Buffer) => res.write(c))
        upRes.on('end', () => res.end())
        // The simulator cut its body (dropMidStream): pass the cut on, not a clean end.
        upRes.on('close', () => {
          if (!upRes.complete) cut(res.socket)
        })
      },
    )
    up.on('error', () => cut(res.socket))
    res.on('close', () => {
      if (!res.writableFinished) up.destroy()
    })
    up.end(body)
  }

  const pump = (res: ServerResponse, head: string, contentType: string): void => {
    held.add(res)
    res.on('close', () => held.delete(res))
    res.writeHead(200, { 'content-type': contentType, 'x-inference-pod': opts.name })
    res.write(head)
    const write = (): void => {
      // At most 1 MiB per turn of the event loop: the reader still gets bytes as fast as it takes
      // them, but the engines and load generator sharing this process keep running.
      for (let i = 0; i < 16; i++) {
        if (res.destroyed || !held.has(res)) return
        endlessBytes += filler.length
        if (!res.write(filler)) {
          res.once('drain', write)
          return
        }
      }
      setImmediate(write)
    }
    write()
  }

  const misbehave = (req: IncomingMessage, res: ServerResponse, body: Buffer, m: BadMode): void => {
    switch (m) {
      case 'ok':
      case 'hang':
      case 'cut':
      case 'error-500':
      case 'oversized-close':
        toSim(req, res, body)
        return
      case 'hang-after-headers':
        held.add(res)
        res.on('close', () => held.delete(res))
        res.writeHead(200, {
          'content-type': wantsStream(body) ? 'text/event-stream' : 'application/json',
          'x-inference-pod': opts.name,
        })
        res.flushHeaders()
        return
      case 'garbage': {
        const sock = req.socket
        sock.write(GARBAGE[garbageSent++ % GARBAGE.length] ?? '')
        cut(sock)
        return
      }
      case 'endless':
        pump(
          res,
          '{"id":"endless","object":"chat.completion","choices":[{"text":"',
          'application/json',
        )
        return
      case 'sse-no-newlines':
        pump(res, 'data: {"id":"endless","choices":[{"delta":{"content":"', 'text/event-stream')
        return
    }
  }

  const control = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const send = (status: number, v: unknown): void => {
      const text = JSON.stringify(v)
      res.writeHead(status, { 'content-type': 'application/json' }).end(text)
    }
    if (req.method === 'GET') return send(200, stats())
    const body = await readBody(req, () => true)
    try {
      const m = (JSON.parse(body?.toString('utf8') ?? '') as { mode?: unknown }).mode
      if (!isBadMode(m)) throw new Error(`mode must be one of ${BAD_MODES.join(', ')}`)
      setMode(m)
      send(200, stats())
    } catch (e) {
      send(400, {
        error: {
          message: e instanceof Error ? e.message : String(e),
          type: 'invalid_request_error',
          code: 'invalid_mode',
          param: 'mode',
        },
      })
    }
  }

  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/'
    if (path === '/bad/mode') {
      void control(req, res)
      return
    }
    if (req.method !== 'POST' || !INFERENCE_PATHS.has(path)) {
      toSim(req, res, undefined)
      return
    }
    const m = mode
    requests++
    byMode[m]++
    void readBody(req, (total) => {
      if (m === 'oversized-close' && total > oversized) {
        req.socket.destroy()
        return false
      }
      return true
    }).then((body) => {
      if (body !== undefined && !res.destroyed) misbehave(req, res, body, m)
    })
  })
  // Engines behind a gateway see long-lived pooled connections: no server-side timeouts here.
  server.keepAliveTimeout = 60_000
  server.requestTimeout = 0
  server.headersTimeout = 60_000

  await new Promise<void>((resolve, reject) => {
    server.once('error', (e) =>
      reject(new BadEngineError('listen_failed', `${opts.name}: ${opts.host}: ${e.message}`)),
    )
    server.listen(opts.port ?? 0, opts.host, () => resolve())
  })
  const port = (server.address() as AddressInfo).port

  function setMode(m: BadMode): void {
    if (!isBadMode(m)) throw new BadEngineError('invalid_mode', `unknown mode ${String(m)}`)
    mode = m
    sim.setFailures(simFailuresFor(m))
    for (const r of held) {
      held.delete(r)
      r.destroy()
    }
  }

  function stats(): BadEngineStats {
    return { mode, requests, byMode: { ...byMode }, endlessBytes }
  }

  let closing: Promise<void> | undefined
  return {
    name: opts.name,
    host: opts.host,
    port,
    url: `http://${opts.host}:${port}`,
    sim,
    mode: () => mode,
    setMode,
    stats,
    close() {
      closing ??= (async () => {
        for (const r of held) r.destroy()
        held.clear()
        server.closeAllConnections()
        await new Promise<void>((r) => server.close(() => r()))
        agent.destroy()
        await sim.close()
      })()
      return closing
    },
  }
}

export const badEngineHelp = `Usage: tsx hack/hardening/bad-engine.ts [--host 127.0.0.9] [--port 8000] [--model m] [--mode ok]

A misbehaving OpenAI-compatible engine (modes: ${BAD_MODES.join(', ')}).
Switch at run time: curl -d '{"mode":"hang"}' http://HOST:PORT/bad/mode ; GET /bad/mode for counts.
`

async function main(argv: readonly string[]): Promise<void> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      host: { type: 'string', default: '127.0.0.9' },
      port: { type: 'string', default: '8000' },
      model: { type: 'string', default: 'sim-model' },
      mode: { type: 'string', default: 'ok' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  })
  if (values.help) {
    process.stdout.write(badEngineHelp)
    return
  }
  if (!isBadMode(values.mode)) throw new BadEngineError('invalid_mode', `--mode ${values.mode}`)
  const e = await startBadEngine({
    name: 'bad-engine',
    host: values.host,
    port: Number(values.port),
    model: values.model,
    mode: values.mode,
  })
  process.stdout.write(`bad engine on ${e.url} (mode ${e.mode()})\n`)
  await new Promise<void>((r) => {
    process.once('SIGINT', r)
    process.once('SIGTERM', r)
  })
  await e.close()
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).catch((e: unknown) => {
    process.stderr.write(`bad-engine: ${e instanceof Error ? e.message : String(e)}\n`)
    process.exitCode = 1
  })
}
