// The one source of truth for the ModelRoute and ModelServer CRDs: zod 4 schemas from which the
// TypeScript types are inferred and the CRD `openAPIV3Schema` is generated. Field names follow
// Kthena's v1alpha1 API so existing manifests apply unchanged; our additions are marked "ours".
//
// The schemas hold what a CRD schema can express (types, enums, bounds, patterns, CEL one-of
// rules as `x-kubernetes-validations` metadata). Checks that need the whole object (weights on
// all targets or none, regex compilation, …) live in validate.ts.

import { z } from 'zod'
import { DURATION_PATTERN, parseDuration } from './duration.js'
import { ruleFallbackSchema } from './fallback-schema.js'
import { routeAuthorizationSchema, routeTierLimitsSchema } from './limits-schema.js'
import { SCHEDULER_PLUGIN_NAMES } from './snapshot.js'

export const API_GROUP = 'networking.matrixinfer.ai'
export const API_VERSION = `${API_GROUP}/v1alpha1` as const
/** Kthena's group since its first release (networking.matrixinfer.ai was its pre-release name). */
export const KTHENA_API_GROUP = 'networking.serving.volcano.sh'
export const KTHENA_API_VERSION = `${KTHENA_API_GROUP}/v1alpha1` as const
/** ModelRoute, ModelServer and ExternalModelProvider are accepted in both groups alike. */
export const ROUTING_API_VERSIONS = [API_VERSION, KTHENA_API_VERSION] as const

/** DNS-1123 subdomain: what Kubernetes accepts for most object names. */
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/
/** DNS-1123 label: what Kubernetes accepts for namespace names. */
const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/

export const durationSchema = z
  .string()
  .regex(new RegExp(DURATION_PATTERN), { error: 'must be a duration like 500ms, 30s or 1m30s' })

/**
 * Error for a value outside a fixed set. A missing value falls through (undefined) to the
 * parse-level error map, which says "is required".
 */
function oneOf(values: readonly string[]) {
  return {
    error: (iss: { input?: unknown }) =>
      iss.input === undefined ? undefined : `must be one of ${values.join(', ')}`,
  }
}

/** Kubernetes integer fields are int32 (Kthena's uint32 token counts fit as well). */
const INT32_MAX = 2_147_483_647

/** Bounded integer with one human message for every way it can be wrong. */
function intRange(min: number, max?: number) {
  const msg = max === undefined ? `must be an integer >= ${min}` : `must be ${min}..${max}`
  return z
    .number()
    .int({ error: msg })
    .min(min, { error: msg })
    .max(max ?? INT32_MAX, { error: `must be ${min}..${max ?? INT32_MAX}` })
}

const stringMap = z.record(z.string(), z.string())

// ---------------------------------------------------------------------------------------------
// metadata

const timestampSchema = z.preprocess(
  // client-node's typed models deserialise timestamps into Date objects; normalise to the wire form.
  (v) => (v instanceof Date ? v.toISOString() : v),
  z
    .string()
    .refine((s) => !Number.isNaN(Date.parse(s)), { error: 'must be an RFC 3339 timestamp' }),
)

/** ObjectMeta subset we read; unknown fields (managedFields, ownerReferences, …) pass through. */
export const objectMetaSchema = z.looseObject({
  name: z.string().max(253, { error: 'must be at most 253 characters' }).regex(DNS1123_SUBDOMAIN, {
    error: 'must be a lowercase DNS-1123 subdomain (a-z, 0-9, "-", ".")',
  }),
  namespace: z
    .string()
    .max(63, { error: 'must be at most 63 characters' })
    .regex(DNS1123_LABEL, { error: 'must be a lowercase DNS-1123 label (a-z, 0-9, "-")' })
    .optional(),
  creationTimestamp: timestampSchema.optional(),
  generation: z.number().int().optional(),
  uid: z.string().optional(),
  resourceVersion: z.string().optional(),
  labels: stringMap.optional(),
  annotations: stringMap.optional(),
})
export type ObjectMeta = z.infer<typeof objectMetaSchema>

/** Status is written by the operator; on input it is carried along unchecked. */
const statusSchema = z.record(z.string(), z.unknown()).optional()

// ---------------------------------------------------------------------------------------------
// ModelRoute

