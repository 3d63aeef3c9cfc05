// What the status of each ModelRoute / ModelServer should be, given the last compile (pure; the
// contract is api/status.ts). Written so a restarted or newly elected operator computes exactly
// what is already stored — the same conditions, messages and lastTransitionTime — and therefore
// patches nothing: messages hold no times or versions, lastTransitionTime moves only when a
// condition's status flips, and `snapshotVersion` moves only with `observedGeneration`.
import {
  CONDITION_TYPES,
  type Condition,
  type Diagnostic,
  type ModelRouteStatus,
  type ModelServerStatus,
  type RoutingSnapshot,
  type SnapshotRoute,
} from '../api/index.js'
import { pairableDecodes } from '../api/pd.js'
import type { EndpointCounts } from './endpoints.js'

/** One compile's results, indexed for status computation. */
export interface CompiledView {
  readonly snapshot: RoutingSnapshot
  readonly routes: ReadonlyMap<string, SnapshotRoute>
  /** By `${kind}/${namespace}/${name}`. */
  readonly diagnostics: ReadonlyMap<string, readonly Diagnostic[]>
  readonly counts: Readonly<Record<string, EndpointCounts>>
  /** `metadata.generation` of each input as compiled, by `${kind}/${namespace}/${name}`. */
  readonly generations: ReadonlyMap<string, number>
  /** Version of the snapshot the data planes have for this content. */
  readonly publishedVersion: number | undefined
  /** Set when this compile could not be published (e.g. too large). */
  readonly publishError?: { readonly reason: string; readonly message: string }
}

export type Kind = 'ModelRoute' | 'ModelServer'

export function viewKey(kind: Kind, key: string): string {
  return `${kind}/${key}`
}

export function indexCompile(
  snapshot: RoutingSnapshot,
  diagnostics: readonly Diagnostic[],
  rest: Omit<CompiledView, 'snapshot' | 'routes' | 'diagnostics'>,
): CompiledView {
  const byKey = new Map<string, Diagnostic[]>()
  for (const d of diagnostics) {
    // ExternalModelProvider status (Ready, CredentialsResolved) is not computed here yet.
    if (d.kind === 'GatewayPolicy' || d.kind === 'ExternalModelProvider') continue
    // Every other kind (GAIE's included) by `${kind}/${key}`, the same shape as viewKey.
    const k = `${d.kind}/${d.key}`
    const list = byKey.get(k)
    if (list === undefined) byKey.set(k, [d])
    else list.push(d)
  }
  return {
    snapshot,
    routes: new Map(snapshot.routes.map((r) => [r.key, r])),
    diagnostics: byKey,
    ...rest,
  }
}

/** The object as the status computation sees it. */
export interface StatusSubject {
  readonly kind: Kind
  /** "namespace/name" */
  readonly key: string
  readonly generation: number
  /** The stored status (anything; only what we own is compared). */
  readonly status: unknown
}

type DesiredCondition = Omit<Condition, 'lastTransitionTime'>

const INVALID_REASONS = new Set(['Invalid', 'DuplicateName'])
const REF_REASONS = new Set([
  'Unsupported',
  'ModelServerNotFound',
  'ExternalModelProviderNotFound',
  'ProviderNotSupported',
  'InferencePoolNotFound',
])

function joined(ds: readonly Diagnostic[]): string {
  // Condition messages are capped at 32 KiB by the schema; keep them readable well below.
  const text = ds.map((d) => d.message).join('; ')
  return text.length > 4000 ? `${text.slice(0, 3997)}...` : text
}

function cond(
  type: string,
  ok: boolean | 'Unknown',
  reason: string,
  message: string,
  generation: number,
): DesiredCondition {
  return {
    type,
    status: ok === 'Unknown' ? 'Unknown' : ok ? 'True' : 'False',
    observedGeneration: generation,
    reason,
    message,
  }
}

export function existingConditions(status: unknown): Condition[] {
  const c = (status as { conditions?: unknown } | undefined)?.conditions
  return Array.isArray(c) ? (c as Condition[]) : []
}

function existingNumber(status: unknown, field: string): number | undefined {
  const v = (status as Record<string, unknown> | undefined)?.[field]
  return typeof v === 'number' ? v : undefined
}

/** lastTransitionTime: kept while the status (True/False/Unknown) stays, `now` when it flips. */
export function withTransitionTimes(
  desired: readonly DesiredCondition[],
  existing: readonly Condition[],
  now: string,
): Condition[] {
  return desired.map((d) => {
    const old = existing.find((c) => c.type === d.type)
    const lastTransitionTime =
      old !== undefined && old.status === d.status && typeof old.lastTransitionTime === 'string'
        ? old.lastTransitionTime
        : now
    return { ...d, lastTransitionTime }
  })
}

/**
 * `snapshotVersion`: the published version that first carried this generation. Moving it on
 * every publish would rewrite every object's status on every change anywhere.
 */
