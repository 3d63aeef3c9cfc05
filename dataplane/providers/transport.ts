// HTTP to external providers: pooled keep-alive connections (undici), the provider's timeouts and
// retry policy, redirects never followed. TLS verification can only be skipped per provider
// (`insecureSkipVerify`), and such providers get their own connection pools so one provider's
// setting never weakens another's connections.
import { Agent, type Dispatcher } from 'undici'
import type { SnapshotProvider } from '../../api/snapshot.js'
import { backoffMs, errCode, sleep } from '../retry.js'

export interface ProviderHttpRequest {
  readonly url: string
  readonly headers: Readonly<Record<string, string>>
  readonly body: string | Uint8Array
}

export interface ProviderHttpResponse {
  readonly statusCode: number
  readonly headers: Dispatcher.ResponseData['headers']
  readonly body: Dispatcher.ResponseData['body']
  readonly attempts: number
  /** ms from the first attempt until the response headers of the last. */
  readonly headersMs: number
}

export type SendFailure = 'connect-failure' | 'timeout' | 'aborted' | 'other'

/** No response came back. `connect-failure` means the request surely never reached the provider. */
export class ProviderSendError extends Error {
  override readonly name = 'ProviderSendError'
  readonly reason: SendFailure
  readonly attempts: number
  constructor(reason: SendFailure, message: string, attempts: number) {
    super(message)
    this.reason = reason
    this.attempts = attempts
  }
}

const CONNECT_CODES = new Set([
  'ECONNREFUSED',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'UND_ERR_CONNECT_TIMEOUT',
])

/** Certificate problems: the provider never saw the request either. */
function isTlsCode(code: string): boolean {
  return (
    code.startsWith('ERR_TLS_') ||
    code.startsWith('ERR_SSL_') ||
    code.includes('CERT') ||
    code === 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' ||
    code === 'EPROTO'
  )
}

export class ProviderTransport {
  private readonly agents = new Map<string, Agent>()

  private agent(connectMs: number, insecure: boolean): Agent {
    const key = `${connectMs}|${insecure}`
    let a = this.agents.get(key)
    if (!a) {
      a = new Agent({
        connections: 256,
        keepAliveTimeout: 60_000,
        keepAliveMaxTimeout: 60_000,
        connect: { timeout: connectMs, ...(insecure ? { rejectUnauthorized: false } : {}) },
        headersTimeout: 0,
        bodyTimeout: 0,
      })
      this.agents.set(key, a)
    }
    return a
  }

  async send(
    p: SnapshotProvider,
    req: ProviderHttpRequest,
    signal: AbortSignal,
    random: () => number = Math.random,
  ): Promise<ProviderHttpResponse> {
    const policy = p.trafficPolicy
    const retryOn = new Set(policy.retry.retryOn)
    const attempts = Math.max(1, policy.retry.attempts)
    const agent = this.agent(policy.timeouts.connectMs, p.insecureSkipVerify)
    const url = new URL(req.url)
    const started = performance.now()
    let last: ProviderSendError | undefined
    for (let attempt = 1; attempt <= attempts; attempt++) {
      if (attempt > 1) {
        await sleep(
          backoffMs(attempt - 1, policy.retry.intervalMs, policy.retry.maxIntervalMs, random),
          signal,
        ).catch(() => {
          throw new ProviderSendError('aborted', 'aborted', attempt - 1)
        })
      }
      let res: Dispatcher.ResponseData
      try {
        res = await agent.request({
          origin: url.origin,
          path: `${url.pathname}${url.search}`,
          method: 'POST',
          headers: { ...req.headers },
          body: req.body,
          signal,
          headersTimeout: policy.timeouts.responseHeaderMs,
          bodyTimeout: policy.timeouts.idleMs,
        })
      } catch (e) {
        if (signal.aborted) throw new ProviderSendError('aborted', 'aborted', attempt)
        const code = errCode(e) ?? ''
        if (code === 'UND_ERR_HEADERS_TIMEOUT') {
          // The provider has the request and may be generating (and billing): no retry.
          throw new ProviderSendError(
            'timeout',
            `no response headers within ${policy.timeouts.responseHeaderMs} ms`,
            attempt,
          )
        }
        const tls = isTlsCode(code)
        const connect = CONNECT_CODES.has(code) || tls
        last = new ProviderSendError(
          connect ? 'connect-failure' : 'other',
          tls ? `TLS: ${code}` : code || (e instanceof Error ? e.message : String(e)),
          attempt,
        )
        // Certificate errors do not heal by retrying.
        if (connect && !tls && retryOn.has('connect-failure')) continue
        throw last
      }
      const status = res.statusCode
      const retryable =
        (status >= 500 && retryOn.has('5xx')) || (status === 429 && retryOn.has('429'))
      if (retryable && attempt < attempts) {
        res.body.dump().catch(() => {})
        continue
      }
      return {
        statusCode: status,
        headers: res.headers,
        body: res.body,
        attempts: attempt,
        headersMs: performance.now() - started,
      }
    }
    throw last ?? new ProviderSendError('other', 'no attempt made', 0)
  }

  async close(): Promise<void> {
    const all = [...this.agents.values()]
    this.agents.clear()
    await Promise.all(all.map((a) => a.destroy()))
  }
}

/** A success body past the reader's limit (code shared with the engine path's 502). */
export class BodyTooLargeError extends Error {
  override readonly name = 'BodyTooLargeError'
  readonly code = 'upstream_body_too_large'
  readonly limit: number
  constructor(limit: number) {
    super(`body larger than ${limit} bytes`)
    this.limit = limit
  }
}

/**
 * Reads a body up to `limit` bytes. Past it: `truncate` keeps the first `limit` bytes (error
 * bodies: enough to explain), otherwise it throws (a success body that large is not one we parse).
 */
export async function readBody(
  body: Dispatcher.ResponseData['body'],
  limit: number,
  truncate = false,
): Promise<Buffer> {
  const chunks: Buffer[] = []
  let total = 0
  for await (const c of body) {
    const b = c as Buffer
    if (total + b.byteLength > limit) {
      body.destroy()
      if (!truncate) throw new BodyTooLargeError(limit)
      chunks.push(b.subarray(0, limit - total))
      break
    }
    total += b.byteLength
    chunks.push(b)
  }
  return Buffer.concat(chunks)
}

export function headerValue(
  h: Dispatcher.ResponseData['headers'],
  name: string,
): string | undefined {
  const v = h[name]
  return Array.isArray(v) ? v[0] : v
}
