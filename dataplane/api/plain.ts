// Requests the gateway answers itself (model listing, unknown paths, wrong methods): the same
// promise as for inference — an `x-request-id` on the answer and exactly one access-log line —
// without the inference path's Outcome (no route, no target, nothing held). Health, readiness
// and metrics are left out on purpose: probes every few seconds would drown the log.
import type { AccessLogger } from '../access-log.js'
import { clip, errors, GatewayError } from '../errors.js'
import { errorResponse } from '../serve/outcome.js'
import { requestIdOf } from './request-id.js'

export interface PlainRequest {
  readonly method: string
  readonly path: string
  header(name: string): string | undefined
}

/** What a plain handler answers: a response, or a gateway error (answered OpenAI-shaped). */
export type PlainAnswer = Response | GatewayError

export async function servePlain(
  log: AccessLogger,
  req: PlainRequest,
  handle: (requestId: string) => PlainAnswer | Promise<PlainAnswer>,
  /** Turns a gateway error into the endpoint's error body (default: OpenAI's shape). */
  render: (err: GatewayError, requestId: string) => Response = errorResponse,
): Promise<Response> {
  const startedAt = performance.now()
  const requestId = requestIdOf(req.header('x-request-id'))
  let answer: PlainAnswer
  try {
    answer = await handle(requestId)
  } catch (e) {
    answer = e instanceof GatewayError ? e : errors.internal()
  }
  const res = answer instanceof GatewayError ? render(answer, requestId) : answer
  res.headers.set('x-request-id', requestId)
  log({
    time: new Date().toISOString(),
    request_id: requestId,
    method: req.method,
    path: clip(req.path),
    status: res.status,
    duration_ms: Math.round((performance.now() - startedAt) * 1000) / 1000,
    ...(answer instanceof GatewayError ? { error_code: answer.code } : {}),
  })
  return res
}
