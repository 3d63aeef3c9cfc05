// Shared parts of the hardening suite (test/hardening/) and its long forms (fuzz, soak): the
// gateway as a child process (so its RSS and file descriptors are its own), raw HTTP for inputs a
// well-behaved client library refuses to send, /metrics reads, and a closed-loop load generator
// that tells gateway-made answers from engine answers.
import { readFile } from 'node:fs/promises'
import { connect } from 'node:net'
import { Pool } from 'undici'
import { spawnCli } from '../bench/procs.js'
import { freePort } from '../cluster/control-plane.js'
import { parseProm } from '../sim/testkit.js'

/** Every engine response carries it (simulator and bad engine); gateway-made answers do not. */
export const POD_HEADER = 'x-inference-pod'

export interface GatewayProc {
  readonly url: string
  readonly host: string
  readonly port: number
  readonly pid: number
  /** Everything the process wrote to stdout/stderr since it started (access log off). */
  output(): string
  /** The inspector's WebSocket URL (spawned with `inspect: true`), else undefined. */
  readonly inspectorUrl: string | undefined
  exited(): boolean
  stop(): Promise<void>
}

export class HardeningError extends Error {
  override readonly name = 'HardeningError'
  readonly code: 'gateway_start' | 'no_metric' | 'bad_response'
  constructor(code: HardeningError['code'], message: string) {
    super(message)
    this.code = code
  }
}

/**
 * `infer-gateway dataplane` as a child process on `host`, with `args` appended (config, timeouts).
 * Resolves once it listens; rejects with its output when it exits first (e.g. an unknown flag).
 */
export async function spawnGateway(
  host: string,
  args: readonly string[],
  opts: {
    readonly inspect?: boolean
    /** Extra Node flags for the gateway process (e.g. `--trace-gc`, `--cpu-prof`). */
    readonly nodeArgs?: readonly string[]
  } = {},
): Promise<GatewayProc> {
  const port = await freePort()
  const proc = await spawnCli(
    [
      'dataplane',
      '--host',
      host,
      '--port',
      String(port),
      '--no-access-log',
      '--drain-delay',
      '0',
      '--shutdown-timeout',
      '2000',
      // One process: the suites measure its RSS, CPU and connection cap by pid.
      '--workers',
      '1',
      ...args,
    ],
    /data plane listening/,
    // The inspector (on the gateway's own loopback address, a free port) lets the long forms
    // force a GC and read the heap the gateway still holds (heapAfterGc).
    [...(opts.inspect === true ? [`--inspect=${host}:0`] : []), ...(opts.nodeArgs ?? [])],
  )
  let out = ''
  const keep = (b: Buffer): void => {
    // Bounded: a chatty gateway must not grow the test process.
    out = (out + b.toString()).slice(-64 * 1024)
  }
  proc.child.stdout?.on('data', keep)
  proc.child.stderr?.on('data', keep)
  const pid = proc.child.pid
  if (pid === undefined) throw new HardeningError('gateway_start', 'gateway child has no pid')
  let inspectorUrl: string | undefined
  if (opts.inspect === true) {
    // Printed on stderr before the ready line; ask the inspector's own HTTP endpoint instead of
    // parsing output we may have missed (the listener above was attached after ready).
    inspectorUrl = await inspectorTarget(pid)
  }
  return {
    inspectorUrl,
    url: `http://${host}:${port}`,
    host,
    port,
    pid,
    output: () => out,
    exited: () => proc.child.exitCode !== null || proc.child.signalCode !== null,
    stop: proc.stop,
  }
}

/**
 * The WebSocket URL of the inspector a process opened with `--inspect=host:0`: the port is
 * found among the process's listening sockets (/proc/<pid>/net/tcp via its fd inodes) and its
 * `/json/list` names the target.
 */
