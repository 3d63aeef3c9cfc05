// Schemas shared by the GatewayPolicy (tiers) and our ModelRoute additions (per-route authorization
// and per-route × tier limits). A leaf module (zod only) so both schema.ts and policy.ts can use it
// without an import cycle.
//
// A limit is either a *rate* (a token bucket that refills continuously: "600 requests per minute")
// or a *budget* (a counter that resets on the UTC calendar: "5M tokens per day / per month").

import { z } from 'zod'

export const rateUnits = ['second', 'minute', 'hour', 'day'] as const
export const budgetPeriods = ['day', 'month'] as const
/** Whose usage one counter holds: each caller, each tenant, or everyone in the tier together. */
export const limitKeys = ['subject', 'tenant', 'tier'] as const
export const limitMetrics = ['requests', 'inputTokens', 'outputTokens', 'tokens'] as const

const INT32_MAX = 2_147_483_647
const amount = z
  .number()
  .int({ error: `must be an integer >= 1` })
  .min(1, { error: `must be an integer >= 1` })
  .max(INT32_MAX * 1000, { error: 'is too large' })

function oneOf(values: readonly string[]) {
  return {
    error: (iss: { input?: unknown }) =>
      iss.input === undefined ? undefined : `must be one of ${values.join(', ')}`,
  }
}

const ONE_METRIC = 'exactly one of requests, inputTokens, outputTokens or tokens must be set'
const oneMetricRule = {
  rule: '(has(self.requests) ? 1 : 0) + (has(self.inputTokens) ? 1 : 0) + (has(self.outputTokens) ? 1 : 0) + (has(self.tokens) ? 1 : 0) == 1',
  message: ONE_METRIC,
}

function exactlyOneMetric(
  e: { [K in (typeof limitMetrics)[number]]?: number | undefined },
): boolean {
  return limitMetrics.filter((m) => e[m] !== undefined).length === 1
}

const metricFields = {
  requests: amount.optional(),
  inputTokens: amount.optional(),
  outputTokens: amount.optional(),
  /** Input + output together. */
  tokens: amount.optional(),
}

export const rateEntrySchema = z
  .strictObject({ ...metricFields, per: z.enum(rateUnits, oneOf(rateUnits)) })
  .refine(exactlyOneMetric, { error: ONE_METRIC })
  .meta({ 'x-kubernetes-validations': [oneMetricRule] })
export type RateEntry = z.infer<typeof rateEntrySchema>

export const budgetEntrySchema = z
  .strictObject({ ...metricFields, per: z.enum(budgetPeriods, oneOf(budgetPeriods)) })
  .refine(exactlyOneMetric, { error: ONE_METRIC })
  .meta({ 'x-kubernetes-validations': [oneMetricRule] })
export type BudgetEntry = z.infer<typeof budgetEntrySchema>

/** The limits one tier (or one route × tier pair) imposes. */
export const limitSetFields = {
  /** Default `subject`: every caller has its own counters. */
  key: z.enum(limitKeys, oneOf(limitKeys)).optional(),
  rate: z.array(rateEntrySchema).max(16, { error: 'must have at most 16 entries' }).optional(),
  budget: z.array(budgetEntrySchema).max(8, { error: 'must have at most 8 entries' }).optional(),
}

const name = z
  .string()
  .min(1, { error: 'must not be empty' })
  .max(63, { error: 'must be at most 63 characters' })
  .regex(/^[A-Za-z0-9]([-_.A-Za-z0-9]*[A-Za-z0-9])?$/, {
    error: 'must be letters, digits, "-", "_" or "." (starting and ending alphanumeric)',
  })
export const tierNameSchema = name

function unique(list: readonly string[]): boolean {
  return new Set(list).size === list.length
}

const nameList = z
  .array(z.string().min(1, { error: 'must not be empty' }))
  .max(256, { error: 'must have at most 256 entries' })
  .refine(unique, { error: 'must not contain duplicates' })

/** Ours: who may call a route. Anything left out does not restrict. */
export const routeAuthorizationSchema = z.strictObject({
  /** Callers without credentials get the policy's anonymous identity (default false). */
  allowAnonymous: z.boolean().optional(),
  /** Caller's tier must be one of these. */
  tiers: nameList.optional(),
  /** Caller's tenant must be one of these. */
  tenants: nameList.optional(),
  /** Caller must hold at least one of these roles. */
  roles: nameList.optional(),
})
export type RouteAuthorization = z.infer<typeof routeAuthorizationSchema>

/** Ours: limits for callers of one tier on one route (on top of the tier's own limits). */
export const routeTierLimitSchema = z.strictObject({ tier: tierNameSchema, ...limitSetFields })
export type RouteTierLimit = z.infer<typeof routeTierLimitSchema>

export const routeTierLimitsSchema = z
  .array(routeTierLimitSchema)
  .max(32, { error: 'must have at most 32 entries' })
  .refine((l) => unique(l.map((t) => t.tier)), { error: 'must not name a tier twice' })
