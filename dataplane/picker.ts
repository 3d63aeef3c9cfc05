// The seam the scheduler plugs into: given the chosen server, return endpoints in the order to
// try them (first is the target, the rest are fallbacks for retries). Until the scheduler lands,
// a round-robin over ready endpoints fills the seam.
import type { SnapshotEndpoint, SnapshotServer } from '../api/snapshot.js'

export interface PickContext {
  readonly requestId: string
  readonly model: string
  readonly isLora: boolean
  readonly server: SnapshotServer
  /** The parsed request body (chat/completions/embeddings). */
  readonly body: Readonly<Record<string, unknown>>
  readonly header: (name: string) => string | undefined
}

export interface EndpointPicker {
  /** Ordered candidates; empty when nothing is ready. */
  pick(ctx: PickContext): readonly SnapshotEndpoint[]
}

/** Rotates the starting point per server; fallbacks follow in ring order. */
export class RoundRobinPicker implements EndpointPicker {
  private readonly next = new Map<string, number>()

  pick(ctx: PickContext): readonly SnapshotEndpoint[] {
    const ready = ctx.server.endpoints.filter((e) => e.ready)
    if (ready.length <= 1) return ready
    const start = (this.next.get(ctx.server.key) ?? 0) % ready.length
    this.next.set(ctx.server.key, start + 1)
    return [...ready.slice(start), ...ready.slice(0, start)]
  }
}

export function endpointId(e: SnapshotEndpoint): string {
  return `${e.address}:${e.port}`
}