async function inspectorTarget(pid: number): Promise<string> {
  const { readdir, readlink } = await import('node:fs/promises')
  const inodes = new Set<string>()
  for (const fd of await readdir(`/proc/${pid}/fd`)) {
    const l = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '')
    const m = /^socket:\[(\d+)\]$/.exec(l)
    if (m?.[1] !== undefined) inodes.add(m[1])
  }
  const tcp = await readFile(`/proc/${pid}/net/tcp`, 'utf8')
  for (const line of tcp.split('\n').slice(1)) {
    // sl, local address (hex ip:port, ip little-endian), rem address, state (0A = LISTEN), …, inode.
    const f = line.trim().split(/\s+/)
    if (f[3] !== '0A' || f[9] === undefined || !inodes.has(f[9]) || f[1] === undefined) continue
    const [ipHex = '', portHex = ''] = f[1].split(':')
    const host = [3, 2, 1, 0].map((i) => Number.parseInt(ipHex.slice(i * 2, i * 2 + 2), 16))
    const base = `http://${host.join('.')}:${Number.parseInt(portHex, 16)}`
    const res = await fetch(`${base}/json/list`).catch(() => undefined)
    if (res === undefined || !res.ok) continue
    const list = (await res.json().catch(() => [])) as { webSocketDebuggerUrl?: string }[]
    const url = list[0]?.webSocketDebuggerUrl
    if (url !== undefined) return url
  }
  throw new HardeningError('gateway_start', `no inspector found for pid ${pid}`)
}

/** Resident set size of a process in bytes (Linux /proc). */
export async function rssBytes(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(status)
  if (m === null) throw new HardeningError('no_metric', `no VmRSS for pid ${pid}`)
  return Number(m[1]) * 1024
}

export interface GatewayMemory {
  /** V8 heap in use (after a full GC when asked: what the process still references). */
  readonly heapUsed: number
  /** V8 heap reserved: what V8 keeps for the young and old generations. */
  readonly heapTotal: number
  /** Buffers and other memory outside the V8 heap that JS objects hold. */
  readonly external: number
  readonly arrayBuffers: number
  readonly rss: number
}

/** A Chrome DevTools Protocol session on a process's inspector WebSocket. */
interface InspectorSession {
  call(method: string, params?: Record<string, unknown>): Promise<unknown>
  /** Every notification (a message without an id) goes to `fn`. */
  onEvent(fn: (method: string, params: Record<string, unknown>) => void): void
  close(): void
}

async function inspectorSession(inspectorUrl: string): Promise<InspectorSession> {
  const { WebSocket } = await import('undici')
  const ws = new WebSocket(inspectorUrl)
  let id = 0
  const pending = new Map<number, (r: { result?: unknown; error?: unknown }) => void>()
  const listeners: ((method: string, params: Record<string, unknown>) => void)[] = []
  ws.addEventListener('message', (ev) => {
    const msg = JSON.parse(String(ev.data)) as {
      id?: number
      method?: string
      params?: Record<string, unknown>
      result?: unknown
      error?: unknown
    }
    if (msg.id !== undefined) pending.get(msg.id)?.(msg)
    else if (msg.method !== undefined) for (const l of listeners) l(msg.method, msg.params ?? {})
  })
  await new Promise<void>((resolve, reject) => {
    ws.addEventListener('open', () => resolve(), { once: true })
    ws.addEventListener(
      'error',
      () => reject(new HardeningError('no_metric', `inspector ${inspectorUrl} unreachable`)),
      { once: true },
    )
  })
  return {
    call: (method, params = {}) =>
      new Promise((resolve, reject) => {
        const n = ++id
        pending.set(n, (r) => {
          pending.delete(n)
          if (r.error !== undefined)
            reject(new HardeningError('no_metric', `${method}: ${JSON.stringify(r.error)}`))
          else resolve(r.result)
        })
        ws.send(JSON.stringify({ id: n, method, params }))
      }),
    onEvent: (fn) => listeners.push(fn),
    close: () => ws.close(),
  }
}

