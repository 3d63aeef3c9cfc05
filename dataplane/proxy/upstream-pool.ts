// Pooled keep-alive connections to engines, through one of two clients (`--engine-client`): the
// raw client (engine-client.ts: plain sockets, a pool per engine, timeouts per request) or undici
// (one Agent per connect-timeout value, as undici takes the connect timeout per dispatcher, not
// per request; each Agent keeps a pool per origin). https engines always go through undici.
//
// The pool caps connections per engine (`connectionsPerOrigin`, CLI `--upstream-connections`):
// HTTP/1.1 carries one request per connection at a time, so past the cap requests wait inside
// undici for a free connection. That wait is invisible in latency metrics of the engine, so
// `serverStats` exposes it per model server for /metrics.
import { Agent, type Dispatcher } from 'undici'
import type { SnapshotEndpoint, SnapshotServer } from '../../api/snapshot.js'
import type { AbortLike } from '../abort.js'
import { EngineClient } from './engine-client.js'

/** Default connections per engine pod: above any engine's batch, below a file-descriptor worry. */
export const DEFAULT_UPSTREAM_CONNECTIONS = 256

/** Which client carries requests to engines. */
export type EngineClientKind = 'raw' | 'undici'
export const ENGINE_CLIENTS: readonly EngineClientKind[] = ['raw', 'undici']

export interface PoolOptions {
  /** Max sockets per origin (engine pod); default DEFAULT_UPSTREAM_CONNECTIONS. */
  readonly connectionsPerOrigin?: number
  readonly keepAliveTimeoutMs?: number
  /** Default `raw` (CLI `--engine-client`). */
  readonly engineClient?: EngineClientKind
}

/**
 * An engine's response body, as the gateway reads it: the members of undici's BodyReadable that
 * respond.ts, forward.ts and serve/ use, which the raw client's EngineBody has too (without a
 * Node Readable under it).
 */
export interface UpstreamBody extends AsyncIterable<unknown> {
  /** Bytes received and not read yet. */
  readonly readableLength: number
  /** The next piece received, or null when there is none yet (or the body ended). */
  read(): unknown
  on(event: 'data', listener: (chunk: Uint8Array) => void): this
  on(event: 'error', listener: (err: Error) => void): this
  on(event: 'readable' | 'end' | 'close', listener: () => void): this
  off(event: 'data', listener: (chunk: Uint8Array) => void): this
  off(event: 'error', listener: (err: Error) => void): this
  off(event: 'readable' | 'end' | 'close', listener: () => void): this
  pause(): this
  resume(): this
  /** Stops the request: the connection is closed, not reused. */
  destroy(err?: Error): this
  /** Reads the rest and drops it (the connection is reused), or stops past `limit` bytes. */
  dump(opts?: { limit: number }): Promise<void>
  text(): Promise<string>
  json(): Promise<unknown>
  /**
   * The raw client's body only: when the body has already arrived whole (at most `max` bytes)
   * and nothing has read or listened to it, its pieces, handed over at once (the body has then
   * ended); undefined otherwise. A non-streamed answer usually comes in the read that brings its
   * head: taking it skips the listeners, the promise and the tick of reading it as a stream.
   */
  takeWhole?(max: number): Buffer[] | undefined
  /**
   * The raw client's body only: true while the bytes it handed over last are the body's last
   * and its end ('end', after the reader took them) comes in the same turn. A stream's writer
   * holds its last write for the response's end, to send them together.
   */
  readonly lastIn?: boolean
}

/** A response head and its body, from either client. */
export interface EngineAnswer {
  readonly statusCode: number
  readonly headers: Dispatcher.ResponseData['headers']
  readonly body: UpstreamBody
}

export interface EngineCall {
  readonly method: 'POST' | 'GET'
  readonly path: string
  readonly headers: Record<string, string>
  readonly body: string | Uint8Array | undefined
  readonly signal: AbortLike
  readonly connectMs: number
  /** 0: none. */
  readonly headersMs: number
  /** Between body pieces; 0: none. */
  readonly idleMs: number
}

/** One model server's share of the pools at one instant. */
export interface ServerPoolStats {
  /** Requests waiting for a connection (queued past the cap, or while one is being opened). */
  readonly waiting: number
  /** Requests on a connection (sent, response not finished). */
  readonly active: number
  /** Open connections. */
  readonly connections: number
}

/** `http://10.0.0.7:8000`: the origin undici pools by (one per engine pod). */
export function originOf(server: SnapshotServer, endpoint: SnapshotEndpoint): string {
  const host = endpoint.address.includes(':') ? `[${endpoint.address}]` : endpoint.address
  return `${server.protocol}://${host}:${endpoint.port}`
}

export class UpstreamPool {
  private readonly agents = new Map<number, Agent>()
  private readonly opts: Required<PoolOptions>
  /** The raw client's pools; undefined when engines go through undici. */
  private readonly raw: EngineClient | undefined

