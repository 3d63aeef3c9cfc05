// round-robin: the next endpoint in turn scores 1, the ones after it less and less, so the ordered
// list is the ring from the current position (fallbacks follow in ring order). The routing
// benchmark's baseline, and what the data plane did before the scheduler.

import type { EndpointState } from '../state.js'
import type { Plugin, SchedRequest } from '../types.js'

export function roundRobin(): Plugin {
  let next = 0
  return {
    name: 'round-robin',
    // One candidate: the turn still advances, as it did when one candidate was scored.
    single(): void {
      next = (next + 1) % 1_000_000_007
    },
    score(_req: SchedRequest, eps: readonly EndpointState[], out: Float64Array): boolean {
      const n = eps.length
      const start = next % n
      next = (next + 1) % 1_000_000_007
      for (let i = 0; i < n; i++) out[i] = 1 - ((i - start + n) % n) / n
      return true
    },
  }
}