/**
 * The gateway's `process.memoryUsage()` read through its inspector; with `gc`, after forcing two
 * full GCs (`HeapProfiler.collectGarbage`; the second frees what the first only finalized). Tells
 * a leak (heapUsed after GC grows with requests) from high-water (RSS up, heap back down).
 */
export async function gatewayMemory(
  inspectorUrl: string,
  opts: { readonly gc: boolean },
): Promise<GatewayMemory> {
  const s = await inspectorSession(inspectorUrl)
  try {
    return await memoryOf(s, opts.gc)
  } finally {
    s.close()
  }
}

async function memoryOf(s: InspectorSession, gc: boolean): Promise<GatewayMemory> {
  if (gc) {
    await s.call('HeapProfiler.collectGarbage')
    await s.call('HeapProfiler.collectGarbage')
  }
  const r = (await s.call('Runtime.evaluate', {
    expression: 'JSON.stringify(process.memoryUsage())',
    returnByValue: true,
  })) as { result?: { value?: string } }
  return JSON.parse(r.result?.value ?? '{}') as GatewayMemory
}

/** Heap snapshots of one process, all through one inspector session (see `heapSnapshotter`). */
export interface HeapSnapshotter {
  /** Writes a snapshot (taken after a full GC) to `file`; returns the bytes written. */
  take(file: string): Promise<number>
  /** `gatewayMemory` through this session (another session closing would reset the ids). */
  memory(opts: { readonly gc: boolean }): Promise<GatewayMemory>
  close(): void
}

/**
 * Heap snapshots of the gateway through its inspector, for telling a leak from caches filling:
 * compare two with `hack/hardening/heap-diff.ts`. One session for all of them, and no other
 * session in between (read memory with `memory`): V8 forgets the object ids whenever a session's
 * heap profiler is disabled (any session closing does it), and ids are then handed out anew in
 * traversal order, so objects in snapshots on either side of that cannot be matched.
 */
export async function heapSnapshotter(inspectorUrl: string): Promise<HeapSnapshotter> {
  const { createWriteStream } = await import('node:fs')
  const s = await inspectorSession(inspectorUrl)
  let out: import('node:fs').WriteStream | undefined
  let bytes = 0
  s.onEvent((method, params) => {
    if (method !== 'HeapProfiler.addHeapSnapshotChunk' || out === undefined) return
    const chunk = String(params['chunk'] ?? '')
    bytes += chunk.length
    out.write(chunk)
  })
  await s.call('HeapProfiler.enable')
  return {
    async take(file) {
      const w = createWriteStream(file)
      out = w
      bytes = 0
      try {
        await s.call('HeapProfiler.collectGarbage')
        await s.call('HeapProfiler.takeHeapSnapshot', { reportProgress: false })
      } finally {
        out = undefined
        await new Promise<void>((resolve, reject) =>
          w.end((e?: Error | null) => (e ? reject(e) : resolve())),
        )
      }
      return bytes
    },
    memory: (opts) => memoryOf(s, opts.gc),
    close: () => s.close(),
  }
}

/** CPU time (user + system) a process has used, in seconds (Linux /proc, 100 ticks/s). */
export async function cpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
  // Fields after the command name (which may hold spaces) start after the last ')'.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(f[11]) + Number(f[12])) / 100
}

/** Open file descriptors of a process (Linux /proc). */
export async function openFds(pid: number): Promise<number> {
  const { readdir } = await import('node:fs/promises')
  return (await readdir(`/proc/${pid}/fd`)).length
}

/** Sum of the samples of `name` whose labels include `match` (throws when there is none). */
export async function metric(
  url: string,
  name: string,
  match: Record<string, string> = {},
): Promise<number> {
  const res = await fetch(`${url}/metrics`)
  const text = await res.text()
  const samples = parseProm(text).filter(
    (s) => s.name === name && Object.entries(match).every(([k, v]) => s.labels[k] === v),
  )
  if (samples.length === 0)
    throw new HardeningError('no_metric', `no sample ${name} ${JSON.stringify(match)} at ${url}`)
  return samples.reduce((a, s) => a + s.value, 0)
}

