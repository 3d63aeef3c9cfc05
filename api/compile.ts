// The pure compiler: ModelRoutes + ModelServers + endpoints → one RoutingSnapshot. Both the
// operator and the standalone data plane call it. It is deterministic (no clock, no randomness,
// no dependence on input order) so every operator replica produces byte-identical snapshots, and
// it never throws on bad objects: it leaves them out and says why in a Diagnostic.

import { canonicalCopy } from './canonical-json.js'
import { parseDuration } from './duration.js'
import { compileHTTPRoutes, compileInferencePools, type GaieCompileInput } from './gaie-compile.js'
import {
  checkRouteAccess,
  compileAuthorization,
  compilePolicies,
  compileRouteTierLimits,
} from './policy-compile.js'
import {
  DEFAULT_ANTHROPIC_MAX_TOKENS,
  DEFAULT_ANTHROPIC_VERSION,
  DEFAULT_AUTH,
  DEFAULT_AZURE_API_VERSION,
  type ExternalModelProvider,
  effectiveBaseURL,
  privateAddressProblem,
  secretFileName,
  validateExternalModelProvider,
} from './provider.js'
import type {
  ModelRoute,
  ModelServer,
  ParentReference,
  Scheduler,
  StringMatch,
  TrafficPolicy,
} from './schema.js'
import {
  DEFAULT_RETRY,
  DEFAULT_TIMEOUTS,
  type InferenceEngine,
  inferencePoolKey,
  type PdConnector,
  type RoutingSnapshot,
  type SchedulerArgValue,
  SNAPSHOT_SCHEMA_VERSION,
  type SnapshotEndpoint,
  type SnapshotFallback,
  type SnapshotMatch,
  type SnapshotPd,
  type SnapshotProvider,
  type SnapshotRoute,
  type SnapshotRule,
  type SnapshotScheduler,
  type SnapshotServer,
  type SnapshotStringMatch,
  type SnapshotTarget,
  type SnapshotTargetRef,
  type SnapshotTrafficPolicy,
} from './snapshot.js'
import { snapshotHash } from './snapshot-validate.js'
import { formatIssue, formatPath, validateModelRoute, validateModelServer } from './validate.js'

export { SnapshotInvalidError, snapshotHash, validateSnapshot } from './snapshot-validate.js'

export interface EndpointInput {
  name: string
  address: string
  port?: number
  ready: boolean
  labels?: Record<string, string>
}

export interface CompileInput extends GaieCompileInput {
  routes: readonly unknown[]
  servers: readonly unknown[]
  /**
   * Keyed by "namespace/name" of the ModelServer the endpoints belong to, or by
   * `inferencePoolKey` for an InferencePool's pods.
   */
  endpoints: Readonly<Record<string, readonly EndpointInput[]>>
  version: number
  /** GatewayPolicy objects (ours); at most one applies. */
  policies?: readonly unknown[]
  /** ExternalModelProvider objects. */
  providers?: readonly unknown[]
  /**
   * Accept provider baseURLs on loopback/link-local addresses (provider.ts
   * `privateAddressProblem`). Off by default; tests and sidecar setups opt in.
   */
  allowPrivateProviderAddresses?: boolean
}

export interface Diagnostic {
  kind:
    | 'ModelRoute'
    | 'ModelServer'
    | 'GatewayPolicy'
    | 'ExternalModelProvider'
    | 'InferencePool'
    | 'InferenceObjective'
    | 'HTTPRoute'
  /** "namespace/name" */
  key: string
  severity: 'error' | 'warning'
  /** CamelCase, e.g. ModelServerNotFound, Invalid, DuplicateModelName. */
  reason: string
  message: string
  path?: string
}

export interface CompileResult {
  snapshot: RoutingSnapshot
  diagnostics: Diagnostic[]
}

export const DEFAULT_NAMESPACE = 'default'

