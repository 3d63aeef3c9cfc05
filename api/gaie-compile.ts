// InferencePools, InferenceObjectives and HTTPRoutes → snapshot servers and routes. Part of the
// pure compiler (compile.ts calls it): deterministic, never throws, and leaves out what it cannot
// serve with a Diagnostic saying why (the operator turns those into status conditions).
//
// An InferencePool becomes a server keyed `InferencePool:ns/name` with one endpoint per Ready pod
// and target port (`pod` with one port, `pod:port` with several: data-parallel ranks are distinct
// endpoints). An HTTPRoute whose backends are InferencePools becomes a route that claims every
// model (`anyModel`): GAIE gateways route by path and headers, and the model in the body goes to
// the pool unchanged.

import {
  admit,
  compileScheduler,
  compileTrafficPolicy,
  DEFAULT_NAMESPACE,
  type Diagnostic,
  type EndpointInput,
} from './compile.js'
import {
  ENGINE_ANNOTATION,
  GATEWAY_API_GROUP,
  type HTTPRoute,
  type HTTPRouteMatch,
  type InferenceObjective,
  type InferencePool,
  isInferencePoolRef,
  OBJECTIVE_API_VERSIONS,
  SCHEDULER_ANNOTATION,
  validateHTTPRoute,
  validateInferenceObjective,
  validateInferencePool,
} from './gaie.js'
import { regexProblem } from './regex.js'
import { schedulerSchema } from './schema.js'
import {
  httpRouteKey,
  type InferenceEngine,
  inferencePoolKey,
  type SnapshotEndpoint,
  type SnapshotHeaderMatch,
  type SnapshotMatch,
  type SnapshotRoute,
  type SnapshotRule,
  type SnapshotServer,
  type SnapshotStringMatch,
  type SnapshotTarget,
} from './snapshot.js'
import { formatIssue, formatPath, validateWith } from './validate.js'

const ENGINES: readonly InferenceEngine[] = ['vLLM', 'SGLang', 'TGI', 'TensorRT-LLM', 'Generic']

export interface GaieCompileInput {
  readonly inferencePools?: readonly unknown[]
  readonly objectives?: readonly unknown[]
  readonly httpRoutes?: readonly unknown[]
  /**
   * When set ("namespace/name"), only HTTPRoutes with this Gateway among their parentRefs are
   * compiled (the operator's `--gateway`): routes of other Gateways are not ours to serve.
   */
  readonly gateway?: string
}

export interface CompiledPools {
  /** By `inferencePoolKey`. */
  readonly servers: Map<string, SnapshotServer>
  /** Pools that exist but cannot be served, by key → why (for route diagnostics). */
  readonly unsupported: Map<string, string>
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}

function nsOf(meta: { namespace?: string | undefined }): string {
  return meta.namespace ?? DEFAULT_NAMESPACE
}

// ---------------------------------------------------------------------------------------------
// objectives

/** pool key → objective name → priority; llm-d.ai's object wins over a legacy one of that name. */
function compileObjectives(
  objects: readonly unknown[],
  diagnostics: Diagnostic[],
): Map<string, Map<string, number>> {
  const legacyVersion = OBJECTIVE_API_VERSIONS[1]
  const isLegacy = (o: unknown) =>
    typeof o === 'object' &&
    o !== null &&
    (o as { apiVersion?: unknown }).apiVersion === legacyVersion
  const current = admit(
    'InferenceObjective',
    objects.filter((o) => !isLegacy(o)),
    validateInferenceObjective,
    diagnostics,
  )
  const legacy = admit(
    'InferenceObjective',
    objects.filter(isLegacy),
    validateInferenceObjective,
    diagnostics,
  )
  const all: [string, InferenceObjective][] = [...current]
  for (const [key, o] of legacy) {
    if (current.has(key)) {
      diagnostics.push({
        kind: 'InferenceObjective',
        key,
        severity: 'warning',
        reason: 'Superseded',
        message: `the ${legacyVersion} object is ignored: an llm-d.ai one of the same name exists`,
      })
      continue
    }
    all.push([key, o])
  }
  const out = new Map<string, Map<string, number>>()
  for (const [key, o] of all.sort((a, b) => cmp(a[0], b[0]))) {
    const ref = o.spec.poolRef
    if (!isInferencePoolRef(ref, { group: 'inference.networking.k8s.io', kind: 'InferencePool' })) {
      diagnostics.push({
        kind: 'InferenceObjective',
        key,
        severity: 'error',
        reason: 'Unsupported',
        path: 'spec.poolRef',
        message: `spec.poolRef must name an inference.networking.k8s.io InferencePool, not ${ref.group ?? ''} ${ref.kind ?? ''}`,
      })
      continue
    }
    const pool = inferencePoolKey(nsOf(o.metadata), ref.name)
    let m = out.get(pool)
    if (m === undefined) {
      m = new Map()
      out.set(pool, m)
    }
    m.set(o.metadata.name, o.spec.priority ?? 0)
  }
  return out
}