export const stringMatchSchema = z
  .strictObject({
    exact: z.string().optional(),
    prefix: z.string().optional(),
    regex: z.string().optional(),
  })
  .meta({
    description: 'Exactly one of exact, prefix or regex.',
    'x-kubernetes-validations': [
      {
        rule: '(has(self.exact) ? 1 : 0) + (has(self.prefix) ? 1 : 0) + (has(self.regex) ? 1 : 0) == 1',
        message: 'exactly one of exact, prefix or regex must be set',
      },
    ],
  })
export type StringMatch = z.infer<typeof stringMatchSchema>

export const modelMatchSchema = z.strictObject({
  headers: z
    .record(z.string(), stringMatchSchema)
    .describe('Request header name to match; every entry must hold.')
    .optional(),
  uri: stringMatchSchema.describe('Match on the request path.').optional(),
  body: z
    .strictObject({
      model: z.string().describe('Exact match on the "model" field of the JSON body.').optional(),
    })
    .describe('Match on the request body.')
    .optional(),
})
export type ModelMatch = z.infer<typeof modelMatchSchema>

export const targetModelSchema = z
  .strictObject({
    modelServerName: z
      .string()
      .describe(
        "ModelServer in the route's namespace; exactly one of this or externalModelProviderName.",
      )
      .optional(),
    externalModelProviderName: z
      .string()
      .describe(
        "ExternalModelProvider in the route's namespace; exactly one of this or modelServerName.",
      )
      .optional(),
    // Ours: a Gateway API Inference Extension pool as the target (docs/gaie.md).
    inferencePoolName: z
      .string()
      .describe(
        "InferencePool (inference.networking.k8s.io/v1) in the route's namespace; instead of modelServerName or externalModelProviderName.",
      )
      .optional(),
    // Kthena's CRD default: a target without a weight weighs 100, also next to weighted ones.
    weight: intRange(0, 100)
      .default(100)
      .describe("Relative share of the rule's requests, 0..100 (default 100, as in Kthena)."),
  })
  .meta({
    'x-kubernetes-validations': [
      {
        rule: "(has(self.modelServerName) && self.modelServerName != '' ? 1 : 0) + (has(self.externalModelProviderName) && self.externalModelProviderName != '' ? 1 : 0) + (has(self.inferencePoolName) && self.inferencePoolName != '' ? 1 : 0) == 1",
        message:
          'exactly one of modelServerName or externalModelProviderName (or inferencePoolName) must be set',
      },
    ],
  })
export type TargetModel = z.infer<typeof targetModelSchema>

export const ruleSchema = z.strictObject({
  name: z
    .string()
    .describe('Rule name, shown in metrics and logs (default rule-<index>).')
    .optional(),
  modelMatch: modelMatchSchema
    .describe('Conditions on the request, all ANDed; absent = match every request.')
    .optional(),
  targetModels: z
    .array(targetModelSchema)
    .min(1, { error: 'must have at least one target' })
    .max(16, { error: 'must have at most 16 targets' })
    .describe('Where matching requests go, picked by weight.'),
  /** Ours: ordered targets tried when the weighted pick cannot serve (see fallback-schema.ts). */
  fallback: ruleFallbackSchema
    .describe('Ours: ordered targets tried when the weighted target cannot serve.')
    .optional(),
})
export type Rule = z.infer<typeof ruleSchema>

/** Gateway API ParentReference (sigs.k8s.io/gateway-api v1). */
export const parentRefSchema = z.strictObject({
  group: z.string().describe('Group of the parent (default gateway.networking.k8s.io).').optional(),
  kind: z.string().describe('Kind of the parent (default Gateway).').optional(),
  namespace: z
    .string()
    .describe("Namespace of the Gateway (default: the route's namespace).")
    .optional(),
  name: z.string().min(1, { error: 'must not be empty' }).describe('Name of the Gateway.'),
  sectionName: z.string().describe('Listener name within the Gateway.').optional(),
  port: intRange(1, 65535).describe('Listener port within the Gateway.').optional(),
})
export type ParentReference = z.infer<typeof parentRefSchema>

export const rateLimitUnits = ['second', 'minute', 'hour', 'day', 'month'] as const

