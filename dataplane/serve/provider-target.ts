// One external-provider target: the adapter builds the provider's request, the credential is
// added (a key rejected with 401/403 is retried once after a rotation), the transport sends it,
// and the answer is translated back to OpenAI's shapes. Until the first translated chunk exists
// nothing is committed, so a provider that fails right away can still fall back.
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response'
import type { SnapshotProvider } from '../../api/snapshot.js'
import { errors, GatewayError } from '../errors.js'
import { statusClass } from '../metrics.js'
import { mapProviderError, providerErrors } from '../providers/errors.js'
import { adapterFor } from '../providers/registry.js'
import { SseLineTooLongError, SseParser, sseError } from '../providers/sse.js'
import {
  BodyTooLargeError,
  headerValue,
  type ProviderHttpResponse,
  ProviderSendError,
  readBody,
} from '../providers/transport.js'
import { type BuildInput, ProviderStreamError } from '../providers/types.js'
import { DEFAULT_MAX_UPSTREAM_BODY_BYTES, drained } from '../proxy/respond.js'
import { isBodyTimeout } from '../retry.js'
import type { RouteTarget } from '../router.js'
import { type Deadline, deadline } from './deadline.js'
import { clientClosed } from './outcome.js'
import { type ChainContext, failed, type Step } from './types.js'

/** Bodies of provider errors are read this far (enough to explain, never unbounded). */
const ERROR_BODY_LIMIT = 64 * 1024

export async function providerTarget(
  t: Extract<RouteTarget, { kind: 'provider' }>,
  ctx: ChainContext,
): Promise<Step> {
  const { req, deps, out } = ctx
  const p = t.provider
  const adapter = adapterFor(p.type)
  if (!adapter.supports(p, req.api))
    return failed(providerErrors.unsupportedApi(p, req.path), undefined, true)
  const input: BuildInput = {
    provider: p,
    api: req.api,
    body: req.body,
    raw: req.raw,
    upstreamModel: t.upstreamModel,
    clientModel: req.model,
    now: Math.floor(Date.now() / 1000),
    requestId: out.requestId,
  }
  let built: ReturnType<typeof adapter.build>
  try {
    built = adapter.build(input)
  } catch (e) {
    if (e instanceof GatewayError) return failed(e, undefined, true)
    throw e
  }
  const count = (status: number, code: string): void => {
    deps.metrics.providerRequests.inc({
      provider: p.key,
      provider_type: p.type,
      status_class: statusClass(status),
      code,
    })
  }

  // The providers' transport takes a real AbortSignal.
  const dl = deadline(ctx.client.signal, p.trafficPolicy.timeouts.requestMs)
  let res: ProviderHttpResponse | undefined
  let usedKey: string | undefined
  // At most two sends: the second only when the provider rejected a key that has since rotated.
  for (let round = 0; round < 2; round++) {
    const cred = deps.credentials.get(p)
    if (!cred.ok) {
      dl.clear()
      const err = providerErrors.credentialsUnavailable(p)
      count(err.status, err.code)
      return failed(err, 'no-ready-endpoints')
    }
    // Static headers may not override these (validated); the credential goes last regardless.
    const headers: Record<string, string> = {
      ...built.headers,
      ...p.headers,
      'x-request-id': out.requestId,
      'user-agent': 'infer-gateway',
      // The provider's spans (if it traces) join the gateway's trace.
      ...(out.trace !== undefined ? { traceparent: out.trace.traceparent() } : {}),
    }
    if (cred.header !== undefined) {
      headers[cred.header] = cred.value
      usedKey = cred.raw
    }
    try {
      res = await deps.transport.send(
        p,
        { url: built.url, headers, body: built.body },
        dl.signal,
        deps.random,
      )
    } catch (e) {
      dl.clear()
      if (ctx.client.aborted) return failed(clientClosed())
      if (dl.timedOut()) {
        const err = providerErrors.timeout(
          p,
          `request exceeded ${p.trafficPolicy.timeouts.requestMs} ms`,
        )
        count(err.status, err.code)
        return failed(err)
      }
      if (e instanceof ProviderSendError) {
        const err =
          e.reason === 'timeout'
            ? providerErrors.timeout(p, e.message)
            : providerErrors.unreachable(p, e.message)
        count(err.status, err.code)
        return failed(err, e.reason === 'connect-failure' ? 'connect-failure' : undefined)
      }
      throw e
    }
    const rejected = res.statusCode === 401 || res.statusCode === 403
    if (
      round === 0 &&
      rejected &&
      usedKey !== undefined &&
      (await deps.credentials.refreshAfterRejection(p, usedKey))
    ) {
      res.body.dump().catch(() => {})
      continue
    }
    break
  }
  if (res === undefined) throw new Error('unreachable: no provider response')

  if (res.statusCode < 200 || res.statusCode >= 300) {
    let text = ''
    try {
      text = (await readBody(res.body, ERROR_BODY_LIMIT, true)).toString('utf8')
    } catch {
      // The status alone still says enough.
    }
    dl.clear()
    const err = mapProviderError(
      p,
      res.statusCode,
      adapter.errorDetail(res.statusCode, text),
      headerValue(res.headers, 'retry-after'),
    )
    count(err.status, err.code)
    return failed(err, err.status === 429 ? '429' : err.status >= 500 ? '5xx' : undefined)
  }

  if (!built.stream) {
    let raw: Buffer
    try {
      raw = await readBody(res.body, deps.maxUpstreamBodyBytes ?? DEFAULT_MAX_UPSTREAM_BODY_BYTES)
    } catch (e) {
      dl.clear()
      if (ctx.client.aborted) return failed(clientClosed())
      const err =
        dl.timedOut() || isBodyTimeout(e)
          ? providerErrors.timeout(p, 'response body')
          : e instanceof BodyTooLargeError
            ? errors.upstreamBodyTooLarge(`provider "${p.key}"`, e.limit)
            : providerErrors.unreachable(p, 'response body cut')
      count(err.status, err.code)
      return failed(err, err.status === 502 ? '5xx' : undefined)
    }
    dl.clear()
    let parsed: ReturnType<typeof adapter.parse>
    try {
      parsed = adapter.parse(input, raw)
    } catch (e) {
      const err =
        e instanceof GatewayError
          ? e
          : providerErrors.badResponse(p, e instanceof Error ? e.message : String(e))
      count(err.status, err.code)
      return failed(err, '5xx')
    }
    count(res.statusCode, '')
    out.finish({
      status: res.statusCode,
      code: '',
      stream: false,
      bytes:
        typeof parsed.body === 'string' ? Buffer.byteLength(parsed.body) : parsed.body.byteLength,
      firstByteMs: performance.now() - out.startedAt,
      ...(parsed.usage ? { usage: parsed.usage } : {}),
      attempts: res.attempts,
      headersMs: res.headersMs,
    })
    return {
      kind: 'done',
      response: new Response(parsed.body, {
        status: res.statusCode,
        headers: {
          'content-type': 'application/json',
          'x-request-id': out.requestId,
          ...out.limits?.headers,
        },
      }),
    }
  }
  return streamStep(t, ctx, res, input, dl, count)
}

