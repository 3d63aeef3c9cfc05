// Turns an upstream response into the client's response. Streams (SSE) pass through chunk by
// chunk with no buffering, watched for usage and first-token time; a stream cut by the upstream
// ends with an OpenAI-shaped error event, never a clean `[DONE]`. Plain JSON bodies are read whole
// (the upstream finishes them anyway) so usage can be logged and a stalled body can still be a 504.

import type { OutgoingHttpHeaders, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response'
import type { AbortLike } from '../abort.js'
import { errors } from '../errors.js'
import { isBodyTimeout } from '../retry.js'
import { isProtocolError, type UpstreamResponse } from './forward.js'
import { NOT_PLAIN, usageCounts } from './usage-bytes.js'

/**
 * Largest non-streamed upstream body the gateway buffers (64 MiB). A chat answer is kilobytes; a
 * large embeddings batch (2,048 inputs × 1,024 dimensions as JSON floats) is about 40 MB. Past
 * it the engine is misbehaving (or endless): 502 and the endpoint reported.
 */
export const DEFAULT_MAX_UPSTREAM_BODY_BYTES = 64 * 1024 * 1024
/**
 * Non-streamed bodies up to this size are held whole before the client gets them: usage is read
 * and a cut or oversize is still a clean 502. Larger ones are passed on as they arrive.
 */
export const HOLD_WHOLE_BYTES = 4 * 1024 * 1024
/** Longest SSE line from an engine (1 MiB): one token's event is a few hundred bytes. */
export const DEFAULT_MAX_SSE_LINE_BYTES = 1024 * 1024

export interface Usage {
  readonly promptTokens: number
  readonly completionTokens: number
}

/** An outcome filled in field by field (conditional object spreads cost a generic copy each). */
type Writable<T> = { -readonly [K in keyof T]: T[K] }

export interface ResponseOutcome {
  readonly status: number
  readonly usage?: Usage
  /** ms from `startedAt` until the first body byte arrived from upstream. */
  readonly firstByteMs?: number
  /**
   * ms from `startedAt` until the first generated token: the first SSE event with content (a
   * role-only opening delta is not a token), or the whole body of a successful non-streamed answer.
   */
  readonly firstTokenMs?: number
  readonly bytes: number
  /**
   * Set when the body did not complete: `client_closed`, `upstream_cut`, `timeout`, `protocol`
   * (malformed HTTP mid-body), `body_too_large` (past the gateway's body or SSE-line cap), or a
   * stream filter's code (`rate_limited`).
   */
  readonly error?: string
  readonly stream: boolean
}

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'content-length',
])

export function responseHeaders(
  upstream: UpstreamResponse['headers'],
  extra: Record<string, string>,
): Headers {
  const h = new Headers()
  for (const [k, v] of Object.entries(upstream)) {
    if (v === undefined || HOP_BY_HOP.has(k)) continue
    if (Array.isArray(v)) for (const item of v) h.append(k, item)
    else h.set(k, v)
  }
  for (const [k, v] of Object.entries(extra)) h.set(k, v)
  return h
}

export function isEventStream(headers: UpstreamResponse['headers']): boolean {
  const ct = headers['content-type']
  const s = Array.isArray(ct) ? ct[0] : ct
  return typeof s === 'string' && s.toLowerCase().startsWith('text/event-stream')
}

export function parseUsage(u: unknown): Usage | undefined {
  if (typeof u !== 'object' || u === null) return undefined
  const rec = u as Record<string, unknown>
  // Chat/completions: prompt/completion tokens; the Responses API: input/output tokens.
  const p = rec['prompt_tokens'] ?? rec['input_tokens']
  const c = rec['completion_tokens'] ?? rec['output_tokens']
  if (typeof p !== 'number') return undefined
  return { promptTokens: p, completionTokens: typeof c === 'number' ? c : 0 }
}

function errorEvent(message: string, code: string): Uint8Array {
  const body = JSON.stringify({ error: { message, type: 'server_error', code, param: null } })
  return new TextEncoder().encode(`data: ${body}\n\n`)
}

/**
 * A data line carrying generated output: non-empty text/content/reasoning, a tool call, or a
 * Responses/Anthropic text delta. OpenAI-style engines open chat streams with `"content":""`.
 */
