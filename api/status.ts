// Status written by the operator on every CR (the contract between operator/, the CRD schema and
// printer columns in cdk8s/, and `kubectl get`). Conditions follow metav1.Condition.
import { z } from 'zod'

export const CONDITION_TYPES = {
  /** The object is valid and the operator took it into the snapshot. */
  accepted: 'Accepted',
  /** Every reference (ModelServer, provider, Secret) resolves. */
  resolvedRefs: 'ResolvedRefs',
  /**
   * Traffic for it can be served now: every weighted target has a ready endpoint (a route with
   * one that has none is False, reason TargetUnavailable).
   */
  ready: 'Ready',
} as const

export const conditionSchema = z.object({
  type: z.string().min(1).max(316),
  status: z.enum(['True', 'False', 'Unknown']),
  observedGeneration: z.number().int().min(0).optional(),
  lastTransitionTime: z.string(),
  /** CamelCase, e.g. ModelServerNotFound, NoReadyEndpoints, Invalid, Accepted. */
  reason: z.string().min(1).max(1024),
  message: z.string().max(32768),
})
export type Condition = z.infer<typeof conditionSchema>

export const modelRouteStatusSchema = z.object({
  observedGeneration: z.number().int().min(0).optional(),
  conditions: z.array(conditionSchema).optional(),
  /** Ready endpoints summed over every target server of every rule. */
  readyEndpoints: z.number().int().min(0).optional(),
  totalEndpoints: z.number().int().min(0).optional(),
  /** "available/total" weighted targets (a server with no ready endpoint is unavailable), e.g. "1/2". */
  targets: z.string().optional(),
  /** Target servers as resolved ("namespace/name"), in rule order, de-duplicated. */
  resolvedTargets: z.array(z.string()).optional(),
  /** Version of the first snapshot that carried this object's current generation. */
  snapshotVersion: z.number().int().min(0).optional(),
})
export type ModelRouteStatus = z.infer<typeof modelRouteStatusSchema>

export const modelServerStatusSchema = z.object({
  observedGeneration: z.number().int().min(0).optional(),
  conditions: z.array(conditionSchema).optional(),
  readyEndpoints: z.number().int().min(0).optional(),
  totalEndpoints: z.number().int().min(0).optional(),
  /** "ready/total" for the ENDPOINTS printer column, e.g. "2/3". */
  endpoints: z.string().optional(),
  snapshotVersion: z.number().int().min(0).optional(),
})
export type ModelServerStatus = z.infer<typeof modelServerStatusSchema>

/** Printer columns (JSONPath), shared by the CRD generator and docs. */
export const PRINTER_COLUMNS = {
  modelRoute: [
    { name: 'Model', type: 'string', jsonPath: '.spec.modelName' },
    { name: 'Ready', type: 'string', jsonPath: '.status.conditions[?(@.type=="Ready")].status' },
    { name: 'Targets', type: 'string', jsonPath: '.status.targets' },
    { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
    {
      name: 'Reason',
      type: 'string',
      jsonPath: '.status.conditions[?(@.type=="Ready")].reason',
      priority: 1,
    },
    {
      name: 'Accepted',
      type: 'string',
      jsonPath: '.status.conditions[?(@.type=="Accepted")].reason',
      priority: 1,
    },
  ],
  modelServer: [
    { name: 'Engine', type: 'string', jsonPath: '.spec.inferenceEngine' },
    { name: 'Ready', type: 'string', jsonPath: '.status.conditions[?(@.type=="Ready")].status' },
    { name: 'Endpoints', type: 'string', jsonPath: '.status.endpoints' },
    { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
    {
      name: 'Reason',
      type: 'string',
      jsonPath: '.status.conditions[?(@.type=="Ready")].reason',
      priority: 1,
    },
    { name: 'Port', type: 'integer', jsonPath: '.spec.workloadPort.port', priority: 1 },
  ],
} as const

/** JSON Schema of the status subresources, for the CRD `openAPIV3Schema`. */
export function modelRouteStatusJsonSchema(): Record<string, unknown> {
  return z.toJSONSchema(modelRouteStatusSchema, { target: 'openapi-3.0' }) as Record<
    string,
    unknown
  >
}
export function modelServerStatusJsonSchema(): Record<string, unknown> {
  return z.toJSONSchema(modelServerStatusSchema, { target: 'openapi-3.0' }) as Record<
    string,
    unknown
  >
}