function snapshotVersionFor(
  subject: StatusSubject,
  view: CompiledView,
  included: boolean,
): number | undefined {
  const stored = existingNumber(subject.status, 'snapshotVersion')
  const observed = existingNumber(subject.status, 'observedGeneration')
  if (observed === subject.generation && stored !== undefined) return stored
  return included && view.publishError === undefined ? view.publishedVersion : undefined
}

export function routeStatus(
  subject: StatusSubject,
  view: CompiledView,
  now: string,
): ModelRouteStatus {
  const g = subject.generation
  const ds = view.diagnostics.get(viewKey('ModelRoute', subject.key)) ?? []
  const invalid = ds.filter((d) => INVALID_REASONS.has(d.reason))
  const refs = ds.filter((d) => REF_REASONS.has(d.reason))
  const dup = ds.filter((d) => d.reason === 'DuplicateModelName')
  const route = view.routes.get(subject.key)
  // Provider targets (ExternalModelProvider) have no endpoints; only servers are counted here.
  const targets = [
    ...new Set(
      route?.rules.flatMap((r) =>
        r.targets.flatMap((t) => (t.server !== undefined ? [t.server] : [])),
      ) ?? [],
    ),
  ]
  let ready = 0
  let total = 0
  for (const t of targets) {
    ready += view.counts[t]?.ready ?? 0
    total += view.counts[t]?.total ?? 0
  }
  // Targets the weighted pick can choose (weight > 0). A provider has no endpoints to count and
  // is taken as available; a server with no ready endpoint fails its share of the requests.
  const weighted = route?.rules.flatMap((r) => r.targets.filter((t) => t.weight > 0)) ?? []
  const weightedServers = [
    ...new Set(weighted.flatMap((t) => (t.server !== undefined ? [t.server] : []))),
  ]
  const weightedProviders = new Set(
    weighted.flatMap((t) => (t.provider !== undefined ? [t.provider] : [])),
  ).size
  const unavailable = weightedServers.filter((t) => (view.counts[t]?.ready ?? 0) === 0)
  const targetCount = weightedServers.length + weightedProviders

  let accepted: DesiredCondition
  if (invalid.length > 0) {
    accepted = cond(
      CONDITION_TYPES.accepted,
      false,
      invalid[0]?.reason ?? 'Invalid',
      joined(invalid),
      g,
    )
  } else if (route === undefined) {
    // Left out of the snapshot: say why with the most specific reason there is.
    const why = refs[0]?.reason ?? ds.find((d) => d.severity === 'error')?.reason ?? 'NoUsableRules'
    accepted = cond(
      CONDITION_TYPES.accepted,
      false,
      why,
      joined(ds) || 'not in the routing snapshot',
      g,
    )
  } else if (dup.length > 0) {
    accepted = cond(CONDITION_TYPES.accepted, false, 'DuplicateModelName', joined(dup), g)
  } else if (view.publishError !== undefined) {
    accepted = cond(
      CONDITION_TYPES.accepted,
      false,
      view.publishError.reason,
      view.publishError.message,
      g,
    )
  } else {
    accepted = cond(
      CONDITION_TYPES.accepted,
      true,
      'Accepted',
      'included in the routing snapshot',
      g,
    )
  }

  const resolved =
    invalid.length > 0
      ? cond(
          CONDITION_TYPES.resolvedRefs,
          'Unknown',
          'Invalid',
          'references are checked once the object is valid',
          g,
        )
      : refs.length > 0
        ? cond(
            CONDITION_TYPES.resolvedRefs,
            false,
            refs[0]?.reason ?? 'RefNotFound',
            joined(refs),
            g,
          )
        : cond(
            CONDITION_TYPES.resolvedRefs,
            true,
            'ResolvedRefs',
            `all ${targets.length} target server(s) exist`,
            g,
          )

  const readyCond =
    accepted.status !== 'True'
      ? cond(CONDITION_TYPES.ready, false, accepted.reason, accepted.message, g)
      : ready === 0 && weightedProviders === 0
        ? cond(
            CONDITION_TYPES.ready,
            false,
            'NoReadyEndpoints',
            `0 of ${total} endpoint(s) ready behind ${targets.join(', ')}`,
            g,
          )
        : unavailable.length > 0
          ? cond(
              CONDITION_TYPES.ready,
              false,
              'TargetUnavailable',
              `weighted target(s) ${unavailable.join(', ')} have no ready endpoint; their share of requests fails`,
              g,
            )
          : cond(CONDITION_TYPES.ready, true, 'Ready', `${ready} of ${total} endpoint(s) ready`, g)

  const included = route !== undefined
  const status: ModelRouteStatus = {
    observedGeneration: g,
    conditions: withTransitionTimes(
      [accepted, resolved, readyCond],
      existingConditions(subject.status),
      now,
    ),
    readyEndpoints: ready,
    totalEndpoints: total,
    targets: `${targetCount - unavailable.length}/${targetCount}`,
    resolvedTargets: targets,
  }
  const sv = snapshotVersionFor(subject, view, included)
  return sv === undefined ? status : { ...status, snapshotVersion: sv }
}

