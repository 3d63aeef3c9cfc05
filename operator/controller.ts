// The operator's core: informers → keyed work queue → compile → publish → status.
//
// Two kinds of queue keys, both level-triggered (handlers read the latest cached state, never
// an event payload):
// - `snapshot`: derive endpoints from Pods, compile every ModelRoute/ModelServer into one
//   snapshot, publish it if its content hash changed, then queue every object's status. Events
//   add this key through `addAfter(debounceMs)`, so a burst of changes costs one rebuild.
// - `status/<Kind>/<ns>/<name>`: compute the object's status from the last compile and patch
//   the `/status` subresource only if something we own differs.
// Only the leader runs them. Every replica (leader included) watches the snapshot ConfigMap and
// serves its content on the push channel, so all replicas serve identical bytes and a restarted
// leader continues from the stored version instead of inventing one.
import {
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  PatchStrategy,
  setHeaderOptions,
} from '@kubernetes/client-node'
import {
  CRD_NAMES,
  CRD_VERSION,
  CREDENTIAL_SOURCE_LABEL,
  CREDENTIALS_SECRET,
  SNAPSHOT_CONFIGMAP,
} from '../api/crd.js'
import { API_GROUP, compileSnapshot, type Diagnostic, type RoutingSnapshot } from '../api/index.js'
import { KTHENA_API_GROUP } from '../api/schema.js'
import { sleep, withTimeout } from './backoff.js'
import {
  type CredentialsPlan,
  conditionsPatch,
  entriesHash,
  planCredentials,
  policyConditions,
  providerConditions,
} from './credentials.js'
import {
  endpointsFor,
  PodIndex,
  type PodRecord,
  podRecord,
  podRecordsEqual,
  type ServerSelector,
  serverSelector,
} from './endpoints.js'
import { isConflict, isNotFound, OperatorError } from './errors.js'
import { EventRecorder } from './events.js'
import { type GaieKinds, GaieWatches, NO_GAIE, poolSelector } from './gaie.js'
import { Informer, type InformerEvent, type ListPage, type ListRequest } from './informer.js'
import { LeaderElector } from './leader.js'
import { errorText, type Logger, silentLogger } from './log.js'
import type { OperatorMetrics } from './metrics.js'
import type { SnapshotPushServer } from './push-server.js'
import { WorkQueue } from './queue.js'
import {
  DEFAULT_MAX_SNAPSHOT_BYTES,
  decodeSnapshotConfigMap,
  encodeSnapshot,
  nextVersion,
  type StoredSnapshot,
  snapshotConfigMap,
} from './snapshot-configmap.js'
import {
  type CompiledView,
  indexCompile,
  type Kind,
  routeStatus,
  serverStatus,
  statusPatch,
  transitions,
  viewKey,
} from './status.js'

export interface LeaderElectionConfig {
  readonly leaseName: string
  readonly leaseDurationMs: number
  readonly renewDeadlineMs: number
  readonly retryPeriodMs: number
}

export interface ControllerOptions {
  readonly kc: KubeConfig
  /** The operator's own namespace: snapshot ConfigMap and Lease live here. */
  readonly namespace: string
  /** Lease holder identity and Event reportingInstance (the Pod name in a cluster). */
  readonly identity: string
  /** Absent: this process is the only writer (no Lease). */
  readonly leaderElection?: LeaderElectionConfig | undefined
  readonly push: SnapshotPushServer
  readonly metrics: OperatorMetrics
  readonly log?: Logger
  /** Batching window for snapshot rebuilds (default 50 ms). */
  readonly debounceMs?: number
  /** Full reconcile of everything, as a safety net (default 5 min; 0 = off). */
  readonly resyncMs?: number
  /** Informer full re-list period (default 10 min). */
  readonly relistMs?: number
  readonly watchTimeoutSeconds?: readonly [number, number]
  /** Watchdog: restart a watch silent for this long (default 390 s). */
  readonly stallMs?: number
  readonly watchdogMs?: number
  /** Bound on one LIST page request (default 60 s). */
  readonly listTimeoutMs?: number
  /** Bound on one write (ConfigMap, status, Event); default 30 s. */
  readonly requestTimeoutMs?: number
  /** Informer retry backoff (default 1 s doubling to 30 s). */
  readonly watchBackoff?: { readonly baseMs: number; readonly maxMs: number }
  /** Narrows the Pod watch (e.g. `infer-gateway.io/engine`); default: all Pods. */
  readonly podLabelSelector?: string
  readonly maxSnapshotBytes?: number
  /** Concurrent status patches (default 4). */
  readonly concurrency?: number
  readonly configMapName?: string
  /** The data plane's credentials Secret in `namespace` (default infer-gateway-credentials). */
  readonly credentialsSecretName?: string
  /**
   * Watch credential source Secrets in this namespace only (default: every namespace). Lets
   * install.yaml grant Secret access by a Role there instead of cluster-wide.
   */
  readonly secretsNamespace?: string
  /**
   * Also watch Kthena's group (networking.serving.volcano.sh): its ModelRoutes, ModelServers and
   * ExternalModelProviders compile into the same snapshot, so a Kthena user swaps the router
   * without touching a manifest. The command turns it on when discovery finds the group.
   */
  readonly kthena?: boolean
  /** GAIE / Gateway API kinds to watch (operator/gaie.ts); default none. */
  readonly gaie?: GaieKinds
  /**
   * Our Gateway ("namespace/name"): HTTPRoutes naming it as a parent are compiled and get status,
   * and it is the parent of our InferencePool status entries. Absent: no HTTPRoute is ours.
   */
  readonly gateway?: string
}

