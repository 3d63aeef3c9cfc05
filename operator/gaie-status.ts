// `status.parents[]` of InferencePools and HTTPRoutes, as GAIE and Gateway API define them (pure).
//
// Both lists are shared by every gateway controller (listType atomic): we compute only our own
// entry — keyed by our Gateway and our controllerName — keep every other entry as it is, and
// remove ours when the object is no longer associated with our Gateway. lastTransitionTime moves
// only when a condition's status flips, so a restarted operator computes exactly what is stored
// and patches nothing.

import { GATEWAY_API_GROUP, GATEWAY_CONTROLLER_NAME } from '../api/gaie.js'
import type { Condition, Diagnostic, RoutingSnapshot } from '../api/index.js'
import { withTransitionTimes } from './status.js'

type DesiredCondition = Omit<Condition, 'lastTransitionTime'>

export interface ParentStatus {
  readonly parentRef: Readonly<Record<string, unknown>>
  readonly controllerName: string
  readonly conditions: readonly Condition[]
}

/** Our Gateway ("namespace/name") as a parentRef. */
export function gatewayParentRef(gateway: string): Record<string, string> {
  const slash = gateway.indexOf('/')
  return {
    group: GATEWAY_API_GROUP,
    kind: 'Gateway',
    namespace: gateway.slice(0, slash),
    name: gateway.slice(slash + 1),
  }
}

/** Whether a parentRef (namespace defaulting to the object's) names our Gateway. */
export function refersToGateway(ref: unknown, objectNamespace: string, gateway: string): boolean {
  if (typeof ref !== 'object' || ref === null) return false
  const r = ref as { group?: unknown; kind?: unknown; namespace?: unknown; name?: unknown }
  const group = typeof r.group === 'string' ? r.group : GATEWAY_API_GROUP
  const kind = typeof r.kind === 'string' ? r.kind : 'Gateway'
  const ns = typeof r.namespace === 'string' ? r.namespace : objectNamespace
  return group === GATEWAY_API_GROUP && kind === 'Gateway' && `${ns}/${String(r.name)}` === gateway
}

function existingParents(status: unknown): ParentStatus[] {
  const p = (status as { parents?: unknown } | undefined)?.parents
  return Array.isArray(p) ? (p as ParentStatus[]) : []
}

function cond(
  type: string,
  ok: boolean,
  reason: string,
  message: string,
  generation: number,
): DesiredCondition {
  return { type, status: ok ? 'True' : 'False', observedGeneration: generation, reason, message }
}

function joined(ds: readonly Diagnostic[]): string {
  const text = ds.map((d) => d.message).join('; ')
  return text.length > 4000 ? `${text.slice(0, 3997)}...` : text
}

/**
 * The parents list to store, or undefined when it already says that. `desired` undefined =
 * not associated: our entry goes.
 */
export function mergeParents(
  status: unknown,
  objectNamespace: string,
  gateway: string,
  desired:
    | { readonly parentRef: Record<string, unknown>; readonly conditions: DesiredCondition[] }
    | undefined,
  now: string,
): ParentStatus[] | undefined {
  const existing = existingParents(status)
  const ours = (p: ParentStatus) =>
    p.controllerName === GATEWAY_CONTROLLER_NAME &&
    refersToGateway(p.parentRef, objectNamespace, gateway)
  const old = existing.find(ours)
  const others = existing.filter((p) => !ours(p))
  const next =
    desired === undefined
      ? others
      : [
          ...others,
          {
            parentRef: desired.parentRef,
            controllerName: GATEWAY_CONTROLLER_NAME,
            conditions: withTransitionTimes(desired.conditions, old?.conditions ?? [], now),
          },
        ]
  // Keep our entry where it was when it exists: order is not ours to change.
  if (old !== undefined && desired !== undefined) {
    const at = existing.indexOf(old)
    const mine = next[next.length - 1] as ParentStatus
    next.splice(next.length - 1, 1)
    next.splice(Math.min(at, next.length), 0, mine)
  }
  return JSON.stringify(next) === JSON.stringify(existing) ? undefined : next
}

// ---------------------------------------------------------------------------------------------

export interface GaieStatusView {
  readonly snapshot: RoutingSnapshot
  /** By `${kind}/${namespace}/${name}`. */
  readonly diagnostics: ReadonlyMap<string, readonly Diagnostic[]>
  /** The generation of each object the view was compiled from, by `${kind}/${namespace}/${name}`. */
  readonly generations: ReadonlyMap<string, number>
}

/** Our conditions on an InferencePool associated with our Gateway. */
export function poolConditions(
  key: string,
  generation: number,
  view: GaieStatusView,
): DesiredCondition[] {
  const errors = (view.diagnostics.get(`InferencePool/${key}`) ?? []).filter(
    (d) => d.severity === 'error',
  )
  const accepted =
    errors.length === 0
      ? cond('Accepted', true, 'Accepted', 'served by the infer-gateway data plane', generation)
      : cond('Accepted', false, 'NotSupportedByParent', joined(errors), generation)
  // The data plane picks endpoints itself: an endpointPickerRef is not called, so it cannot fail.
  return [accepted, cond('ResolvedRefs', true, 'ResolvedRefs', '', generation)]
}

const ROUTE_REF_REASONS = new Set([
  'BackendNotFound',
  'InvalidKind',
  'RefNotPermitted',
  'Unsupported',
])

/** Our conditions on an HTTPRoute that names our Gateway as a parent. */
export function httpRouteConditions(
  key: string,
  generation: number,
  view: GaieStatusView,
): DesiredCondition[] {
  const ds = view.diagnostics.get(`HTTPRoute/${key}`) ?? []
  const invalid = ds.filter((d) => d.reason === 'Invalid' || d.reason === 'DuplicateName')
  if (invalid.length > 0)
    return [
      cond('Accepted', false, 'UnsupportedValue', joined(invalid), generation),
      cond('ResolvedRefs', false, 'UnsupportedValue', joined(invalid), generation),
    ]
  const refs = ds.filter((d) => d.severity === 'error' && ROUTE_REF_REASONS.has(d.reason))
  const first = refs[0]
  const reason =
    first === undefined
      ? 'ResolvedRefs'
      : first.reason === 'Unsupported'
        ? 'InvalidKind'
        : first.reason
  const warnings = ds.filter((d) => d.severity === 'warning')
  return [
    cond(
      'Accepted',
      true,
      'Accepted',
      warnings.length === 0
        ? 'served by the infer-gateway data plane'
        : `served; ${joined(warnings)}`,
      generation,
    ),
    cond('ResolvedRefs', first === undefined, reason, joined(refs), generation),
  ]
}
