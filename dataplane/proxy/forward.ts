// Sends one request upstream, walking the ordered candidates on retryable failures. Retries only
// happen here, before anything reached the client: once `forward` returns, the caller owns the
// response and no other endpoint is tried.
import type { Dispatcher } from 'undici'
import type { RetryOn, SnapshotEndpoint, SnapshotServer } from '../../api/snapshot.js'
import type { AbortLike } from '../abort.js'
import { errors, GatewayError } from '../errors.js'
import { backoffMs, errCode, sleep } from '../retry.js'
import type { EngineAnswer, UpstreamBody, UpstreamPool } from './upstream-pool.js'

export interface ForwardRequest {
  readonly server: SnapshotServer
  readonly candidates: readonly SnapshotEndpoint[]
  readonly method: 'POST' | 'GET'
  readonly path: string
  readonly headers: Record<string, string>
  readonly body: string | Uint8Array | undefined
  /** Aborted when the client goes away or the total deadline passes. */
  readonly signal: AbortLike
  /** Called before each attempt; every start is followed by exactly one failure report or the returned response. */
  readonly onAttemptStart?: (endpoint: SnapshotEndpoint, attempt: number) => void
  readonly onAttemptFailed?: (info: AttemptFailure) => void
}

export interface AttemptFailure {
  readonly endpoint: SnapshotEndpoint
  readonly attempt: number
  /**
   * `connect-failure`: the connection was never made (nothing was sent). `reset`: the connection
   * broke after the request may have been written (an engine closing on an oversized body, a
   * crash mid-request): not the endpoint's unreachability, and not retried. `protocol`: the
   * engine answered with malformed HTTP. `timeout`: no response headers in time, or the total
   * deadline passed. `aborted`: the client left.
   */
  readonly reason: RetryOn | 'timeout' | 'aborted' | 'reset' | 'protocol' | 'other'
  readonly status?: number
  readonly detail: string
}

export interface UpstreamResponse {
  readonly endpoint: SnapshotEndpoint
  readonly attempts: number
  readonly statusCode: number
  readonly headers: Dispatcher.ResponseData['headers']
  /** undici's BodyReadable or the raw client's EngineBody (`--engine-client`). */
  readonly body: UpstreamBody
  /** ms from the first attempt until response headers of the final one. */
  readonly headersMs: number
}

/**
 * Connection errors after the connection existed: the request (or part of its body) may have
 * reached the engine. Only the codes below them (refused, unreachable, connect timeout) prove it
 * did not; an engine that closes on an oversized upload shows up here, and sending the same body
 * to every other endpoint would only get them all reported as failing.
 */
const RESET_CODES = new Set(['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED'])

/** Failures where the request certainly never reached the engine: the only connect failures. */
const NOT_SENT_CODES = new Set([
  'ECONNREFUSED',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'UND_ERR_CONNECT_TIMEOUT',
])

/** The engine's bytes were not HTTP/1.1 (undici's llhttp parser refused them). */
export function isProtocolError(e: unknown): boolean {
  if (typeof e !== 'object' || e === null) return false
  const code = errCode(e)
  return (
    (e as { name?: unknown }).name === 'HTTPParserError' ||
    (code !== undefined &&
      (code.startsWith('HPE_') ||
        code === 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH' ||
        code === 'UND_ERR_INFO'))
  )
}

/** The request's signal was aborted by its total deadline (a 504), not by the client leaving. */
export function isDeadline(reason: unknown): boolean {
  return reason instanceof GatewayError && reason.status === 504
}

function errMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e)
}

