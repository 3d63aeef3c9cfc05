// The routing snapshot: the one contract between whoever compiles configuration (the operator, or
// the data plane itself in standalone mode) and the data plane's request path. It is plain JSON so
// it can travel through a ConfigMap, a file or the push channel unchanged. It holds everything the
// data plane needs and nothing it must not hold (no Secret values, only references).

import type {
  SnapshotAuthorization,
  SnapshotPolicy,
  SnapshotRouteTierLimits,
} from './snapshot-policy.js'

export type * from './snapshot-policy.js'

/** Bumped on any incompatible change to the shape below; the data plane rejects other versions. */
export const SNAPSHOT_SCHEMA_VERSION = 1 as const

export type InferenceEngine = 'vLLM' | 'SGLang' | 'TGI' | 'TensorRT-LLM' | 'Generic'

/**
 * `path-prefix` (Gateway API `PathPrefix`, HTTPRoutes only): matches the value and anything below
 * it by whole path segments, so `/v1` matches `/v1` and `/v1/chat` but not `/v1x`.
 */
export type StringMatchKind = 'exact' | 'prefix' | 'regex' | 'path-prefix'

/** Exactly one way of matching a string; regexes were checked by the compiler. */
export interface SnapshotStringMatch {
  readonly kind: StringMatchKind
  readonly value: string
}

export interface SnapshotHeaderMatch {
  /** Lower-cased header name. */
  readonly name: string
  readonly match: SnapshotStringMatch
}

/** All present conditions must hold (AND). An absent matcher matches every request. */
export interface SnapshotMatch {
  readonly headers: readonly SnapshotHeaderMatch[]
  readonly uri?: SnapshotStringMatch
  /** Exact match on the request body's `model`. */
  readonly bodyModel?: string
}

/**
 * Where a target sends traffic: a server of `RoutingSnapshot.servers` or (ours) a provider of
 * `RoutingSnapshot.providers`, by "namespace/name" key. Exactly one is set; the other is absent so
 * `t.provider !== undefined` narrows.
 */
export type SnapshotTargetRef =
  | { readonly server: string; readonly provider?: undefined }
  | { readonly provider: string; readonly server?: undefined }

export type SnapshotTarget = SnapshotTargetRef & {
  /**
   * Relative weight: 0..100 from a ModelRoute (targets without weights get equal weights),
   * 0..1,000,000 from an HTTPRoute's backendRefs (default 1).
   */
  readonly weight: number
}

/** Ours: when a failed target hands the request to the next fallback target. */
export type FallbackOn = 'no-ready-endpoints' | 'connect-failure' | '5xx' | '429' | 'saturated'

/** Ours: the spill-over threshold of `fallback.on: [saturated]` (at least one bound is set). */
export interface SnapshotSaturation {
  /** Predicted time to first token (ms) above which a self-hosted target is saturated. */
  readonly ttftMs?: number
  /** Requests waiting per endpoint above which a self-hosted target is saturated. */
  readonly maxQueuePerEndpoint?: number
  /** Only callers of these tiers spill; absent = every caller. */
  readonly tiers?: readonly string[]
}

/** Ours: ordered targets tried after the weighted pick failed, before any byte reached the client. */
export interface SnapshotFallback {
  readonly targets: readonly SnapshotTargetRef[]
  /** Sorted; never empty. */
  readonly on: readonly FallbackOn[]
  /** Set exactly when `on` has `saturated`. */
  readonly saturation?: SnapshotSaturation
}

export interface SnapshotRule {
  /** Rule name from the CR, or `rule-<index>` when unnamed. */
  readonly name: string
  readonly match?: SnapshotMatch
  /** Only targets whose server/provider exists; a rule left with none is dropped by the compiler. */
  readonly targets: readonly SnapshotTarget[]
  /** Ours; absent = no fallback. */
  readonly fallback?: SnapshotFallback
}

export type RateLimitUnit = 'second' | 'minute' | 'hour' | 'day' | 'month'

/** Kthena-shaped per-route token limit, carried through for the rate-limit filter. */
export interface SnapshotRateLimit {
  readonly inputTokensPerUnit?: number
  readonly outputTokensPerUnit?: number
  readonly unit: RateLimitUnit
  readonly global?: { readonly redis?: { readonly address: string } }
}

