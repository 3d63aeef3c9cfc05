// Gateway API Inference Extension (GAIE) and Gateway API objects we read: InferencePool
// (`inference.networking.k8s.io/v1`), InferenceObjective (`llm-d.ai/v1alpha2` and the legacy
// `inference.networking.x-k8s.io/v1alpha2`) and HTTPRoute (`gateway.networking.k8s.io/v1`).
// These are other projects' CRDs: the schemas below check only the fields we use, keep unknown
// fields (loose objects, so a newer upstream field never makes us drop an object) and mirror the
// upstream CRD bounds, so what `kubectl apply` accepts is what we accept.

import { z } from 'zod'
import { objectMetaSchema } from './schema.js'
import {
  formatPath,
  type ValidationIssue,
  type ValidationResult,
  validateWith,
} from './validate.js'

export const INFERENCE_POOL_GROUP = 'inference.networking.k8s.io'
export const INFERENCE_POOL_VERSION = 'v1'
export const INFERENCE_POOL_API_VERSION = `${INFERENCE_POOL_GROUP}/${INFERENCE_POOL_VERSION}`
export const INFERENCE_POOL_PLURAL = 'inferencepools'

/** llm-d's group first: when an objective exists in both, llm-d.ai's wins (as llm-d's EPP does). */
export const OBJECTIVE_GROUPS = ['llm-d.ai', 'inference.networking.x-k8s.io'] as const
export const OBJECTIVE_VERSION = 'v1alpha2'
export const OBJECTIVE_API_VERSIONS = OBJECTIVE_GROUPS.map((g) => `${g}/${OBJECTIVE_VERSION}`)
export const OBJECTIVE_PLURAL = 'inferenceobjectives'

export const GATEWAY_API_GROUP = 'gateway.networking.k8s.io'
export const HTTPROUTE_API_VERSION = `${GATEWAY_API_GROUP}/v1`
export const HTTPROUTE_PLURAL = 'httproutes'

/**
 * Label or annotation on an InferencePool naming its engine (vLLM, SGLang, TGI, TensorRT-LLM,
 * Generic); absent = read from each pod's /metrics (`vllm:`, `sglang:`, `tgi_` metric names),
 * vLLM until a scrape shows which.
 */
export const ENGINE_ANNOTATION = 'infer-gateway.io/engine'
/** Annotation on an InferencePool holding a scheduler profile as JSON (ModelServer `spec.scheduler`). */
export const SCHEDULER_ANNOTATION = 'infer-gateway.io/scheduler'
/** Our `controllerName` in HTTPRoute and InferencePool `status.parents[]`. */
export const GATEWAY_CONTROLLER_NAME = 'infer-gateway.io/gateway-controller'

const portNumber = z
  .number()
  .int({ error: 'must be 1..65535' })
  .min(1, { error: 'must be 1..65535' })
  .max(65535, { error: 'must be 1..65535' })

const dnsName = z.string().min(1, { error: 'must not be empty' }).max(253)

// ---------------------------------------------------------------------------------------------
// InferencePool

export const inferencePoolSchema = z.looseObject({
  apiVersion: z.literal(INFERENCE_POOL_API_VERSION).optional(),
  kind: z.literal('InferencePool').optional(),
  metadata: objectMetaSchema,
  spec: z.looseObject({
    selector: z.looseObject({
      matchLabels: z
        .record(z.string(), z.string())
        .refine((m) => Object.keys(m).length >= 1, { error: 'must have at least one label' })
        .refine((m) => Object.keys(m).length <= 64, { error: 'must have at most 64 labels' }),
    }),
    targetPorts: z
      .array(z.looseObject({ number: portNumber }))
      .min(1, { error: 'must have at least one port' })
      .max(8, { error: 'must have at most 8 ports' }),
    appProtocol: z.enum(['http', 'kubernetes.io/h2c']).optional(),
    endpointPickerRef: z
      .looseObject({
        group: z.string().optional(),
        kind: z.string().optional(),
        name: dnsName,
        port: z.looseObject({ number: portNumber }).optional(),
        failureMode: z.enum(['FailOpen', 'FailClose']).optional(),
      })
      .optional(),
  }),
  status: z.unknown().optional(),
})
export type InferencePool = z.infer<typeof inferencePoolSchema>

function checkPool(p: InferencePool): ValidationIssue[] {
  const out: ValidationIssue[] = []
  const seen = new Set<number>()
  p.spec.targetPorts.forEach((t, i) => {
    if (seen.has(t.number))
      out.push({
        path: formatPath(['spec', 'targetPorts', i, 'number']),
        message: 'port number must be unique',
        code: 'DUPLICATE_PORT',
      })
    seen.add(t.number)
  })
  const epp = p.spec.endpointPickerRef
  if (epp !== undefined && (epp.kind ?? 'Service') === 'Service' && epp.port === undefined)
    out.push({
      path: 'spec.endpointPickerRef.port',
      message: "port is required when kind is 'Service' or unspecified (defaults to 'Service')",
      code: 'REQUIRED',
    })
  return out
}

