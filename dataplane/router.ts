// Turns a snapshot into a lookup table and answers "which server gets this request?". Built once
// per snapshot (compiled regexes, model maps), so the per-request cost is a map lookup plus the
// few rule checks of the routes that claim the model.

import { compileRegex } from '../api/regex.js'
import type {
  FallbackOn,
  RoutingSnapshot,
  SnapshotMatch,
  SnapshotProvider,
  SnapshotRoute,
  SnapshotRule,
  SnapshotServer,
  SnapshotStringMatch,
  SnapshotTargetRef,
} from '../api/snapshot.js'
import { servedByGateway } from '../api/snapshot.js'

export interface RouteRequest {
  readonly model: string
  readonly path: string
  /** Lower-cased header names. */
  readonly header: (name: string) => string | undefined
}

/** One place a request can go, with the model name to send there. */
export type RouteTarget =
  | { readonly kind: 'server'; readonly server: SnapshotServer; readonly upstreamModel: string }
  | {
      readonly kind: 'provider'
      readonly provider: SnapshotProvider
      readonly upstreamModel: string
    }

/**
 * Every routing decision: the targets to try in order, the weighted pick first. A plain rule (one
 * self-hosted pick, no fallback list) is a chain of one server target; dataplane/serve/ walks
 * both the same way.
 */
export interface ChainDecision {
  readonly route: SnapshotRoute
  readonly rule: SnapshotRule
  readonly isLora: boolean
  /** The weighted pick, then the rule's fallback targets in order (the pick not repeated). */
  readonly targets: readonly RouteTarget[]
  /** Failures that move on to the next target; empty without a fallback list. */
  readonly fallbackOn: ReadonlySet<FallbackOn>
  /**
   * The weighted pick was a self-hosted server and the rule has no fallback list. The access log
   * writes such requests without the chain's fields (`target_kind`, `fallbacks`).
   */
  readonly plain: boolean
}

export type RouteResult =
  | { readonly kind: 'chain'; readonly decision: ChainDecision }
  | { readonly kind: 'unknown-model' }
  | { readonly kind: 'no-rule' }

type Resolved =
  | { readonly kind: 'server'; readonly server: SnapshotServer }
  | { readonly kind: 'provider'; readonly provider: SnapshotProvider }

type StringTest = (s: string) => boolean

interface CompiledRule {
  readonly rule: SnapshotRule
  readonly headers: readonly { readonly name: string; readonly test: StringTest }[]
  readonly uri?: StringTest
  readonly bodyModel?: string
  readonly targets: readonly { readonly target: Resolved; readonly cumulative: number }[]
  readonly totalWeight: number
  /** Resolved fallback targets (unknown keys dropped); empty = no fallback. */
  readonly fallback: readonly Resolved[]
  readonly fallbackOn: ReadonlySet<FallbackOn>
  /** Plain results by picked target for base-model requests: immutable, built once. */
  readonly plainResults: Map<Resolved, RouteResult>
}

interface CompiledRoute {
  readonly route: SnapshotRoute
  readonly rules: readonly CompiledRule[]
}

export interface PublicModel {
  readonly id: string
  readonly created: number
  readonly route: string
}

/** A rule of a route that claims every model (HTTPRoute), in Gateway API precedence order. */
interface AnyModelRule {
  readonly route: SnapshotRoute
  readonly rule: CompiledRule
}

export class RouteTable {
  private readonly byModel = new Map<string, CompiledRoute[]>()
  private readonly byLora = new Map<string, CompiledRoute[]>()
  /** HTTPRoute rules: consulted when no ModelRoute claims the model or none of its rules match. */
  private readonly anyModel: readonly AnyModelRule[]
  readonly models: readonly PublicModel[]
  readonly snapshot: RoutingSnapshot
  private readonly random: () => number