// ---------------------------------------------------------------------------------------------
// pools

/** The named engine; undefined = none named (vLLM assumed, detected from /metrics at run time). */
function poolEngine(
  key: string,
  p: InferencePool,
  diagnostics: Diagnostic[],
): InferenceEngine | undefined {
  const raw = p.metadata.annotations?.[ENGINE_ANNOTATION] ?? p.metadata.labels?.[ENGINE_ANNOTATION]
  if (raw === undefined) return undefined
  const found = ENGINES.find((e) => e.toLowerCase() === raw.toLowerCase())
  if (found !== undefined) return found
  diagnostics.push({
    kind: 'InferencePool',
    key,
    severity: 'warning',
    reason: 'InvalidEngine',
    path: `metadata.annotations["${ENGINE_ANNOTATION}"]`,
    message: `unknown engine "${raw}" (expected ${ENGINES.join(', ')}); read from the pods' /metrics instead`,
  })
  return undefined
}

function poolScheduler(
  key: string,
  p: InferencePool,
  diagnostics: Diagnostic[],
): SnapshotServer['scheduler'] {
  const raw = p.metadata.annotations?.[SCHEDULER_ANNOTATION]
  if (raw === undefined) return undefined
  const path = `metadata.annotations["${SCHEDULER_ANNOTATION}"]`
  let parsed: unknown
  try {
    parsed = JSON.parse(raw)
  } catch (e) {
    diagnostics.push({
      kind: 'InferencePool',
      key,
      severity: 'warning',
      reason: 'InvalidScheduler',
      path,
      message: `not JSON (${e instanceof Error ? e.message : String(e)}); the default profile is used`,
    })
    return undefined
  }
  const r = validateWith(schedulerSchema, parsed)
  if (!r.ok) {
    diagnostics.push({
      kind: 'InferencePool',
      key,
      severity: 'warning',
      reason: 'InvalidScheduler',
      path,
      message: `${r.issues.map(formatIssue).join('; ')}; the default profile is used`,
    })
    return undefined
  }
  return compileScheduler(r.value)
}

function sortedRecord<V>(entries: Iterable<[string, V]>): Record<string, V> {
  const out: Record<string, V> = {}
  for (const [k, v] of [...entries].sort((a, b) => cmp(a[0], b[0]))) out[k] = v
  return out
}

/**
 * `endpoints` holds the pool's pods by `inferencePoolKey` (the operator's Ready pods, or a
 * StaticEndpoints document with `targetKind: InferencePool`). A pod without a port gets one
 * endpoint per target port; one with a port gets that one only.
 */
export function compileInferencePools(
  input: GaieCompileInput,
  endpoints: Readonly<Record<string, readonly EndpointInput[]>>,
  diagnostics: Diagnostic[],
): CompiledPools {
  const objectives = compileObjectives(input.objectives ?? [], diagnostics)
  const valid = admit(
    'InferencePool',
    input.inferencePools ?? [],
    validateInferencePool,
    diagnostics,
  )
  const servers = new Map<string, SnapshotServer>()
  const unsupported = new Map<string, string>()
  for (const rawKey of [...valid.keys()].sort()) {
    const p = valid.get(rawKey)
    if (p === undefined) continue
    const namespace = nsOf(p.metadata)
    const name = p.metadata.name
    const key = inferencePoolKey(namespace, name)
    if (p.spec.appProtocol === 'kubernetes.io/h2c') {
      const why = 'spec.appProtocol kubernetes.io/h2c (the data plane speaks HTTP/1.1 to engines)'
      unsupported.set(key, why)
      diagnostics.push({
        kind: 'InferencePool',
        key: rawKey,
        severity: 'error',
        reason: 'Unsupported',
        path: 'spec.appProtocol',
        message: `${why} is not supported; the pool is not served`,
      })
      continue
    }
    const ports = p.spec.targetPorts.map((t) => t.number)
    const eps: SnapshotEndpoint[] = []
    for (const e of endpoints[key] ?? []) {
      const labels = sortedRecord(Object.entries(e.labels ?? {}))
      const own = e.port !== undefined ? [e.port] : ports
      for (const port of own)
        eps.push({
          name: own.length > 1 ? `${e.name}:${port}` : e.name,
          address: e.address,
          port,
          ready: e.ready,
          labels,
        })
    }
    eps.sort((a, b) => cmp(a.name, b.name) || cmp(a.address, b.address) || a.port - b.port)
    const unique = eps.filter((e, i) => i === 0 || eps[i - 1]?.name !== e.name)
    if (unique.length !== eps.length)
      diagnostics.push({
        kind: 'InferencePool',
        key: rawKey,
        severity: 'warning',
        reason: 'DuplicateEndpointName',
        message: 'an endpoint name appears more than once; only the first is used',
      })
    const epp = p.spec.endpointPickerRef
    const scheduler = poolScheduler(rawKey, p, diagnostics)
    const engine = poolEngine(rawKey, p, diagnostics)
    servers.set(key, {
      key,
      namespace,
      name,
      // No engine named: vLLM's metric names (GAIE's own default mapping) until a scrape shows
      // the engine's (engineDetect).
      engine: engine ?? 'vLLM',
      protocol: 'http',
      port: ports[0] ?? 0,
      trafficPolicy: compileTrafficPolicy(undefined),
      endpoints: unique,
      ...(scheduler !== undefined ? { scheduler } : {}),
      inferencePool: {
        targetPorts: ports,
        selector: sortedRecord(Object.entries(p.spec.selector.matchLabels)),
        ...(epp !== undefined
          ? {
              endpointPicker: {
                group: epp.group ?? '',
                kind: epp.kind ?? 'Service',
                name: epp.name,
                ...(epp.port !== undefined ? { port: epp.port.number } : {}),
                failureMode: epp.failureMode ?? 'FailClose',
              },
            }
          : {}),
        objectives: sortedRecord(objectives.get(key) ?? []),
        ...(engine === undefined ? { engineDetect: true as const } : {}),
      },
    })
  }
  for (const [pool, names] of objectives) {
    if (servers.has(pool) || unsupported.has(pool)) continue
    for (const n of [...names.keys()].sort())
      diagnostics.push({
        kind: 'InferenceObjective',
        key: `${pool.slice(pool.indexOf(':') + 1, pool.indexOf('/'))}/${n}`,
        severity: 'warning',
        reason: 'InferencePoolNotFound',
        path: 'spec.poolRef.name',
        message: `spec.poolRef refers to inferencepool "${pool.slice(pool.indexOf('/') + 1)}" which does not exist`,
      })
  }
  return { servers, unsupported }
}

