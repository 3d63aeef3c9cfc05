// least-kv-cache: prefer endpoints with free KV-cache space (1 − usage). A full cache forces the
// engine to evict cached prefixes or to stop admitting, so free space is both speed and headroom.
// Endpoints with stale or missing metrics score the neutral 0.5: unknown is neither good nor bad.

import { noScoreEffects } from '../scores.js'
import type { EndpointState } from '../state.js'
import type { Plugin, SchedRequest } from '../types.js'

export function leastKvCache(): Plugin {
  return {
    name: 'least-kv-cache',
    single: noScoreEffects,
    score(req: SchedRequest, eps: readonly EndpointState[], out: Float64Array): boolean {
      let known = 0
      for (let i = 0; i < eps.length; i++) {
        // NaN = unknown (see kvCacheUsageOrNaN: no HeapNumber per candidate).
        const u = (eps[i] as EndpointState).kvCacheUsageOrNaN(req.now)
        if (Number.isNaN(u)) out[i] = 0.5
        else {
          out[i] = 1 - u
          known++
        }
      }
      return known > 0
    },
  }
}
