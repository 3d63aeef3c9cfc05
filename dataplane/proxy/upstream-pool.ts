// Pooled keep-alive connections to engines. One undici Agent per connect-timeout value (undici
// takes the connect timeout per dispatcher, not per request); each Agent keeps a pool per origin.
import { Agent } from 'undici'

export interface PoolOptions {
  /** Max sockets per origin (engine pod). Engines batch; a few dozen covers heavy streaming. */
  readonly connectionsPerOrigin?: number
  readonly keepAliveTimeoutMs?: number
}

export class UpstreamPool {
  private readonly agents = new Map<number, Agent>()
  private readonly opts: Required<PoolOptions>

  constructor(opts: PoolOptions = {}) {
    this.opts = {
      connectionsPerOrigin: opts.connectionsPerOrigin ?? 256,
      keepAliveTimeoutMs: opts.keepAliveTimeoutMs ?? 60_000,
    }
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

  async close(): Promise<void> {
    const all = [...this.agents.values()]
    this.agents.clear()
    await Promise.all(all.map((a) => a.destroy()))
  }
}
