// Spill-over (`fallback.on: [saturated]`): before a self-hosted target admits a request (where it
// could queue), the scheduler says how loaded the server is for it; past the rule's threshold, and
// for a caller of one of the rule's tiers, the request goes to the next fallback target (typically
// a public provider) instead of waiting. Nothing was sent yet, so it is an ordinary fallback:
// counted and costed by the target that serves it, `infer_gateway_fallbacks_total{reason=
// "saturated"}`, and `spilled`/`spill_reason` in the access log. Callers of other tiers go on to
// admission as before: they queue, or get 429 when the queue is full.
import type { SnapshotSaturation } from '../../api/snapshot.js'
import { GatewayError } from '../errors.js'
import type { Identity } from '../filters/identity.js'
import type { Saturation } from '../picker.js'

export interface Spill {
  /** `predicted_ttft` or `queue`: which bound was passed. */
  readonly reason: 'predicted_ttft' | 'queue'
  /** The numbers, for the access log and the error if nothing else serves. */
  readonly detail: string
}

/** Whether the rule spills this caller: every caller without `tiers`, else only those tiers. */
export function spillsTier(sat: SnapshotSaturation, identity: Identity | undefined): boolean {
  if (sat.tiers === undefined) return true
  const tier = identity?.tier
  return tier !== undefined && tier !== '' && sat.tiers.includes(tier)
}

/** The bound `s` passes, if any (predicted TTFT first: it is the one users feel). */
export function spillOf(sat: SnapshotSaturation, s: Saturation | undefined): Spill | undefined {
  if (s === undefined) return undefined
  if (sat.ttftMs !== undefined && s.ttftMs !== undefined && s.ttftMs > sat.ttftMs)
    return {
      reason: 'predicted_ttft',
      detail: `predicted time to first token ${Math.round(s.ttftMs)} ms > ${sat.ttftMs} ms`,
    }
  if (sat.maxQueuePerEndpoint !== undefined && s.queuePerEndpoint > sat.maxQueuePerEndpoint)
    return {
      reason: 'queue',
      detail: `${Math.round(s.queuePerEndpoint * 10) / 10} requests waiting per endpoint > ${sat.maxQueuePerEndpoint}`,
    }
  return undefined
}

export function saturatedError(server: string, spill: Spill): GatewayError {
  return new GatewayError(
    503,
    'server_saturated',
    `model server "${server}" is saturated: ${spill.detail}`,
    {
      headers: { 'retry-after': '1' },
    },
  )
}
