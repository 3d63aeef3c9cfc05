// Checking a snapshot on the receiving side. The data plane gets snapshots from a ConfigMap file
// or the push channel and must never swap in one it does not understand, so it validates shape,
// schema version, internal references and the content hash before use.

import { z } from 'zod'
import { canonicalJson, sha256Hex } from './canonical-json.js'
import {
  type RoutingSnapshot,
  SCHEDULER_PLUGIN_NAMES,
  SNAPSHOT_SCHEMA_VERSION,
  type SnapshotProvider,
  type SnapshotRoute,
  type SnapshotServer,
  type SnapshotTargetRef,
} from './snapshot.js'
import {
  snapshotAuthorizationSchema,
  snapshotPolicySchema,
  snapshotRouteTierLimitsSchema,
} from './snapshot-policy.js'
import { formatPath, type PathSegment } from './validate.js'

export class SnapshotInvalidError extends Error {
  readonly code = 'SNAPSHOT_INVALID'
  override readonly name = 'SnapshotInvalidError'
  /** Field path of the first problem, e.g. `routes[0].rules[1].targets[0].server`. */
  readonly path: string
  constructor(path: string, message: string) {
    super(path === '' ? message : `${path}: ${message}`)
    this.path = path
  }
}

/** sha256 (hex) of the canonical JSON of everything except `version` and `hash`. */
export function snapshotHash(
  s: Pick<RoutingSnapshot, 'schemaVersion' | 'routes' | 'servers' | 'policy' | 'providers'>,
): string {
  return sha256Hex(
    canonicalJson({
      schemaVersion: s.schemaVersion,
      routes: s.routes,
      servers: s.servers,
      // Only when present, so snapshots without a policy keep the hashes they always had.
      ...(s.policy !== undefined ? { policy: s.policy } : {}),
      ...(s.providers !== undefined ? { providers: s.providers } : {}),
    }),
  )
}

const stringMatch = z.strictObject({
  kind: z.enum(['exact', 'prefix', 'regex', 'path-prefix']),
  value: z.string(),
})

const match = z.strictObject({
  headers: z.array(z.strictObject({ name: z.string().min(1), match: stringMatch })),
  uri: stringMatch.exactOptional(),
  bodyModel: z.string().exactOptional(),
})

const weight = z.number().int().min(0).max(1_000_000)
const targetRef = z.union([
  z.strictObject({ server: z.string() }),
  z.strictObject({ provider: z.string() }),
])
const target = z.union([
  z.strictObject({ server: z.string(), weight }),
  z.strictObject({ provider: z.string(), weight }),
])
const fallbackOn = z.enum(['no-ready-endpoints', 'connect-failure', '5xx', '429', 'saturated'])
const saturation = z.strictObject({
  ttftMs: z.number().nonnegative().exactOptional(),
  maxQueuePerEndpoint: z.number().int().nonnegative().exactOptional(),
  tiers: z.array(z.string().min(1)).min(1).exactOptional(),
})

const route = z.strictObject({
  key: z.string().min(1),
  namespace: z.string().min(1),
  name: z.string().min(1),
  gateways: z.array(z.string().min(1)).min(1).exactOptional(),
  modelName: z.string().exactOptional(),
  loraAdapters: z.array(z.string()),
  anyModel: z.literal(true).exactOptional(),
  creationTimestamp: z.string(),
  rules: z.array(
    z.strictObject({
      name: z.string(),
      match: match.exactOptional(),
      targets: z.array(target).min(1),
      fallback: z
        .strictObject({
          targets: z.array(targetRef).min(1),
          on: z.array(fallbackOn).min(1),
          saturation: saturation.exactOptional(),
        })
        .exactOptional(),
    }),
  ),
  rateLimit: z
    .strictObject({
      inputTokensPerUnit: z.number().int().min(1).exactOptional(),
      outputTokensPerUnit: z.number().int().min(1).exactOptional(),
      unit: z.enum(['second', 'minute', 'hour', 'day', 'month']),
      global: z
        .strictObject({ redis: z.strictObject({ address: z.string() }).exactOptional() })
        .exactOptional(),
    })
    .exactOptional(),
  authorization: snapshotAuthorizationSchema.exactOptional(),
  tierLimits: snapshotRouteTierLimitsSchema.exactOptional(),
}) satisfies z.ZodType<SnapshotRoute>