export async function forward(
  pool: UpstreamPool,
  req: ForwardRequest,
  random: () => number = Math.random,
): Promise<UpstreamResponse> {
  const { server } = req
  const policy = server.trafficPolicy
  // The policy's list (at most four names) as is: a Set built per request cost more than it saved.
  const retryOn = policy.retry.retryOn
  const attempts = Math.max(1, policy.retry.attempts)
  if (req.candidates.length === 0) throw errors.noReadyEndpoint(server.key)
  const started = performance.now()
  // Created only on failure: an Error captures a stack trace, too costly for every request.
  let lastError: GatewayError | undefined
  // A connection that was never established carried no request, so moving to the next endpoint
  // is always safe, even with retries off: a dead pod must not fail requests while the scheduler
  // has not ejected it yet. Such failovers do not use up `attempts` (at most one per candidate).
  let budget = attempts
  let freeFailovers = 0
  let skipBackoff = false

  for (let attempt = 1; attempt <= budget; attempt++) {
    const endpoint = req.candidates[(attempt - 1) % req.candidates.length]
    if (!endpoint) break
    if (attempt > 1 && !skipBackoff) {
      await sleep(
        backoffMs(attempt - 1, policy.retry.intervalMs, policy.retry.maxIntervalMs, random),
        req.signal,
      )
    }
    skipBackoff = false
    let res: EngineAnswer
    req.onAttemptStart?.(endpoint, attempt)
    try {
      res = await pool.request(server, endpoint, {
        path: req.path,
        method: req.method,
        headers: req.headers,
        body: req.body,
        signal: req.signal,
        connectMs: policy.timeouts.connectMs,
        headersMs: policy.timeouts.responseHeaderMs,
        idleMs: policy.timeouts.idleMs,
      })
    } catch (e) {
      if (req.signal.aborted) {
        const deadline = isDeadline(req.signal.reason)
        req.onAttemptFailed?.({
          endpoint,
          attempt,
          reason: deadline ? 'timeout' : 'aborted',
          detail: deadline ? 'request deadline' : 'aborted',
        })
        throw req.signal.reason
      }
      const code = errCode(e)
      if (code === 'UND_ERR_HEADERS_TIMEOUT') {
        // The engine accepted the request and may be working on it: retrying elsewhere would
        // double the GPU work, so a header timeout ends the request.
        req.onAttemptFailed?.({ endpoint, attempt, reason: 'timeout', detail: 'response headers' })
        throw errors.upstreamTimeout(
          `no response headers within ${policy.timeouts.responseHeaderMs} ms`,
        )
      }
      const connectFailure = code !== undefined && NOT_SENT_CODES.has(code)
      const protocol = !connectFailure && isProtocolError(e)
      const reset = code !== undefined && RESET_CODES.has(code)
      const detail = `${endpoint.name}: ${protocol ? `malformed HTTP response (${errMessage(e)})` : (code ?? errMessage(e))}`
      req.onAttemptFailed?.({
        endpoint,
        attempt,
        reason: connectFailure
          ? 'connect-failure'
          : protocol
            ? 'protocol'
            : reset
              ? 'reset'
              : 'other',
        detail,
      })
      lastError =
        code === 'UND_ERR_CONNECT_TIMEOUT'
          ? errors.upstreamTimeout(`connect to ${endpoint.name}`)
          : errors.upstreamUnavailable(detail)
      if (
        code !== undefined &&
        NOT_SENT_CODES.has(code) &&
        freeFailovers < req.candidates.length - 1
      ) {
        freeFailovers++
        budget++
        skipBackoff = true
        continue
      }
      if (connectFailure && retryOn.includes('connect-failure')) continue
      // Garbage instead of HTTP is a server error: retried where 5xx answers are.
      if (protocol && retryOn.includes('5xx')) continue
      throw lastError
    }

    const status = res.statusCode
    const retryable =
      (status >= 500 && retryOn.includes('5xx')) || (status === 429 && retryOn.includes('429'))
    if (retryable && attempt < budget) {
      req.onAttemptFailed?.({
        endpoint,
        attempt,
        reason: status === 429 ? '429' : '5xx',
        status,
        detail: `${endpoint.name}: HTTP ${status}`,
      })
      // Drain so the keep-alive socket goes back to the pool instead of being torn down.
      res.body.dump().catch(() => {})
      continue
    }
    return {
      endpoint,
      attempts: attempt,
      statusCode: status,
      headers: res.headers,
      body: res.body,
      headersMs: performance.now() - started,
    }
  }
  throw lastError ?? errors.upstreamUnavailable('no attempt made')
}