export const rateLimitSchema = z.strictObject({
  inputTokensPerUnit: intRange(1).describe('Prompt tokens allowed per unit.').optional(),
  outputTokensPerUnit: intRange(1).describe('Completion tokens allowed per unit.').optional(),
  unit: z
    .enum(rateLimitUnits, oneOf(rateLimitUnits))
    .default('second')
    .describe('Window of the limits: second, minute, hour, day or month.'),
  global: z
    .strictObject({
      redis: z
        .strictObject({
          address: z.string().min(1, { error: 'must not be empty' }).describe('Redis host:port.'),
        })
        .describe('Redis shared by every data-plane replica.')
        .optional(),
    })
    .describe('Share the limit across replicas; absent = each replica counts alone.')
    .optional(),
})
export type RateLimit = z.infer<typeof rateLimitSchema>

export const modelRouteSpecSchema = z
  .strictObject({
    modelName: z
      .string()
      .describe('The "model" requests name to reach this route; immutable, as in Kthena.')
      .meta({
        'x-kubernetes-validations': [
          { rule: 'self == oldSelf', message: 'modelName is immutable' },
        ],
      })
      .optional(),
    loraAdapters: z
      .array(z.string())
      .max(10, { error: 'must have at most 10 entries' })
      .describe('LoRA adapter names also served by this route (sent to the engine unchanged).')
      .optional(),
    parentRefs: z
      .array(parentRefSchema)
      .describe(
        'Gateways that serve this route; a data plane started with --gateway serves only routes bound to it (or to none).',
      )
      .optional(),
    rules: z
      .array(ruleSchema)
      .min(1, { error: 'must have at least one rule' })
      .max(16, { error: 'must have at most 16 rules' })
      .describe('Tried in order; the first whose modelMatch holds serves the request.'),
    rateLimit: rateLimitSchema.describe('Token rate limits for this model.').optional(),
    /** Ours: who may call this route (needs a GatewayPolicy for identities). */
    authorization: routeAuthorizationSchema
      .describe('Ours: who may call this route (identities come from the GatewayPolicy).')
      .optional(),
    /** Ours: per route × tier limits, on top of the tier's own. */
    tierLimits: routeTierLimitsSchema
      .describe("Ours: per-tier limits for this route, on top of the tier's own.")
      .optional(),
  })
  .meta({
    'x-kubernetes-validations': [
      {
        rule: "(has(self.modelName) && self.modelName != '') || (has(self.loraAdapters) && size(self.loraAdapters) > 0)",
        message: 'modelName or loraAdapters must be set',
      },
    ],
  })
export type ModelRouteSpec = z.infer<typeof modelRouteSpecSchema>

export const modelRouteSchema = z.looseObject({
  // Optional because list responses from some clients omit them on items; when present they
  // must be right.
  apiVersion: z.enum(ROUTING_API_VERSIONS, oneOf(ROUTING_API_VERSIONS)).optional(),
  kind: z.literal('ModelRoute', oneOf(['ModelRoute'])).optional(),
  metadata: objectMetaSchema,
  spec: modelRouteSpecSchema,
  status: statusSchema,
})
export type ModelRoute = z.infer<typeof modelRouteSchema>

// ---------------------------------------------------------------------------------------------
// ModelServer

/** Kthena has vLLM and SGLang; TGI, TensorRT-LLM and Generic are ours. */
export const inferenceEngines = ['vLLM', 'SGLang', 'TGI', 'TensorRT-LLM', 'Generic'] as const
export const retryOnValues = ['connect-failure', '5xx', '429'] as const
/** Kthena's four; `sglang` (bootstrap rooms) is ours, Kthena picks it implicitly for SGLang. */
export const kvConnectorTypes = ['http', 'lmcache', 'nixl', 'mooncake', 'sglang'] as const

export const workloadSelectorSchema = z.strictObject({
  matchLabels: stringMap
    .refine((m) => Object.keys(m).length > 0, {
      error: 'must have at least one label',
    })
    .describe("Labels of the engine Pods, in the ModelServer's namespace."),
  pdGroup: z
    .strictObject({
      groupKey: z
        .string()
        .min(1, { error: 'must not be empty' })
        .describe('Pod label whose value pairs a prefill Pod with decode Pods.'),
      prefillLabels: stringMap.describe('Labels of the prefill Pods.'),
      decodeLabels: stringMap.describe('Labels of the decode Pods.'),
    })
    .describe(
      'Prefill/decode disaggregation: requests are served by a decode Pod and a prefill Pod of the same group.',
    )
    .optional(),
})