const ms = z.number().int().min(0)

const schedulerArg = z.union([
  z.string(),
  z.number(),
  z.boolean(),
  z.array(z.string()),
  z.record(z.string(), z.number()),
])

const scheduler = z.strictObject({
  plugins: z.array(
    z.strictObject({
      name: z.enum(SCHEDULER_PLUGIN_NAMES),
      weight: z.number().min(0).max(100),
      args: z.record(z.string(), schedulerArg),
    }),
  ),
})

const server = z.strictObject({
  key: z.string().min(1),
  namespace: z.string().min(1),
  name: z.string().min(1),
  model: z.string().exactOptional(),
  engine: z.enum(['vLLM', 'SGLang', 'TGI', 'TensorRT-LLM', 'Generic']),
  protocol: z.enum(['http', 'https']),
  port: z.number().int().min(1).max(65535),
  trafficPolicy: z.strictObject({
    timeouts: z.strictObject({ connectMs: ms, responseHeaderMs: ms, idleMs: ms, requestMs: ms }),
    retry: z.strictObject({
      attempts: z.number().int().min(1),
      intervalMs: ms,
      maxIntervalMs: ms,
      retryOn: z.array(z.enum(['connect-failure', '5xx', '429'])),
    }),
  }),
  endpoints: z.array(
    z.strictObject({
      name: z.string().min(1),
      address: z.string().min(1),
      port: z.number().int().min(1).max(65535),
      ready: z.boolean(),
      labels: z.record(z.string(), z.string()),
    }),
  ),
  scheduler: scheduler.exactOptional(),
  pd: z
    .strictObject({
      groupKey: z.string().min(1),
      prefillLabels: z.record(z.string(), z.string()),
      decodeLabels: z.record(z.string(), z.string()),
      connector: z.enum(['http', 'lmcache', 'nixl', 'sglang']),
    })
    .exactOptional(),
  inferencePool: z
    .strictObject({
      targetPorts: z.array(z.number().int().min(1).max(65535)).min(1),
      selector: z.record(z.string(), z.string()),
      endpointPicker: z
        .strictObject({
          group: z.string(),
          kind: z.string().min(1),
          name: z.string().min(1),
          port: z.number().int().min(1).max(65535).exactOptional(),
          failureMode: z.enum(['FailOpen', 'FailClose']),
        })
        .exactOptional(),
      objectives: z.record(z.string(), z.number().int()),
      engineDetect: z.literal(true).exactOptional(),
    })
    .exactOptional(),
}) satisfies z.ZodType<SnapshotServer>