  constructor(opts: PoolOptions = {}) {
    this.opts = {
      connectionsPerOrigin: opts.connectionsPerOrigin ?? DEFAULT_UPSTREAM_CONNECTIONS,
      keepAliveTimeoutMs: opts.keepAliveTimeoutMs ?? 60_000,
      engineClient: opts.engineClient ?? 'raw',
    }
    if (!Number.isInteger(this.opts.connectionsPerOrigin) || this.opts.connectionsPerOrigin < 1)
      throw new RangeError(
        `connectionsPerOrigin must be a positive integer, got ${this.opts.connectionsPerOrigin}`,
      )
    this.raw =
      this.opts.engineClient === 'raw'
        ? new EngineClient({
            connectionsPerOrigin: this.opts.connectionsPerOrigin,
            keepAliveMs: this.opts.keepAliveTimeoutMs,
          })
        : undefined
  }

  get engineClient(): EngineClientKind {
    return this.opts.engineClient
  }

  /**
   * Sends one request to an engine of `server`; resolves at the response head. Errors carry
   * undici's codes from either client (forward.ts maps them to connect-failure, reset, protocol,
   * timeout).
   */
  request(
    server: SnapshotServer,
    endpoint: SnapshotEndpoint,
    call: EngineCall,
  ): Promise<EngineAnswer> {
    const raw = this.raw
    if (raw !== undefined && server.protocol === 'http')
      return raw.request({
        host: endpoint.address,
        port: endpoint.port,
        method: call.method,
        path: call.path,
        headers: call.headers,
        body: call.body,
        signal: call.signal,
        timeouts: { connectMs: call.connectMs, headersMs: call.headersMs, idleMs: call.idleMs },
      })
    return this.agent(call.connectMs).request({
      origin: originOf(server, endpoint),
      path: call.path,
      method: call.method,
      headers: call.headers,
      body: call.body ?? null,
      // undici reads only `aborted`, `reason` and add/removeEventListener of it
      // (undici/lib/api/abort-signal.js): the request path's ClientSignal is enough.
      signal: call.signal as AbortSignal,
      headersTimeout: call.headersMs,
      bodyTimeout: call.idleMs,
    })
  }

  get connectionsPerOrigin(): number {
    return this.opts.connectionsPerOrigin
  }

  agent(connectTimeoutMs: number): Agent {
    let a = this.agents.get(connectTimeoutMs)
    if (!a) {
      a = new Agent({
        connections: this.opts.connectionsPerOrigin,
        keepAliveTimeout: this.opts.keepAliveTimeoutMs,
        keepAliveMaxTimeout: this.opts.keepAliveTimeoutMs,
        connect: { timeout: connectTimeoutMs },
        // Timeouts are set per request from the server's traffic policy.
        headersTimeout: 0,
        bodyTimeout: 0,
      })
      this.agents.set(connectTimeoutMs, a)
    }
    return a
  }

  /**
   * Pool usage per model server of `servers` (the live snapshot's), read from undici's counters.
   * Origins no server of the snapshot owns are left out, so labels stay bounded by the snapshot.
   */
  serverStats(servers: Readonly<Record<string, SnapshotServer>>): Map<string, ServerPoolStats> {
    const byOrigin = new Map<string, { waiting: number; active: number; connections: number }>()
    for (const a of this.agents.values()) {
      for (const [origin, st] of Object.entries(a.stats)) {
        const prev = byOrigin.get(origin) ?? { waiting: 0, active: 0, connections: 0 }
        prev.waiting += st.pending
        prev.active += st.running
        // A single-connection origin reports ClientStats (`connected` is a boolean there).
        prev.connections += typeof st.connected === 'number' ? st.connected : st.connected ? 1 : 0
        byOrigin.set(origin, prev)
      }
    }
    const out = new Map<string, ServerPoolStats>()
    for (const s of Object.values(servers)) {
      let waiting = 0
      let active = 0
      let connections = 0
      for (const e of s.endpoints) {
        const rp = s.protocol === 'http' ? this.raw?.existing(e.address, e.port) : undefined
        if (rp !== undefined) {
          const rs = rp.stats
          waiting += rs.waiting
          active += rs.active
          connections += rs.open
        }
        // undici keys pools by the URL's origin (default ports dropped, IPv6 bracketed).
        const st = byOrigin.get(new URL(originOf(s, e)).origin)
        if (st === undefined) continue
        waiting += st.waiting
        active += st.active
        connections += st.connections
      }
      out.set(s.key, { waiting, active, connections })
    }
    return out
  }

  async close(): Promise<void> {
    const all = [...this.agents.values()]
    this.agents.clear()
    this.raw?.close()
    await Promise.all(all.map((a) => a.destroy()))
  }
}
