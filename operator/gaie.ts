// The operator's Gateway API Inference Extension inputs: InferencePools, InferenceObjectives (both
// groups) and HTTPRoutes. Each kind is watched only when API discovery finds its CRD (as Kthena's
// group is), so a cluster without GAIE sees no failing watches. HTTPRoutes additionally need our
// Gateway identity (`--gateway ns/name`): without it no HTTPRoute is ours to serve or to write
// status on. Status goes to `status.parents[]` (gaie-status.ts).
import {
  CustomObjectsApi,
  type KubeConfig,
  PatchStrategy,
  setHeaderOptions,
} from '@kubernetes/client-node'
import {
  GATEWAY_API_GROUP,
  HTTPROUTE_PLURAL,
  INFERENCE_POOL_GROUP,
  INFERENCE_POOL_PLURAL,
  INFERENCE_POOL_VERSION,
  isInferencePoolRef,
  OBJECTIVE_GROUPS,
  OBJECTIVE_PLURAL,
  OBJECTIVE_VERSION,
} from '../api/gaie.js'
import { inferencePoolKey, type RoutingSnapshot, servedByGateway } from '../api/index.js'
import type { ServerSelector } from './endpoints.js'
import {
  type GaieStatusView,
  gatewayParentRef,
  httpRouteConditions,
  mergeParents,
  poolConditions,
  refersToGateway,
} from './gaie-status.js'
import { Informer, type InformerEvent, type InformerOptions, type ListPage } from './informer.js'

export type GaieMode = 'auto' | 'on' | 'off'
export const GAIE_MODES: readonly GaieMode[] = ['auto', 'on', 'off']

/** Which GAIE / Gateway API kinds this cluster serves (and we watch). */
export interface GaieKinds {
  readonly pools: boolean
  /** Served InferenceObjective groups, llm-d.ai first. */
  readonly objectiveGroups: readonly string[]
  readonly httpRoutes: boolean
}

export const NO_GAIE: GaieKinds = { pools: false, objectiveGroups: [], httpRoutes: false }

async function served(kc: KubeConfig, group: string, version: string, plural: string) {
  try {
    const list = await kc.makeApiClient(CustomObjectsApi).getAPIResources({ group, version })
    return list.resources.some((r) => r.name === plural)
  } catch (e) {
    if ((e as { code?: unknown }).code === 404) return false
    throw e
  }
}

/** `on` watches every kind regardless (a missing CRD then shows as a failing watch in the log). */
export async function resolveGaie(mode: GaieMode, kc: KubeConfig): Promise<GaieKinds> {
  if (mode === 'off') return NO_GAIE
  if (mode === 'on')
    return { pools: true, objectiveGroups: [...OBJECTIVE_GROUPS], httpRoutes: true }
  const [pools, httpRoutes, ...objectives] = await Promise.all([
    served(kc, INFERENCE_POOL_GROUP, INFERENCE_POOL_VERSION, INFERENCE_POOL_PLURAL),
    served(kc, GATEWAY_API_GROUP, 'v1', HTTPROUTE_PLURAL),
    ...OBJECTIVE_GROUPS.map((g) => served(kc, g, OBJECTIVE_VERSION, OBJECTIVE_PLURAL)),
  ])
  return {
    pools,
    objectiveGroups: OBJECTIVE_GROUPS.filter((_, i) => objectives[i] === true),
    httpRoutes,
  }
}

/** What the informers cache: a custom object (controller.ts's CustomObject). */
export interface GaieObject {
  readonly apiVersion?: string
  readonly metadata: {
    readonly name: string
    readonly namespace: string
    readonly generation?: number
    readonly resourceVersion?: string
    readonly [k: string]: unknown
  }
  readonly spec?: unknown
  readonly status?: unknown
}

type Common<T> = Omit<InformerOptions<T>, 'name' | 'path' | 'list' | 'onEvent' | 'onRestart'>

export interface GaieWatchOptions<T extends GaieObject> {
  readonly kinds: GaieKinds
  /** Our Gateway ("namespace/name"); HTTPRoutes are watched only with it. */
  readonly gateway: string | undefined
  readonly kc: KubeConfig
  readonly common: Common<T>
  readonly onPoolEvent: (e: InformerEvent<T>) => void
  /** Objectives and HTTPRoutes: anything that only needs a rebuild and a status check. */
  readonly onEvent: (kind: 'InferenceObjective' | 'HTTPRoute', e: InformerEvent<T>) => void
  readonly onRestart: (informer: string) => (reason: string) => void
}