/** Kthena's default `retryInterval`. */
const DEFAULT_RETRY_INTERVAL_MS = 100

function namespaceOf(meta: { namespace?: string | undefined }): string {
  return meta.namespace ?? DEFAULT_NAMESPACE
}

/** Best-effort key of an object that failed validation, so its diagnostic can still be filed. */
function rawKey(obj: unknown): string {
  const meta =
    typeof obj === 'object' && obj !== null ? (obj as { metadata?: unknown }).metadata : undefined
  const m: { namespace?: unknown; name?: unknown } =
    typeof meta === 'object' && meta !== null ? meta : {}
  const ns = typeof m.namespace === 'string' ? m.namespace : DEFAULT_NAMESPACE
  const name = typeof m.name === 'string' ? m.name : '<unnamed>'
  return `${ns}/${name}`
}

/**
 * Validate every object; keep the valid ones keyed by ns/name. Objects that share a key cannot
 * come from one API server; if a caller passes them anyway, keeping either would depend on input
 * order, so both are dropped.
 */
export function admit<T extends { metadata: { name: string; namespace?: string | undefined } }>(
  kind: Diagnostic['kind'],
  objects: readonly unknown[],
  validate: (
    o: unknown,
  ) =>
    | { ok: true; value: T }
    | { ok: false; issues: { path: string; message: string; code: string }[] },
  diagnostics: Diagnostic[],
): Map<string, T> {
  const out = new Map<string, T>()
  const dup = new Set<string>()
  for (const obj of objects) {
    const r = validate(obj)
    if (!r.ok) {
      const first = r.issues[0]
      const diag: Diagnostic = {
        kind,
        key: rawKey(obj),
        severity: 'error',
        reason: 'Invalid',
        message: r.issues.map(formatIssue).join('; '),
      }
      if (first !== undefined && first.path !== '') diag.path = first.path
      diagnostics.push(diag)
      continue
    }
    const key = `${namespaceOf(r.value.metadata)}/${r.value.metadata.name}`
    if (out.has(key)) dup.add(key)
    else out.set(key, r.value)
  }
  for (const key of [...dup].sort()) {
    out.delete(key)
    diagnostics.push({
      kind,
      key,
      severity: 'error',
      reason: 'DuplicateName',
      message: `more than one ${kind.toLowerCase()} named "${key}" was given; all were ignored`,
    })
  }
  return out
}

// ---------------------------------------------------------------------------------------------
// servers

function durationMs(s: string | undefined, fallback: number): number {
  // Sub-millisecond parts round up so a tiny non-zero timeout never becomes 0 ("unbounded").
  return s === undefined ? fallback : Math.ceil(parseDuration(s))
}

export function compileTrafficPolicy(tp: TrafficPolicy | undefined): SnapshotTrafficPolicy {
  const t = tp?.timeouts
  const timeouts = {
    connectMs: durationMs(t?.connect, DEFAULT_TIMEOUTS.connectMs),
    // Kthena's single `timeout` bounds dial + send + response headers: our responseHeader.
    responseHeaderMs: durationMs(
      t?.responseHeader ?? tp?.timeout,
      DEFAULT_TIMEOUTS.responseHeaderMs,
    ),
    idleMs: durationMs(t?.idle, DEFAULT_TIMEOUTS.idleMs),
    requestMs: durationMs(t?.request, DEFAULT_TIMEOUTS.requestMs),
  }
  const r = tp?.retry
  if (r === undefined)
    return { timeouts, retry: { ...DEFAULT_RETRY, retryOn: [...DEFAULT_RETRY.retryOn] } }
  const retryOn = r.retryOn === undefined ? [...DEFAULT_RETRY.retryOn] : [...new Set(r.retryOn)]
  return {
    timeouts,
    retry: {
      // Kthena counts retries after the first try; the snapshot counts tries.
      attempts: r.attempts + 1,
      intervalMs: durationMs(r.retryInterval, DEFAULT_RETRY_INTERVAL_MS),
      maxIntervalMs: durationMs(r.maxRetryInterval, DEFAULT_RETRY.maxIntervalMs),
      retryOn,
    },
  }
}