/** Kthena's kinds, watched in its group when `kthena` is on (GatewayPolicy is ours only). */
interface KthenaInformers {
  readonly routes: Informer<CustomObject>
  readonly servers: Informer<CustomObject>
  readonly providers: Informer<CustomObject>
}

export const SNAPSHOT_QUEUE_KEY = 'snapshot'
const STATUS_PREFIX = 'status/'

const ROUTE = { plural: CRD_NAMES.modelRoute.plural, kind: 'ModelRoute' as const }
const SERVER = { plural: CRD_NAMES.modelServer.plural, kind: 'ModelServer' as const }
const POLICY = { plural: CRD_NAMES.gatewayPolicy.plural, kind: 'GatewayPolicy' as const }
const PROVIDER = {
  plural: CRD_NAMES.externalModelProvider.plural,
  kind: 'ExternalModelProvider' as const,
}
/** Every kind the status queue handles. */
type StatusKind = Kind | 'GatewayPolicy' | 'ExternalModelProvider'
/** SSA field manager for the credentials Secret: we own exactly the entries we apply. */
const CREDENTIALS_FIELD_MANAGER = 'infer-gateway-operator'

/** A credentials source Secret as cached: only what planning reads. */
interface SourceSecret {
  readonly metadata: { readonly namespace: string; readonly name: string }
  readonly data: Readonly<Record<string, string>>
}

function sourceSecret(raw: unknown): SourceSecret | undefined {
  const o = raw as { metadata?: { namespace?: unknown; name?: unknown }; data?: unknown }
  const ns = o.metadata?.namespace
  const name = o.metadata?.name
  if (typeof ns !== 'string' || typeof name !== 'string') return undefined
  const data: Record<string, string> = {}
  if (typeof o.data === 'object' && o.data !== null)
    for (const [k, v] of Object.entries(o.data)) if (typeof v === 'string') data[k] = v
  return { metadata: { namespace: ns, name }, data }
}

/** A CR as cached: the raw object minus managedFields (large, and never read). */
export interface CustomObject {
  readonly apiVersion?: string
  readonly kind?: string
  readonly metadata: {
    readonly name: string
    readonly namespace: string
    readonly generation?: number
    readonly uid?: string
    readonly resourceVersion?: string
    readonly creationTimestamp?: string
    readonly [k: string]: unknown
  }
  readonly spec?: unknown
  readonly status?: unknown
}

function customObject(raw: unknown): CustomObject | undefined {
  if (typeof raw !== 'object' || raw === null) return undefined
  const o = raw as { metadata?: Record<string, unknown> }
  const m = o.metadata
  if (m === undefined || typeof m['name'] !== 'string' || typeof m['namespace'] !== 'string')
    return undefined
  const { managedFields: _drop, ...metadata } = m
  return { ...(raw as object), metadata } as CustomObject
}

export class Controller {
  private readonly o: ControllerOptions
  private readonly log: Logger
  private readonly core: CoreV1Api
  private readonly crs: CustomObjectsApi
  private readonly routes: Informer<CustomObject>
  private readonly servers: Informer<CustomObject>
  private readonly pods: Informer<PodRecord>
  private readonly configMap: Informer<unknown>
  private readonly policies: Informer<CustomObject>
  private readonly providers: Informer<CustomObject>
  private readonly secrets: Informer<SourceSecret>
  private readonly kthena: KthenaInformers | undefined
  private readonly gaie: GaieWatches<CustomObject>
  /**
   * Kthena objects: the status last written, by `${kind}/${ns}/${name}`. Kthena's CRDs have a
   * status subresource whose schema has no fields, so the API server prunes ours; comparing with
   * this instead of the stored (empty) status keeps us from re-patching and re-announcing every
   * transition on each rebuild. Transitions still reach the user as Events.
   */
  private readonly kthenaStatus = new Map<string, unknown>()
  /** Last credentials plan (leader only); status of policies and providers reads it. */
  private plan: CredentialsPlan | undefined
  /** Hash of the entries last applied to the credentials Secret; undefined = apply again. */
  private credHash: string | undefined
  private readonly credName: string
  private readonly podIndex = new PodIndex()
  /** namespace → server key → selector; pod events look up only their namespace. */
  private readonly selectors = new Map<string, Map<string, ServerSelector>>()
  private readonly queue: WorkQueue
  private readonly events: EventRecorder
  private readonly elector: LeaderElector | undefined
  private leading: boolean
  private stopping = false
  private resyncTimer: NodeJS.Timeout | undefined
  /** What this replica serves: the newest snapshot seen (ConfigMap or own write). */
  private published: RoutingSnapshot | undefined
  /**
   * The ConfigMap's resourceVersion as last seen from any source (watch, own write, fresh read),
   * for optimistic concurrency; undefined = it does not exist. It may briefly lag behind; a
   * write with a stale one gets 409, reads the ConfigMap and retries.
   */
  private cmRv: string | undefined
  /** Content hash the ConfigMap holds; undefined when missing or unreadable. */
  private cmHash: string | undefined
  /** Highest version seen anywhere (ConfigMap, own writes): the next one goes above it. */
  private maxVersion = 0
  private view: CompiledView | undefined
  private diagnostics: readonly Diagnostic[] = []
  private readonly cmName: string