const TOKEN = /"(?:content|text|reasoning_content|delta)"\s*:\s*"[^"]|"tool_calls"\s*:\s*\[\s*\{/

const USAGE_KEY = Buffer.from('"usage"')

/**
 * Whether `b` (or its bytes `[from, to)`) may carry usage: a `"usage"` key whose value is not `null`. Engines asked for usage
 * (as the gateway asks, to count tokens) send `"usage":null` in every chunk but the last; a key
 * whose value is past the chunk's end counts as maybe.
 */
export function mentionsUsage(b: Buffer, from = 0, to = b.length): boolean {
  return usageAt(b, from, to) >= 0
}

/**
 * Where the first `"usage"` key in `b[from, to)` whose value is not `null` (or runs past `to`)
 * starts; -1 if there is none. Each key is looked at once, whatever the lines around it.
 */
function usageAt(b: Buffer, from = 0, to = b.length): number {
  for (
    let at = b.indexOf(USAGE_KEY, from);
    at >= 0 && at + USAGE_KEY.length <= to;
    at = b.indexOf(USAGE_KEY, at + 1)
  ) {
    let j = skipSpace(b, at + USAGE_KEY.length, to)
    if (j >= to) return at
    if (b[j] !== 0x3a) continue // not a key (":" follows a key)
    j = skipSpace(b, j + 1, to)
    if (j >= to) return at
    if (b[j] !== 0x6e) return at // anything but `null`
  }
  return -1
}

/**
 * The `usage` object of a JSON answer: the last `"usage"` key's object value, parsed alone. Decoding
 * and parsing the whole answer to read it was the largest cost of a non-streamed response in our
 * own code (about 17 µs of a 330-byte chat answer on a busy machine, against about 3). The key is
 * found as bytes: inside a JSON string its quotes are escaped, so `"usage"` followed by `:` is a
 * key; OpenAI-style answers (chat, completions, embeddings, Responses) put it last, at the top.
 */
export function usageOfJson(b: Buffer): Usage | undefined {
  for (let at = lastUsageKey(b, b.length); at >= 0; at = at > 0 ? lastUsageKey(b, at - 1) : -1) {
    let j = skipSpace(b, at + USAGE_KEY.length)
    if (b[j] !== 0x3a) continue // a string value "usage", not a key
    j = skipSpace(b, j + 1)
    if (b[j] !== 0x7b) return undefined // `"usage": null` or not an object
    // Engines' usage objects are read from the bytes; only another shape is decoded and parsed.
    const counts = usageCounts(b, j)
    if (counts !== NOT_PLAIN) return counts
    const end = objectEnd(b, j)
    if (end < 0) return undefined
    try {
      return parseUsage(JSON.parse(b.toString('utf8', j, end + 1)))
    } catch {
      // Not our body to judge; pass it through.
      return undefined
    }
  }
  return undefined
}

/** How far from the end `lastUsageKey` looks byte by byte before it asks Buffer's native search. */
const USAGE_TAIL_BYTES = 512

/**
 * Where the last `"usage"` starting at or before `from` is; -1 if none. The answer's usage is
 * near its end: a loop over the last bytes finds it for less than a call into native code costs
 * here (`lastIndexOf` about 0.6 µs a call); further back, the native search.
 */
function lastUsageKey(b: Buffer, from: number): number {
  const k = USAGE_KEY
  const stop = Math.max(0, b.length - USAGE_TAIL_BYTES)
  let i = Math.min(from, b.length - k.length)
  for (; i >= stop; i--) {
    if (b[i] !== 0x22 || b[i + 1] !== 0x75) continue
    let j = 2
    while (j < k.length && b[i + j] === k[j]) j++
    if (j === k.length) return i
  }
  return i < 0 ? -1 : b.lastIndexOf(k, i)
}

/** Index of the `}` closing the object that opens at `start`, strings skipped; -1 if none. */
function objectEnd(b: Buffer, start: number): number {
  let depth = 0
  for (let i = start; i < b.length; i++) {
    const c = b[i]
    if (c === 0x22) {
      // A string: to its closing quote, escapes skipped.
      for (i++; i < b.length && b[i] !== 0x22; i++) if (b[i] === 0x5c) i++
    } else if (c === 0x7b || c === 0x5b) depth++
    else if (c === 0x7d || c === 0x5d) {
      depth--
      if (depth === 0) return c === 0x7d ? i : -1
    }
  }
  return -1
}

function skipSpace(b: Buffer, from: number, to = b.length): number {
  let j = from
  while (j < to && (b[j] === 0x20 || b[j] === 0x09 || b[j] === 0x0a || b[j] === 0x0d)) j++
  return j
}

/**
 * Scans SSE bytes for `data:` lines carrying `usage` and for the first generated token, holding
 * the open line's pieces across chunks. Nothing is decoded but the lines that matter: each data
 * line before the first token (as latin1, enough for the ASCII token pattern) and the line carrying
 * usage (once per stream). Decoding whole chunks was the largest allocation of a stream (about
 * 5 KiB per short stream arriving in one piece). After the first token, a chunk without the usage
 * key (in it, across its start, or in the open line's held pieces) is not split into lines at all.
 * Each byte is looked at a bounded number of times: a chunk without a line end is only appended
 * to the held pieces (an engine sending one endless line made an older scan quadratic).
 * `lineBytes` is the length of the line still open, for the line cap.
 */
export class SseUsageScanner {
  /** Pieces of the line still open (no line end seen yet). */
  private held: Buffer[] = []
  /** The held pieces may carry the usage key (or its start). */
  private heldUsage = false
  /** The last bytes seen (up to the key's length − 1), for a key split across two chunks. */
  private readonly edge = Buffer.alloc(USAGE_KEY.length - 1)
  private edgeLen = 0
  lineBytes = 0
  usage: Usage | undefined
  /** performance.now() when the first line carrying a generated token was seen. */
  firstTokenAt: number | undefined

  push(chunk: Uint8Array): void {
    const n = chunk.byteLength
    if (n === 0) return
    const b = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, n)
    // Events end in LF, so the usual chunk needs no search for its last line end, nor a look
    // for a CR (a line end too) after it.
    const lf = b[n - 1] === 10 ? n - 1 : b.lastIndexOf(10)
    let end = lf
    if (lf < n - 1) end = Math.max(lf, b.lastIndexOf(13))
    this.lineBytes = end < 0 ? this.lineBytes + n : n - end - 1
    // The first usage key that is not `null` (engines asked for usage repeat `"usage":null` in
    // every event but the last: those are passed over here, once each).
    const key = usageAt(b)
    const maybeUsage = key >= 0 || this.keyAcrossEdge(b)
    this.keepEdge(b)
    if (lf < 0) {
      this.held.push(b)
      if (maybeUsage) this.heldUsage = true
      return
    }
    if (this.firstTokenAt === undefined || maybeUsage || this.heldUsage)
      this.lines(b, lf, maybeUsage, key)
    // The rest after the last LF opens the next line.
    this.held = lf < n - 1 ? [b.subarray(lf + 1)] : []
    this.heldUsage = lf < n - 1 && maybeUsage
  }

  /**
   * Every complete line that matters: the held pieces with `b` up to its first LF, then each line
   * of `b` until the first token, then only the lines holding a usage key that is not `null`
   * (`key`: the first such key in `b`, -1 if none).
   */
  private lines(b: Buffer, lf: number, maybeUsage: boolean, key: number): void {
    let nl = b.indexOf(10)
    if (this.held.length > 0) {
      this.held.push(b.subarray(0, nl))
      const first = Buffer.concat(this.held)
      this.line(first, 0, first.length, this.heldUsage || maybeUsage)
    } else this.line(b, 0, nl, key >= 0 && key < nl)
    while (nl < lf) {
      let start = nl + 1
      if (key >= 0 && key < start) key = usageAt(b, start)
      if (this.firstTokenAt !== undefined) {
        // Past the first token only usage lines are read: straight to the next one.
        if (key < 0 || key > lf) return
        start = b.lastIndexOf(10, key) + 1
      }
      nl = b.indexOf(10, start)
      this.line(b, start, nl, key >= 0 && key < nl)
    }
  }

  /** Whether the key starts in the last bytes seen and ends at the start of `b`. */
  private keyAcrossEdge(b: Buffer): boolean {
    // The last chunk ended a line (the usual case): no key spans a line end.
    if (this.edgeLen === 0 || this.edge[this.edgeLen - 1] === 10) return false
    const key = USAGE_KEY
    for (let k = Math.min(this.edgeLen, key.length - 1); k >= 1; k--) {
      // The key's first k bytes end the previous chunk, its other bytes start this one.
      if (b.length < key.length - k) continue
      let match = true
      for (let i = 0; i < k && match; i++) match = this.edge[this.edgeLen - k + i] === key[i]
      for (let i = k; i < key.length && match; i++) match = b[i - k] === key[i]
      if (match) return true
    }
    return false
  }

  /** Remembers the last bytes seen (up to the key's length − 1), for `keyAcrossEdge`. */
  private keepEdge(b: Buffer): void {
    const cap = this.edge.length
    if (b.length >= cap) {
      // Six bytes: a loop, cheaper than a call into Buffer's native copy.
      const from = b.length - cap
      for (let i = 0; i < cap; i++) this.edge[i] = b[from + i] as number
      this.edgeLen = cap
      return
    }
    const keep = Math.min(this.edgeLen, cap - b.length)
    this.edge.copy(this.edge, 0, this.edgeLen - keep, this.edgeLen)
    b.copy(this.edge, keep)
    this.edgeLen = keep + b.length
  }

  /**
   * One line, `b[start, end)` without its LF (a CR before it is JSON whitespace); `usageHere`:
   * the usage key may be in it.
   */
  private line(b: Buffer, start: number, end: number, usageHere: boolean): void {
    if (
      end - start < 5 ||
      b[start] !== 0x64 || // d
      b[start + 1] !== 0x61 || // a
      b[start + 2] !== 0x74 || // t
      b[start + 3] !== 0x61 || // a
      b[start + 4] !== 0x3a // :
    )
      return
    // Until the first token, each data line is tested for one (a regex over a few lines per
    // stream); latin1 keeps the ASCII pattern's meaning for UTF-8 bytes (a non-quote byte is
    // a non-quote character) without decoding.
    if (this.firstTokenAt === undefined && TOKEN.test(b.toString('latin1', start, end)))
      this.firstTokenAt = performance.now()
    // Only lines whose usage key is not `null` are parsed (once per stream).
    if (!usageHere || !mentionsUsage(b, start, end)) return
    try {
      const obj = JSON.parse(b.toString('utf8', start + 5, end)) as Record<string, unknown>
      // A Responses API stream reports usage inside its final event's `response`.
      const r = obj['response']
      const u = parseUsage(
        obj['usage'] ??
          (typeof r === 'object' && r !== null
            ? (r as Record<string, unknown>)['usage']
            : undefined),
      )
      if (u) this.usage = u
    } catch {
      // A non-JSON data line is the upstream's business; we only observe.
    }
  }
}

export interface RespondOptions {
  readonly startedAt: number
  readonly extraHeaders: Record<string, string>
  /** Aborts when the client disconnects or the total deadline passes. */
  readonly signal: AbortLike
  /** Distinguishes a total-deadline abort from a client disconnect. */
  readonly timedOut: () => boolean
  readonly onDone: (o: ResponseOutcome) => void
  /** Rewrites a stream on its way to the client (the rate-limit filter's token accounting). */
  readonly streamFilter?: StreamFilter
  /** Cap of a non-streamed body (default DEFAULT_MAX_UPSTREAM_BODY_BYTES). */
  readonly maxBodyBytes?: number
  /** Cap of one SSE line (default DEFAULT_MAX_SSE_LINE_BYTES). */
  readonly maxSseLineBytes?: number
  /**
   * The client's Node response, when there is one: an event stream is then written to it chunk
   * by chunk (no WHATWG stream in between) and the returned Response only tells the HTTP adapter
   * that the answer was sent.
   */
  readonly nodeResponse?: ServerResponse
}

/**
 * Sees every upstream SSE chunk before the client does. It may hold bytes back (a partial
 * event), drop events (the usage-only chunk the client did not ask for) or end the stream early
 * with bytes of its own (an error event); ending aborts the upstream request.
 */
export interface StreamFilter {
  transform(chunk: Uint8Array): StreamFilterResult | Promise<StreamFilterResult>
  /** Whatever is still held when the upstream finished. */
  flush(): Uint8Array | undefined
}

export interface StreamFilterResult {
  readonly out?: Uint8Array
  /** Set: write `out`, then end the stream; `end` is the outcome's error code. */
  readonly end?: string
}

/**
 * Not an async function: an event stream is answered at once (no promise of its own), a
 * non-streamed body is the promise of its read.
 */
export function toClientResponse(
  up: UpstreamResponse,
  opts: RespondOptions,
): Response | Promise<Response> {
  if (isEventStream(up.headers)) {
    if (opts.nodeResponse !== undefined) return streamToNode(up, opts, opts.nodeResponse)
    return streamResponse(up, responseHeaders(up.headers, opts.extraHeaders), opts)
  }
  // The raw client's answer that came whole with its head (the usual non-streamed one): answered
  // now, no stream read, no promise.
  const limit = opts.maxBodyBytes ?? DEFAULT_MAX_UPSTREAM_BODY_BYTES
  const whole = up.body.takeWhole?.(Math.min(limit, HOLD_WHOLE_BYTES))
  if (whole !== undefined) {
    let bytes = 0
    for (const c of whole) bytes += c.byteLength
    const firstByteMs = bytes > 0 ? performance.now() - opts.startedAt : undefined
    return wholeResponse(up, opts, whole, bytes, firstByteMs)
  }
  return bufferedResponse(up, opts)
}

/** What `holdBody` read: the whole body, or its first HOLD_WHOLE_BYTES and more to come. */
interface Held {
  readonly chunks: Uint8Array[]
  bytes: number
  firstByteMs: number | undefined
  /** Past HOLD_WHOLE_BYTES: the body is paused with the rest unread. */
  more: boolean
}

const IGNORE = (): void => {}

/**
 * Reads a non-streamed body with plain 'data'/'end' listeners. The async iterator used before
 * cost an async generator, end-of-stream watchers and a stream destroy per response (about 4 %
 * of the gateway's busy CPU in a profile at 500 req/s); bodies here are one or two chunks.
 */
function holdBody(
  up: UpstreamResponse,
  startedAt: number,
  limit: number,
  /** Filled as bytes arrive (also what a failure reports). */
  held: Held,
): Promise<void> {
  const body = up.body
  return new Promise<void>((resolve, reject) => {
    let settled = false
    const done = (err?: unknown): void => {
      if (settled) return
      settled = true
      body.off('data', onData)
      body.off('end', onEnd)
      body.off('error', onError)
      body.off('close', onClose)
      // An error after we stopped listening must not become an uncaught exception; the caller
      // destroys the body on failure, and a paused body gets the reader of passOnResponse.
      if (!held.more) body.on('error', IGNORE)
      if (err !== undefined) reject(err)
      else resolve()
    }
    const onData = (c: Uint8Array): void => {
      if (held.firstByteMs === undefined) held.firstByteMs = performance.now() - startedAt
      held.bytes += c.byteLength
      if (held.bytes > limit) {
        done(errors.upstreamBodyTooLarge(up.endpoint.name, limit))
        return
      }
      held.chunks.push(c)
      if (held.bytes > HOLD_WHOLE_BYTES) {
        body.pause()
        held.more = true
        done()
      }
    }
    const onEnd = (): void => done()
    const onError = (e: unknown): void => done(e)
    // Closed without 'end' or 'error' (destroyed): the body was cut.
    const onClose = (): void =>
      done(errors.upstreamUnavailable(`${up.endpoint.name}: response body cut`))
    // `on`, not `once`: done() removes them all (once allocates a wrapper per listener).
    body.on('data', onData)
    body.on('end', onEnd)
    body.on('error', onError)
    body.on('close', onClose)
  })
}

async function bufferedResponse(up: UpstreamResponse, opts: RespondOptions): Promise<Response> {
  const held: Held = { chunks: [], bytes: 0, firstByteMs: undefined, more: false }
  const limit = opts.maxBodyBytes ?? DEFAULT_MAX_UPSTREAM_BODY_BYTES
  try {
    const declared = Number(up.headers['content-length'])
    if (declared > limit) throw errors.upstreamBodyTooLarge(up.endpoint.name, limit)
    await holdBody(up, opts.startedAt, limit, held)
  } catch (e) {
    const { bytes, firstByteMs } = held
    // Whatever went wrong, the engine's socket is not read any further (an endless body must
    // not keep flowing into a buffer nobody reads).
    up.body.destroy()
    const timeout = opts.timedOut() || isBodyTimeout(e)
    const error =
      opts.signal.aborted && !opts.timedOut()
        ? 'client_closed'
        : timeout
          ? 'timeout'
          : isTooLarge(e)
            ? 'body_too_large'
            : isProtocolError(e)
              ? 'protocol'
              : 'upstream_cut'
    opts.onDone({
      status: up.statusCode,
      bytes,
      error,
      stream: false,
      ...(firstByteMs !== undefined ? { firstByteMs } : {}),
    })
    throw e
  }
  const { chunks, bytes, firstByteMs } = held
  if (held.more)
    return passOnResponse(
      up,
      responseHeaders(up.headers, opts.extraHeaders),
      opts,
      up.body[Symbol.asyncIterator](),
      chunks,
      bytes,
      firstByteMs,
    )
  return wholeResponse(up, opts, chunks, bytes, firstByteMs)
}

/** A non-streamed body read whole: its usage, the outcome, then the client's response. */
function wholeResponse(
  up: UpstreamResponse,
  opts: RespondOptions,
  chunks: readonly Uint8Array[],
  bytes: number,
  firstByteMs: number | undefined,
): Response {
  const body = chunks.length === 1 && chunks[0] !== undefined ? chunks[0] : Buffer.concat(chunks)
  let usage: Usage | undefined
  const ct = contentType(up.headers)
  if (up.statusCode < 300 && ct.includes('json'))
    usage = usageOfJson(Buffer.from(body.buffer, body.byteOffset, body.byteLength))
  // Assigned, not spread: the conditional spreads were a fifth of this function's own time.
  const done: Writable<ResponseOutcome> = {
    status: up.statusCode,
    bytes,
    stream: false,
  }
  if (usage) done.usage = usage
  if (firstByteMs !== undefined) done.firstByteMs = firstByteMs
  if (up.statusCode < 300) done.firstTokenMs = performance.now() - opts.startedAt
  opts.onDone(done)
  const res = opts.nodeResponse
  if (res !== undefined) {
    // Straight to the Node response: no Headers object, no Response body for the adapter to
    // convert back.
    const h = nodeHeaders(up.headers, opts.extraHeaders)
    h['content-length'] = body.byteLength
    res.writeHead(up.statusCode, h)
    res.end(body)
    return RESPONSE_ALREADY_SENT
  }
  return new Response(body, {
    status: up.statusCode,
    headers: responseHeaders(up.headers, opts.extraHeaders),
  })
}

function contentType(headers: UpstreamResponse['headers']): string {
  const ct = headers['content-type']
  return (Array.isArray(ct) ? ct[0] : ct) ?? ''
}

/**
 * A large non-streamed body (past HOLD_WHOLE_BYTES) goes to the client as it arrives, pulled only
 * as fast as the client reads: memory per response stays bounded however many run at once (eight
 * endless bodies held whole took the gateway from 145 MB to 650 MB). The cap still applies; past
 * it, or on a cut, the client's response is aborted (its status is already sent) and the engine
 * reported. Usage is read from the body's last bytes, where OpenAI-style bodies put it.
 */
function passOnResponse(
  up: UpstreamResponse,
  headers: Headers,
  opts: RespondOptions,
  iterator: AsyncIterator<unknown>,
  held: Uint8Array[],
  heldBytes: number,
  firstByteMs: number | undefined,
): Response {
  const limit = opts.maxBodyBytes ?? DEFAULT_MAX_UPSTREAM_BODY_BYTES
  const ct = headers.get('content-type') ?? ''
  const tail = up.statusCode < 300 && ct.includes('json') ? new TailBytes(4096) : undefined
  for (const c of held) tail?.push(c)
  let bytes = heldBytes
  let pending: Uint8Array[] | undefined = held
  let finished = false
  const finish = (error?: string): void => {
    if (finished) return
    finished = true
    const usage = error === undefined && tail !== undefined ? usageFromTail(tail.text()) : undefined
    opts.onDone({
      status: up.statusCode,
      bytes,
      stream: false,
      ...(usage ? { usage } : {}),
      ...(firstByteMs !== undefined ? { firstByteMs } : {}),
      ...(error === undefined && up.statusCode < 300
        ? { firstTokenMs: performance.now() - opts.startedAt }
        : {}),
      ...(error !== undefined ? { error } : {}),
    })
  }
  const stream = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (pending !== undefined) {
        for (const c of pending) controller.enqueue(c)
        pending = undefined
        return
      }
      try {
        const { value, done } = await iterator.next()
        if (done) {
          finish()
          controller.close()
          return
        }
        const c = value as Uint8Array
        bytes += c.byteLength
        if (bytes > limit) throw errors.upstreamBodyTooLarge(up.endpoint.name, limit)
        tail?.push(c)
        controller.enqueue(c)
      } catch (e) {
        up.body.destroy()
        const timeout = opts.timedOut() || isBodyTimeout(e)
        finish(
          opts.signal.aborted && !opts.timedOut()
            ? 'client_closed'
            : timeout
              ? 'timeout'
              : isTooLarge(e)
                ? 'body_too_large'
                : isProtocolError(e)
                  ? 'protocol'
                  : 'upstream_cut',
        )
        controller.error(e)
      }
    },
    cancel() {
      finish('client_closed')
      up.body.destroy()
    },
  })
  return new Response(stream, { status: up.statusCode, headers })
}