export const workloadPortSchema = z.strictObject({
  port: intRange(1, 65535).describe('Port the engine listens on.'),
  protocol: z
    .enum(['http', 'https'], oneOf(['http', 'https']))
    .default('http')
    .describe('http or https to the engine.'),
})

export const retrySchema = z
  .strictObject({
    /** Kthena: retries after the first try (0 = no retry). */
    attempts: intRange(0).describe('Retries after the first try (0 = none).'),
    retryInterval: durationSchema
      .describe('Wait before the first retry (default 100ms).')
      .optional(),
    /** Ours: backoff cap. */
    maxRetryInterval: durationSchema
      .describe('Ours: cap of the doubling backoff; at least retryInterval.')
      .optional(),
    /** Ours: which failures are retried (only before the first response byte). */
    retryOn: z
      .array(z.enum(retryOnValues, oneOf(retryOnValues)))
      .describe('Ours: failures retried, only before the first response byte.')
      .optional(),
  })
  .meta({
    'x-kubernetes-validations': [
      {
        rule: '!has(self.retryInterval) || !has(self.maxRetryInterval) || duration(self.maxRetryInterval) >= duration(self.retryInterval)',
        message: 'maxRetryInterval must not be less than retryInterval',
      },
    ],
  })

/** Ours: finer timeouts than Kthena's single `timeout`. */
export const timeoutsSchema = z.strictObject({
  connect: durationSchema.describe('TCP/TLS connect to the engine.').optional(),
  responseHeader: durationSchema
    .describe('From sending the request to the response headers.')
    .optional(),
  idle: durationSchema.describe('Longest silence while streaming the response.').optional(),
  request: durationSchema.describe('Whole request, retries included.').optional(),
})

export const trafficPolicySchema = z.strictObject({
  /** Kthena: dial + send + wait for response headers. */
  timeout: durationSchema
    .describe('Dial, send and wait for response headers (Kthena); same as timeouts.responseHeader.')
    .optional(),
  timeouts: timeoutsSchema.describe('Ours: finer timeouts.').optional(),
  retry: retrySchema.describe('Retries of a failed try on another endpoint.').optional(),
})
export type TrafficPolicy = z.infer<typeof trafficPolicySchema>

// ---------------------------------------------------------------------------------------------
// Scheduler profile (ours): which plugins score endpoints, with what weight and arguments.
// Per-plugin argument objects are strict so a typo fails with its field path; the data plane
// fills in defaults for whatever is left out.

/** Real number within bounds, worded like `intRange`. */
function numRange(min: number, max: number) {
  const msg = `must be ${min}..${max}`
  return z.number().min(min, { error: msg }).max(max, { error: msg })
}

/** A duration with an upper bound (parseDuration also rejects overflowing values). */
function boundedDuration(maxMs: number, what: string) {
  return durationSchema.refine(
    (s) => {
      try {
        return parseDuration(s) <= maxMs
      } catch {
        return false
      }
    },
    { error: `must be at most ${what}` },
  )
}

/** RFC 9110 token: a header or cookie name. */
const httpToken = z
  .string()
  .regex(/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/, { error: 'must be a valid header/cookie name' })

const pluginWeight = numRange(0, 100)
const loadMargin = numRange(0, 100_000)