  constructor(o: ControllerOptions) {
    this.o = o
    this.log = o.log ?? silentLogger
    this.core = o.kc.makeApiClient(CoreV1Api)
    this.crs = o.kc.makeApiClient(CustomObjectsApi)
    this.cmName = o.configMapName ?? SNAPSHOT_CONFIGMAP
    this.credName = o.credentialsSecretName ?? CREDENTIALS_SECRET
    this.leading = o.leaderElection === undefined
    const m = o.metrics

    const common = {
      kc: o.kc,
      log: this.log,
      ...(o.relistMs !== undefined ? { relistMs: o.relistMs } : {}),
      ...(o.watchTimeoutSeconds !== undefined
        ? { watchTimeoutSeconds: o.watchTimeoutSeconds }
        : {}),
      ...(o.stallMs !== undefined ? { stallMs: o.stallMs } : {}),
      ...(o.watchdogMs !== undefined ? { watchdogMs: o.watchdogMs } : {}),
      ...(o.listTimeoutMs !== undefined ? { listTimeoutMs: o.listTimeoutMs } : {}),
      ...(o.watchBackoff !== undefined ? { backoff: o.watchBackoff } : {}),
    }
    const restart = (informer: string) => (reason: string) =>
      m.informerRestarts.inc({ informer, reason })

    this.routes = new Informer<CustomObject>({
      ...common,
      name: 'modelroutes',
      path: `/apis/${API_GROUP}/${CRD_VERSION}/${ROUTE.plural}`,
      list: (r) => this.listCustom(ROUTE.plural, r),
      transform: customObject,
      onEvent: (e) => this.onCustomEvent('ModelRoute', e),
      onRestart: restart('modelroutes'),
    })
    this.servers = new Informer<CustomObject>({
      ...common,
      name: 'modelservers',
      path: `/apis/${API_GROUP}/${CRD_VERSION}/${SERVER.plural}`,
      list: (r) => this.listCustom(SERVER.plural, r),
      transform: customObject,
      onEvent: (e) => this.onServerEvent(e),
      onRestart: restart('modelservers'),
    })
    this.policies = new Informer<CustomObject>({
      ...common,
      name: 'gatewaypolicies',
      path: `/apis/${API_GROUP}/${CRD_VERSION}/${POLICY.plural}`,
      list: (r) => this.listCustom(POLICY.plural, r),
      transform: customObject,
      onEvent: (e) => this.onCustomEvent('GatewayPolicy', e),
      onRestart: restart('gatewaypolicies'),
    })
    this.providers = new Informer<CustomObject>({
      ...common,
      name: 'externalmodelproviders',
      path: `/apis/${API_GROUP}/${CRD_VERSION}/${PROVIDER.plural}`,
      list: (r) => this.listCustom(PROVIDER.plural, r),
      transform: customObject,
      onEvent: (e) => this.onCustomEvent('ExternalModelProvider', e),
      onRestart: restart('externalmodelproviders'),
    })
    this.kthena = o.kthena
      ? {
          routes: new Informer<CustomObject>({
            ...common,
            name: 'kthena-modelroutes',
            path: `/apis/${KTHENA_API_GROUP}/${CRD_VERSION}/${ROUTE.plural}`,
            list: (r) => this.listCustom(ROUTE.plural, r, KTHENA_API_GROUP),
            transform: customObject,
            onEvent: (e) => this.onCustomEvent('ModelRoute', e),
            onRestart: restart('kthena-modelroutes'),
          }),
          servers: new Informer<CustomObject>({
            ...common,
            name: 'kthena-modelservers',
            path: `/apis/${KTHENA_API_GROUP}/${CRD_VERSION}/${SERVER.plural}`,
            list: (r) => this.listCustom(SERVER.plural, r, KTHENA_API_GROUP),
            transform: customObject,
            onEvent: (e) => this.onServerEvent(e),
            onRestart: restart('kthena-modelservers'),
          }),
          providers: new Informer<CustomObject>({
            ...common,
            name: 'kthena-externalmodelproviders',
            path: `/apis/${KTHENA_API_GROUP}/${CRD_VERSION}/${PROVIDER.plural}`,
            list: (r) => this.listCustom(PROVIDER.plural, r, KTHENA_API_GROUP),
            transform: customObject,
            onEvent: (e) => this.onCustomEvent('ExternalModelProvider', e),
            onRestart: restart('kthena-externalmodelproviders'),
          }),
        }
      : undefined
    this.gaie = new GaieWatches<CustomObject>({
      kinds: o.gaie ?? NO_GAIE,
      gateway: o.gateway,
      kc: o.kc,
      common: { ...common, transform: customObject },
      onPoolEvent: (e) => this.onPoolEvent(e),
      onEvent: (kind, e) => this.onGaieEvent(kind, e),
      onRestart: restart,
    })
    // Only labelled Secrets: RBAC allows list/watch of every Secret (it cannot scope by label),
    // but what we ask for is all that is ever in this process's memory.
    this.secrets = new Informer<SourceSecret>({
      ...common,
      name: 'credential-secrets',
      path:
        this.o.secretsNamespace !== undefined
          ? `/api/v1/namespaces/${this.o.secretsNamespace}/secrets`
          : '/api/v1/secrets',
      labelSelector: `${CREDENTIAL_SOURCE_LABEL}=true`,
      list: (r) => this.listSecrets(r),
      transform: sourceSecret,
      onEvent: () => this.scheduleRebuild(),
      onRestart: restart('credential-secrets'),
    })
    // Pods cluster-wide: the union of every ModelServer's matchLabels is not one label selector,
    // and a watch per server would not scale. Finished Pods are filtered out by the server.
    this.pods = new Informer<PodRecord>({
      ...common,
      name: 'pods',
      path: '/api/v1/pods',
      fieldSelector: 'status.phase!=Succeeded,status.phase!=Failed',
      ...(o.podLabelSelector !== undefined ? { labelSelector: o.podLabelSelector } : {}),
      list: (r) => this.listPods(r),
      transform: podRecord,
      equals: podRecordsEqual,
      onEvent: (e) => this.onPodEvent(e),
      onRestart: restart('pods'),
    })
    this.configMap = new Informer<unknown>({
      ...common,
      name: 'snapshot-configmap',
      path: `/api/v1/namespaces/${o.namespace}/configmaps`,
      fieldSelector: `metadata.name=${this.cmName}`,
      list: (r) => this.listConfigMaps(r),
      transform: (raw) => raw,
      onEvent: (e) => this.onConfigMapEvent(e),
      onRestart: restart('snapshot-configmap'),
    })
    m.lastActivitySource = () =>
      Object.fromEntries(this.informers().map((i) => [i.name, i.lastActivity]))

    this.queue = new WorkQueue({
      concurrency: o.concurrency ?? 4,
      backoff: { baseMs: 200, maxMs: 30_000 },
      handler: (key) => this.handle(key),
      onError: (key, err, retryInMs) =>
        this.log('warn', 'reconcile failed; will retry', { key, error: errorText(err), retryInMs }),
      onProcessed: (key, seconds, ok) => {
        const kind = key === SNAPSHOT_QUEUE_KEY ? 'snapshot' : (key.split('/')[1] ?? 'unknown')
        m.reconciles.inc({ kind, result: ok ? 'success' : 'error' })
        m.reconcileSeconds.observe({ kind }, seconds)
        m.queueDepth.set(this.queue.depth)
      },
    })
    this.events = new EventRecorder(o.kc, o.identity, this.log, m, o.requestTimeoutMs ?? 30_000)
    m.leader.set(this.leading ? 1 : 0)
    const le = o.leaderElection
    this.elector =
      le === undefined
        ? undefined
        : new LeaderElector({
            kc: o.kc,
            namespace: o.namespace,
            name: le.leaseName,
            identity: o.identity,
            leaseDurationMs: le.leaseDurationMs,
            renewDeadlineMs: le.renewDeadlineMs,
            retryPeriodMs: le.retryPeriodMs,
            log: this.log,
            onStartedLeading: () => {
              this.leading = true
              m.leader.set(1)
              // Level-triggered: rebuild and re-check every status from scratch.
              this.queue.add(SNAPSHOT_QUEUE_KEY)
            },
            onStoppedLeading: () => {
              this.leading = false
              // A later term starts from a fresh compile, never from this term's leftovers.
              this.view = undefined
              this.plan = undefined
              this.credHash = undefined
              m.leader.set(0)
            },
          })
  }

