// least-pending: prefer the endpoint with the fewest outstanding requests, counting queued ones
// extra (a queued request waits for a whole batch slot, a running one only shares the batch).
// Outstanding = the engine's waiting + running at the last scrape, corrected by this replica's
// own dispatches and completions since, so a burst is spread at once.

import { intArg, numArg } from '../args.js'
import { filterKept, inverseMinMax, noScoreEffects, Scratch } from '../scores.js'
import type { EndpointState } from '../state.js'
import type { Plugin, PluginArgs, SchedRequest } from '../types.js'

export function leastPending(args: PluginArgs): Plugin {
  const queueWeight = numArg(args, 'queueWeight', 1, 0, 100)
  const maxWaiting = intArg(args, 'maxWaitingRequests', 0, 0, Number.MAX_SAFE_INTEGER)
  const costs = new Scratch()
  const plugin: Plugin = {
    name: 'least-pending',
    single: noScoreEffects,
    score(req: SchedRequest, eps: readonly EndpointState[], out: Float64Array): boolean {
      const c = costs.get(eps.length)
      for (let i = 0; i < eps.length; i++) {
        const e = eps[i] as EndpointState
        c[i] = e.pending(req.now) + queueWeight * e.waiting(req.now)
      }
      inverseMinMax(c, eps.length, out)
      return true
    },
  }
  if (maxWaiting > 0) {
    // Kthena's least-request filter: skip endpoints with a long queue (fails open when all have).
    plugin.filter = (req, eps) => filterKept(eps, (e) => e.waiting(req.now) < maxWaiting)
  }
  return plugin
}