/** The last `size` bytes seen, for reading a trailing field without holding the body. */
class TailBytes {
  private readonly size: number
  private readonly buf: Buffer
  private len = 0
  constructor(size: number) {
    this.size = size
    this.buf = Buffer.alloc(size * 2)
  }
  push(c: Uint8Array): void {
    if (c.byteLength >= this.size) {
      this.buf.set(c.subarray(c.byteLength - this.size), 0)
      this.len = this.size
      return
    }
    if (this.len + c.byteLength > this.buf.length) {
      this.buf.copy(this.buf, 0, this.len - this.size, this.len)
      this.len = this.size
    }
    this.buf.set(c, this.len)
    this.len += c.byteLength
  }
  text(): string {
    return this.buf.toString('utf8', Math.max(0, this.len - this.size), this.len)
  }
}

/** `usage` token counts from the end of a JSON body (the object itself is never parsed whole). */
export function usageFromTail(text: string): Usage | undefined {
  const at = text.lastIndexOf('"usage"')
  if (at < 0) return undefined
  const rest = text.slice(at)
  const p = /"(?:prompt|input)_tokens"\s*:\s*(\d+)/.exec(rest)
  if (p === null) return undefined
  const c = /"(?:completion|output)_tokens"\s*:\s*(\d+)/.exec(rest)
  return { promptTokens: Number(p[1]), completionTokens: c === null ? 0 : Number(c[1]) }
}