  // -------------------------------------------------------------------------------------------
  // lifecycle

  start(): void {
    for (const i of this.informers()) i.start()
    this.elector?.start()
    if (this.leading) this.queue.add(SNAPSHOT_QUEUE_KEY)
    const every = this.o.resyncMs ?? 5 * 60_000
    if (every > 0) {
      this.resyncTimer = setInterval(() => {
        // Re-apply the credentials too: someone may have edited or deleted the Secret.
        this.credHash = undefined
        this.queue.add(SNAPSHOT_QUEUE_KEY)
      }, every)
      this.resyncTimer.unref()
    }
  }

  /** SIGTERM path: stop watching, finish in-flight writes (bounded), then release the Lease. */
  async stop(deadlineMs = 10_000): Promise<void> {
    if (this.stopping) return
    this.stopping = true
    clearInterval(this.resyncTimer)
    await Promise.all(this.informers().map((i) => i.stop()))
    const { abandoned } = await this.queue.stop(deadlineMs)
    if (abandoned > 0)
      this.log('warn', 'shutdown deadline passed with work in flight', { abandoned })
    await this.elector?.stop()
  }

  /** All informers have listed at least once. */
  get synced(): boolean {
    return this.informers().every((i) => i.synced)
  }

  get isLeader(): boolean {
    return this.leading
  }

  get publishedSnapshot(): RoutingSnapshot | undefined {
    return this.published
  }

  get lastCompile(): CompiledView | undefined {
    return this.view
  }

  /** Resolves when the queue has nothing to do (tests). */
  idle(): Promise<void> {
    return this.queue.idle()
  }

  private informers(): Informer<unknown>[] {
    return [
      this.routes,
      this.servers,
      this.pods,
      this.configMap,
      this.policies,
      this.providers,
      this.secrets,
      ...(this.kthena !== undefined
        ? [this.kthena.routes, this.kthena.servers, this.kthena.providers]
        : []),
      ...this.gaie.informers(),
    ] as Informer<unknown>[]
  }

  /** Objects of one kind from both groups (a name taken in both is a DuplicateName to the compiler). */
  private all(kind: 'routes' | 'servers' | 'providers'): CustomObject[] {
    const ours = this[kind].values()
    const theirs = this.kthena?.[kind].values() ?? []
    return theirs.length === 0 ? ours : [...ours, ...theirs]
  }

  private allKeys(kind: 'routes' | 'servers' | 'providers'): string[] {
    return [...new Set([...this[kind].keys(), ...(this.kthena?.[kind].keys() ?? [])])]
  }

  /** The cached object and its group; ours wins when both groups have the name. */
  private lookup(
    kind: 'routes' | 'servers' | 'providers',
    key: string,
  ): { obj: CustomObject; group: string } | undefined {
    const ours = this[kind].get(key)
    if (ours !== undefined) return { obj: ours, group: API_GROUP }
    const theirs = this.kthena?.[kind].get(key)
    return theirs === undefined ? undefined : { obj: theirs, group: KTHENA_API_GROUP }
  }

  // -------------------------------------------------------------------------------------------
  // lists (typed clients; the informer adds paging and selectors)