/** Duration arguments per plugin; the snapshot carries them as `<name>Ms`. */
const DURATION_ARGS: Readonly<Record<string, readonly string[]>> = {
  'session-affinity': ['ttl'],
  fairness: ['queueTimeout'],
}

export function compileScheduler(s: Scheduler, engine?: InferenceEngine): SnapshotScheduler {
  return {
    plugins: s.plugins.map((p) => {
      const durations = DURATION_ARGS[p.name] ?? []
      const args: Record<string, SchedulerArgValue> = {}
      for (const [k, v] of Object.entries(p.args ?? {})) {
        if (v === undefined) continue
        if (durations.includes(k) && typeof v === 'string') args[`${k}Ms`] = durationMs(v, 0)
        else args[k] = v as SchedulerArgValue
      }
      // kv-cache follows the server's engine's event hashing unless told otherwise.
      if (p.name === 'kv-cache' && args['engine'] === undefined && engine === 'SGLang')
        args['engine'] = 'sglang'
      // Admission-only plugins carry weight 0 so "weight > 0" means "scores".
      const weight =
        'weight' in p && p.weight !== undefined ? p.weight : p.name === 'fairness' ? 0 : 1
      return { name: p.name, weight, args }
    }),
  }
}

function sortedLabels(labels: Record<string, string> | undefined): Record<string, string> {
  const out: Record<string, string> = {}
  for (const k of Object.keys(labels ?? {}).sort()) {
    const v = labels?.[k]
    if (v !== undefined) out[k] = v
  }
  return out
}

/**
 * Fields we parse but cannot serve: the mooncake connector (its transfer engine needs a metadata
 * service the gateway does not drive). Serving such a pair as a load-balanced pool would look
 * healthy and be wrong, so the server is refused, naming the field.
 */
function unsupportedServerField(ms: ModelServer): { path: string; what: string } | undefined {
  if (ms.spec.workloadSelector.pdGroup !== undefined && ms.spec.kvConnector?.type === 'mooncake')
    return { path: 'spec.kvConnector.type', what: 'kvConnector type "mooncake"' }
  return undefined
}

/** pdGroup → the snapshot's pairing; the connector defaults as Kthena's (SGLang → sglang). */
function compilePd(ms: ModelServer): SnapshotPd | undefined {
  const g = ms.spec.workloadSelector.pdGroup
  if (g === undefined) return undefined
  const t = ms.spec.kvConnector?.type
  const connector: PdConnector =
    t === undefined || t === 'mooncake'
      ? ms.spec.inferenceEngine === 'SGLang'
        ? 'sglang'
        : 'http'
      : t
  return {
    groupKey: g.groupKey,
    prefillLabels: sortedLabels(g.prefillLabels),
    decodeLabels: sortedLabels(g.decodeLabels),
    connector,
  }
}

