// Ours: the per-rule fallback list of a ModelRoute. A leaf module (zod only) so schema.ts can use it
// without importing the provider schema (which itself builds on schema.ts).
//
// Fallback is ordered and conditional: when the target the rule picked by weight cannot serve the
// request for one of the listed reasons, the next fallback target is tried, then the next. It only
// ever happens before the first response byte reached the client.

import { z } from 'zod'

/**
 * Why a target may be skipped for the next one. `no-ready-endpoints`: a ModelServer with no ready
 * endpoint, a scheduler that refused admission with 503, or a provider whose credential file is
 * missing; `connect-failure`: TCP/TLS failure after the target's own retries; `5xx`: a 5xx answer
 * (including a provider rejecting the gateway's credential, which the client sees as 502); `429`:
 * overload (an engine's or a provider's 429, or the scheduler's queue being full).
 */
export const fallbackOnValues = ['no-ready-endpoints', 'connect-failure', '5xx', '429'] as const
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

export const ruleFallbackSchema = z.strictObject({
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
    .optional(),
})
export type RuleFallback = z.infer<typeof ruleFallbackSchema>