  private async listCustom(plural: string, r: ListRequest, group = API_GROUP): Promise<ListPage> {
    const res = (await this.crs.listClusterCustomObject({
      group,
      version: CRD_VERSION,
      plural,
      ...pageOptions(r),
    })) as { items?: unknown[]; metadata?: { resourceVersion?: string; continue?: string } }
    return {
      items: res.items ?? [],
      resourceVersion: res.metadata?.resourceVersion ?? '',
      continueToken: res.metadata?.continue,
    }
  }

  private async listPods(r: ListRequest): Promise<ListPage> {
    const res = await this.core.listPodForAllNamespaces(pageOptions(r))
    return corePage(res)
  }

  private async listSecrets(r: ListRequest): Promise<ListPage> {
    const res =
      this.o.secretsNamespace !== undefined
        ? await this.core.listNamespacedSecret({
            namespace: this.o.secretsNamespace,
            ...pageOptions(r),
          })
        : await this.core.listSecretForAllNamespaces(pageOptions(r))
    return corePage(res)
  }

  private async listConfigMaps(r: ListRequest): Promise<ListPage> {
    const res = await this.core.listNamespacedConfigMap({
      namespace: this.o.namespace,
      ...pageOptions(r),
    })
    return corePage(res)
  }

  // -------------------------------------------------------------------------------------------
  // events → queue

  private scheduleRebuild(): void {
    this.queue.addAfter(SNAPSHOT_QUEUE_KEY, this.o.debounceMs ?? 50)
  }

  private onCustomEvent(kind: StatusKind, e: InformerEvent<CustomObject>): void {
    if (e.type === 'delete') {
      this.events.forget(kind, e.key)
      this.kthenaStatus.delete(viewKey2(kind, e.key))
    }
    this.queue.add(`${STATUS_PREFIX}${kind}/${e.key}`)
    // A status-only update (ours, echoed back) changes nothing the compiler reads.
    const specChanged =
      e.type !== 'update' || e.old?.metadata.generation !== e.value.metadata.generation
    if (specChanged) this.scheduleRebuild()
  }

  private onServerEvent(e: InformerEvent<CustomObject>): void {
    const old = e.old === undefined ? undefined : serverSelector(e.old)
    if (old !== undefined) this.selectors.get(old.namespace)?.delete(old.key)
    if (e.type !== 'delete') {
      const s = serverSelector(e.value)
      if (s !== undefined) {
        let ns = this.selectors.get(s.namespace)
        if (ns === undefined) {
          ns = new Map()
          this.selectors.set(s.namespace, ns)
        }
        ns.set(s.key, s)
      }
    } else {
      const s = serverSelector(e.value)
      if (s !== undefined) this.selectors.get(s.namespace)?.delete(s.key)
    }
    this.onCustomEvent('ModelServer', e)
  }

  /** An InferencePool selects pods like a ModelServer (key `InferencePool:ns/name`). */
  private onPoolEvent(e: InformerEvent<CustomObject>): void {
    const old = e.old === undefined ? undefined : poolSelector(e.old)
    if (old !== undefined) this.selectors.get(old.namespace)?.delete(old.key)
    const s = poolSelector(e.value)
    if (e.type !== 'delete') {
      let ns = this.selectors.get(s.namespace)
      if (ns === undefined) {
        ns = new Map()
        this.selectors.set(s.namespace, ns)
      }
      ns.set(s.key, s)
    } else this.selectors.get(s.namespace)?.delete(s.key)
    this.onGaieEvent('InferencePool', e)
  }

  private onGaieEvent(
    kind: 'InferencePool' | 'InferenceObjective' | 'HTTPRoute',
    e: InformerEvent<CustomObject>,
  ): void {
    if (kind !== 'InferenceObjective') this.queue.add(`${STATUS_PREFIX}${kind}/${e.key}`)
    // Our own status writes come back as updates of the same generation: nothing to compile.
    const specChanged =
      e.type !== 'update' || e.old?.metadata.generation !== e.value.metadata.generation
    if (specChanged) this.scheduleRebuild()
  }

  private onPodEvent(e: InformerEvent<PodRecord>): void {
    if (e.type === 'delete') this.podIndex.delete(e.key)
    else this.podIndex.set(e.value)
    // Only Pods some ModelServer selects (before or after the change) can change the snapshot.
    const servers = this.selectors.get(e.value.namespace)
    if (servers === undefined) return
    const selected = (p: PodRecord | undefined): boolean =>
      p !== undefined &&
      [...servers.values()].some((s) => {
        const pairs = Object.entries(s.matchLabels)
        return pairs.length > 0 && pairs.every(([k, v]) => p.labels[k] === v)
      })
    if (selected(e.value) || selected(e.old)) this.scheduleRebuild()
  }

  private onConfigMapEvent(e: InformerEvent<unknown>): void {
    if (e.type === 'delete') {
      this.log('warn', 'snapshot configmap was deleted', { name: this.cmName })
      this.cmRv = undefined
      this.cmHash = undefined
      if (this.leading) this.scheduleRebuild()
      return
    }
    this.cmRv = (e.value as { metadata?: { resourceVersion?: string } }).metadata?.resourceVersion
    let stored: StoredSnapshot
    try {
      stored = decodeSnapshotConfigMap(e.value)
      this.cmHash = stored.snapshot.hash
    } catch (err) {
      this.cmHash = undefined
      this.log('error', 'snapshot configmap is unreadable; the leader will overwrite it', {
        error: errorText(err),
      })
      if (this.leading) this.scheduleRebuild()
      return
    }
    this.adopt(stored.snapshot)
  }