async function streamStep(
  t: Extract<RouteTarget, { kind: 'provider' }>,
  ctx: ChainContext,
  res: ProviderHttpResponse,
  input: BuildInput,
  dl: Deadline<AbortSignal>,
  count: (status: number, code: string) => void,
): Promise<Step> {
  const { out } = ctx
  const p: SnapshotProvider = t.provider
  const translator = adapterFor(p.type).stream(input)
  const parser = new SseParser(
    ctx.deps.maxSseLineBytes !== undefined ? { maxLine: ctx.deps.maxSseLineBytes } : {},
  )
  const iterator = res.body[Symbol.asyncIterator]()
  const enc = new TextEncoder()
  let ended = false

  /** Reads until the translator has output (or the stream is over). */
  const next = async (): Promise<string[]> => {
    const out: string[] = []
    while (out.length === 0 && !ended) {
      const { value, done } = await iterator.next()
      if (done) {
        ended = true
        for (const ev of parser.end()) out.push(...translator.push(ev))
        out.push(...translator.end())
        break
      }
      for (const ev of parser.push(value as Uint8Array)) out.push(...translator.push(ev))
    }
    return out
  }

  // Peek: until the first translated chunk exists nothing is committed, so a stream that fails
  // right away (an overloaded error event, a cut) can still fall back.
  let first: string[]
  try {
    first = await next()
  } catch (e) {
    res.body.destroy()
    dl.clear()
    if (ctx.client.aborted) return failed(clientClosed())
    const err =
      e instanceof ProviderStreamError
        ? new GatewayError(e.code === 'provider_overloaded' ? 503 : 502, e.code, e.message)
        : e instanceof SseLineTooLongError
          ? new GatewayError(502, e.code, e.message)
          : dl.timedOut() || isBodyTimeout(e)
            ? providerErrors.timeout(p, 'stream')
            : providerErrors.unreachable(p, 'stream cut before the first event')
    count(err.status, err.code)
    const retryable = e instanceof ProviderStreamError ? e.retryable : err.status === 502
    return failed(err, retryable && err.status >= 500 && err.status !== 504 ? '5xx' : undefined)
  }

  const firstByteMs = performance.now() - out.startedAt
  let bytes = 0
  let finished = false
  const finish = (error?: string, message?: string): void => {
    if (finished) return
    finished = true
    dl.clear()
    count(res.statusCode, error ?? '')
    out.finish({
      status: error === 'client_closed' ? 499 : res.statusCode,
      code: error ?? '',
      stream: true,
      bytes,
      firstByteMs,
      ...(translator.usage ? { usage: translator.usage } : {}),
      attempts: res.attempts,
      headersMs: res.headersMs,
      ...(message !== undefined ? { errorMessage: message } : {}),
    })
  }
  const emit = (
    controller: ReadableStreamDefaultController<Uint8Array>,
    frames: string[],
  ): void => {
    for (const f of frames) {
      const b = enc.encode(f)
      bytes += b.byteLength
      controller.enqueue(b)
    }
  }
  // The rate limiter sees translated OpenAI events exactly as it sees an engine's.
  const filter = out.limits?.streamFilter()
  const headers = {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    'x-accel-buffering': 'no',
    'x-request-id': out.requestId,
    ...out.limits?.headers,
  }
  const node = ctx.req.inbound.nodeResponse
  if (node !== undefined) {
    // Straight to the client's Node response (no WHATWG stream in between).
    node.writeHead(res.statusCode, headers)
    node.flushHeaders()
    const gone = (): boolean => node.destroyed || node.writableEnded
    /** Writes one chunk; false = wait for drain. */
    const write = (b: Uint8Array): boolean => {
      bytes += b.byteLength
      return node.write(b)
    }
    const pump = async (): Promise<void> => {
      let frames: string[] | undefined = first
      try {
        for (;;) {
          const fs = frames ?? (await next())
          frames = undefined
          if (gone()) {
            res.body.destroy()
            finish('client_closed')
            return
          }
          if (filter === undefined) {
            for (const f of fs) if (!write(enc.encode(f))) await drained(node)
          } else {
            for (const f of fs) {
              const r = await filter.transform(enc.encode(f))
              if (r.out !== undefined && r.out.byteLength > 0 && !write(r.out)) await drained(node)
              if (r.end !== undefined) {
                finish(r.end)
                if (!gone()) node.end()
                res.body.destroy()
                return
              }
            }
            if (ended) {
              const rest = filter.flush()
              if (rest !== undefined && rest.byteLength > 0 && !gone()) node.write(rest)
            }
          }
          if (ended) {
            finish()
            if (!gone()) node.end()
            return
          }
        }
      } catch (e) {
        res.body.destroy()
        if ((ctx.client.aborted && !dl.timedOut()) || gone()) {
          finish('client_closed')
          if (!gone()) node.end()
          return
        }
        const [code, message] = streamFailure(e, dl)
        const b = enc.encode(sseError(message, code))
        bytes += b.byteLength
        finish(code, message)
        node.end(b)
      }
    }
    void pump()
    return { kind: 'done', response: RESPONSE_ALREADY_SENT }
  }
  let pending: string[] | undefined = first
  const stream = new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const frames = pending ?? (await next())
        pending = undefined
        if (filter === undefined) emit(controller, frames)
        else {
          for (const f of frames) {
            const r = await filter.transform(enc.encode(f))
            if (r.out !== undefined && r.out.byteLength > 0) {
              bytes += r.out.byteLength
              controller.enqueue(r.out)
            }
            if (r.end !== undefined) {
              finish(r.end)
              controller.close()
              res.body.destroy()
              return
            }
          }
          if (ended) {
            const rest = filter.flush()
            if (rest !== undefined && rest.byteLength > 0) controller.enqueue(rest)
          }
        }
        if (ended) {
          finish()
          controller.close()
        }
      } catch (e) {
        res.body.destroy()
        if (ctx.client.aborted && !dl.timedOut()) {
          finish('client_closed')
          controller.close()
          return
        }
        const [code, message] = streamFailure(e, dl)
        emit(controller, [sseError(message, code)])
        finish(code, message)
        controller.close()
      }
    },
    cancel() {
      // The client went away: stop the provider's generation (and its bill) too.
      finish('client_closed')
      res.body.destroy()
    },
  })
  return { kind: 'done', response: new Response(stream, { status: res.statusCode, headers }) }
}

/** A committed provider stream that broke: the error event's code and message. */
function streamFailure(e: unknown, dl: Deadline): [code: string, message: string] {
  if (e instanceof ProviderStreamError || e instanceof SseLineTooLongError)
    return [e.code, e.message]
  if (dl.timedOut() || isBodyTimeout(e)) return ['upstream_timeout', 'provider stream timed out']
  return ['upstream_stream_cut', 'provider closed the stream before it finished']
}