export const INFLIGHT = 'infer_gateway_inflight_requests'

/** Polls the in-flight gauge until it is 0 (or `ms` passed); returns the last value read. */
export async function settledInflight(url: string, ms = 2000): Promise<number> {
  const deadline = Date.now() + ms
  for (;;) {
    const v = await metric(url, INFLIGHT)
    if (v === 0 || Date.now() > deadline) return v
    await sleep(50)
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** Sleeps `ms`, or less when `signal` aborts first; leaves no listener on the signal behind. */
export function sleepUnlessAborted(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve()
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(t)
      signal.removeEventListener('abort', done)
      resolve()
    }
    const t = setTimeout(done, ms)
    signal.addEventListener('abort', done)
  })
}

export interface RawResponse {
  /** 0 when the connection closed (or timed out) before a status line arrived. */
  readonly status: number
  readonly headers: Record<string, string>
  readonly body: Buffer
  /** Bytes received in total (status line and headers included). */
  readonly received: number
  /** How the exchange ended. */
  readonly ended: 'complete' | 'closed' | 'timeout' | 'error'
}

/**
 * Sends `bytes` as they are on a fresh TCP connection and reads one response (by content-length,
 * chunked, or until close). For inputs fetch/undici refuse to produce: bad framing, NUL bytes,
 * unknown methods, absurd headers.
 */
export function rawHttp(
  host: string,
  port: number,
  bytes: Buffer | string,
  timeoutMs = 10_000,
): Promise<RawResponse> {
  return new Promise((resolve) => {
    const sock = connect({ host, port })
    let buf = Buffer.alloc(0)
    let done = false
    const finish = (ended: RawResponse['ended']): void => {
      if (done) return
      done = true
      clearTimeout(timer)
      sock.destroy()
      resolve({ ...parseRaw(buf), received: buf.length, ended })
    }
    const timer = setTimeout(() => finish('timeout'), timeoutMs)
    sock.on('data', (c: Buffer) => {
      buf = Buffer.concat([buf, c])
      if (parseRaw(buf).complete) finish('complete')
    })
    sock.on('end', () => finish('closed'))
    sock.on('close', () => finish('closed'))
    // A reset after the server answered and closed is still an answer.
    sock.on('error', () => finish(buf.length > 0 ? 'closed' : 'error'))
    sock.write(bytes)
  })
}

function parseRaw(buf: Buffer): {
  status: number
  headers: Record<string, string>
  body: Buffer
  complete: boolean
} {
  const none = { status: 0, headers: {}, body: Buffer.alloc(0), complete: false }
  const end = buf.indexOf('\r\n\r\n')
  if (end < 0) return none
  const lines = buf.subarray(0, end).toString('latin1').split('\r\n')
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '')
  if (m === null) return none
  const headers: Record<string, string> = {}
  for (const l of lines.slice(1)) {
    const i = l.indexOf(':')
    if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim()
  }
  const rest = buf.subarray(end + 4)
  const status = Number(m[1])
  // An interim answer (100 Continue) precedes the real one.
  if (status >= 100 && status < 200) return parseRaw(rest)
  const cl = headers['content-length']
  if (cl !== undefined) {
    const n = Number(cl)
    return { status, headers, body: rest.subarray(0, n), complete: rest.length >= n }
  }
  if ((headers['transfer-encoding'] ?? '').toLowerCase().includes('chunked')) {
    const parts: Buffer[] = []
    let at = 0
    for (;;) {
      const nl = rest.indexOf('\r\n', at)
      if (nl < 0) return { status, headers, body: Buffer.concat(parts), complete: false }
      const size = Number.parseInt(rest.subarray(at, nl).toString('latin1'), 16)
      if (!Number.isFinite(size))
        return { status, headers, body: Buffer.concat(parts), complete: true }
      if (size === 0) return { status, headers, body: Buffer.concat(parts), complete: true }
      if (rest.length < nl + 2 + size + 2)
        return { status, headers, body: Buffer.concat(parts), complete: false }
      parts.push(rest.subarray(nl + 2, nl + 2 + size))
      at = nl + 2 + size + 2
    }
  }
  // 1xx/204/304 have no body; otherwise the body runs until close.
  const bodyless = status < 200 || status === 204 || status === 304
  return { status, headers, body: rest, complete: bodyless }
}