export const schedulerPluginArgSchemas = {
  'least-kv-cache': z.strictObject({}),
  'least-latency': z.strictObject({
    /** Kthena's TTFTTPOTWeightFactor: share of TTFT in the score, the rest is TPOT. */
    ttftTpotWeightFactor: numRange(0, 1).optional(),
  }),
  'least-pending': z.strictObject({
    /** Extra weight of a queued request over a running one (a queued one gets no service). */
    queueWeight: numRange(0, 100).optional(),
    /** Filter: drop endpoints with at least this many queued requests (unless all have). */
    maxWaitingRequests: intRange(1).optional(),
  }),
  'prefix-cache': z.strictObject({
    /** Tokens per hashed block (the engine's KV block size is used when it exports one). */
    blockSizeTokens: intRange(1, 1024).optional(),
    /** Characters per token for cutting text into blocks without a tokenizer. */
    charsPerToken: intRange(1, 16).optional(),
    /** Blocks hashed per request; longer prompts are matched on this prefix only. */
    maxBlocks: intRange(1, 16_384).optional(),
    /** Blocks remembered per endpoint when the engine does not export num_gpu_blocks. */
    lruCapacity: intRange(16, 10_000_000).optional(),
    /** Stop preferring a cached endpoint once its pending requests exceed the least-loaded one's by this much. */
    loadMargin: loadMargin.optional(),
    /** Leading blocks that key rendezvous hashing for prefixes no endpoint holds yet. */
    affinityBlocks: intRange(1, 1024).optional(),
    /** Rendezvous placement only among endpoints this close to the least-loaded one. */
    coldLoadMargin: loadMargin.optional(),
  }),
  'kv-cache': z.strictObject({
    /** The engine's KV-event PUB port (vLLM --kv-events-config endpoint), on each pod's address. */
    eventsPort: intRange(1, 65_535).optional(),
    /** The engine's replay ROUTER port; 0 or absent: lost events reset the index instead. */
    replayPort: intRange(0, 65_535).optional(),
    /** Topic prefix to subscribe to (vLLM's default is empty: all). */
    topic: z.string().max(256).optional(),
    /** The engine's KV block size in tokens. */
    blockSize: intRange(1, 1024).optional(),
    /** The engine's PYTHONHASHSEED (vLLM seeds its block-hash chain with it). */
    hashSeed: z.string().max(64).optional(),
    /** Whose event format and block hashing: vLLM's (default) or SGLang's (defaulted from inferenceEngine). */
    engine: z.enum(['vllm', 'sglang']).optional(),
    /** Path of the model's tokenizer.json, or `words` for the engine simulator. */
    tokenizer: z.string().min(1).max(4096).optional(),
    /** Blocks hashed per request. */
    maxBlocks: intRange(1, 16_384).optional(),
    /** Blocks indexed per endpoint at most (more means missed removals: the index is rebuilt). */
    indexCapacity: intRange(16, 100_000_000).optional(),
    loadMargin: loadMargin.optional(),
  }),
  'predicted-latency': z.strictObject({
    /** The prefix index's block cutting and size, as for prefix-cache. */
    blockSizeTokens: intRange(1, 1024).optional(),
    charsPerToken: intRange(1, 16).optional(),
    maxBlocks: intRange(1, 16_384).optional(),
    lruCapacity: intRange(16, 10_000_000).optional(),
    /** Leading blocks whose hash orders equally good endpoints (rendezvous). */
    affinityBlocks: intRange(1, 1024).optional(),
    /** The engine's batch limit (max_num_seqs) until it shows one by queueing. */
    maxNumSeqs: intRange(1, 1_000_000).optional(),
    /** Predictions within this fraction of the best count as equally good. */
    tolerance: numRange(0, 1).optional(),
    /** Starting points of the online calibration (ms). */
    prefillMsPerToken: numRange(0, 100).optional(),
    overheadMs: numRange(0, 60_000).optional(),
    decodeMsPerToken: numRange(0, 10_000).optional(),
    /** What loading a LoRA adapter adds to TTFT until it is learned (ms); the plugin's own bounds. */
    loraLoadMs: numRange(0, 60_000).optional(),
    /** Hot groups (rate × cold prefill ≥ this) get a warm copy by shadow request; 0 = off. */
    hotCopyTheta: numRange(0, 1_000).optional(),
  }),
  'lora-affinity': z.strictObject({
    /** Stop preferring the adapter's endpoint once its load exceeds the least-loaded one's by this much. */
    loadMargin: loadMargin.optional(),
  }),
  'session-affinity': z.strictObject({
    header: httpToken.optional(),
    cookie: httpToken.optional(),
    ttl: boundedDuration(7 * 24 * 3_600_000, '168h').optional(),
    maxSessions: intRange(1, 10_000_000).optional(),
  }),
  'gpu-aware': z.strictObject({
    /** Pod labels that name the GPU type, first present wins. */
    labelKeys: z
      .array(z.string().min(1, { error: 'must not be empty' }))
      .min(1)
      .max(8)
      .optional(),
    /** Relative capacity per GPU type (label value), e.g. {H100: 4, A10: 1}. */
    capacities: z.record(z.string(), numRange(0.01, 10_000)).optional(),
    /** Capacity of endpoints whose GPU type is unlabelled or not in `capacities`. */
    defaultCapacity: numRange(0.01, 10_000).optional(),
  }),
  fairness: z.strictObject({
    /** Request header carrying the tenant identity (until auth provides one). */
    tenantHeader: httpToken.optional(),
    /** Request header carrying an integer priority; higher is served first. */
    priorityHeader: httpToken.optional(),
    /** Share of service per tenant relative to others (default 1). */
    tenantWeights: z.record(z.string(), numRange(0.01, 10_000)).optional(),
    inputTokenWeight: numRange(0, 1000).optional(),
    outputTokenWeight: numRange(0, 1000).optional(),
    maxQueue: intRange(1, 1_000_000).optional(),
    maxQueuePerTenant: intRange(1, 1_000_000).optional(),
    queueTimeout: boundedDuration(3_600_000, '1h').optional(),
    /** Concurrency an endpoint takes before it counts as saturated; learned from the engine when unset. */
    maxInFlightPerEndpoint: intRange(1, 1_000_000).optional(),
    /** Fraction of the server's concurrency kept free of backlogged tenants (default 0.05). */
    headroom: numRange(0, 0.5).optional(),
  }),
  random: z.strictObject({}),
  'round-robin': z.strictObject({}),
} as const satisfies Record<(typeof SCHEDULER_PLUGIN_NAMES)[number], z.ZodType>