export class GaieWatches<T extends GaieObject> {
  readonly pools: Informer<T> | undefined
  readonly objectives: readonly Informer<T>[]
  readonly httpRoutes: Informer<T> | undefined
  readonly gateway: string | undefined
  readonly #crs: CustomObjectsApi

  constructor(o: GaieWatchOptions<T>) {
    this.#crs = o.kc.makeApiClient(CustomObjectsApi)
    this.gateway = o.gateway
    const make = (
      name: string,
      group: string,
      version: string,
      plural: string,
      onEvent: (e: InformerEvent<T>) => void,
    ) =>
      new Informer<T>({
        ...o.common,
        name,
        path: `/apis/${group}/${version}/${plural}`,
        list: async (r): Promise<ListPage> => {
          const res = (await this.#crs.listClusterCustomObject({
            group,
            version,
            plural,
            limit: r.limit,
            ...(r.continueToken !== undefined ? { _continue: r.continueToken } : {}),
          })) as { items?: unknown[]; metadata?: { resourceVersion?: string; continue?: string } }
          return {
            items: res.items ?? [],
            resourceVersion: res.metadata?.resourceVersion ?? '',
            continueToken: res.metadata?.continue,
          }
        },
        onEvent,
        onRestart: o.onRestart(name),
      })
    this.pools = o.kinds.pools
      ? make(
          'inferencepools',
          INFERENCE_POOL_GROUP,
          INFERENCE_POOL_VERSION,
          INFERENCE_POOL_PLURAL,
          o.onPoolEvent,
        )
      : undefined
    this.objectives = o.kinds.objectiveGroups.map((g) =>
      make(`inferenceobjectives.${g}`, g, OBJECTIVE_VERSION, OBJECTIVE_PLURAL, (e) =>
        o.onEvent('InferenceObjective', e),
      ),
    )
    this.httpRoutes =
      o.kinds.httpRoutes && o.gateway !== undefined
        ? make('httproutes', GATEWAY_API_GROUP, 'v1', HTTPROUTE_PLURAL, (e) =>
            o.onEvent('HTTPRoute', e),
          )
        : undefined
  }

  informers(): Informer<T>[] {
    return [
      ...(this.pools !== undefined ? [this.pools] : []),
      ...this.objectives,
      ...(this.httpRoutes !== undefined ? [this.httpRoutes] : []),
    ]
  }

  /** The compiler's GAIE inputs. */
  compileInput(): {
    inferencePools: T[]
    objectives: T[]
    httpRoutes: T[]
    gateway?: string
  } {
    return {
      inferencePools: this.pools?.values() ?? [],
      objectives: this.objectives.flatMap((i) => i.values()),
      httpRoutes: this.httpRoutes?.values() ?? [],
      ...(this.gateway !== undefined ? { gateway: this.gateway } : {}),
    }
  }

  /** Pod selectors of every pool, keyed by `inferencePoolKey` (endpoint derivation). */
  selectors(): ServerSelector[] {
    return (this.pools?.values() ?? []).map(poolSelector)
  }

  /**
   * Writes our `status.parents[]` entry of one InferencePool or HTTPRoute ("namespace/name"), or
   * removes it when the object is no longer associated with our Gateway. Merge patch carrying
   * the resourceVersion: a concurrent writer (another gateway's controller) makes it fail with
   * 409 and the queue retries on fresh data.
   */
  async reconcileStatus(
    kind: 'InferencePool' | 'HTTPRoute',
    key: string,
    view: GaieStatusView,
    now: string,
    timed: <R>(p: Promise<R>, what: string) => Promise<R>,
  ): Promise<boolean> {
    const gateway = this.gateway
    if (gateway === undefined) return false
    const informer = kind === 'InferencePool' ? this.pools : this.httpRoutes
    const obj = informer?.get(key)
    if (obj === undefined) return false
    const ns = obj.metadata.namespace
    const generation = obj.metadata.generation ?? 0
    // Not compiled at this generation yet (the informer saw it after the last compile): judged by
    // that view it would look resolved (no diagnostics of its own). The pending rebuild queues
    // it again.
    if (view.generations.get(`${kind}/${key}`) !== generation) return false
    let desired: Parameters<typeof mergeParents>[3]
    if (kind === 'InferencePool') {
      desired = poolAssociated(key, view.snapshot, this.httpRoutes?.values() ?? [], gateway)
        ? {
            parentRef: gatewayParentRef(gateway),
            conditions: poolConditions(key, generation, view),
          }
        : undefined
    } else {
      const refs = (obj.spec as { parentRefs?: unknown[] } | undefined)?.parentRefs ?? []
      const ref = refs.find((r) => refersToGateway(r, ns, gateway))
      const usesPool = routeBackends(obj).some((b) =>
        isInferencePoolRef(b, { group: '', kind: 'Service' }),
      )
      desired =
        ref !== undefined && usesPool
          ? {
              parentRef: ref as Record<string, unknown>,
              conditions: httpRouteConditions(key, generation, view),
            }
          : undefined
    }
    const parents = mergeParents(obj.status, ns, gateway, desired, now)
    if (parents === undefined) return false
    const [group, version, plural] =
      kind === 'InferencePool'
        ? [INFERENCE_POOL_GROUP, INFERENCE_POOL_VERSION, INFERENCE_POOL_PLURAL]
        : [GATEWAY_API_GROUP, 'v1', HTTPROUTE_PLURAL]
    await timed(
      this.#crs.patchNamespacedCustomObjectStatus(
        {
          group,
          version,
          namespace: ns,
          plural,
          name: obj.metadata.name,
          body: {
            metadata: { resourceVersion: obj.metadata.resourceVersion },
            status: { parents },
          },
        },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      ),
      'status patch',
    )
    return true
  }
}