const msRange = z.number().int().min(0)
const provider = z.strictObject({
  key: z.string().min(1),
  namespace: z.string().min(1),
  name: z.string().min(1),
  type: z.enum([
    'OpenAI',
    'AzureOpenAI',
    'DeepSeek',
    'HuggingFace',
    'Gemini',
    'Anthropic',
    'OpenAICompatible',
  ]),
  model: z.string().exactOptional(),
  baseURL: z.string().regex(/^https?:\/\/[^?#]+$/),
  insecureSkipVerify: z.boolean(),
  credential: z
    .strictObject({
      scheme: z.enum(['Bearer', 'APIKey']),
      header: z.string().min(1),
      secretFile: z.string().regex(/^[-._a-zA-Z0-9]{1,253}$/),
      secretRef: z.strictObject({ name: z.string().min(1), key: z.string().min(1) }),
    })
    .exactOptional(),
  headers: z.record(z.string(), z.string()),
  azure: z
    .strictObject({ deployment: z.string().min(1), apiVersion: z.string().min(1) })
    .exactOptional(),
  huggingFace: z.strictObject({ api: z.enum(['Router', 'TGI']) }).exactOptional(),
  anthropic: z
    .strictObject({ version: z.string().min(1), defaultMaxTokens: z.number().int().min(1) })
    .exactOptional(),
  gemini: z.strictObject({ apiVersion: z.enum(['v1beta', 'v1']) }).exactOptional(),
  pricing: z
    .strictObject({
      inputPerMillion: z.number().min(0),
      outputPerMillion: z.number().min(0),
      cachedInputPerMillion: z.number().min(0).exactOptional(),
      currency: z.string().min(1),
    })
    .exactOptional(),
  trafficPolicy: z.strictObject({
    timeouts: z.strictObject({
      connectMs: msRange,
      responseHeaderMs: msRange,
      idleMs: msRange,
      requestMs: msRange,
    }),
    retry: z.strictObject({
      attempts: z.number().int().min(1),
      intervalMs: msRange,
      maxIntervalMs: msRange,
      retryOn: z.array(z.enum(['connect-failure', '5xx', '429'])),
    }),
  }),
}) satisfies z.ZodType<SnapshotProvider>

const snapshotSchema = z.strictObject({
  // Checked separately first so a newer publisher gets a clear "unsupported version" message.
  schemaVersion: z.literal(SNAPSHOT_SCHEMA_VERSION),
  version: z.number().int().min(0),
  hash: z.string().regex(/^[0-9a-f]{64}$/),
  routes: z.array(route),
  servers: z.record(z.string(), server),
  policy: snapshotPolicySchema.exactOptional(),
  providers: z.record(z.string(), provider).exactOptional(),
}) satisfies z.ZodType<RoutingSnapshot>

function fail(path: readonly PathSegment[], message: string): never {
  throw new SnapshotInvalidError(formatPath(path), message)
}

/** Validate an untrusted snapshot; throws `SnapshotInvalidError` naming the first bad field. */
export function validateSnapshot(x: unknown): RoutingSnapshot {
  if (typeof x !== 'object' || x === null || Array.isArray(x)) fail([], 'must be an object')
  const version = (x as { schemaVersion?: unknown }).schemaVersion
  if (version !== SNAPSHOT_SCHEMA_VERSION) {
    fail(
      ['schemaVersion'],
      `unsupported snapshot schema version ${JSON.stringify(version)} (expected ${SNAPSHOT_SCHEMA_VERSION})`,
    )
  }
  const r = snapshotSchema.safeParse(x)
  if (!r.success) {
    const iss = r.error.issues[0]
    const path = (iss?.path ?? []).filter((p): p is PathSegment => typeof p !== 'symbol')
    fail(path, iss?.message.toLowerCase() ?? 'invalid')
  }
  const snap: RoutingSnapshot = r.data
  for (const [key, s] of Object.entries(snap.servers)) {
    if (s.key !== key) fail(['servers', key, 'key'], `must equal its map key "${key}"`)
  }
  for (const [key, p] of Object.entries(snap.providers ?? {})) {
    if (p.key !== key) fail(['providers', key, 'key'], `must equal its map key "${key}"`)
  }
  const checkRef = (t: SnapshotTargetRef, path: PathSegment[]): void => {
    if (t.provider !== undefined) {
      if (snap.providers?.[t.provider] === undefined)
        fail(
          [...path, 'provider'],
          `refers to provider "${t.provider}" which is not in the snapshot`,
        )
    } else if (snap.servers[t.server] === undefined) {
      fail([...path, 'server'], `refers to server "${t.server}" which is not in the snapshot`)
    }
  }
  snap.routes.forEach((rt, ri) => {
    rt.rules.forEach((rule, ui) => {
      rule.targets.forEach((t, ti) => {
        checkRef(t, ['routes', ri, 'rules', ui, 'targets', ti])
      })
      rule.fallback?.targets.forEach((t, ti) => {
        checkRef(t, ['routes', ri, 'rules', ui, 'fallback', 'targets', ti])
      })
    })
  })
  if (snapshotHash(snap) !== snap.hash) fail(['hash'], 'does not match the snapshot content')
  return snap
}