  /** Takes a stored snapshot as the served one if it is newer than what we have. */
  private adopt(snapshot: RoutingSnapshot): void {
    this.maxVersion = Math.max(this.maxVersion, snapshot.version)
    const cur = this.published
    // An older event arriving after our own newer write must not roll the state back.
    if (cur !== undefined && snapshot.version <= cur.version) return
    this.published = snapshot
    this.serve(snapshot)
    // Someone else's write (a previous leader, a human): the leader checks it against its own.
    if (this.leading) this.scheduleRebuild()
  }

  private serve(snapshot: RoutingSnapshot): void {
    this.o.push.publish(snapshot)
    this.o.metrics.snapshotVersion.set(this.o.push.version ?? snapshot.version)
  }

  // -------------------------------------------------------------------------------------------
  // reconcile

  private async handle(key: string): Promise<void> {
    if (this.stopping || !this.leading) return
    if (key === SNAPSHOT_QUEUE_KEY) return this.rebuild()
    if (key.startsWith(STATUS_PREFIX)) {
      const rest = key.slice(STATUS_PREFIX.length)
      const slash = rest.indexOf('/')
      const kind = rest.slice(0, slash)
      if (kind === 'ModelRoute' || kind === 'ModelServer')
        return this.reconcileStatus(kind, rest.slice(slash + 1))
      if (kind === 'GatewayPolicy' || kind === 'ExternalModelProvider')
        return this.reconcileCredentialStatus(kind, rest.slice(slash + 1))
      if (kind === 'InferencePool' || kind === 'HTTPRoute')
        return this.reconcileGaieStatus(kind, rest.slice(slash + 1))
    }
  }

  private async rebuild(): Promise<void> {
    // A partial cache compiles to a different snapshot: a restarted leader must not publish a
    // spurious version before it has seen everything (and the stored ConfigMap).
    if (!this.synced) {
      this.queue.addAfter(SNAPSHOT_QUEUE_KEY, 100)
      return
    }
    const t0 = performance.now()
    const serverObjs = this.all('servers')
    const routeObjs = this.all('routes')
    const selectors = [
      ...serverObjs.map(serverSelector).filter((s) => s !== undefined),
      ...this.gaie.selectors(),
    ]
    const { endpoints, counts } = endpointsFor(selectors, this.podIndex)
    const policyObjs = this.policies.values()
    const gaieInput = this.gaie.compileInput()
    const { snapshot: compiled, diagnostics } = compileSnapshot({
      routes: routeObjs,
      servers: serverObjs,
      endpoints,
      version: 0,
      policies: policyObjs,
      providers: this.all('providers'),
      ...gaieInput,
    })
    const plan = planCredentials({
      snapshot: compiled,
      policies: policyObjs,
      lookup: (ns, name) => this.secrets.get(`${ns}/${name}`)?.data,
      target: { namespace: this.o.namespace, name: this.credName },
      label: CREDENTIAL_SOURCE_LABEL,
    })
    // Entries before the snapshot that names them: a data plane never gets a snapshot whose
    // credentials are not (being) mounted yet.
    await this.applyCredentials(plan.entries)
    this.o.metrics.compileSeconds.observe((performance.now() - t0) / 1000)
    const generations = new Map<string, number>()
    for (const r of routeObjs)
      generations.set(
        viewKey('ModelRoute', `${r.metadata.namespace}/${r.metadata.name}`),
        r.metadata.generation ?? 0,
      )
    for (const s of serverObjs)
      generations.set(
        viewKey('ModelServer', `${s.metadata.namespace}/${s.metadata.name}`),
        s.metadata.generation ?? 0,
      )
    for (const [kind, objs] of [
      ['InferencePool', gaieInput.inferencePools],
      ['HTTPRoute', gaieInput.httpRoutes],
    ] as const)
      for (const o of objs)
        generations.set(
          `${kind}/${o.metadata.namespace}/${o.metadata.name}`,
          o.metadata.generation ?? 0,
        )

    let publishError: { reason: string; message: string } | undefined
    const pub = this.published
    if (pub !== undefined && pub.hash === compiled.hash) {
      // Same content: same version. Only a missing, unreadable or outdated ConfigMap needs
      // writing, and it gets the version the data planes already have for this content.
      if (this.cmHash !== pub.hash) await this.write(encodeSnapshot(pub))
      this.serve(pub)
    } else {
      // Spread keeps `version` at its canonical key position: bytes stay canonical.
      const versioned: RoutingSnapshot = { ...compiled, version: nextVersion(this.maxVersion) }
      const enc = encodeSnapshot(versioned)
      this.o.metrics.snapshotBytes.set({ encoding: 'json' }, enc.json.length)
      this.o.metrics.snapshotBytes.set({ encoding: 'gzip' }, enc.gz.length)
      const limit = this.o.maxSnapshotBytes ?? DEFAULT_MAX_SNAPSHOT_BYTES
      if (enc.gz.length > limit) {
        publishError = {
          reason: 'SnapshotTooLarge',
          message: `the routing snapshot is ${enc.gz.length} bytes gzipped, above the ${limit}-byte ConfigMap limit; changes are not published (data planes keep version ${pub?.version ?? 'none'})`,
        }
        this.o.metrics.publishFailures.inc({ reason: 'too_large' })
        this.log('error', 'snapshot too large to publish', {
          gzipBytes: enc.gz.length,
          limit,
          routes: versioned.routes.length,
          servers: Object.keys(versioned.servers).length,
        })
      } else {
        await this.write(enc)
        this.serve(versioned)
        this.log('info', 'published snapshot', {
          version: versioned.version,
          hash: versioned.hash,
          gzipBytes: enc.gz.length,
          routes: versioned.routes.length,
          servers: Object.keys(versioned.servers).length,
          compileMs: Math.round(performance.now() - t0),
        })
      }
    }
    this.view = indexCompile(compiled, diagnostics, {
      counts,
      generations,
      publishedVersion: this.published?.version,
      ...(publishError !== undefined ? { publishError } : {}),
    })
    for (const r of this.allKeys('routes')) this.queue.add(`${STATUS_PREFIX}ModelRoute/${r}`)
    for (const s of this.allKeys('servers')) this.queue.add(`${STATUS_PREFIX}ModelServer/${s}`)
    this.plan = plan
    this.diagnostics = diagnostics
    for (const k of this.policies.keys()) this.queue.add(`${STATUS_PREFIX}GatewayPolicy/${k}`)
    for (const k of this.allKeys('providers'))
      this.queue.add(`${STATUS_PREFIX}ExternalModelProvider/${k}`)
    for (const k of this.gaie.pools?.keys() ?? [])
      this.queue.add(`${STATUS_PREFIX}InferencePool/${k}`)
    for (const k of this.gaie.httpRoutes?.keys() ?? [])
      this.queue.add(`${STATUS_PREFIX}HTTPRoute/${k}`)
  }

