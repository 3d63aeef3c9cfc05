// Pooled keep-alive connections to engines. One undici Agent per connect-timeout value (undici
// takes the connect timeout per dispatcher, not per request); each Agent keeps a pool per origin.
//
// The pool caps connections per engine (`connectionsPerOrigin`, CLI `--upstream-connections`):
// HTTP/1.1 carries one request per connection at a time, so past the cap requests wait inside
// undici for a free connection. That wait is invisible in latency metrics of the engine, so
// `serverStats` exposes it per model server for /metrics.
import { Agent } from 'undici'
import type { SnapshotEndpoint, SnapshotServer } from '../../api/snapshot.js'

/** Default connections per engine pod: above any engine's batch, below a file-descriptor worry. */
export const DEFAULT_UPSTREAM_CONNECTIONS = 256

export interface PoolOptions {
  /** Max sockets per origin (engine pod); default DEFAULT_UPSTREAM_CONNECTIONS. */
  readonly connectionsPerOrigin?: number
  readonly keepAliveTimeoutMs?: number
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

  constructor(opts: PoolOptions = {}) {
    this.opts = {
      connectionsPerOrigin: opts.connectionsPerOrigin ?? DEFAULT_UPSTREAM_CONNECTIONS,
      keepAliveTimeoutMs: opts.keepAliveTimeoutMs ?? 60_000,
    }
    if (!Number.isInteger(this.opts.connectionsPerOrigin) || this.opts.connectionsPerOrigin < 1)
      throw new RangeError(
        `connectionsPerOrigin must be a positive integer, got ${this.opts.connectionsPerOrigin}`,
      )
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
    await Promise.all(all.map((a) => a.destroy()))
  }
}