/** Fairness only admits; it has no score, so no weight. */
function pluginEntry<N extends Exclude<(typeof SCHEDULER_PLUGIN_NAMES)[number], 'fairness'>>(
  name: N,
) {
  return z.strictObject({
    name: z.literal(name),
    weight: pluginWeight.optional(),
    args: schedulerPluginArgSchemas[name].optional(),
  })
}

/** Marks the union below so the CRD generator can give the API server a structural equivalent. */
const STRUCTURAL_PLUGIN_MARK = 'x-infer-gateway-scheduler-plugin'

export const schedulerPluginSchema = z
  .discriminatedUnion(
    'name',
    [
      pluginEntry('least-kv-cache'),
      pluginEntry('least-latency'),
      pluginEntry('least-pending'),
      pluginEntry('prefix-cache'),
      pluginEntry('kv-cache'),
      pluginEntry('predicted-latency'),
      pluginEntry('lora-affinity'),
      pluginEntry('session-affinity'),
      pluginEntry('gpu-aware'),
      z.strictObject({
        name: z.literal('fairness'),
        args: schedulerPluginArgSchemas.fairness.optional(),
      }),
      pluginEntry('random'),
      pluginEntry('round-robin'),
    ],
    {
      error: (iss) => {
        if (iss.code !== 'invalid_union') return undefined
        const input = iss.input
        const name =
          typeof input === 'object' && input !== null
            ? (input as { name?: unknown }).name
            : undefined
        return name === undefined ? 'is required' : oneOf(SCHEDULER_PLUGIN_NAMES).error(iss)
      },
    },
  )
  .meta({ [STRUCTURAL_PLUGIN_MARK]: true })
export type SchedulerPlugin = z.infer<typeof schedulerPluginSchema>

export const schedulerSchema = z.strictObject({
  /** Replaces the default profile's plugin list as a whole; order is kept. */
  plugins: z
    .array(schedulerPluginSchema)
    .min(1, { error: 'must have at least one plugin' })
    .max(16, { error: 'must have at most 16 plugins' })
    .superRefine((plugins, ctx) => {
      const seen = new Set<string>()
      plugins.forEach((p, i) => {
        if (seen.has(p.name)) {
          ctx.addIssue({
            code: 'custom',
            path: [i, 'name'],
            message: `duplicate plugin "${p.name}"`,
          })
        }
        seen.add(p.name)
      })
    })
    .meta({ 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['name'] }),
})
export type Scheduler = z.infer<typeof schedulerSchema>