function isTooLarge(e: unknown): boolean {
  return (
    typeof e === 'object' &&
    e !== null &&
    (e as { code?: unknown }).code === 'upstream_body_too_large'
  )
}

/** How a streamed answer ended, for either writer (WHATWG stream or the Node response). */
function streamOutcome(
  status: number,
  bytes: number,
  scanner: SseUsageScanner,
  firstByteMs: number | undefined,
  error: string | undefined,
  startedAt: number,
): ResponseOutcome {
  const o: Writable<ResponseOutcome> = { status, bytes, stream: true }
  if (scanner.usage) o.usage = scanner.usage
  if (firstByteMs !== undefined) o.firstByteMs = firstByteMs
  if (scanner.firstTokenAt !== undefined) o.firstTokenMs = scanner.firstTokenAt - startedAt
  if (error) o.error = error
  return o
}

function streamResponse(up: UpstreamResponse, headers: Headers, opts: RespondOptions): Response {
  const iterator = up.body[Symbol.asyncIterator]()
  const scanner = new SseUsageScanner()
  const maxLine = opts.maxSseLineBytes ?? DEFAULT_MAX_SSE_LINE_BYTES
  let firstByteMs: number | undefined
  let bytes = 0
  let finished = false
  const finish = (error?: string): void => {
    if (finished) return
    finished = true
    opts.onDone(streamOutcome(up.statusCode, bytes, scanner, firstByteMs, error, opts.startedAt))
  }
  headers.set('cache-control', 'no-cache')
  headers.set('x-accel-buffering', 'no')
  const stream = new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const { value, done } = await iterator.next()
        if (done) {
          const rest = opts.streamFilter?.flush()
          if (rest !== undefined && rest.byteLength > 0) controller.enqueue(rest)
          finish()
          controller.close()
          return
        }
        const c = value as Uint8Array
        if (firstByteMs === undefined) firstByteMs = performance.now() - opts.startedAt
        bytes += c.byteLength
        scanner.push(c)
        if (scanner.lineBytes > maxLine) {
          // Not an event stream any more (an endless line): end it for the client with an error
          // event and report the engine.
          up.body.destroy()
          finish('body_too_large')
          controller.enqueue(
            errorEvent(
              `upstream sent an event line longer than ${maxLine} bytes`,
              'upstream_body_too_large',
            ),
          )
          controller.close()
          return
        }
        if (opts.streamFilter === undefined) {
          controller.enqueue(c)
          return
        }
        const r = await opts.streamFilter.transform(c)
        if (r.out !== undefined && r.out.byteLength > 0) controller.enqueue(r.out)
        if (r.end !== undefined) {
          finish(r.end)
          controller.close()
          up.body.destroy()
        }
      } catch (e) {
        if (opts.signal.aborted && !opts.timedOut()) {
          finish('client_closed')
          controller.close()
          return
        }
        const timeout = opts.timedOut() || isBodyTimeout(e)
        finish(timeout ? 'timeout' : isProtocolError(e) ? 'protocol' : 'upstream_cut')
        controller.enqueue(
          timeout
            ? errorEvent('upstream stream timed out', 'upstream_timeout')
            : errorEvent('upstream closed the stream before it finished', 'upstream_stream_cut'),
        )
        controller.close()
      }
    },
    cancel() {
      // The client went away: stop the engine's work too.
      finish('client_closed')
      up.body.destroy()
    },
  })
  return new Response(stream, { status: up.statusCode, headers })
}

