// Ours: the per-rule fallback list of a ModelRoute. A leaf module (zod only) so schema.ts can use it
// without importing the provider schema (which itself builds on schema.ts).
//
// Fallback is ordered and conditional: when the target the rule picked by weight cannot serve the
// request for one of the listed reasons, the next fallback target is tried, then the next. It only
// ever happens before the first response byte reached the client.

import { z } from 'zod'
import { DURATION_PATTERN } from './duration.js'

/**
 * Why a target may be skipped for the next one. `no-ready-endpoints`: a ModelServer with no ready
 * endpoint, a scheduler that refused admission with 503, or a provider whose credential file is
 * missing; `connect-failure`: TCP/TLS failure after the target's own retries; `5xx`: a 5xx answer
 * (including a provider rejecting the gateway's credential, which the client sees as 502); `429`:
 * overload (an engine's or a provider's 429, or the scheduler's queue being full); `saturated`
 * (spill-over): the ModelServer is past the rule's `saturation` threshold before anything is sent
 * — its predicted time to first token above `ttftSLO`, or its queue per endpoint above
 * `maxQueuePerEndpoint` — for the callers of the listed tiers.
 */
export const fallbackOnValues = [
  'no-ready-endpoints',
  'connect-failure',
  '5xx',
  '429',
  'saturated',
] as const
export type FallbackOnValue = (typeof fallbackOnValues)[number]

const ONE_OF = 'exactly one of modelServerName or externalModelProviderName must be set'

export const fallbackTargetSchema = z
  .strictObject({
    modelServerName: z.string().optional(),
    externalModelProviderName: z.string().optional(),
  })
  .superRefine((t, ctx) => {
    const server = t.modelServerName !== undefined && t.modelServerName !== ''
    const provider = t.externalModelProviderName !== undefined && t.externalModelProviderName !== ''
    if (server === provider) ctx.addIssue({ code: 'custom', message: ONE_OF })
  })
  .meta({
    'x-kubernetes-validations': [
      {
        rule: "(has(self.modelServerName) && self.modelServerName != '') != (has(self.externalModelProviderName) && self.externalModelProviderName != '')",
        message: ONE_OF,
      },
    ],
  })
export type FallbackTarget = z.infer<typeof fallbackTargetSchema>

const SATURATION_ONE_OF = 'must set ttftSLO, maxQueuePerEndpoint or both'

/**
 * Spill-over threshold of a rule (`fallback.on: [saturated]`): when a self-hosted target is this
 * loaded as a request arrives, the request goes to the next fallback target (e.g. a public
 * provider) instead of queueing. Decided before anything is sent.
 */
export const saturationSchema = z
  .strictObject({
    /** Predicted time to first token (the scheduler's estimate for the best endpoint) above this. */
    ttftSLO: z
      .string()
      .regex(new RegExp(DURATION_PATTERN), { error: 'must be a duration like 500ms, 30s or 1m30s' })
      .describe(
        "Spill when the scheduler's predicted time to first token on the best endpoint exceeds this.",
      )
      .optional(),
    /** Requests waiting per endpoint (engine queue beyond its batch, plus the gateway's queue). */
    maxQueuePerEndpoint: z
      .number()
      .int({ error: 'must be an integer' })
      .min(0, { error: 'must be >= 0' })
      .describe(
        "Spill when even the least loaded endpoint has more than this many requests waiting (engine queue plus the gateway's admission queue, per endpoint).",
      )
      .optional(),
    /** Only callers of these tiers spill (absent: every caller). */
    tiers: z
      .array(z.string().min(1, { error: 'must not be empty' }))
      .min(1, { error: 'must have at least one tier' })
      .describe('Only callers of these GatewayPolicy tiers spill; the others queue or get 429.')
      .optional(),
  })
  .superRefine((s, ctx) => {
    if (s.ttftSLO === undefined && s.maxQueuePerEndpoint === undefined)
      ctx.addIssue({ code: 'custom', message: SATURATION_ONE_OF })
  })
  .meta({
    'x-kubernetes-validations': [
      { rule: 'has(self.ttftSLO) || has(self.maxQueuePerEndpoint)', message: SATURATION_ONE_OF },
    ],
  })
export type Saturation = z.infer<typeof saturationSchema>

const SATURATED_NEEDS = 'on lists saturated: set saturation (ttftSLO and/or maxQueuePerEndpoint)'
const SATURATION_NEEDS = 'saturation is set but on does not list saturated'

export const ruleFallbackSchema = z
  .strictObject({
    /** Tried in order after the rule's weighted pick failed. */
    targets: z
      .array(fallbackTargetSchema)
      .min(1, { error: 'must have at least one target' })
      .max(8, { error: 'must have at most 8 targets' }),
    /** Absent = every condition. */
    on: z
      .array(
        z.enum(fallbackOnValues, {
          error: (iss) =>
            iss.input === undefined ? undefined : `must be one of ${fallbackOnValues.join(', ')}`,
        }),
      )
      .min(1, { error: 'must have at least one condition' })
      .max(8, { error: 'must have at most 8 conditions' })
      .optional(),
    /** Spill-over threshold (with `saturated` in `on`, or `on` absent). */
    saturation: saturationSchema.optional(),
  })
  .superRefine((f, ctx) => {
    const listed = f.on?.includes('saturated') === true
    if (listed && f.saturation === undefined)
      ctx.addIssue({ code: 'custom', path: ['saturation'], message: SATURATED_NEEDS })
    if (f.saturation !== undefined && f.on !== undefined && !listed)
      ctx.addIssue({ code: 'custom', path: ['on'], message: SATURATION_NEEDS })
  })
  .meta({
    'x-kubernetes-validations': [
      {
        rule: "!has(self.on) || !('saturated' in self.on) || has(self.saturation)",
        message: SATURATED_NEEDS,
      },
      {
        rule: "!has(self.saturation) || !has(self.on) || 'saturated' in self.on",
        message: SATURATION_NEEDS,
      },
    ],
  })
export type RuleFallback = z.infer<typeof ruleFallbackSchema>