export interface SnapshotRoute {
  /** "namespace/name" of the ModelRoute. */
  readonly key: string
  readonly namespace: string
  readonly name: string
  /**
   * Gateways ("namespace/name") from `parentRefs`: a data plane started with `--gateway` serves
   * the route only if it is listed. Absent = unbound, served by every data plane.
   */
  readonly gateways?: readonly string[]
  readonly modelName?: string
  readonly loraAdapters: readonly string[]
  /**
   * Set on routes compiled from a Gateway API HTTPRoute (key `HTTPRoute:namespace/name`): the
   * route claims every model, as a GAIE gateway does (the model is read from the body and passed
   * on). The data plane consults such routes only when no ModelRoute claims the model.
   */
  readonly anyModel?: true
  /** RFC 3339; routes are ordered oldest first, then by key, and the first matching rule wins. */
  readonly creationTimestamp: string
  readonly rules: readonly SnapshotRule[]
  readonly rateLimit?: SnapshotRateLimit
  /** Ours: who may call the route; absent = the policy's default (or open without a policy). */
  readonly authorization?: SnapshotAuthorization
  /** Ours: per route × tier limits. */
  readonly tierLimits?: readonly SnapshotRouteTierLimits[]
}

export interface SnapshotTimeouts {
  /** TCP (and TLS) connect. */
  readonly connectMs: number
  /** From request sent to response headers received (Kthena's `trafficPolicy.timeout`). */
  readonly responseHeaderMs: number
  /** Longest silence between two body chunks. */
  readonly idleMs: number
  /** Whole request, first byte out to last byte in. 0 = unbounded. */
  readonly requestMs: number
}

export type RetryOn = 'connect-failure' | '5xx' | '429'

export interface SnapshotRetry {
  /** Total tries including the first; 1 = no retry. */
  readonly attempts: number
  /** Base backoff between tries; doubled each try with jitter, capped at `maxIntervalMs`. */
  readonly intervalMs: number
  readonly maxIntervalMs: number
  readonly retryOn: readonly RetryOn[]
}

export interface SnapshotTrafficPolicy {
  readonly timeouts: SnapshotTimeouts
  readonly retry: SnapshotRetry
}

export interface SnapshotEndpoint {
  /** Pod name (or a static endpoint's name). Stable identity for scheduling state. */
  readonly name: string
  /** IP address or host name. */
  readonly address: string
  readonly port: number
  readonly ready: boolean
  /** Pod labels the data plane may use (GPU type, zone, …), sorted by key. */
  readonly labels: Readonly<Record<string, string>>
}

/** Scheduler plugins the data plane implements (ours; see dataplane/scheduler/README.md). */
export const SCHEDULER_PLUGIN_NAMES = [
  'least-kv-cache',
  'least-latency',
  'least-pending',
  'prefix-cache',
  'kv-cache',
  'predicted-latency',
  'lora-affinity',
  'session-affinity',
  'gpu-aware',
  'fairness',
  'random',
  'round-robin',
] as const

export type SchedulerPluginName = (typeof SCHEDULER_PLUGIN_NAMES)[number]

/** Plugin argument values as JSON: scalars, string lists, and string→number maps. */
export type SchedulerArgValue =
  | string
  | number
  | boolean
  | readonly string[]
  | Readonly<Record<string, number>>

export interface SnapshotSchedulerPlugin {
  readonly name: SchedulerPluginName
  /** Multiplies the plugin's 0..1 score; 0 for admission-only plugins (fairness). */
  readonly weight: number
  /**
   * Arguments as the user gave them, durations turned into `<name>Ms` milliseconds. Absent keys
   * take the data plane's defaults, so improving a default needs no recompile.
   */
  readonly args: Readonly<Record<string, SchedulerArgValue>>
}

/** A ModelServer's scheduler profile; absent on the server = the data plane's default profile. */
export interface SnapshotScheduler {
  /** In the order given; replaces the default plugin list as a whole. */
  readonly plugins: readonly SnapshotSchedulerPlugin[]
}