// ---------------------------------------------------------------------------------------------
// HTTPRoutes

/** The Gateways ("ns/name", sorted) among a route's parentRefs. */
export function httpRouteGateways(route: HTTPRoute): string[] {
  const ns = nsOf(route.metadata)
  const out = new Set<string>()
  for (const p of route.spec.parentRefs ?? []) {
    if ((p.group ?? GATEWAY_API_GROUP) !== GATEWAY_API_GROUP || (p.kind ?? 'Gateway') !== 'Gateway')
      continue
    out.add(`${p.namespace ?? ns}/${p.name}`)
  }
  return [...out].sort()
}

type MatchResult = { ok: true; match: SnapshotMatch } | { ok: false; reason: string }

function compileRouteMatch(m: HTTPRouteMatch): MatchResult {
  if ((m.queryParams?.length ?? 0) > 0) return { ok: false, reason: 'queryParams are not matched' }
  // The inference API is POST only: a match on another method can never be met here.
  if (m.method !== undefined && m.method !== 'POST')
    return { ok: false, reason: `method ${m.method} is never served (inference requests are POST)` }
  const type = m.path?.type ?? 'PathPrefix'
  const value = m.path?.value ?? '/'
  let uri: SnapshotStringMatch
  if (type === 'Exact') uri = { kind: 'exact', value }
  else if (type === 'PathPrefix') uri = { kind: 'path-prefix', value }
  else {
    const why = regexProblem(value)
    if (why !== undefined) return { ok: false, reason: `path regex: ${why}` }
    // Gateway API regexes match the whole path.
    uri = { kind: 'regex', value: `^(?:${value})$` }
  }
  const headers: SnapshotHeaderMatch[] = []
  const seen = new Set<string>()
  for (const h of m.headers ?? []) {
    const name = h.name.toLowerCase()
    // Gateway API: with repeated names only the first entry counts.
    if (seen.has(name)) continue
    seen.add(name)
    if ((h.type ?? 'Exact') === 'Exact')
      headers.push({ name, match: { kind: 'exact', value: h.value } })
    else {
      const why = regexProblem(h.value)
      if (why !== undefined) return { ok: false, reason: `header ${h.name} regex: ${why}` }
      headers.push({ name, match: { kind: 'regex', value: `^(?:${h.value})$` } })
    }
  }
  headers.sort((a, b) => cmp(a.name, b.name))
  const match: SnapshotMatch =
    uri.kind === 'path-prefix' && (uri.value === '/' || uri.value === '') && headers.length === 0
      ? { headers }
      : { headers, uri }
  return { ok: true, match }
}