/** `{error:{message,type,code}}` with string message and type (code: string or number). */
export function isOpenAIError(body: unknown): boolean {
  if (typeof body !== 'object' || body === null) return false
  const e = (body as { error?: unknown }).error
  if (typeof e !== 'object' || e === null) return false
  const o = e as Record<string, unknown>
  return (
    typeof o['message'] === 'string' &&
    typeof o['type'] === 'string' &&
    (typeof o['code'] === 'string' || typeof o['code'] === 'number')
  )
}

export function jsonOrUndefined(b: Buffer | string): unknown {
  try {
    return JSON.parse(b.toString())
  } catch {
    return undefined
  }
}

// ------------------------------------------------------------------------------------------------
// Load

export interface LoadRequest {
  readonly path: string
  readonly body: Buffer | string
  readonly headers?: Record<string, string>
}

export interface LoadResult {
  readonly sent: number
  /** Responses by status (0 = no response: connection error). */
  readonly byStatus: Readonly<Record<number, number>>
  /** 5xx answered by the gateway itself (no engine header). */
  readonly gateway5xx: number
  /** 5xx passed through from an engine. */
  readonly engine5xx: number
  /** Requests that got no HTTP response at all. */
  readonly transportErrors: number
  /** Error responses (>= 400) whose body is not OpenAI-shaped. */
  readonly unshaped: number
  /** 2xx whose body (non-stream) or stream did not complete. */
  readonly brokenBodies: number
  /**
   * 2xx whose body reading failed or that ended cleanly with nothing usable: no error event, not
   * valid JSON (a client sees these as a silent failure, unlike a stream ending in an error event).
   */
  readonly silentBroken: number
  /** Up to 20 of those, with the response's headers, the engine and `LoadOptions.context`. */
  readonly silentSamples: readonly string[]
  /** Engine that answered (engine header) → count. */
  readonly byPod: Readonly<Record<string, number>>
  /** Up to 20 examples of problems, for the report. */
  readonly samples: readonly string[]
  /** Latency of each completed request in ms, in completion order. */
  readonly latenciesMs: readonly number[]
  readonly durationMs: number
}

export interface LoadOptions {
  readonly url: string
  readonly concurrency: number
  /** Next request to send, or undefined to stop this worker. `i` counts from 0. */
  readonly next: (i: number) => LoadRequest | undefined
  /** Stop starting new requests once aborted. */
  readonly signal?: AbortSignal
  /** Per-request deadline (default 30 s). */
  readonly timeoutMs?: number
  readonly label?: (i: number) => string
  /** What else was true when an answer went wrong (e.g. the bad engine's mode), for samples. */
  readonly context?: () => string
  /** Awaited before each request when it returns a promise: holds the load (a quiet moment). */
  readonly gate?: () => Promise<void> | undefined
}

