// Token counting for every stream: when a client streams without `stream_options.include_usage`,
// the gateway asks the engine for usage anyway (so the stream's tokens are counted in metrics,
// access log and traces) and removes the usage-only event (`choices: []` + `usage`) on the way
// back, so the client sees exactly the stream it asked for. The rate limiter does the same with
// its own filter when a policy applies (filters/ratelimit/sse-filter.ts); this one is the
// policy-free path and costs almost nothing per chunk: a chunk that ends on an event boundary and
// holds no empty `choices` goes through as is (two native byte searches, no copy, no decode).
import type { StreamFilter, StreamFilterResult } from './respond.js'

const CHOICES_KEY = Buffer.from('"choices"')
const EMPTY_ARRAY = Buffer.from('[]')
const EVENT_END = Buffer.from('\n\n')
const PREFIX = Buffer.from('{"stream_options":{"include_usage":true},')
const PASS: StreamFilterResult = {}

/**
 * The client streams and did not ask for usage: the gateway should ask for it. Only for a
 * well-formed request: a `stream_options` that is not an object, or an `include_usage` that is
 * not a boolean, is the client's error and goes to the engine as sent (rewriting it would turn
 * an invalid request into a valid one).
 */
export function wantsInjectedUsage(body: Readonly<Record<string, unknown>>): boolean {
  if (body['stream'] !== true) return false
  const so = body['stream_options']
  if (so === undefined) return true
  if (typeof so !== 'object' || so === null || Array.isArray(so)) return false
  const iu = (so as Record<string, unknown>)['include_usage']
  return iu === undefined || iu === false
}

/**
 * The request body with `stream_options.include_usage: true`. Without `stream_options` the
 * member is spliced in front of the client's bytes (no re-serialisation); with one, the body is
 * re-serialised with the flag added (JSON parsers keep the last duplicate key, so a splice
 * in front would be overridden).
 */
export function requestUsage(
  raw: Uint8Array | string,
  body: Readonly<Record<string, unknown>>,
): Uint8Array | string {
  const so = body['stream_options']
  if (so !== undefined || typeof raw === 'string') {
    return JSON.stringify({
      ...body,
      stream_options: { ...(typeof so === 'object' && so !== null ? so : {}), include_usage: true },
    })
  }
  const at = raw.indexOf(0x7b /* { */)
  if (at < 0) return raw
  return Buffer.concat([PREFIX, raw.subarray(at + 1)])
}

function asBuffer(c: Uint8Array): Buffer {
  return Buffer.isBuffer(c) ? c : Buffer.from(c.buffer, c.byteOffset, c.byteLength)
}

/** Removes usage-only SSE events; everything else passes through byte for byte. */
export class UsageChunkStripper implements StreamFilter {
  #held: Buffer | undefined
  #raw = false
  /**
   * The pass-through answer, reused: the caller reads `out` before the next chunk, so the usual
   * chunk costs no allocation at all.
   */
  readonly #same: { out: Uint8Array } = { out: new Uint8Array(0) }
  /** Usage-only events removed (tests). */
  dropped = 0

  transform(chunk: Uint8Array): StreamFilterResult {
    const c = asBuffer(chunk)
    const n = c.byteLength
    if (
      this.#held === undefined &&
      n >= 2 &&
      c[n - 1] === 10 &&
      c[n - 2] === 10 &&
      nextEmptyChoices(c, 0) < 0
    )
      return this.#pass(chunk)
    if (this.#raw) return this.#pass(chunk)
    const buf = this.#held === undefined ? c : Buffer.concat([this.#held, c])
    this.#held = undefined
    if (buf.indexOf(13 /* \r */) >= 0) {
      // CR line ends: not the engine dialect this filter knows; pass everything through from
      // here on rather than hold events it cannot delimit.
      this.#raw = true
      return { out: buf }
    }
    // Only events holding an empty `choices` can be usage-only: the search jumps from one such
    // event to the next, and the runs of events between them pass on as they are (splitting a
    // whole stream that arrived in one chunk event by event cost native searches per event).
    const n2 = buf.byteLength
    // Events end at the last blank line; what follows is the next event's start, held.
    const last = buf.lastIndexOf(EVENT_END)
    const complete = last < 0 ? 0 : last + 2
    const parts: Buffer[] = []
    let start = 0
    let from = 0
    while (from < complete) {
      const at = nextEmptyChoices(buf, from)
      if (at < 0 || at >= complete) break
      const open = buf.lastIndexOf(EVENT_END, at)
      const eventStart = open < 0 ? 0 : open + 2
      const eventEnd = buf.indexOf(EVENT_END, at) + 2
      from = eventEnd
      if (!isUsageOnly(buf.subarray(eventStart, eventEnd))) continue
      this.dropped++
      if (eventStart > start) parts.push(buf.subarray(start, eventStart))
      start = eventEnd
    }
    if (complete > start) parts.push(buf.subarray(start, complete))
    if (complete < n2) this.#held = Buffer.from(buf.subarray(complete))
    if (parts.length === 0) return PASS
    return { out: parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts) }
  }

  #pass(chunk: Uint8Array): StreamFilterResult {
    this.#same.out = chunk
    return this.#same
  }

  flush(): Uint8Array | undefined {
    const rest = this.#held
    this.#held = undefined
    return rest
  }
}

/**
 * Where the next `"choices":[]` or `"choices": []` at or after `from` starts; -1 if none. One
 * search for `[]` (which token events do not hold), the key then checked in place: the usual
 * chunk costs one native search where one per spelling cost two.
 */
function nextEmptyChoices(b: Buffer, from: number): number {
  const keyLen = CHOICES_KEY.length
  for (let at = b.indexOf(EMPTY_ARRAY, from); at >= 0; at = b.indexOf(EMPTY_ARRAY, at + 2)) {
    let k = at - 1
    if (b[k] === 0x20) k--
    if (b[k] !== 0x3a /* : */) continue
    const start = k - keyLen
    if (start < from) continue
    let same = true
    for (let i = 0; i < keyLen && same; i++) same = b[start + i] === CHOICES_KEY[i]
    if (same) return start
  }
  return -1
}

function isUsageOnly(event: Buffer): boolean {
  if (nextEmptyChoices(event, 0) < 0) return false
  const text = event.toString('utf8')
  let data = ''
  for (const line of text.split('\n')) {
    if (line.startsWith('data:')) data += line.charCodeAt(5) === 32 ? line.slice(6) : line.slice(5)
  }
  try {
    const obj = JSON.parse(data) as Record<string, unknown>
    const choices = obj['choices']
    const usage = obj['usage']
    return (
      Array.isArray(choices) && choices.length === 0 && typeof usage === 'object' && usage !== null
    )
  } catch {
    return false
  }
}