function compileServer(
  key: string,
  ms: ModelServer,
  endpoints: readonly EndpointInput[],
  diagnostics: Diagnostic[],
): SnapshotServer {
  const port = ms.spec.workloadPort.port
  const eps: SnapshotEndpoint[] = endpoints
    .map((e) => ({
      name: e.name,
      address: e.address,
      port: e.port ?? port,
      ready: e.ready,
      labels: sortedLabels(e.labels),
    }))
    .sort((a, b) => cmp(a.name, b.name) || cmp(a.address, b.address) || a.port - b.port)
  // Endpoint names are scheduling identities; two endpoints with one name would share state.
  const unique: SnapshotEndpoint[] = []
  for (const e of eps) {
    if (unique.at(-1)?.name === e.name) {
      diagnostics.push({
        kind: 'ModelServer',
        key,
        severity: 'warning',
        reason: 'DuplicateEndpointName',
        message: `endpoint name "${e.name}" appears more than once; only the first is used`,
      })
      continue
    }
    unique.push(e)
  }
  const [namespace = DEFAULT_NAMESPACE, name = ''] = key.split('/')
  const server: SnapshotServer = {
    key,
    namespace,
    name,
    ...(ms.spec.model !== undefined ? { model: ms.spec.model } : {}),
    engine: ms.spec.inferenceEngine,
    protocol: ms.spec.workloadPort.protocol,
    port,
    trafficPolicy: compileTrafficPolicy(ms.spec.trafficPolicy),
    endpoints: unique,
    ...(ms.spec.scheduler !== undefined
      ? { scheduler: compileScheduler(ms.spec.scheduler, ms.spec.inferenceEngine) }
      : {}),
  }
  const pd = compilePd(ms)
  if (pd !== undefined) return { ...server, pd }
  if (ms.spec.kvConnector !== undefined) {
    diagnostics.push({
      kind: 'ModelServer',
      key,
      severity: 'warning',
      reason: 'Unsupported',
      path: 'spec.kvConnector',
      message:
        'spec.kvConnector has no effect without spec.workloadSelector.pdGroup; every Pod serves whole requests',
    })
  }
  return server
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}

// ---------------------------------------------------------------------------------------------
// routes

function compileStringMatch(m: StringMatch): SnapshotStringMatch {
  // Validation guarantees exactly one is set.
  if (m.exact !== undefined) return { kind: 'exact', value: m.exact }
  if (m.prefix !== undefined) return { kind: 'prefix', value: m.prefix }
  return { kind: 'regex', value: m.regex ?? '' }
}

function compileMatch(
  m: NonNullable<ModelRoute['spec']['rules'][number]['modelMatch']>,
): SnapshotMatch {
  const headers = Object.entries(m.headers ?? {})
    .map(([name, sm]) => ({ name: name.toLowerCase(), match: compileStringMatch(sm) }))
    .sort((a, b) => cmp(a.name, b.name))
  return {
    headers,
    ...(m.uri !== undefined ? { uri: compileStringMatch(m.uri) } : {}),
    ...(m.body?.model !== undefined ? { bodyModel: m.body.model } : {}),
  }
}

interface OrderedRoute {
  key: string
  route: ModelRoute
  /** ms since epoch; missing timestamps sort last. */
  created: number
  createdText: string
}