  /**
   * `random` returns [0,1); injectable so weighted splits are testable. `gateway`
   * ("namespace/name"): serve only routes bound to it by parentRefs, or unbound.
   */
  constructor(snapshot: RoutingSnapshot, random: () => number = Math.random, gateway?: string) {
    this.snapshot = snapshot
    this.random = random
    const models = new Map<string, PublicModel>()
    const anyModel: AnyModelRule[] = []
    // Routes arrive in precedence order (oldest first); keeping insertion order preserves it.
    for (const route of snapshot.routes) {
      if (!servedByGateway(route, gateway)) continue
      const compiled = compileRoute(route, snapshot)
      if (compiled.rules.length === 0) continue
      if (route.anyModel === true) {
        for (const rule of compiled.rules) anyModel.push({ route, rule })
        continue
      }
      const created = Math.floor(Date.parse(route.creationTimestamp) / 1000) || 0
      if (route.modelName) {
        push(this.byModel, route.modelName, compiled)
        if (!models.has(route.modelName))
          models.set(route.modelName, { id: route.modelName, created, route: route.key })
      }
      for (const lora of route.loraAdapters) {
        push(this.byLora, lora, compiled)
        if (!models.has(lora)) models.set(lora, { id: lora, created, route: route.key })
      }
    }
    this.models = [...models.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
    // Stable sort: equal precedence keeps the snapshot's order (oldest route first, rule order).
    this.anyModel = anyModel.sort((a, b) => precedence(b.rule) - precedence(a.rule))
  }

  hasModel(model: string): boolean {
    return this.byModel.has(model) || this.byLora.has(model)
  }

  resolve(req: RouteRequest): RouteResult {
    const base = this.byModel.get(req.model)
    const lora = base ? undefined : this.byLora.get(req.model)
    const routes = base ?? lora
    if (!routes) return this.resolveAnyModel(req) ?? { kind: 'unknown-model' }
    const isLora = base === undefined
    for (const r of routes) {
      for (const cr of r.rules) {
        if (!ruleMatches(cr, req)) continue
        return this.decide(r.route, cr, isLora, req)
      }
    }
    return this.resolveAnyModel(req) ?? { kind: 'no-rule' }
  }

  /** The first matching HTTPRoute rule; the model passes through as the client sent it. */
  private resolveAnyModel(req: RouteRequest): RouteResult | undefined {
    for (const a of this.anyModel) {
      if (ruleMatches(a.rule, req)) return this.decide(a.route, a.rule, false, req)
    }
    return undefined
  }

  private decide(
    route: SnapshotRoute,
    cr: CompiledRule,
    isLora: boolean,
    req: RouteRequest,
  ): RouteResult {
    const picked = this.pickTarget(cr)
    const plain = picked.kind === 'server' && cr.fallback.length === 0
    // A base-model request to a plain rule resolves the same way every time (the model is the
    // route's): one shared, immutable result instead of four objects per request. Not for
    // HTTPRoutes, whose requests carry any model.
    const cacheable = plain && !isLora && route.anyModel !== true
    const cached = cacheable ? cr.plainResults.get(picked) : undefined
    if (cached !== undefined) return cached
    const targets = plain
      ? [this.target(picked, isLora, req.model)]
      : [picked, ...cr.fallback.filter((f) => !sameTarget(f, picked))].map((t) =>
          this.target(t, isLora, req.model),
        )
    const result: RouteResult = {
      kind: 'chain',
      decision: { route, rule: cr.rule, isLora, targets, fallbackOn: cr.fallbackOn, plain },
    }
    if (cacheable) cr.plainResults.set(picked, result)
    return result
  }

  private target(t: Resolved, isLora: boolean, model: string): RouteTarget {
    // A LoRA name is never rewritten: the adapter is loaded under the name the client used.
    return t.kind === 'server'
      ? {
          kind: 'server',
          server: t.server,
          upstreamModel: !isLora && t.server.model ? t.server.model : model,
        }
      : { kind: 'provider', provider: t.provider, upstreamModel: t.provider.model ?? model }
  }

  private pickTarget(cr: CompiledRule): Resolved {
    const first = cr.targets[0]
    if (cr.targets.length === 1 && first) return first.target
    const x = this.random() * cr.totalWeight
    for (const t of cr.targets) if (x < t.cumulative) return t.target
    // Only reachable through floating-point edge cases; the last target owns the top of the range.
    const last = cr.targets[cr.targets.length - 1]
    if (!last) throw new Error('rule without targets')
    return last.target
  }
}

function push<K, V>(m: Map<K, V[]>, k: K, v: V): void {
  const list = m.get(k)
  if (list) list.push(v)
  else m.set(k, [v])
}

function resolveRef(t: SnapshotTargetRef, snapshot: RoutingSnapshot): Resolved | undefined {
  if (t.provider !== undefined) {
    const provider = snapshot.providers?.[t.provider]
    return provider ? { kind: 'provider', provider } : undefined
  }
  const server = snapshot.servers[t.server]
  return server ? { kind: 'server', server } : undefined
}

function sameTarget(a: Resolved, b: Resolved): boolean {
  return a.kind === 'server'
    ? b.kind === 'server' && a.server.key === b.server.key
    : b.kind === 'provider' && a.provider.key === b.provider.key
}

const NO_FALLBACK: ReadonlySet<FallbackOn> = new Set()

function compileRoute(route: SnapshotRoute, snapshot: RoutingSnapshot): CompiledRoute {
  const rules: CompiledRule[] = []
  for (const rule of route.rules) {
    let cumulative = 0
    const targets: { target: Resolved; cumulative: number }[] = []
    for (const t of rule.targets) {
      const target = resolveRef(t, snapshot)
      if (!target || t.weight <= 0) continue
      cumulative += t.weight
      targets.push({ target, cumulative })
    }
    if (targets.length === 0) continue
    const fallback: Resolved[] = []
    for (const f of rule.fallback?.targets ?? []) {
      const target = resolveRef(f, snapshot)
      if (target && !fallback.some((x) => sameTarget(x, target))) fallback.push(target)
    }
    rules.push({
      rule,
      ...compileMatch(rule.match),
      targets,
      totalWeight: cumulative,
      fallback,
      fallbackOn: fallback.length > 0 ? new Set(rule.fallback?.on ?? []) : NO_FALLBACK,
      plainResults: new Map(),
    })
  }
  return { route, rules }
}

function compileMatch(
  m: SnapshotMatch | undefined,
): Pick<CompiledRule, 'headers' | 'uri' | 'bodyModel'> {
  if (!m) return { headers: [] }
  return {
    headers: m.headers.map((h) => ({ name: h.name.toLowerCase(), test: stringTest(h.match) })),
    ...(m.uri ? { uri: stringTest(m.uri) } : {}),
    ...(m.bodyModel !== undefined ? { bodyModel: m.bodyModel } : {}),
  }
}

export function stringTest(m: SnapshotStringMatch): StringTest {
  const v = m.value
  switch (m.kind) {
    case 'exact':
      return (s) => s === v
    case 'prefix':
      return (s) => s.startsWith(v)
    case 'path-prefix': {
      // Gateway API PathPrefix: whole segments, a trailing slash in the value ignored.
      const base = v.replace(/\/+$/, '')
      if (base === '') return () => true
      const below = `${base}/`
      return (s) => s === base || s.startsWith(below)
    }
    case 'regex':
      // Unanchored, as Kthena's Go `regexp.MatchString`: users anchor with ^…$ when they mean it.
      // Linear-time (RE2): a header value can never make matching backtrack.
      return compileRegex(v)
  }
}

/**
 * Gateway API match precedence for HTTPRoute rules, higher first: an Exact path, then the longest
 * PathPrefix, then (ours) regexes, then more header matches. Ties keep the snapshot order, which
 * is the oldest route first, as Gateway API asks.
 */
function precedence(cr: CompiledRule): number {
  const uri = cr.rule.match?.uri
  const headers = cr.rule.match?.headers.length ?? 0
  const pathRank =
    uri === undefined
      ? 0
      : uri.kind === 'exact'
        ? 3_000_000 + uri.value.length
        : uri.kind === 'path-prefix' || uri.kind === 'prefix'
          ? 1_000_000 + uri.value.replace(/\/+$/, '').length * 2 + 1
          : 2_000
  return pathRank * 100 + headers
}

function ruleMatches(cr: CompiledRule, req: RouteRequest): boolean {
  if (cr.bodyModel !== undefined && cr.bodyModel !== req.model) return false
  if (cr.uri && !cr.uri(req.path)) return false
  for (const h of cr.headers) {
    const v = req.header(h.name)
    if (v === undefined || !h.test(v)) return false
  }
  return true
}