/** What the API server gets for one plugin entry: the union above is not a structural schema. */
function structuralPluginSchema(): JsonSchema {
  return {
    type: 'object',
    required: ['name'],
    properties: {
      name: { type: 'string', enum: [...SCHEDULER_PLUGIN_NAMES] },
      weight: { type: 'number', minimum: 0, maximum: 100 },
      args: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true },
    },
  }
}

export const modelServerSpecSchema = z.strictObject({
  model: z
    .string()
    .max(256, { error: 'must be at most 256 characters' })
    .describe("Model name sent to the engine in place of the request's (not for LoRA requests).")
    .optional(),
  inferenceEngine: z
    .enum(inferenceEngines, oneOf(inferenceEngines))
    .describe('Engine kind: how its metrics are read (vLLM, SGLang, TGI, TensorRT-LLM, Generic).'),
  workloadSelector: workloadSelectorSchema.describe('Which Pods serve the model.'),
  workloadPort: workloadPortSchema.describe('Where on each Pod the engine listens.'),
  trafficPolicy: trafficPolicySchema
    .describe('Timeouts and retries toward the engines.')
    .optional(),
  kvConnector: z
    .strictObject({
      type: z
        .enum(kvConnectorTypes, oneOf(kvConnectorTypes))
        .describe(
          'KV transfer between prefill and decode Pods: http, lmcache, nixl, sglang (mooncake is refused). Default: sglang for SGLang, else http.',
        )
        .optional(),
    })
    .describe('Prefill/decode KV transfer (with workloadSelector.pdGroup).')
    .optional(),
  /** Ours: scheduler profile; absent = the data plane's default profile. */
  scheduler: schedulerSchema
    .describe("Ours: scheduler plugins and weights; absent = the data plane's default.")
    .optional(),
})
export type ModelServerSpec = z.infer<typeof modelServerSpecSchema>

export const modelServerSchema = z.looseObject({
  apiVersion: z.enum(ROUTING_API_VERSIONS, oneOf(ROUTING_API_VERSIONS)).optional(),
  kind: z.literal('ModelServer', oneOf(['ModelServer'])).optional(),
  metadata: objectMetaSchema,
  spec: modelServerSpecSchema,
  status: statusSchema,
})
export type ModelServer = z.infer<typeof modelServerSchema>

// ---------------------------------------------------------------------------------------------
// JSON Schema for the CRDs

export type JsonSchema = z.core.JSONSchema.JSONSchema

/** CRD-flavoured JSON Schema of a zod schema (shared with the provider CRD in provider.ts). */
export function crdJsonSchema(schema: z.ZodType): JsonSchema {
  return z.toJSONSchema(schema, {
    target: 'openapi-3.0',
    // Input side: defaulted fields are optional and carry `default`, which is what the API
    // server's defaulting wants.
    io: 'input',
    unrepresentable: 'any',
    override: ({ jsonSchema }) => {
      if (jsonSchema[STRUCTURAL_PLUGIN_MARK] === true) {
        // The discriminated union becomes oneOf, which a structural CRD schema forbids: give the
        // API server names and weights; per-plugin arguments are checked by our validation.
        for (const k of Object.keys(jsonSchema)) delete jsonSchema[k]
        Object.assign(jsonSchema, structuralPluginSchema())
        return
      }
      // Structural CRD schemas forbid `additionalProperties: false`; the API server prunes
      // unknown fields instead.
      if (jsonSchema.additionalProperties === false) delete jsonSchema.additionalProperties
      // An open map is expressed by preserve-unknown-fields alone.
      if (jsonSchema['x-kubernetes-preserve-unknown-fields'] === true) {
        delete jsonSchema.additionalProperties
      }
    },
  })
}

/** JSON Schema (OpenAPI 3.0 flavour) of `ModelRoute.spec`, for the CRD's `openAPIV3Schema`. */
export function modelRouteJsonSchema(): JsonSchema {
  return crdJsonSchema(modelRouteSpecSchema)
}

/** JSON Schema (OpenAPI 3.0 flavour) of `ModelServer.spec`, for the CRD's `openAPIV3Schema`. */
export function modelServerJsonSchema(): JsonSchema {
  return crdJsonSchema(modelServerSpecSchema)
}