/** How a prefill/decode pair moves the KV cache (Kthena's connector types; mooncake is refused). */
export type PdConnector = 'http' | 'lmcache' | 'nixl' | 'sglang'

/** Prefill/decode disaggregation (`workloadSelector.pdGroup` + `kvConnector`). */
export interface SnapshotPd {
  /** Pod label whose value pairs prefill Pods with decode Pods. */
  readonly groupKey: string
  /** Sorted by key. */
  readonly prefillLabels: Readonly<Record<string, string>>
  /** Sorted by key. */
  readonly decodeLabels: Readonly<Record<string, string>>
  readonly connector: PdConnector
}

export interface SnapshotServer {
  /** "namespace/name" of the ModelServer. */
  readonly key: string
  readonly namespace: string
  readonly name: string
  /** When set, replaces the request `model` for non-LoRA requests. */
  readonly model?: string
  readonly engine: InferenceEngine
  readonly protocol: 'http' | 'https'
  readonly port: number
  readonly trafficPolicy: SnapshotTrafficPolicy
  /** Sorted by name. */
  readonly endpoints: readonly SnapshotEndpoint[]
  /** Absent = the data plane's default scheduler profile. */
  readonly scheduler?: SnapshotScheduler
  /**
   * Set when the server is a Gateway API Inference Extension InferencePool
   * (`inference.networking.k8s.io/v1`); its key is then `inferencePoolKey(namespace, name)`.
   */
  readonly inferencePool?: SnapshotInferencePool
  /** Present = served as prefill/decode pairs (dataplane/serve/pd-target.ts). */
  readonly pd?: SnapshotPd
}

/** An InferencePool's `spec.endpointPickerRef`, carried for an Endpoint Picker serving the pool. */
export interface SnapshotEndpointPickerRef {
  /** '' = core. */
  readonly group: string
  readonly kind: string
  readonly name: string
  /** Service port; absent only for kinds other than Service. */
  readonly port?: number
  readonly failureMode: 'FailOpen' | 'FailClose'
}

/** What an InferencePool adds to a server (the endpoints are `podIP:port` per target port). */
export interface SnapshotInferencePool {
  /** `spec.targetPorts[].number` in the given order; every one is an endpoint per pod. */
  readonly targetPorts: readonly number[]
  /** `spec.selector.matchLabels`, sorted by key. */
  readonly selector: Readonly<Record<string, string>>
  readonly endpointPicker?: SnapshotEndpointPickerRef
  /**
   * InferenceObjectives whose poolRef names this pool (`llm-d.ai/v1alpha2` and the legacy
   * `inference.networking.x-k8s.io/v1alpha2`; a name in both: llm-d.ai's), name → priority
   * (higher first; unset = 0; negative = sheddable). Sorted by name.
   */
  readonly objectives: Readonly<Record<string, number>>
  /**
   * No label or annotation named the engine: `engine` is an assumption (vLLM) and the data plane
   * reads the engine off each pod's /metrics (`vllm:`, `sglang:`, `tgi_` metric names).
   */
  readonly engineDetect?: true
}

/** Headers naming a request's InferenceObjective (llm-d's, then GAIE's deprecated alias). */
export const INFERENCE_OBJECTIVE_HEADERS = [
  'x-llm-d-inference-objective',
  'x-gateway-inference-objective',
] as const

/** Snapshot key of an InferencePool's server: never collides with a ModelServer's "ns/name". */
export function inferencePoolKey(namespace: string, name: string): string {
  return `InferencePool:${namespace}/${name}`
}

/** Snapshot key of an HTTPRoute's route: never collides with a ModelRoute's "ns/name". */
export function httpRouteKey(namespace: string, name: string): string {
  return `HTTPRoute:${namespace}/${name}`
}

/**
 * The priority of a request to `server` from its InferenceObjective header; undefined when the
 * server is not an InferencePool, no header names an objective, or the objective is unknown
 * (GAIE treats that as priority 0; the caller applies its own default).
 */
export function objectivePriority(
  server: SnapshotServer,
  header: (name: string) => string | undefined,
): number | undefined {
  const objectives = server.inferencePool?.objectives
  if (objectives === undefined) return undefined
  for (const h of INFERENCE_OBJECTIVE_HEADERS) {
    const name = header(h)
    if (name !== undefined && name !== '')
      return Object.hasOwn(objectives, name) ? objectives[name] : undefined
  }
  return undefined
}