/** Upstream headers as Node writes them (hop-by-hop ones dropped), then ours. */
function nodeHeaders(
  upstream: UpstreamResponse['headers'],
  extra: Record<string, string>,
): OutgoingHttpHeaders {
  const h: OutgoingHttpHeaders = {}
  for (const k in upstream) {
    const v = upstream[k]
    if (v === undefined || HOP_BY_HOP.has(k)) continue
    h[k] = v
  }
  for (const k in extra) h[k] = extra[k]
  return h
}

/**
 * An event stream written straight to the client's Node response: each upstream chunk is one
 * `write`, waiting for `drain` only when the client reads slower than the engine writes. Same
 * accounting and endings as `streamResponse` (usage, first byte, line cap, stream filter, error
 * event on a cut or timeout, `client_closed` when the client left).
 */
function streamToNode(up: UpstreamResponse, opts: RespondOptions, res: ServerResponse): Response {
  const headers = nodeHeaders(up.headers, opts.extraHeaders)
  headers['cache-control'] = 'no-cache'
  headers['x-accel-buffering'] = 'no'
  res.writeHead(up.statusCode, headers)
  // The status line goes out now, not with the first token; when the engine's first bytes are
  // already here (they came with its headers), they go out with it in one write instead.
  const headersOut = up.body.readableLength === 0
  if (headersOut) res.flushHeaders()
  pumpToNode(up, opts, res, headersOut)
  return RESPONSE_ALREADY_SENT
}