function routeBackends(
  route: GaieObject,
): { group?: string; kind?: string; name?: unknown; namespace?: unknown }[] {
  const rules = (route.spec as { rules?: unknown } | undefined)?.rules
  if (!Array.isArray(rules)) return []
  return rules.flatMap((r) => {
    const b = (r as { backendRefs?: unknown }).backendRefs
    return Array.isArray(b) ? (b as { group?: string; kind?: string }[]) : []
  })
}

/**
 * A pool is associated with our Gateway when a route our data planes serve targets it, or an
 * HTTPRoute bound to our Gateway names it (even one we cannot serve: its status says why).
 */
export function poolAssociated(
  key: string,
  snapshot: RoutingSnapshot,
  httpRoutes: readonly GaieObject[],
  gateway: string,
): boolean {
  const slash = key.indexOf('/')
  const ns = key.slice(0, slash)
  const name = key.slice(slash + 1)
  const server = inferencePoolKey(ns, name)
  const targeted = snapshot.routes.some(
    (r) =>
      servedByGateway(r, gateway) &&
      r.rules.some((rule) => rule.targets.some((t) => t.server === server)),
  )
  if (targeted) return true
  return httpRoutes.some(
    (r) =>
      r.metadata.namespace === ns &&
      ((r.spec as { parentRefs?: unknown[] } | undefined)?.parentRefs ?? []).some((p) =>
        refersToGateway(p, ns, gateway),
      ) &&
      routeBackends(r).some(
        (b) =>
          isInferencePoolRef(b, { group: '', kind: 'Service' }) &&
          b.name === name &&
          (b.namespace ?? ns) === ns,
      ),
  )
}

/** Best effort on an unvalidated InferencePool: the compiler reports invalid pools itself. */
export function poolSelector(raw: GaieObject): ServerSelector {
  const m = (raw.spec as { selector?: { matchLabels?: unknown } } | undefined)?.selector
    ?.matchLabels
  const matchLabels: Record<string, string> = {}
  if (typeof m === 'object' && m !== null)
    for (const [k, v] of Object.entries(m)) if (typeof v === 'string') matchLabels[k] = v
  return {
    key: inferencePoolKey(raw.metadata.namespace, raw.metadata.name),
    namespace: raw.metadata.namespace,
    matchLabels,
    // No port: the compiler makes one endpoint per target port.
    port: undefined,
  }
}