  /** Our `status.parents[]` entry on an InferencePool or HTTPRoute (operator/gaie.ts). */
  private async reconcileGaieStatus(kind: 'InferencePool' | 'HTTPRoute', key: string) {
    const view = this.view
    if (view === undefined) return
    const now = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z')
    try {
      const wrote = await this.gaie.reconcileStatus(kind, key, view, now, (p, what) =>
        this.timed(p, what),
      )
      if (wrote) this.o.metrics.statusPatches.inc({ kind, result: 'success' })
    } catch (e) {
      if (isNotFound(e)) return
      this.o.metrics.statusPatches.inc({ kind, result: 'error' })
      throw e
    }
  }

  /**
   * Server-side apply of the entries into the credentials Secret. The field manager owns exactly
   * the keys it applied: an entry no longer needed is removed by leaving it out, and keys other
   * writers put there (e.g. a policy pointing at this Secret directly) are never touched.
   */
  private async applyCredentials(entries: ReadonlyMap<string, string>): Promise<void> {
    const hash = entriesHash(entries)
    if (hash === this.credHash) return
    const body = {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: {
        name: this.credName,
        namespace: this.o.namespace,
        labels: { 'app.kubernetes.io/managed-by': CREDENTIALS_FIELD_MANAGER },
      },
      type: 'Opaque',
      data: Object.fromEntries(entries),
    }
    try {
      await this.timed(
        this.core.patchNamespacedSecret(
          {
            name: this.credName,
            namespace: this.o.namespace,
            body,
            fieldManager: CREDENTIALS_FIELD_MANAGER,
            force: true,
          },
          setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply),
        ),
        'credentials secret apply',
      )
    } catch (e) {
      // The error text from the API server never contains the request body.
      throw new OperatorError(
        'CREDENTIALS_WRITE_FAILED',
        `cannot apply secret ${this.o.namespace}/${this.credName}: ${errorText(e)}`,
        { cause: e },
      )
    }
    this.credHash = hash
    this.log('info', 'credentials secret applied', {
      secret: `${this.o.namespace}/${this.credName}`,
      entries: [...entries.keys()].sort(),
    })
  }

  private async reconcileCredentialStatus(
    kind: 'GatewayPolicy' | 'ExternalModelProvider',
    key: string,
  ): Promise<void> {
    const plan = this.plan
    const view = this.view
    if (plan === undefined || view === undefined) return
    const found =
      kind === 'GatewayPolicy'
        ? (() => {
            const obj = this.policies.get(key)
            return obj === undefined ? undefined : { obj, group: API_GROUP }
          })()
        : this.lookup('providers', key)
    if (found === undefined) return
    const { obj, group } = found
    const generation = obj.metadata.generation ?? 0
    const diagnostics = this.diagnostics
    const desired =
      kind === 'GatewayPolicy'
        ? policyConditions({ key, generation, snapshot: view.snapshot, diagnostics, plan })
        : providerConditions({
            key,
            generation,
            diagnostics,
            plan,
            publishError: view.publishError,
          })
    const now = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z')
    const stored = this.storedStatus(group, viewKey2(kind, key), obj.status)
    const patch = conditionsPatch(stored, desired, generation, now)
    if (patch === undefined) return
    try {
      await this.timed(
        this.crs.patchNamespacedCustomObjectStatus(
          {
            group,
            version: CRD_VERSION,
            namespace: obj.metadata.namespace,
            plural: kind === 'GatewayPolicy' ? POLICY.plural : PROVIDER.plural,
            name: obj.metadata.name,
            body: patch,
          },
          setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
        ),
        'status patch',
      )
      this.o.metrics.statusPatches.inc({ kind, result: 'success' })
    } catch (e) {
      if (isNotFound(e)) return
      this.o.metrics.statusPatches.inc({ kind, result: 'error' })
      throw e
    }
    const subjectRef = {
      kind,
      namespace: obj.metadata.namespace,
      name: obj.metadata.name,
      uid: obj.metadata.uid,
      resourceVersion: obj.metadata.resourceVersion,
      apiVersion: `${group}/${CRD_VERSION}`,
    }
    this.rememberStatus(group, viewKey2(kind, key), patch.status)
    for (const t of transitions(stored, patch.status)) await this.events.record(subjectRef, t)
  }

  /** What a status patch compares with: the stored status, or for Kthena's group what we wrote. */
  private storedStatus(group: string, key: string, status: unknown): unknown {
    if (group === API_GROUP) return status
    const conditions = (status as { conditions?: unknown } | undefined)?.conditions
    // A Kthena CRD whose status schema keeps our fields: the stored status is the truth.
    return Array.isArray(conditions) ? status : this.kthenaStatus.get(key)
  }

  private rememberStatus(group: string, key: string, status: unknown): void {
    if (group !== API_GROUP) this.kthenaStatus.set(key, status)
  }

  /** Writes the ConfigMap with optimistic concurrency; on a conflict reads it and retries. */
  private async write(enc: ReturnType<typeof encodeSnapshot>): Promise<void> {
    const ns = this.o.namespace
    const rv = this.cmRv
    const body = snapshotConfigMap(ns, this.cmName, enc, rv)
    try {
      const res = await this.timed(
        rv === undefined
          ? this.core.createNamespacedConfigMap({ namespace: ns, body })
          : this.core.replaceNamespacedConfigMap({ name: this.cmName, namespace: ns, body }),
        'configmap write',
      )
      this.cmRv = res.metadata?.resourceVersion
      this.cmHash = enc.snapshot.hash
      this.maxVersion = Math.max(this.maxVersion, enc.snapshot.version)
      if (this.published === undefined || this.published.version < enc.snapshot.version)
        this.published = enc.snapshot
      this.o.metrics.publishes.inc({ result: 'success' })
    } catch (e) {
      this.o.metrics.publishes.inc({ result: 'error' })
      if (isConflict(e)) {
        // Exists (create) or changed since we saw it (replace): read it, adopt it, retry.
        this.o.metrics.publishFailures.inc({ reason: 'conflict' })
        await this.refreshConfigMap()
        throw new OperatorError(
          'CONFIGMAP_CONFLICT',
          `configmap ${ns}/${this.cmName} changed concurrently; retrying`,
          { cause: e },
        )
      }
      this.o.metrics.publishFailures.inc({ reason: 'api_error' })
      throw e
    }
  }

  private timed<T>(p: Promise<T>, what: string): Promise<T> {
    return withTimeout(p, this.o.requestTimeoutMs ?? 30_000, what)
  }

  private async refreshConfigMap(): Promise<void> {
    try {
      const cm = await this.timed(
        this.core.readNamespacedConfigMap({ name: this.cmName, namespace: this.o.namespace }),
        'configmap read',
      )
      this.cmRv = cm.metadata?.resourceVersion
      try {
        const stored = decodeSnapshotConfigMap(cm).snapshot
        this.cmHash = stored.hash
        this.adopt(stored)
      } catch {
        // Unreadable content: the retry overwrites it.
        this.cmHash = undefined
      }
    } catch (e) {
      if (!isNotFound(e)) throw e
      this.cmRv = undefined
      this.cmHash = undefined
    }
  }

  private async reconcileStatus(kind: Kind, key: string): Promise<void> {
    const view = this.view
    if (view === undefined) return
    const found = this.lookup(kind === 'ModelRoute' ? 'routes' : 'servers', key)
    if (found === undefined) return // deleted: nothing to write
    const { obj, group } = found
    const generation = obj.metadata.generation ?? 0
    // Not compiled at this generation yet: the pending rebuild queues it again.
    if (view.generations.get(viewKey(kind, key)) !== generation) return
    const stored = this.storedStatus(group, viewKey2(kind, key), obj.status)
    const subject = { kind, key, generation, status: stored }
    const now = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z')
    const desired =
      kind === 'ModelRoute' ? routeStatus(subject, view, now) : serverStatus(subject, view, now)
    const patch = statusPatch(stored, desired)
    if (patch === undefined) return
    const plural = kind === 'ModelRoute' ? ROUTE.plural : SERVER.plural
    try {
      await this.timed(
        this.crs.patchNamespacedCustomObjectStatus(
          {
            group,
            version: CRD_VERSION,
            namespace: obj.metadata.namespace,
            plural,
            name: obj.metadata.name,
            body: patch,
          },
          setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
        ),
        'status patch',
      )
      this.o.metrics.statusPatches.inc({ kind, result: 'success' })
    } catch (e) {
      if (isNotFound(e)) return // deleted meanwhile
      this.o.metrics.statusPatches.inc({ kind, result: 'error' })
      throw e
    }
    const subjectRef = {
      kind,
      namespace: obj.metadata.namespace,
      name: obj.metadata.name,
      uid: obj.metadata.uid,
      resourceVersion: obj.metadata.resourceVersion,
      apiVersion: `${group}/${CRD_VERSION}`,
    }
    this.rememberStatus(group, viewKey2(kind, key), desired)
    for (const t of transitions(stored, desired)) await this.events.record(subjectRef, t)
  }
}

function viewKey2(kind: StatusKind, key: string): string {
  return `${kind}/${key}`
}

/** Waits until `cond` holds, polling (tests and startup). */
export async function waitUntil(
  cond: () => boolean,
  timeoutMs: number,
  stepMs = 20,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (!cond()) {
    if (Date.now() > deadline) return false
    await sleep(stepMs)
  }
  return true
}

/** LIST options common to every watched kind; each informer sets only the selectors it needs. */
function pageOptions(r: ListRequest): {
  limit: number
  _continue?: string
  labelSelector?: string
  fieldSelector?: string
} {
  return {
    limit: r.limit,
    ...(r.continueToken !== undefined ? { _continue: r.continueToken } : {}),
    ...(r.labelSelector !== undefined ? { labelSelector: r.labelSelector } : {}),
    ...(r.fieldSelector !== undefined ? { fieldSelector: r.fieldSelector } : {}),
  }
}

function corePage(res: {
  items: unknown[]
  metadata?: { resourceVersion?: string; _continue?: string }
}): ListPage {
  return {
    items: res.items,
    resourceVersion: res.metadata?.resourceVersion ?? '',
    continueToken: res.metadata?._continue,
  }
}