/** Ours (Kthena has OpenAI and Anthropic). */
export type ProviderType =
  | 'OpenAI'
  | 'AzureOpenAI'
  | 'DeepSeek'
  | 'HuggingFace'
  | 'Gemini'
  | 'Anthropic'
  | 'OpenAICompatible'

/** How the data plane authenticates to a provider. Holds a file name, never the key. */
export interface SnapshotProviderCredential {
  /** `Bearer`: `authorization: Bearer <key>`; `APIKey`: the bare key in `header`. */
  readonly scheme: 'Bearer' | 'APIKey'
  /** Lower-cased header name that carries the key. */
  readonly header: string
  /** Entry of the mounted credentials (a file name under the data plane's secrets directory). */
  readonly secretFile: string
  /** The Secret and key it was copied from, for messages and status. */
  readonly secretRef: { readonly name: string; readonly key: string }
}

/** Prices per 1M tokens, for cost estimates. */
export interface SnapshotPricing {
  readonly inputPerMillion: number
  readonly outputPerMillion: number
  /** Input tokens read from the provider's prompt cache; absent = `inputPerMillion`. */
  readonly cachedInputPerMillion?: number
  readonly currency: string
}

/** An ExternalModelProvider as the data plane needs it (ours beyond Kthena's fields). */
export interface SnapshotProvider {
  /** "namespace/name" of the ExternalModelProvider. */
  readonly key: string
  readonly namespace: string
  readonly name: string
  readonly type: ProviderType
  /** When set, replaces the request `model`. */
  readonly model?: string
  /** Effective API root, no trailing slash (defaults applied by the compiler). */
  readonly baseURL: string
  readonly insecureSkipVerify: boolean
  /** Absent = no credential is sent. */
  readonly credential?: SnapshotProviderCredential
  /** Static headers, lower-cased names, reserved ones already rejected. */
  readonly headers: Readonly<Record<string, string>>
  readonly azure?: { readonly deployment: string; readonly apiVersion: string }
  readonly huggingFace?: { readonly api: 'Router' | 'TGI' }
  readonly anthropic?: { readonly version: string; readonly defaultMaxTokens: number }
  readonly gemini?: { readonly apiVersion: 'v1beta' | 'v1' }
  readonly pricing?: SnapshotPricing
  readonly trafficPolicy: SnapshotTrafficPolicy
}

export interface RoutingSnapshot {
  readonly schemaVersion: typeof SNAPSHOT_SCHEMA_VERSION
  /** Monotonically increasing per publisher; the data plane ignores older versions. */
  readonly version: number
  /** sha256 (hex) over the canonical JSON of everything except `version` and `hash`. */
  readonly hash: string
  /** Ordered by precedence: oldest creationTimestamp first, then key. */
  readonly routes: readonly SnapshotRoute[]
  /** Keyed by "namespace/name". */
  readonly servers: Readonly<Record<string, SnapshotServer>>
  /** Ours: ExternalModelProviders keyed by "namespace/name"; absent when there are none. */
  readonly providers?: Readonly<Record<string, SnapshotProvider>>
  /** The GatewayPolicy (authentication, tiers, limits); absent = no authentication. */
  readonly policy?: SnapshotPolicy
}

export const DEFAULT_TIMEOUTS: SnapshotTimeouts = {
  connectMs: 5_000,
  responseHeaderMs: 300_000,
  idleMs: 120_000,
  requestMs: 0,
}

export const DEFAULT_RETRY: SnapshotRetry = {
  attempts: 1,
  intervalMs: 100,
  maxIntervalMs: 2_000,
  retryOn: ['connect-failure', '5xx', '429'],
}

/**
 * Whether the data plane of Gateway `gateway` ("namespace/name"; undefined = no Gateway
 * identity, serves everything) serves `route`: unbound routes are served by every data plane.
 */
export function servedByGateway(route: SnapshotRoute, gateway: string | undefined): boolean {
  return gateway === undefined || route.gateways === undefined || route.gateways.includes(gateway)
}
