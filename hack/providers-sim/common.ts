// What the provider simulators share: a loopback HTTP server that records every request, scripted
// failures (the next N requests answer with a status, streams cut or error after N events),
// accepted keys that tests rotate, and a deterministic "model" (echo with word tokens) so tests
// can assert exact content and usage.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

export interface RecordedRequest {
  readonly method: string
  /** Path without the query. */
  readonly path: string
  readonly query: URLSearchParams
  readonly headers: IncomingMessage['headers']
  readonly body: unknown
}

export interface ScriptedFailure {
  readonly status: number
  readonly retryAfter?: string
}

export interface SimControls {
  /** Credentials the simulator accepts (the bare key, whatever header carries it). */
  readonly keys: Set<string>
  readonly requests: RecordedRequest[]
  /** The next `count` inference requests fail with `status` in the provider's error format. */
  failNext(status: number, count?: number, retryAfter?: string): void
  /** Streams end abruptly (socket destroyed) after this many events; null = off. */
  cutAfter: number | null
  /** Streams end with the provider's in-stream error after this many events; null = off. */
  errorAfter: number | null
  /** Delay between streamed events. */
  eventDelayMs: number
}

export interface SimServer extends SimControls {
  readonly url: string
  readonly host: string
  readonly port: number
  close(): Promise<void>
}

export type SimHandler = (
  req: IncomingMessage,
  res: ServerResponse,
  rec: RecordedRequest,
  controls: SimState,
) => Promise<void> | void

export class SimState implements SimControls {
  readonly keys = new Set<string>()
  readonly requests: RecordedRequest[] = []
  private readonly failures: ScriptedFailure[] = []
  cutAfter: number | null = null
  errorAfter: number | null = null
  eventDelayMs = 2

  failNext(status: number, count = 1, retryAfter?: string): void {
    for (let i = 0; i < count; i++)
      this.failures.push({ status, ...(retryAfter !== undefined ? { retryAfter } : {}) })
  }

  takeFailure(): ScriptedFailure | undefined {
    return this.failures.shift()
  }
}

export async function startSim(host: string, handler: SimHandler): Promise<SimServer> {
  const state = new SimState()
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8')
      let body: unknown
      try {
        body = text === '' ? undefined : JSON.parse(text)
      } catch {
        body = text
      }
      const u = new URL(req.url ?? '/', 'http://sim')
      const rec: RecordedRequest = {
        method: req.method ?? 'GET',
        path: u.pathname,
        query: u.searchParams,
        headers: req.headers,
        body,
      }
      state.requests.push(rec)
      Promise.resolve(handler(req, res, rec, state)).catch((e: unknown) => {
        if (!res.headersSent) json(res, 500, { error: { message: String(e) } })
        else res.destroy()
      })
    })
  })
  await new Promise<void>((r) => server.listen(0, host, r))
  const port = (server.address() as AddressInfo).port
  const sim: SimServer = Object.assign(state, {
    url: `http://${host}:${port}`,
    host,
    port,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections()
        server.close(() => r())
      }),
  })
  return sim
}

export function json(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body)
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    ...headers,
  })
  res.end(text)
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms))
}

/** Whitespace-separated words: the simulators' "tokens". */
export function countTokens(text: string): number {
  const t = text.trim()
  return t === '' ? 0 : t.split(/\s+/).length
}

/** Reply words split into stream pieces (each piece a token with its leading space). */
export function pieces(text: string): string[] {
  return text.split(/(?=\s)/).filter((p) => p !== '')
}

/** The deterministic answer to a user text. */
export function replyTo(sim: string, userText: string): string {
  return `Hello from ${sim}. You said: ${userText}`
}

/** Writes streamed events with the simulator's pacing and scripted cut/error. */
export class EventWriter {
  private sent = 0
  private readonly res: ServerResponse
  private readonly state: SimState
  constructor(res: ServerResponse, state: SimState) {
    this.res = res
    this.state = state
  }

  /** Writes one event; false when the stream must stop (cut or scripted error done). */
  async write(frame: string, onError: () => string): Promise<boolean> {
    if (this.state.cutAfter !== null && this.sent >= this.state.cutAfter) {
      this.res.destroy()
      return false
    }
    if (this.state.errorAfter !== null && this.sent >= this.state.errorAfter) {
      this.res.end(onError())
      return false
    }
    this.res.write(frame)
    this.sent++
    if (this.state.eventDelayMs > 0) await sleep(this.state.eventDelayMs)
    return true
  }
}

/** Text of OpenAI-style content (string or parts). */
export function textOf(content: unknown): string {
  if (typeof content === 'string') return content
  if (Array.isArray(content)) {
    return content
      .map((p: unknown) =>
        typeof p === 'object' && p !== null && typeof (p as { text?: unknown }).text === 'string'
          ? (p as { text: string }).text
          : '',
      )
      .join(' ')
  }
  return ''
}
