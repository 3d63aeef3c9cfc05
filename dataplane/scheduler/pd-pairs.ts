// The pair picker of prefill/decode disaggregation (a server with `pd`): the scheduler chooses the
// decode pod (load), then, for each decode pod in that order, the best prefill pod of the same
// group (prefix affinity and load), as Kthena does. Each role is scheduled as a server of its own
// ("<key>#decode", "<key>#prefill": the scheduler keeps their plugin state, e.g. the prefill
// side's prefix index, across requests; see `withPdRoles`), so any EndpointPicker works.
import { hasPdRole, pdGroupOf } from '../../api/pd.js'
import type { SnapshotEndpoint, SnapshotServer } from '../../api/snapshot.js'
import type { EndpointPicker, ExplainSink, PickContext } from '../picker.js'

export interface PdRoles {
  /** The decode pods that have a prefill pod in their group (ready or not). */
  readonly decode: SnapshotServer
  readonly prefill: SnapshotServer
}

export interface PdPair {
  readonly prefill: SnapshotEndpoint
  readonly decode: SnapshotEndpoint
}

/** Pairs tried at least, whatever `retry.attempts` says: a failed prefill costs the client nothing. */
export const PD_MIN_PAIRS = 3

const roles = new WeakMap<SnapshotServer, PdRoles>()

function roleServer(s: SnapshotServer, role: string, eps: SnapshotEndpoint[]): SnapshotServer {
  const { pd: _pd, ...base } = s
  const tp = s.trafficPolicy
  return {
    ...base,
    key: `${s.key}#${role}`,
    endpoints: eps,
    // The scheduler returns `retry.attempts` candidates: a role asks for its whole order.
    trafficPolicy: { ...tp, retry: { ...tp.retry, attempts: Math.max(1, eps.length) } },
  }
}

/** The two role servers of a prefill/decode server (cached per snapshot object). */
export function pdRoles(s: SnapshotServer): PdRoles | undefined {
  const pd = s.pd
  if (pd === undefined) return undefined
  let r = roles.get(s)
  if (r === undefined) {
    const grouped = s.endpoints.filter((e) => pdGroupOf(e, pd) !== undefined)
    const groups = new Set(
      grouped.filter((e) => hasPdRole(e, pd, 'prefill')).map((e) => pdGroupOf(e, pd)),
    )
    r = {
      decode: roleServer(
        s,
        'decode',
        grouped.filter((e) => hasPdRole(e, pd, 'decode') && groups.has(pdGroupOf(e, pd))),
      ),
      prefill: roleServer(
        s,
        'prefill',
        grouped.filter((e) => hasPdRole(e, pd, 'prefill')),
      ),
    }
    roles.set(s, r)
  }
  return r
}

/** The snapshot's servers plus the role servers of each prefill/decode server. */
export function withPdRoles(servers: readonly SnapshotServer[]): SnapshotServer[] {
  const out = [...servers]
  for (const s of servers) {
    const r = pdRoles(s)
    if (r !== undefined) out.push(r.decode, r.prefill)
  }
  return out
}

/** A pick context for one role: the same request, its own server, body and explain sink. */
export function roleContext(
  ctx: PickContext,
  server: SnapshotServer,
  body: Readonly<Record<string, unknown>>,
): PickContext {
  // Built field by field, not spread: a picker may keep per-request state on the context.
  return {
    requestId: ctx.requestId,
    model: ctx.model,
    isLora: ctx.isLora,
    server,
    body,
    header: ctx.header,
    ...(ctx.explain !== undefined ? { explain: {} as ExplainSink } : {}),
    ...(ctx.identity !== undefined ? { identity: ctx.identity } : {}),
  }
}

/**
 * Up to `limit` pairs, best first: decode pods in the picker's order, each with the prefill pod
 * of its group the picker ranks first for the first pair, the next ones for the next pairs of
 * the same group.
 */
export function pickPairs(
  picker: EndpointPicker,
  decodeCtx: PickContext,
  prefillCtx: PickContext,
  groupKey: string,
  limit: number,
): PdPair[] {
  const decodes = picker.pick(decodeCtx)
  if (decodes.length === 0) return []
  const prefills = picker.pick(prefillCtx)
  const bestOf = new Map<string, SnapshotEndpoint[]>()
  for (const p of prefills) {
    const g = p.labels[groupKey]
    if (g === undefined) continue
    const list = bestOf.get(g) ?? []
    list.push(p)
    bestOf.set(g, list)
  }
  // Within a group, each next decode pod takes the group's next prefill pod (the best one first,
  // round the ranked list): the first pair is the best of both, and a retry after a failed
  // prefill pod meets another prefill pod where the group has one. More rounds while pairs are
  // missing: a group of one decode pod and two prefill pods still has a second pair.
  const taken = new Map<string, number>()
  const seen = new Set<string>()
  const out: PdPair[] = []
  for (let round = 0; round < limit && out.length < limit; round++) {
    const before = out.length
    for (const d of decodes) {
      const g = d.labels[groupKey]
      const list = g === undefined ? undefined : bestOf.get(g)
      if (g === undefined || list === undefined || list.length === 0) continue
      const n = taken.get(g) ?? 0
      taken.set(g, n + 1)
      const p = list[n % list.length] as SnapshotEndpoint
      const id = `${d.name}\u0000${p.name}`
      if (seen.has(id)) continue
      seen.add(id)
      out.push({ prefill: p, decode: d })
      if (out.length >= limit) break
    }
    if (out.length === before) break
  }
  return out
}