/** Closed loop: `concurrency` workers each send one request at a time until `next` runs dry. */
export async function runLoad(o: LoadOptions): Promise<LoadResult> {
  const pool = new Pool(o.url, {
    connections: o.concurrency,
    pipelining: 1,
    headersTimeout: o.timeoutMs ?? 30_000,
    bodyTimeout: o.timeoutMs ?? 30_000,
  })
  const byStatus: Record<number, number> = {}
  const byPod: Record<string, number> = {}
  const samples: string[] = []
  const latenciesMs: number[] = []
  let sent = 0
  let gateway5xx = 0
  let engine5xx = 0
  let transportErrors = 0
  let unshaped = 0
  let brokenBodies = 0
  let silentBroken = 0
  const silentSamples: string[] = []
  let i = 0
  const started = performance.now()
  const note = (s: string): void => {
    if (samples.length < 20) samples.push(s)
  }
  const worker = async (): Promise<void> => {
    for (;;) {
      const held = o.gate?.()
      if (held !== undefined) await held
      if (o.signal?.aborted) return
      const n = i++
      const req = o.next(n)
      if (req === undefined) return
      sent++
      const t0 = performance.now()
      const tag = o.label?.(n) ?? String(n)
      try {
        const res = await pool.request({
          path: req.path,
          method: 'POST',
          headers: { 'content-type': 'application/json', ...req.headers },
          body: req.body,
        })
        let text = ''
        let broken: string | undefined
        try {
          text = await res.body.text()
        } catch (e) {
          broken = e instanceof Error ? `${e.name}: ${e.message}` : String(e)
        }
        latenciesMs.push(performance.now() - t0)
        byStatus[res.statusCode] = (byStatus[res.statusCode] ?? 0) + 1
        const pod = res.headers[POD_HEADER]
        const podName = Array.isArray(pod) ? pod[0] : pod
        if (podName !== undefined) byPod[podName] = (byPod[podName] ?? 0) + 1
        if (res.statusCode >= 500) {
          if (podName === undefined) {
            gateway5xx++
            note(`${tag}: gateway ${res.statusCode} ${text.slice(0, 200)}`)
          } else engine5xx++
        }
        if (res.statusCode >= 400 && !isOpenAIError(jsonOrUndefined(text))) {
          unshaped++
          note(`${tag}: unshaped ${res.statusCode} ${text.slice(0, 200)}`)
        }
        if (res.statusCode < 300 && (broken !== undefined || !bodyComplete(res.headers, text))) {
          brokenBodies++
          note(`${tag}: broken ${res.statusCode} body (${text.length} chars) ${text.slice(-200)}`)
          // A stream that ends in an error event tells the client what happened; anything else
          // (a body that failed to read, or ended cleanly but incomplete) is sampled in full.
          if (!text.includes('"error"')) {
            silentBroken++
            if (silentSamples.length < 20) {
              const h = res.headers
              silentSamples.push(
                `${tag}: ${res.statusCode} ${JSON.stringify({
                  'content-type': h['content-type'],
                  'content-length': h['content-length'],
                  'transfer-encoding': h['transfer-encoding'],
                  [POD_HEADER]: h[POD_HEADER],
                })} ${text.length} chars read${broken !== undefined ? `, read failed (${broken})` : ', ended cleanly'}${o.context !== undefined ? `, ${o.context()}` : ''}: ${JSON.stringify(text.slice(-120))}`,
              )
            }
          }
        }
      } catch (e) {
        byStatus[0] = (byStatus[0] ?? 0) + 1
        transportErrors++
        note(`${tag}: no response: ${e instanceof Error ? `${e.name} ${e.message}` : String(e)}`)
      }
    }
  }
  await Promise.all(Array.from({ length: o.concurrency }, worker))
  await pool.close()
  return {
    sent,
    byStatus,
    gateway5xx,
    engine5xx,
    transportErrors,
    unshaped,
    brokenBodies,
    silentBroken,
    silentSamples,
    byPod,
    samples,
    latenciesMs,
    durationMs: performance.now() - started,
  }
}

function bodyComplete(
  headers: Record<string, string | string[] | undefined>,
  text: string,
): boolean {
  // A successful answer always has a body (whatever its type): empty is a failure unseen.
  if (text.length === 0) return false
  const ct = String(headers['content-type'] ?? '')
  if (ct.startsWith('text/event-stream')) return text.trimEnd().endsWith('data: [DONE]')
  if (ct.includes('json')) return jsonOrUndefined(text) !== undefined
  return true
}

export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return Number.NaN
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] as number
}

export function chatBody(model: string, i: number, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({
    model,
    messages: [{ role: 'user', content: `request ${i}` }],
    max_tokens: 2,
    ...extra,
  })
}
