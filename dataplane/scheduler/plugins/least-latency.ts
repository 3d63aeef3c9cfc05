// least-latency: prefer endpoints that have recently been answering fast. TTFT and TPOT are
// min-max normalised over the candidates that have a value (the fastest scores 1), blended with
// `ttftTpotWeightFactor` (Kthena's α, default 0.5); a candidate without data scores the neutral
// 0.5. Values are this replica's own measurements on proxied streams when recent, else the
// engine's interval means from its histograms.

import { numArg } from '../args.js'
import { noScoreEffects } from '../scores.js'
import type { EndpointState } from '../state.js'
import type { Plugin, PluginArgs, SchedRequest } from '../types.js'

/** Min-max normalise `values` (NaN = no data → 0.5) into `out`; false when no value exists. */
function normalise(values: Float64Array, n: number, out: Float64Array): boolean {
  let min = Number.POSITIVE_INFINITY
  let max = Number.NEGATIVE_INFINITY
  for (let i = 0; i < n; i++) {
    const v = values[i] as number
    if (Number.isNaN(v)) continue
    if (v < min) min = v
    if (v > max) max = v
  }
  if (min === Number.POSITIVE_INFINITY) return false
  const span = max - min
  for (let i = 0; i < n; i++) {
    const v = values[i] as number
    out[i] = Number.isNaN(v) ? 0.5 : span > 0 ? (max - v) / span : 1
  }
  return true
}

export function leastLatency(args: PluginArgs): Plugin {
  const alpha = numArg(args, 'ttftTpotWeightFactor', 0.5, 0, 1)
  let raw = new Float64Array(64)
  let ttft = new Float64Array(64)
  let tpot = new Float64Array(64)
  return {
    name: 'least-latency',
    single: noScoreEffects,
    score(req: SchedRequest, eps: readonly EndpointState[], out: Float64Array): boolean {
      const n = eps.length
      if (ttft.length < n) {
        raw = new Float64Array(n * 2)
        ttft = new Float64Array(n * 2)
        tpot = new Float64Array(n * 2)
      }
      for (let i = 0; i < n; i++) raw[i] = (eps[i] as EndpointState).ttft(req.now) ?? Number.NaN
      const hasTtft = normalise(raw, n, ttft)
      for (let i = 0; i < n; i++) raw[i] = (eps[i] as EndpointState).tpot(req.now) ?? Number.NaN
      const hasTpot = normalise(raw, n, tpot)
      if (!hasTtft && !hasTpot) return false
      // With only one signal anywhere, it decides alone.
      const a = hasTtft && hasTpot ? alpha : hasTtft ? 1 : 0
      for (let i = 0; i < n; i++) {
        out[i] = a * (ttft[i] as number) + (1 - a) * (tpot[i] as number)
      }
      return true
    },
  }
}