/** What a Node response keeps of writes made before it had a socket (Node's own field). */
interface OutgoingBuffer {
  readonly outputSize?: number
}

/**
 * The client's socket, when a chunk may be written to it directly as one HTTP/1.1 chunk: the
 * response is chunked, its head went out (`headersOut`), and nothing of it waits in the
 * response's own buffer (a pipelined response before its turn has no socket). Otherwise
 * undefined: `res.write` then frames and orders the bytes.
 */
function directSocket(res: ServerResponse, headersOut: boolean): Socket | undefined {
  const s = res.socket
  if (
    !headersOut ||
    s === null ||
    !res.chunkedEncoding ||
    (res as unknown as OutgoingBuffer).outputSize !== 0 ||
    s.destroyed
  )
    return undefined
  return s
}

/**
 * `out` as one HTTP/1.1 chunk (size line, data, CRLF) in one buffer. `res.write` of a chunked
 * response corks the socket until the next tick and hands it four pieces (the size as a string,
 * CRLF, the data, CRLF) for a `writev`: per SSE chunk a `process.nextTick`, four buffered writes
 * and a gathered write, where this is one copy of a few hundred bytes and one plain write.
 */
export function chunkFrame(out: Uint8Array): Buffer {
  const n = out.byteLength
  let digits = 1
  while (n >= 16 ** digits) digits++
  const buf = Buffer.allocUnsafe(digits + n + 4)
  for (let i = digits - 1, v = n; i >= 0; i--, v >>>= 4) buf[i] = HEX[v & 15] as number
  buf[digits] = 13
  buf[digits + 1] = 10
  buf.set(out, digits + 2)
  buf[digits + 2 + n] = 13
  buf[digits + 3 + n] = 10
  return buf
}