function compileRoute(
  { key, route, createdText }: OrderedRoute,
  servers: ReadonlyMap<string, SnapshotServer>,
  unsupported: ReadonlyMap<string, string>,
  providers: ReadonlyMap<string, SnapshotProvider>,
  diagnostics: Diagnostic[],
): SnapshotRoute | undefined {
  const ns = namespaceOf(route.metadata)
  const rules: SnapshotRule[] = []
  /** A target reference resolved in the route's namespace, or a diagnostic and undefined. */
  const resolve = (
    t: {
      modelServerName?: string | undefined
      externalModelProviderName?: string | undefined
      inferencePoolName?: string | undefined
    },
    path: string,
  ): SnapshotTargetRef | undefined => {
    if (t.inferencePoolName !== undefined && t.inferencePoolName !== '') {
      const poolKey = inferencePoolKey(ns, t.inferencePoolName)
      if (servers.has(poolKey)) return { server: poolKey }
      const why = unsupported.get(poolKey)
      diagnostics.push({
        kind: 'ModelRoute',
        key,
        severity: 'error',
        reason: why !== undefined ? 'Unsupported' : 'InferencePoolNotFound',
        message:
          why !== undefined
            ? `${path} refers to inferencepool "${t.inferencePoolName}", which uses ${why}`
            : `${path} refers to inferencepool "${t.inferencePoolName}" which does not exist`,
        path,
      })
      return undefined
    }
    if (t.modelServerName === undefined || t.modelServerName === '') {
      const name = t.externalModelProviderName ?? ''
      const providerKey = `${ns}/${name}`
      if (providers.has(providerKey)) return { provider: providerKey }
      diagnostics.push({
        kind: 'ModelRoute',
        key,
        severity: 'error',
        reason: 'ExternalModelProviderNotFound',
        message: `${path} refers to externalmodelprovider "${name}" which does not exist`,
        path,
      })
      return undefined
    }
    const serverKey = `${ns}/${t.modelServerName}`
    if (servers.has(serverKey)) return { server: serverKey }
    const field = unsupported.get(serverKey)
    if (field !== undefined) {
      diagnostics.push({
        kind: 'ModelRoute',
        key,
        severity: 'error',
        reason: 'Unsupported',
        message: `${path} refers to modelserver "${t.modelServerName}", which uses ${field} (not supported)`,
        path,
      })
      return undefined
    }
    diagnostics.push({
      kind: 'ModelRoute',
      key,
      severity: 'error',
      reason: 'ModelServerNotFound',
      message: `${path} refers to modelserver "${t.modelServerName}" which does not exist`,
      path,
    })
    return undefined
  }
  route.spec.rules.forEach((rule, r) => {
    const targets: SnapshotTarget[] = []
    // Weights are all set or none (validated); none → equal weights.
    rule.targetModels.forEach((t, i) => {
      const ref = resolve(t, formatPath(['spec', 'rules', r, 'targetModels', i]))
      if (ref !== undefined) targets.push({ ...ref, weight: t.weight ?? 100 })
    })
    // A rule whose remaining targets all weigh 0 could never be picked; drop it like an empty one.
    if (targets.length === 0 || targets.every((t) => t.weight === 0)) return
    let fallback: SnapshotFallback | undefined
    if (rule.fallback !== undefined) {
      const refs: SnapshotTargetRef[] = []
      rule.fallback.targets.forEach((t, i) => {
        const ref = resolve(t, formatPath(['spec', 'rules', r, 'fallback', 'targets', i]))
        if (ref !== undefined) refs.push(ref)
      })
      if (refs.length > 0) {
        const sat = rule.fallback.saturation
        // `on` absent = every condition; `saturated` only with a threshold to judge it by.
        const on = rule.fallback.on ?? [
          ...FALLBACK_ON_ALL,
          ...(sat !== undefined ? (['saturated'] as const) : []),
        ]
        fallback = {
          targets: refs,
          on: [...new Set(on)].sort(),
          ...(sat !== undefined
            ? {
                saturation: {
                  ...(sat.ttftSLO !== undefined ? { ttftMs: parseDuration(sat.ttftSLO) } : {}),
                  ...(sat.maxQueuePerEndpoint !== undefined
                    ? { maxQueuePerEndpoint: sat.maxQueuePerEndpoint }
                    : {}),
                  ...(sat.tiers !== undefined ? { tiers: [...new Set(sat.tiers)].sort() } : {}),
                },
              }
            : {}),
        }
      }
    }
    rules.push({
      name: rule.name ?? `rule-${r}`,
      ...(rule.modelMatch !== undefined ? { match: compileMatch(rule.modelMatch) } : {}),
      targets,
      ...(fallback !== undefined ? { fallback } : {}),
    })
  })
  if (rules.length === 0) {
    diagnostics.push({
      kind: 'ModelRoute',
      key,
      severity: 'error',
      reason: 'NoUsableRules',
      message: 'no rule has a usable target; the route is not served',
    })
    return undefined
  }
  const spec = route.spec
  const gateways = compileParentRefs(key, ns, spec.parentRefs ?? [], diagnostics)
  if (gateways === undefined) return undefined
  const rl = spec.rateLimit
  return {
    key,
    namespace: ns,
    name: route.metadata.name,
    ...(gateways.length > 0 ? { gateways } : {}),
    ...(spec.modelName !== undefined && spec.modelName !== '' ? { modelName: spec.modelName } : {}),
    loraAdapters: [...(spec.loraAdapters ?? [])],
    creationTimestamp: createdText,
    rules,
    ...(rl !== undefined
      ? {
          rateLimit: {
            unit: rl.unit,
            ...(rl.inputTokensPerUnit !== undefined
              ? { inputTokensPerUnit: rl.inputTokensPerUnit }
              : {}),
            ...(rl.outputTokensPerUnit !== undefined
              ? { outputTokensPerUnit: rl.outputTokensPerUnit }
              : {}),
            ...(rl.global !== undefined
              ? {
                  global:
                    rl.global.redis !== undefined
                      ? { redis: { address: rl.global.redis.address } }
                      : {},
                }
              : {}),
          },
        }
      : {}),
    ...(spec.authorization !== undefined
      ? { authorization: compileAuthorization(spec.authorization) }
      : {}),
    ...(spec.tierLimits !== undefined
      ? { tierLimits: compileRouteTierLimits(spec.tierLimits) }
      : {}),
  }
}