export function compileHTTPRoutes(
  input: GaieCompileInput,
  pools: CompiledPools,
  diagnostics: Diagnostic[],
): SnapshotRoute[] {
  const valid = admit('HTTPRoute', input.httpRoutes ?? [], validateHTTPRoute, diagnostics)
  const ordered = [...valid.entries()]
    .map(([key, route]) => {
      const ts = route.metadata.creationTimestamp
      return { key, route, created: ts === undefined ? Number.POSITIVE_INFINITY : Date.parse(ts) }
    })
    .sort((a, b) => (a.created === b.created ? cmp(a.key, b.key) : a.created < b.created ? -1 : 1))
  const out: SnapshotRoute[] = []
  for (const { key, route } of ordered) {
    const r = compileHTTPRoute(key, route, input.gateway, pools, diagnostics)
    if (r !== undefined) out.push(r)
  }
  return out
}

function compileHTTPRoute(
  key: string,
  route: HTTPRoute,
  gateway: string | undefined,
  pools: CompiledPools,
  diagnostics: Diagnostic[],
): SnapshotRoute | undefined {
  const parents = httpRouteGateways(route)
  const gateways = gateway === undefined ? parents : parents.filter((g) => g === gateway)
  // Not bound to us (or to no Gateway at all): another gateway's route, silently not ours.
  if (gateways.length === 0) return undefined
  const ns = nsOf(route.metadata)
  const diag = (severity: Diagnostic['severity'], reason: string, path: string, message: string) =>
    diagnostics.push({ kind: 'HTTPRoute', key, severity, reason, path, message })
  if ((route.spec.hostnames?.length ?? 0) > 0)
    diag(
      'warning',
      'Unsupported',
      'spec.hostnames',
      'spec.hostnames are not matched: every host is served',
    )
  const rules: SnapshotRule[] = []
  const usesPool = (route.spec.rules ?? []).some((rule) =>
    (rule.backendRefs ?? []).some((b) => isInferencePoolRef(b, { group: '', kind: 'Service' })),
  )
  // A route with no InferencePool backend at all belongs to plain Gateway API traffic.
  if (!usesPool) return undefined
  ;(route.spec.rules ?? []).forEach((rule, r) => {
    const targets: SnapshotTarget[] = []
    ;(rule.backendRefs ?? []).forEach((b, i) => {
      const path = formatPath(['spec', 'rules', r, 'backendRefs', i])
      if (!isInferencePoolRef(b, { group: '', kind: 'Service' })) {
        diag(
          'error',
          'InvalidKind',
          path,
          `${path}: only inference.networking.k8s.io InferencePool backends are served, not ${b.group ?? 'core'} ${b.kind ?? 'Service'}`,
        )
        return
      }
      if ((b.namespace ?? ns) !== ns) {
        diag(
          'error',
          'RefNotPermitted',
          `${path}.namespace`,
          `${path}: InferencePool "${b.namespace}/${b.name}" is in another namespace (ReferenceGrant is not supported)`,
        )
        return
      }
      const pool = inferencePoolKey(ns, b.name)
      const why = pools.unsupported.get(pool)
      if (why !== undefined) {
        diag('error', 'Unsupported', path, `${path}: inferencepool "${b.name}" uses ${why}`)
        return
      }
      if (!pools.servers.has(pool)) {
        diag(
          'error',
          'BackendNotFound',
          path,
          `${path} refers to inferencepool "${b.name}" which does not exist`,
        )
        return
      }
      targets.push({ server: pool, weight: b.weight ?? 1 })
    })
    if (targets.length === 0 || targets.every((t) => t.weight === 0)) return
    if ((rule.filters?.length ?? 0) > 0)
      diag(
        'warning',
        'Unsupported',
        formatPath(['spec', 'rules', r, 'filters']),
        'filters are ignored',
      )
    const matches = rule.matches === undefined || rule.matches.length === 0 ? [{}] : rule.matches
    const base = rule.name ?? `rule-${r}`
    matches.forEach((m, j) => {
      const c = compileRouteMatch(m)
      if (!c.ok) {
        const path = formatPath(['spec', 'rules', r, 'matches', j])
        diag('warning', 'Unsupported', path, `${path}: ${c.reason}; this match is not served`)
        return
      }
      rules.push({
        name: matches.length > 1 ? `${base}/match-${j}` : base,
        ...(c.match.uri !== undefined || c.match.headers.length > 0 ? { match: c.match } : {}),
        targets,
      })
    })
  })
  if (rules.length === 0) {
    diagnostics.push({
      kind: 'HTTPRoute',
      key,
      severity: 'error',
      reason: 'NoUsableRules',
      message: 'no rule has a usable InferencePool backend; the route is not served',
    })
    return undefined
  }
  return {
    key: httpRouteKey(ns, route.metadata.name),
    namespace: ns,
    name: route.metadata.name,
    gateways,
    anyModel: true,
    loraAdapters: [],
    creationTimestamp: route.metadata.creationTimestamp ?? '',
    rules,
  }
}
