// Holds the live routing table. A swap replaces one reference: requests already routed keep the
// objects they resolved, so a reload never disturbs in-flight traffic.
import type { RoutingSnapshot } from '../api/snapshot.js'
import { RouteTable } from './router.js'

export type SnapshotListener = (snapshot: RoutingSnapshot) => void

export class SnapshotStore {
  private current: RouteTable | undefined
  private readonly listeners: SnapshotListener[] = []
  private readonly random: () => number
  /** The Gateway ("namespace/name") this data plane is; routes bound elsewhere are not served. */
  private readonly gateway: string | undefined

  constructor(random: () => number = Math.random, gateway?: string) {
    this.random = random
    this.gateway = gateway
  }

  get table(): RouteTable | undefined {
    return this.current
  }

  get snapshot(): RoutingSnapshot | undefined {
    return this.current?.snapshot
  }

  /** Builds the table first, so a snapshot that fails to compile never replaces the live one. */
  swap(snapshot: RoutingSnapshot): void {
    const table = new RouteTable(snapshot, this.random, this.gateway)
    this.current = table
    for (const l of this.listeners) l(snapshot)
  }

  /**
   * For published snapshots (file and push channel may both feed one store): apply only a newer
   * version, so two sources never make the data plane flip back and forth.
   */
  offer(snapshot: RoutingSnapshot): 'applied' | 'stale' | 'same' {
    const cur = this.current?.snapshot
    if (cur) {
      if (snapshot.version < cur.version) return 'stale'
      if (snapshot.version === cur.version) return 'same'
    }
    this.swap(snapshot)
    return 'applied'
  }

  onSwap(l: SnapshotListener): void {
    this.listeners.push(l)
  }
}