const HEX = Buffer.from('0123456789abcdef', 'latin1')

function uncork(socket: Socket): void {
  socket.uncork()
}

/**
 * The engine's chunks into the client's response with plain listeners: on 'readable' everything
 * buffered is read at once (what piled up while the process was busy goes out in one write), and
 * reading stops while the client's socket is full or an asynchronous stream filter works (the
 * engine's socket is then paused by undici). The async iterator used before cost a promise, an
 * iterator result and a microtask hop per chunk, thousands a second with thousands of streams.
 */
function pumpToNode(
  up: UpstreamResponse,
  opts: RespondOptions,
  res: ServerResponse,
  /** The response's head went out already (flushed); else the first write carries it. */
  headersOut: boolean,
): void {
  const body = up.body
  const scanner = new SseUsageScanner()
  const maxLine = opts.maxSseLineBytes ?? DEFAULT_MAX_SSE_LINE_BYTES
  const filter = opts.streamFilter
  let firstByteMs: number | undefined
  let bytes = 0
  let finished = false
  /** No longer listening to the engine: every path below ends the stream once. */
  let stopped = false
  /** Not reading until the client's socket drains. */
  let waitingDrain = false
  /** Where 'drain' is awaited: the response (after `res.write`) or its socket (direct writes). */
  let drainFrom: ServerResponse | Socket | undefined
  /** Not reading until an asynchronous stream filter answers. */
  let waitingFilter = false
  /**
   * The engine's body ended while a filter still held its last chunk: reading that chunk emptied
   * the buffer of an ended stream, so 'end' (and 'close') come on the next tick, before the
   * filter answers. The end is completed once it has.
   */
  let endPending = false
  const finish = (error?: string): void => {
    if (finished) return
    finished = true
    opts.onDone(streamOutcome(up.statusCode, bytes, scanner, firstByteMs, error, opts.startedAt))
  }
  /** The client is gone (or the response already ended): nothing more can be written. */
  const gone = (): boolean => res.destroyed || res.writableEnded
  const stop = (destroyEngine: boolean): void => {
    stopped = true
    body.off('readable', pull)
    body.off('end', onEnd)
    body.off('error', onError)
    body.off('close', onClose)
    drainFrom?.off('drain', onDrain)
    res.off('close', onClientClose)
    // An error after we stopped listening must not become an uncaught exception.
    body.on('error', IGNORE)
    // Stops the engine's work too (the request is aborted with its body).
    if (destroyEngine) body.destroy()
  }
  /** Writes what the filter let through; ends the stream when it said so. */
  const deliver = (out: Uint8Array | undefined, end: string | undefined): void => {
    if (gone()) {
      stop(true)
      finish('client_closed')
      return
    }
    if (out !== undefined && out.byteLength > 0) {
      const socket = directSocket(res, headersOut)
      let more: boolean
      if (socket !== undefined) {
        // The engine's last bytes, its end in this same turn: the chunk waits corked for the
        // response's terminating chunk (res.end, which uncorks), one write for both where two
        // would wake the client twice. The tick is a guard only (uncork is then a no-op).
        if (body.lastIn === true && !socket.writableCorked) {
          socket.cork()
          process.nextTick(uncork, socket)
        }
        more = socket.write(chunkFrame(out))
        drainFrom = socket
      } else {
        more = res.write(out)
        // The head went out with these bytes.
        headersOut = true
        drainFrom = res
      }
      if (!more && end === undefined) {
        waitingDrain = true
        drainFrom.once('drain', onDrain)
      }
    }
    if (end !== undefined) {
      stop(true)
      finish(end)
      if (!gone()) res.end()
    }
  }
  const onDrain = (): void => {
    waitingDrain = false
    pull()
  }
  /** Reads what the engine sent so far, until there is nothing or we must wait. */
  const pull = (): void => {
    while (!stopped && !waitingDrain && !waitingFilter) {
      const c = body.read() as Uint8Array | null
      // Nothing buffered: 'readable' (or 'end') comes when there is.
      if (c === null) return
      onChunk(c)
    }
  }
  const onChunk = (c: Uint8Array): void => {
    if (firstByteMs === undefined) firstByteMs = performance.now() - opts.startedAt
    bytes += c.byteLength
    scanner.push(c)
    if (scanner.lineBytes > maxLine) {
      // Not an event stream any more (an endless line): end it for the client with an error
      // event and report the engine.
      stop(true)
      finish('body_too_large')
      if (!gone())
        res.end(
          errorEvent(
            `upstream sent an event line longer than ${maxLine} bytes`,
            'upstream_body_too_large',
          ),
        )
      return
    }
    if (filter === undefined) {
      deliver(c, undefined)
      return
    }
    // Every stream has a filter now (usage stripping without a policy); the usual one answers
    // synchronously. An asynchronous one holds the engine until it answers, keeping the order.
    const t = filter.transform(c)
    if (!(t instanceof Promise)) {
      deliver(t.out, t.end)
      return
    }
    waitingFilter = true
    t.then(
      (r) => {
        waitingFilter = false
        if (stopped) return
        deliver(r.out, r.end)
        if (endPending) complete()
        else pull()
      },
      (e: unknown) => {
        waitingFilter = false
        onError(e)
      },
    )
  }
  const onEnd = (): void => {
    if (stopped) return
    if (waitingFilter) {
      endPending = true
      return
    }
    complete()
  }
  const complete = (): void => {
    if (stopped) return
    stop(false)
    if (gone()) {
      finish('client_closed')
      return
    }
    const rest = filter?.flush()
    finish()
    if (rest !== undefined && rest.byteLength > 0) res.end(rest)
    else res.end()
  }
  const onError = (e: unknown): void => {
    if (stopped) return
    stop(true)
    if ((opts.signal.aborted && !opts.timedOut()) || gone()) {
      finish('client_closed')
      if (!gone()) res.end()
      return
    }
    const timeout = opts.timedOut() || isBodyTimeout(e)
    finish(timeout ? 'timeout' : isProtocolError(e) ? 'protocol' : 'upstream_cut')
    res.end(
      timeout
        ? errorEvent('upstream stream timed out', 'upstream_timeout')
        : errorEvent('upstream closed the stream before it finished', 'upstream_stream_cut'),
    )
  }
  // Destroyed without 'end' or 'error': the body was cut.
  const onClose = (): void => {
    // After 'end' (the filter still holding the last chunk) a close is the normal one.
    if (endPending) return
    onError(errors.upstreamUnavailable(`${up.endpoint.name}: stream cut`))
  }
  const onClientClose = (): void => {
    if (stopped) return
    stop(true)
    finish('client_closed')
  }
  body.on('end', onEnd)
  body.on('error', onError)
  body.on('close', onClose)
  res.on('close', onClientClose)
  body.on('readable', pull)
  // Bytes already buffered are written now, not a tick later on 'readable' (the first token's
  // time to the client, and the headers' write it joins).
  if (body.readableLength > 0) pull()
}

/** Resolves when the client's socket takes more bytes, or when it is gone. */
export function drained(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      res.off('drain', done)
      res.off('close', done)
      resolve()
    }
    res.on('drain', done)
    res.on('close', done)
  })
}
