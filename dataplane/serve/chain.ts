// Walks a routing decision's targets in order (the weighted pick first) until one answers. A
// target is left for the next one only for a failure listed in the rule's `fallback.on` and only
// before anything went to the client: a response is committed once its status is known to be good
// (self-hosted) or once the first translated chunk exists (providers; a provider stream that
// fails before producing anything can still fall back). After that a failure ends the stream
// with an OpenAI error event, never `[DONE]`, and nothing else is tried. A plain rule is a chain
// of one server target: the same walk, one step.
import { ClientSignal } from '../abort.js'
import { errors, GatewayError } from '../errors.js'
import type { ChainDecision, RouteTarget } from '../router.js'
import { clientClosed, type Outcome } from './outcome.js'
import { providerTarget } from './provider-target.js'
import { serverTarget } from './server-target.js'
import {
  type ChainContext,
  canFallback,
  failed,
  type ServeDeps,
  type ServeRequest,
  type Step,
} from './types.js'

export function targetId(t: RouteTarget): string {
  return t.kind === 'server' ? `server:${t.server.key}` : `provider:${t.provider.key}`
}

export async function serveChain(
  d: ChainDecision,
  req: ServeRequest,
  out: Outcome,
  deps: ServeDeps,
): Promise<Response> {
  // Not an AbortController: a Node AbortSignal per request cost more than the rest of this walk
  // (abort.ts).
  const client = new ClientSignal()
  out.decision = d
  out.onRelease = req.inbound.onClientGone(() => client.abort(clientClosed()))
  let lastAvailability: GatewayError | undefined
  const ctx: ChainContext = { d, req, out, deps, client }
  const n = d.targets.length
  for (let i = 0; i < n; i++) {
    const t = d.targets[i]
    if (t === undefined) break
    out.target = t
    const more = i < n - 1
    // An Anthropic Messages request goes as it is to Anthropic, as OpenAI chat elsewhere (a body
    // that does not translate is this target's 400, skipped like any unsupported request).
    const tr = t.kind === 'provider' && t.provider.type === 'Anthropic' ? undefined : req.translated
    const tctx = tr === undefined || tr instanceof GatewayError ? ctx : { ...ctx, req: tr }
    let step: Step
    try {
      step =
        tr instanceof GatewayError
          ? failed(tr, undefined, true)
          : t.kind === 'server'
            ? await serverTarget(t, tctx, more)
            : await providerTarget(t, tctx)
    } catch (e) {
      // An unexpected exception in a target (a bug, a picker, an adapter) still ends the request
      // with one access-log line; what the target held was released by the target itself.
      return out.fail(e instanceof GatewayError ? e : errors.internal())
    }
    if (step.kind === 'done') return step.response
    if (client.aborted) return out.fail(clientClosed())
    // A fallback target that cannot express the request is skipped: the client is better served
    // by the failure that made us look further than by a 400 about a target it never chose.
    if (step.unsupported && i > 0 && lastAvailability !== undefined) {
      out.tried.push({
        target: targetId(t),
        reason: 'unsupported',
        status: step.error.status,
        code: step.error.code,
      })
      if (!more) return out.fail(lastAvailability)
      continue
    }
    if (step.reason !== undefined && canFallback(d, more, step.reason)) {
      const next = d.targets[i + 1]
      out.tried.push({
        target: targetId(t),
        reason: step.reason,
        status: step.error.status,
        code: step.error.code,
      })
      if (next) {
        deps.metrics.fallbacks.inc({
          route: d.route.key,
          from: targetId(t),
          to: targetId(next),
          reason: step.reason,
        })
      }
      lastAvailability = step.error
      continue
    }
    return out.fail(step.error)
  }
  out.target = undefined
  return out.fail(
    lastAvailability ?? errors.upstreamUnavailable('no target could serve the request'),
  )
}
