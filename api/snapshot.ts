// The routing snapshot: the one contract between whoever compiles configuration (the operator, or
// the data plane itself in standalone mode) and the data plane's request path. It is plain JSON so
// it can travel through a ConfigMap, a file or the push channel unchanged. It holds everything the
// data plane needs and nothing it must not hold (no Secret values, only references).

/** Bumped on any incompatible change to the shape below; the data plane rejects other versions. */
export const SNAPSHOT_SCHEMA_VERSION = 1 as const

export type InferenceEngine = 'vLLM' | 'SGLang' | 'TGI' | 'TensorRT-LLM' | 'Generic'

export type StringMatchKind = 'exact' | 'prefix' | 'regex'

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

export interface SnapshotTarget {
  /** Key of a server in `RoutingSnapshot.servers` ("namespace/name"). */
  readonly server: string
  /** 0..100; targets without weights in the CR get equal weights. */
  readonly weight: number
}

export interface SnapshotRule {
  /** Rule name from the CR, or `rule-<index>` when unnamed. */
  readonly name: string
  readonly match?: SnapshotMatch
  /** Only targets whose server exists; a rule left with none is dropped by the compiler. */
  readonly targets: readonly SnapshotTarget[]
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
  readonly modelName?: string
  readonly loraAdapters: readonly string[]
  /** RFC 3339; routes are ordered oldest first, then by key, and the first matching rule wins. */
  readonly creationTimestamp: string
  readonly rules: readonly SnapshotRule[]
  readonly rateLimit?: SnapshotRateLimit
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