export function serverStatus(
  subject: StatusSubject,
  view: CompiledView,
  now: string,
): ModelServerStatus {
  const g = subject.generation
  const ds = view.diagnostics.get(viewKey('ModelServer', subject.key)) ?? []
  // Unsupported: valid but uses a field we cannot serve (named in the message). As a warning
  // (a field with no effect) it is said in the Accepted message instead.
  const invalid = ds.filter(
    (d) => d.severity === 'error' && (INVALID_REASONS.has(d.reason) || d.reason === 'Unsupported'),
  )
  const notes = ds.filter((d) => d.severity === 'warning' && d.reason === 'Unsupported')
  const server = view.snapshot.servers[subject.key]
  const included = server !== undefined
  const counts = included
    ? (view.counts[subject.key] ?? { ready: 0, total: 0 })
    : { ready: 0, total: 0 }

  const accepted =
    invalid.length > 0 || !included
      ? cond(
          CONDITION_TYPES.accepted,
          false,
          invalid[0]?.reason ?? 'Invalid',
          joined(invalid) || 'not in the routing snapshot',
          g,
        )
      : view.publishError !== undefined
        ? cond(
            CONDITION_TYPES.accepted,
            false,
            view.publishError.reason,
            view.publishError.message,
            g,
          )
        : cond(
            CONDITION_TYPES.accepted,
            true,
            'Accepted',
            `included in the routing snapshot${notes.length > 0 ? `; ${joined(notes)}` : ''}`,
            g,
          )
  // Prefill/decode: ready Pods serve nothing until a decode Pod has a prefill Pod in its group.
  const noPair =
    server?.pd !== undefined &&
    counts.ready > 0 &&
    pairableDecodes(server.endpoints, server.pd).length === 0
  const readyCond =
    accepted.status !== 'True'
      ? cond(CONDITION_TYPES.ready, false, accepted.reason, accepted.message, g)
      : noPair
        ? cond(
            CONDITION_TYPES.ready,
            false,
            'NoReadyPair',
            `no ready decode pod has a ready prefill pod with the same ${server?.pd?.groupKey} label`,
            g,
          )
        : counts.ready === 0
          ? cond(
              CONDITION_TYPES.ready,
              false,
              'NoReadyEndpoints',
              `0 of ${counts.total} selected pod(s) ready`,
              g,
            )
          : cond(
              CONDITION_TYPES.ready,
              true,
              'Ready',
              `${counts.ready} of ${counts.total} selected pod(s) ready`,
              g,
            )

  const status: ModelServerStatus = {
    observedGeneration: g,
    conditions: withTransitionTimes([accepted, readyCond], existingConditions(subject.status), now),
    readyEndpoints: counts.ready,
    totalEndpoints: counts.total,
    endpoints: `${counts.ready}/${counts.total}`,
  }
  const sv = snapshotVersionFor(subject, view, included)
  return sv === undefined ? status : { ...status, snapshotVersion: sv }
}

export function same(a: unknown, b: unknown): boolean {
  if (a === b) return true
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false
  if (Array.isArray(a) !== Array.isArray(b)) return false
  const ka = Object.keys(a)
  const kb = Object.keys(b)
  if (ka.length !== kb.length) return false
  return ka.every((k) => same((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]))
}

/** Fields of ours that a status may hold; absent from `desired` means "remove". */
const OWNED_FIELDS = [
  'observedGeneration',
  'conditions',
  'readyEndpoints',
  'totalEndpoints',
  'targets',
  'endpoints',
  'resolvedTargets',
  'snapshotVersion',
] as const

/**
 * The merge patch body `{status}` that turns `existing` into `desired`, or undefined when they
 * already agree on every field we own (fields written by others are left alone).
 */
export function statusPatch(
  existing: unknown,
  desired: ModelRouteStatus | ModelServerStatus,
): { status: Record<string, unknown> } | undefined {
  const old = (typeof existing === 'object' && existing !== null ? existing : {}) as Record<
    string,
    unknown
  >
  const want = desired as Record<string, unknown>
  const patch: Record<string, unknown> = {}
  for (const f of OWNED_FIELDS) {
    const w = want[f]
    if (w === undefined) {
      if (old[f] !== undefined) patch[f] = null
    } else if (!same(old[f], w)) {
      patch[f] = w
    }
  }
  return Object.keys(patch).length === 0 ? undefined : { status: patch }
}

export interface Transition {
  readonly type: string
  readonly from: string | undefined
  readonly to: string
  readonly reason: string
  readonly message: string
}

/** Conditions whose status changed (or appeared): what Events are emitted for. */
export function transitions(
  existing: unknown,
  desired: { conditions?: Condition[] | undefined },
): Transition[] {
  const old = existingConditions(existing)
  const out: Transition[] = []
  for (const c of desired.conditions ?? []) {
    const before = old.find((o) => o.type === c.type)
    if (before?.status === c.status) continue
    out.push({
      type: c.type,
      from: before?.status,
      to: c.status,
      reason: c.reason,
      message: c.message,
    })
  }
  return out
}