const FALLBACK_ON_ALL = ['no-ready-endpoints', 'connect-failure', '5xx', '429'] as const

// ---------------------------------------------------------------------------------------------
// providers

function decimal(s: string): number {
  return Number(s)
}

function compileProvider(key: string, p: ExternalModelProvider): SnapshotProvider {
  const spec = p.spec
  const [namespace = DEFAULT_NAMESPACE, name = ''] = key.split('/')
  const defaults = DEFAULT_AUTH[spec.providerType]
  const auth = spec.auth
  const scheme = auth?.scheme ?? defaults.scheme
  const headers: Record<string, string> = {}
  for (const k of Object.keys(spec.headers ?? {}).sort((a, b) =>
    cmp(a.toLowerCase(), b.toLowerCase()),
  )) {
    const v = spec.headers?.[k]
    if (v !== undefined) headers[k.toLowerCase()] = v
  }
  const pricing = spec.pricing
  return {
    key,
    namespace,
    name,
    type: spec.providerType,
    ...(spec.model !== undefined && spec.model !== '' ? { model: spec.model } : {}),
    // Validation guarantees a base URL for the types without a public default.
    baseURL: effectiveBaseURL(spec) ?? '',
    insecureSkipVerify: spec.insecureSkipVerify,
    ...(auth !== undefined
      ? {
          credential: {
            scheme,
            header:
              scheme === 'Bearer'
                ? 'authorization'
                : (auth.header ?? defaults.apiKeyHeader).toLowerCase(),
            secretFile: secretFileName(namespace, auth.secretRef.name, auth.secretRef.key),
            secretRef: { name: auth.secretRef.name, key: auth.secretRef.key },
          },
        }
      : {}),
    headers,
    ...(spec.azure !== undefined
      ? {
          azure: {
            deployment: spec.azure.deployment,
            apiVersion: spec.azure.apiVersion ?? DEFAULT_AZURE_API_VERSION,
          },
        }
      : {}),
    ...(spec.providerType === 'HuggingFace'
      ? { huggingFace: { api: spec.huggingFace?.api ?? 'Router' } }
      : {}),
    ...(spec.providerType === 'Anthropic'
      ? {
          anthropic: {
            version: spec.anthropic?.version ?? DEFAULT_ANTHROPIC_VERSION,
            defaultMaxTokens: spec.anthropic?.defaultMaxTokens ?? DEFAULT_ANTHROPIC_MAX_TOKENS,
          },
        }
      : {}),
    ...(spec.providerType === 'Gemini'
      ? { gemini: { apiVersion: spec.gemini?.apiVersion ?? 'v1beta' } }
      : {}),
    ...(pricing !== undefined
      ? {
          pricing: {
            inputPerMillion: decimal(pricing.inputPerMillion),
            outputPerMillion: decimal(pricing.outputPerMillion),
            ...(pricing.cachedInputPerMillion !== undefined
              ? { cachedInputPerMillion: decimal(pricing.cachedInputPerMillion) }
              : {}),
            currency: pricing.currency ?? 'USD',
          },
        }
      : {}),
    trafficPolicy: compileTrafficPolicy(spec.trafficPolicy),
  }
}

