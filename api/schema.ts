// The one source of truth for the ModelRoute and ModelServer CRDs: zod 4 schemas from which the
// TypeScript types are inferred and the CRD `openAPIV3Schema` is generated. Field names follow
// Kthena's v1alpha1 API so existing manifests apply unchanged; our additions are marked "ours".
//
// The schemas hold what a CRD schema can express (types, enums, bounds, patterns, CEL one-of
// rules as `x-kubernetes-validations` metadata). Checks that need the whole object (weights on
// all targets or none, regex compilation, …) live in validate.ts.

import { z } from 'zod'
import { DURATION_PATTERN } from './duration.js'

export const API_GROUP = 'networking.matrixinfer.ai'
export const API_VERSION = `${API_GROUP}/v1alpha1` as const

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
  /** Header name → match; all must hold. */
  headers: z.record(z.string(), stringMatchSchema).optional(),
  uri: stringMatchSchema.optional(),
  body: z.strictObject({ model: z.string().optional() }).optional(),
})
export type ModelMatch = z.infer<typeof modelMatchSchema>

export const targetModelSchema = z
  .strictObject({
    modelServerName: z.string().optional(),
    externalModelProviderName: z.string().optional(),
    // No default here (Kthena's CRD defaults 100): "set on all or none" must stay checkable.
    weight: intRange(0, 100).optional(),
  })
  .meta({
    'x-kubernetes-validations': [
      {
        rule: "(has(self.modelServerName) && self.modelServerName != '') != (has(self.externalModelProviderName) && self.externalModelProviderName != '')",
        message: 'exactly one of modelServerName or externalModelProviderName must be set',
      },
    ],
  })
export type TargetModel = z.infer<typeof targetModelSchema>

export const ruleSchema = z.strictObject({
  name: z.string().optional(),
  /** Absent = match every request. */
  modelMatch: modelMatchSchema.optional(),
  targetModels: z
    .array(targetModelSchema)
    .min(1, { error: 'must have at least one target' })
    .max(16, { error: 'must have at most 16 targets' }),
})
export type Rule = z.infer<typeof ruleSchema>

/** Gateway API ParentReference (sigs.k8s.io/gateway-api v1). */
export const parentRefSchema = z.strictObject({
  group: z.string().optional(),
  kind: z.string().optional(),
  namespace: z.string().optional(),
  name: z.string().min(1, { error: 'must not be empty' }),
  sectionName: z.string().optional(),
  port: intRange(1, 65535).optional(),
})
export type ParentReference = z.infer<typeof parentRefSchema>

export const rateLimitUnits = ['second', 'minute', 'hour', 'day', 'month'] as const

export const rateLimitSchema = z.strictObject({
  inputTokensPerUnit: intRange(1).optional(),
  outputTokensPerUnit: intRange(1).optional(),
  unit: z.enum(rateLimitUnits, oneOf(rateLimitUnits)).default('second'),
  global: z
    .strictObject({
      redis: z
        .strictObject({
          /** host:port */
          address: z.string().min(1, { error: 'must not be empty' }),
        })
        .optional(),
    })
    .optional(),
})
export type RateLimit = z.infer<typeof rateLimitSchema>

export const modelRouteSpecSchema = z
  .strictObject({
    modelName: z.string().optional(),
    loraAdapters: z.array(z.string()).max(10, { error: 'must have at most 10 entries' }).optional(),
    parentRefs: z.array(parentRefSchema).optional(),
    rules: z
      .array(ruleSchema)
      .min(1, { error: 'must have at least one rule' })
      .max(16, { error: 'must have at most 16 rules' }),
    rateLimit: rateLimitSchema.optional(),
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
  apiVersion: z.literal(API_VERSION, oneOf([API_VERSION])).optional(),
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
export const kvConnectorTypes = ['http', 'lmcache', 'nixl', 'mooncake'] as const

export const workloadSelectorSchema = z.strictObject({
  matchLabels: stringMap.refine((m) => Object.keys(m).length > 0, {
    error: 'must have at least one label',
  }),
  pdGroup: z
    .strictObject({
      groupKey: z.string().min(1, { error: 'must not be empty' }),
      prefillLabels: stringMap,
      decodeLabels: stringMap,
    })
    .optional(),
})

export const workloadPortSchema = z.strictObject({
  port: intRange(1, 65535),
  protocol: z.enum(['http', 'https'], oneOf(['http', 'https'])).default('http'),
})

export const retrySchema = z.strictObject({
  /** Kthena: retries after the first try (0 = no retry). */
  attempts: intRange(0),
  retryInterval: durationSchema.optional(),
  /** Ours: backoff cap. */
  maxRetryInterval: durationSchema.optional(),
  /** Ours: which failures are retried (only before the first response byte). */
  retryOn: z.array(z.enum(retryOnValues, oneOf(retryOnValues))).optional(),
})

/** Ours: finer timeouts than Kthena's single `timeout`. */
export const timeoutsSchema = z.strictObject({
  connect: durationSchema.optional(),
  responseHeader: durationSchema.optional(),
  idle: durationSchema.optional(),
  request: durationSchema.optional(),
})

export const trafficPolicySchema = z.strictObject({
  /** Kthena: dial + send + wait for response headers. */
  timeout: durationSchema.optional(),
  timeouts: timeoutsSchema.optional(),
  retry: retrySchema.optional(),
})
export type TrafficPolicy = z.infer<typeof trafficPolicySchema>

export const modelServerSpecSchema = z.strictObject({
  model: z.string().max(256, { error: 'must be at most 256 characters' }).optional(),
  inferenceEngine: z.enum(inferenceEngines, oneOf(inferenceEngines)),
  workloadSelector: workloadSelectorSchema,
  workloadPort: workloadPortSchema,
  trafficPolicy: trafficPolicySchema.optional(),
  kvConnector: z
    .strictObject({
      type: z.enum(kvConnectorTypes, oneOf(kvConnectorTypes)).optional(),
    })
    .optional(),
  /** Reserved for the scheduler profile (a later issue); carried through unchecked. */
  scheduler: z
    .record(z.string(), z.unknown())
    .meta({ 'x-kubernetes-preserve-unknown-fields': true })
    .optional(),
})
export type ModelServerSpec = z.infer<typeof modelServerSpecSchema>

export const modelServerSchema = z.looseObject({
  apiVersion: z.literal(API_VERSION, oneOf([API_VERSION])).optional(),
  kind: z.literal('ModelServer', oneOf(['ModelServer'])).optional(),
  metadata: objectMetaSchema,
  spec: modelServerSpecSchema,
  status: statusSchema,
})
export type ModelServer = z.infer<typeof modelServerSchema>

// ---------------------------------------------------------------------------------------------
// JSON Schema for the CRDs

export type JsonSchema = z.core.JSONSchema.JSONSchema

function crdJsonSchema(schema: z.ZodType): JsonSchema {
  return z.toJSONSchema(schema, {
    target: 'openapi-3.0',
    // Input side: defaulted fields are optional and carry `default`, which is what the API
    // server's defaulting wants.
    io: 'input',
    // The scheduler stub is `unknown`; everything else is representable.
    unrepresentable: 'any',
    override: ({ jsonSchema }) => {
      // Structural CRD schemas forbid `additionalProperties: false`; the API server prunes
      // unknown fields instead.
      if (jsonSchema.additionalProperties === false) delete jsonSchema.additionalProperties
      // An open map (the scheduler stub) is expressed by preserve-unknown-fields alone.
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
