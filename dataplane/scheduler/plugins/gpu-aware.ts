// gpu-aware: heterogeneous fleets. Each endpoint's relative capacity comes from its GPU type (a pod
// label such as `gpu` or `nvidia.com/gpu.product`), and the score is capacity-normalised load:
// (outstanding + 1) / capacity, lowest best. An H100 pod with capacity 4 takes about four times
// the requests of an A10 pod before they look equally busy. The "+1" counts the request being
// placed, so on an idle fleet the bigger GPU wins. On a homogeneous fleet the plugin abstains.

import { numArg, numMapArg, strListArg } from '../args.js'
import { inverseMinMax, noScoreEffects, Scratch } from '../scores.js'
import type { EndpointState } from '../state.js'
import type { Plugin, PluginArgs, SchedRequest } from '../types.js'

export const DEFAULT_GPU_LABELS = [
  'gpu',
  'nvidia.com/gpu.product',
  'cloud.google.com/gke-accelerator',
  'accelerator',
] as const

/**
 * Rough relative serving capacity (A10 = 1), used when the profile gives no table. Matched as a
 * substring of the upper-cased label value, longest name first ("NVIDIA-H100-80GB-HBM3" → H100,
 * "A100" is not mistaken for "A10").
 */
export const DEFAULT_GPU_CAPACITY: Readonly<Record<string, number>> = {
  B200: 8,
  H200: 5,
  H100: 4,
  H800: 4,
  MI300X: 4,
  A100: 2.5,
  L40S: 2,
  A800: 2.5,
  L40: 1.5,
  A10G: 1,
  A10: 1,
  L4: 0.8,
  T4: 0.4,
}

export function gpuCapacity(
  labels: Readonly<Record<string, string>>,
  labelKeys: readonly string[],
  table: ReadonlyMap<string, number>,
  dflt: number,
): number {
  let value: string | undefined
  for (const k of labelKeys) {
    const v = labels[k]
    if (v !== undefined && v !== '') {
      value = v
      break
    }
  }
  if (value === undefined) return dflt
  const exact = table.get(value)
  if (exact !== undefined) return exact
  const upper = value.toUpperCase()
  let best: [string, number] | undefined
  for (const [name, cap] of table) {
    const u = name.toUpperCase()
    if (upper.includes(u) && (best === undefined || u.length > best[0].length)) best = [u, cap]
  }
  return best?.[1] ?? dflt
}

export function gpuAware(args: PluginArgs): Plugin {
  const labelKeys = strListArg(args, 'labelKeys', DEFAULT_GPU_LABELS)
  const given = numMapArg(args, 'capacities')
  const table = given.size > 0 ? given : new Map(Object.entries(DEFAULT_GPU_CAPACITY))
  const dflt = numArg(args, 'defaultCapacity', 1, 0.01, 10_000)
  // Labels change only with a snapshot; keep the lookup off the per-request path. By endpoint
  // slot, checked against the labels object it was worked out for: a WeakMap keyed by the labels
  // read each candidate's labels object (a cache miss per candidate) to find its entry.
  let capBySlot = new Float64Array(64)
  const labelsBySlot: (Readonly<Record<string, string>> | undefined)[] = []
  const capacityOf = (e: EndpointState): number => {
    const s = e.slot
    if (labelsBySlot[s] === e.labels) return capBySlot[s] as number
    if (s >= capBySlot.length) {
      const grown = new Float64Array(Math.max(s + 1, capBySlot.length * 2))
      grown.set(capBySlot)
      capBySlot = grown
    }
    capBySlot[s] = gpuCapacity(e.labels, labelKeys, table, dflt)
    labelsBySlot[s] = e.labels
    return capBySlot[s] as number
  }
  const costs = new Scratch()
  return {
    name: 'gpu-aware',
    single: noScoreEffects,
    score(req: SchedRequest, eps: readonly EndpointState[], out: Float64Array): boolean {
      const c = costs.get(eps.length)
      let first = 0
      let mixed = false
      for (let i = 0; i < eps.length; i++) {
        const e = eps[i] as EndpointState
        const cap = capacityOf(e)
        if (i === 0) first = cap
        else if (cap !== first) mixed = true
        c[i] = (e.pending(req.now) + 1) / cap
      }
      if (!mixed) return false
      inverseMinMax(c, eps.length, out)
      return true
    },
  }
}