/** Oldest first (Kthena "prefer oldest"); no timestamp sorts last; then by key. */
function orderRoutes(routes: ReadonlyMap<string, ModelRoute>): OrderedRoute[] {
  const out: OrderedRoute[] = []
  for (const [key, route] of routes) {
    const ts = route.metadata.creationTimestamp
    const created = ts === undefined ? Number.POSITIVE_INFINITY : Date.parse(ts)
    // Missing timestamps only happen in standalone files; the snapshot carries '' for them.
    out.push({ key, route, created, createdText: ts ?? '' })
  }
  return out.sort((a, b) =>
    a.created === b.created ? cmp(a.key, b.key) : a.created < b.created ? -1 : 1,
  )
}

const GATEWAY_GROUP = 'gateway.networking.k8s.io'

/**
 * parentRefs → the Gateways ("namespace/name", sorted) whose data planes serve the route; [] =
 * unbound (every data plane). A data-plane fleet is one Gateway, so sectionName and port cannot
 * narrow further: said as a warning. Parents that are not Gateways cannot be served: an error.
 */
function compileParentRefs(
  key: string,
  ns: string,
  refs: readonly ParentReference[],
  diagnostics: Diagnostic[],
): string[] | undefined {
  const out = new Set<string>()
  let ok = true
  refs.forEach((p, i) => {
    const path = formatPath(['spec', 'parentRefs', i])
    if ((p.group ?? GATEWAY_GROUP) !== GATEWAY_GROUP || (p.kind ?? 'Gateway') !== 'Gateway') {
      ok = false
      diagnostics.push({
        kind: 'ModelRoute',
        key,
        severity: 'error',
        reason: 'Unsupported',
        path,
        message: `${path}: only ${GATEWAY_GROUP} Gateway parents are supported, not ${p.group ?? GATEWAY_GROUP} ${p.kind ?? 'Gateway'}`,
      })
      return
    }
    for (const field of ['sectionName', 'port'] as const) {
      if (p[field] === undefined) continue
      diagnostics.push({
        kind: 'ModelRoute',
        key,
        severity: 'warning',
        reason: 'Unsupported',
        path: `${path}.${field}`,
        message: `${path}.${field} does not narrow the route: every listener of Gateway "${p.name}" serves it`,
      })
    }
    out.add(`${p.namespace ?? ns}/${p.name}`)
  })
  return ok ? [...out].sort() : undefined
}

/** Two routes meet on a data plane when either is unbound or they share a Gateway. */
function sameGateway(a: SnapshotRoute, b: SnapshotRoute): boolean {
  if (a.gateways === undefined || b.gateways === undefined) return true
  return a.gateways.some((g) => b.gateways?.includes(g))
}

function warnDuplicates(routes: readonly SnapshotRoute[], diagnostics: Diagnostic[]): void {
  // The same model may be claimed once per Gateway: only claims that meet on a data plane clash.
  const owners = new Map<string, SnapshotRoute[]>()
  for (const r of routes) {
    const names = [
      ...new Set([...(r.modelName !== undefined ? [r.modelName] : []), ...r.loraAdapters]),
    ]
    for (const name of names) {
      const claims = owners.get(name) ?? []
      const older = claims.find((o) => sameGateway(o, r))?.key
      claims.push(r)
      owners.set(name, claims)
      if (older === undefined) continue
      diagnostics.push({
        kind: 'ModelRoute',
        key: r.key,
        severity: 'warning',
        reason: 'DuplicateModelName',
        message: `model "${name}" is also claimed by older modelroute "${older}", which takes precedence where its rules match`,
      })
    }
  }
}