export function validateInferencePool(obj: unknown): ValidationResult<InferencePool> {
  return withChecks(validateWith(inferencePoolSchema, obj), checkPool)
}

// ---------------------------------------------------------------------------------------------
// InferenceObjective (both groups)

export const inferenceObjectiveSchema = z.looseObject({
  apiVersion: z.enum(OBJECTIVE_API_VERSIONS as [string, ...string[]]).optional(),
  kind: z.literal('InferenceObjective').optional(),
  metadata: objectMetaSchema,
  spec: z.looseObject({
    priority: z
      .number()
      .int({ error: 'must be an integer' })
      .min(-2_147_483_648)
      .max(2_147_483_647)
      .optional(),
    poolRef: z.looseObject({
      group: z.string().optional(),
      kind: z.string().optional(),
      name: dnsName,
    }),
  }),
  status: z.unknown().optional(),
})
export type InferenceObjective = z.infer<typeof inferenceObjectiveSchema>

export function validateInferenceObjective(obj: unknown): ValidationResult<InferenceObjective> {
  return validateWith(inferenceObjectiveSchema, obj)
}

// ---------------------------------------------------------------------------------------------
// HTTPRoute (the parts a GAIE gateway uses)

const parentRefSchema = z.looseObject({
  group: z.string().optional(),
  kind: z.string().optional(),
  namespace: z.string().optional(),
  name: dnsName,
  sectionName: z.string().optional(),
  port: portNumber.optional(),
})
export type HTTPRouteParentRef = z.infer<typeof parentRefSchema>

const pathMatchSchema = z.looseObject({
  type: z.enum(['Exact', 'PathPrefix', 'RegularExpression']).optional(),
  value: z.string().max(1024).optional(),
})

const headerMatchSchema = z.looseObject({
  type: z.enum(['Exact', 'RegularExpression']).optional(),
  name: z.string().min(1).max(256),
  value: z.string().min(1).max(4096),
})

const routeMatchSchema = z.looseObject({
  path: pathMatchSchema.optional(),
  headers: z.array(headerMatchSchema).max(16).optional(),
  queryParams: z.array(z.unknown()).max(16).optional(),
  method: z.string().optional(),
})
export type HTTPRouteMatch = z.infer<typeof routeMatchSchema>

const backendRefSchema = z.looseObject({
  group: z.string().optional(),
  kind: z.string().optional(),
  name: dnsName,
  namespace: z.string().optional(),
  port: portNumber.optional(),
  weight: z
    .number()
    .int({ error: 'must be 0..1000000' })
    .min(0, { error: 'must be 0..1000000' })
    .max(1_000_000, { error: 'must be 0..1000000' })
    .optional(),
  filters: z.array(z.unknown()).optional(),
})
export type HTTPBackendRef = z.infer<typeof backendRefSchema>

export const httpRouteSchema = z.looseObject({
  apiVersion: z.literal(HTTPROUTE_API_VERSION).optional(),
  kind: z.literal('HTTPRoute').optional(),
  metadata: objectMetaSchema,
  spec: z.looseObject({
    parentRefs: z.array(parentRefSchema).max(32).optional(),
    hostnames: z.array(z.string()).max(16).optional(),
    rules: z
      .array(
        z.looseObject({
          name: z.string().optional(),
          matches: z.array(routeMatchSchema).max(64).optional(),
          filters: z.array(z.unknown()).optional(),
          backendRefs: z.array(backendRefSchema).max(16).optional(),
        }),
      )
      .max(16)
      .optional(),
  }),
  status: z.unknown().optional(),
})
export type HTTPRoute = z.infer<typeof httpRouteSchema>

export function validateHTTPRoute(obj: unknown): ValidationResult<HTTPRoute> {
  return validateWith(httpRouteSchema, obj)
}

// ---------------------------------------------------------------------------------------------

function withChecks<T>(
  r: ValidationResult<T>,
  check: (v: T) => ValidationIssue[],
): ValidationResult<T> {
  if (!r.ok) return r
  const issues = check(r.value)
  return issues.length === 0 ? r : { ok: false, issues }
}

/**
 * Whether a reference names an InferencePool. Defaults differ by field: an HTTPRoute backendRef
 * defaults to the core group and kind Service, an InferenceObjective poolRef to InferencePool.
 */
export function isInferencePoolRef(
  ref: { readonly group?: string | undefined; readonly kind?: string | undefined },
  defaults: { readonly group: string; readonly kind: string },
): boolean {
  return (
    (ref.group ?? defaults.group) === INFERENCE_POOL_GROUP &&
    (ref.kind ?? defaults.kind) === 'InferencePool'
  )
}
