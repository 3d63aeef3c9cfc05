// Prefill/decode pairing as Kthena defines it: a Pod selected by the ModelServer is a prefill Pod
// when it carries every prefill label, a decode Pod when it carries every decode label, and a
// prefill Pod serves the decode Pods with the same value of the `groupKey` label. Shared by the
// data plane (which pairs per request) and the operator (whose Ready condition needs a pair).
import type { SnapshotEndpoint, SnapshotPd } from './snapshot.js'

export type PdRole = 'prefill' | 'decode'

function carries(
  labels: Readonly<Record<string, string>>,
  want: Readonly<Record<string, string>>,
): boolean {
  for (const k in want) if (labels[k] !== want[k]) return false
  return true
}

/** Whether `ep` plays `role` in `pd` (a Pod carrying both label sets plays both). */
export function hasPdRole(ep: SnapshotEndpoint, pd: SnapshotPd, role: PdRole): boolean {
  return carries(ep.labels, role === 'prefill' ? pd.prefillLabels : pd.decodeLabels)
}

/** The pairing group of `ep`: its `groupKey` label value; undefined = in no group, never paired. */
export function pdGroupOf(ep: SnapshotEndpoint, pd: SnapshotPd): string | undefined {
  return ep.labels[pd.groupKey]
}

/** Ready decode endpoints that have at least one ready prefill endpoint in their group. */
export function pairableDecodes(
  endpoints: readonly SnapshotEndpoint[],
  pd: SnapshotPd,
): SnapshotEndpoint[] {
  const groups = new Set<string>()
  for (const e of endpoints) {
    const g = pdGroupOf(e, pd)
    if (e.ready && g !== undefined && hasPdRole(e, pd, 'prefill')) groups.add(g)
  }
  return endpoints.filter((e) => {
    const g = pdGroupOf(e, pd)
    return e.ready && g !== undefined && groups.has(g) && hasPdRole(e, pd, 'decode')
  })
}