// ---------------------------------------------------------------------------------------------

export function compileSnapshot(input: CompileInput): CompileResult {
  const diagnostics: Diagnostic[] = []
  const validServers = admit('ModelServer', input.servers, validateModelServer, diagnostics)
  const validRoutes = admit('ModelRoute', input.routes, validateModelRoute, diagnostics)

  const servers = new Map<string, SnapshotServer>()
  const unsupported = new Map<string, string>()
  for (const key of [...validServers.keys()].sort()) {
    const ms = validServers.get(key)
    if (ms === undefined) continue
    const field = unsupportedServerField(ms)
    if (field !== undefined) {
      unsupported.set(key, field.path)
      diagnostics.push({
        kind: 'ModelServer',
        key,
        severity: 'error',
        reason: 'Unsupported',
        path: field.path,
        message: `${field.path}: ${field.what} is not supported (prefill/decode KV transfer: use nixl, sglang, http or lmcache); the modelserver is not served`,
      })
      continue
    }
    servers.set(key, compileServer(key, ms, input.endpoints[key] ?? [], diagnostics))
  }

  // InferencePools join the servers (keys never collide: `InferencePool:ns/name`), so ModelRoute
  // targets and HTTPRoute backends resolve them the same way.
  const pools = compileInferencePools(input, input.endpoints, diagnostics)
  for (const [k, v] of pools.servers) servers.set(k, v)
  for (const [k, v] of pools.unsupported) unsupported.set(k, v)

  const validProviders = admit(
    'ExternalModelProvider',
    input.providers ?? [],
    validateExternalModelProvider,
    diagnostics,
  )
  const providers = new Map<string, SnapshotProvider>()
  for (const key of [...validProviders.keys()].sort()) {
    const p = validProviders.get(key)
    if (p === undefined) continue
    const why = input.allowPrivateProviderAddresses
      ? undefined
      : privateAddressProblem(effectiveBaseURL(p.spec) ?? '')
    if (why !== undefined) {
      diagnostics.push({
        kind: 'ExternalModelProvider',
        key,
        severity: 'error',
        reason: 'PrivateAddress',
        path: 'spec.baseURL',
        message: `${why}; refused unless the data plane allows it (--allow-private-provider-addresses)`,
      })
      continue
    }
    providers.set(key, compileProvider(key, p))
  }

  const routes: SnapshotRoute[] = []
  for (const ordered of orderRoutes(validRoutes)) {
    const r = compileRoute(ordered, servers, unsupported, providers, diagnostics)
    if (r !== undefined) routes.push(r)
  }
  warnDuplicates(routes, diagnostics)
  routes.push(...compileHTTPRoutes(input, pools, diagnostics))
  const policy = compilePolicies(input.policies ?? [], diagnostics)
  for (const r of routes) checkRouteAccess(r.key, r, policy, diagnostics)

  const content = {
    schemaVersion: SNAPSHOT_SCHEMA_VERSION,
    routes,
    servers: Object.fromEntries(servers),
    ...(policy !== undefined ? { policy } : {}),
    // Only when there are any, so snapshots without providers keep their hashes.
    ...(providers.size > 0 ? { providers: Object.fromEntries(providers) } : {}),
  }
  // Canonical key order makes `JSON.stringify(snapshot)` byte-identical across replicas too.
  const snapshot: RoutingSnapshot = canonicalCopy({
    ...content,
    version: input.version,
    hash: snapshotHash(content),
  })
  diagnostics.sort(
    (a, b) =>
      cmp(a.kind, b.kind) ||
      cmp(a.key, b.key) ||
      cmp(a.path ?? '', b.path ?? '') ||
      cmp(a.reason, b.reason) ||
      cmp(a.message, b.message),
  )
  return { snapshot, diagnostics }
}
