// Server-sent events, both directions. The parser follows the WHATWG event-stream rules the
// providers rely on: lines end in LF, CRLF or CR (Gemini frames with CRLF), `event:` names an event
// (Anthropic's message_start, content_block_delta, …), several `data:` lines join with LF, `:`
// starts a comment (keep-alives), and a blank line dispatches. It holds partial lines and partial
// UTF-8 sequences across network chunks.

export interface SseEvent {
  /** `event:` field; undefined = the default "message". */
  readonly event?: string
  readonly data: string
}

/** Longest SSE line accepted from a provider by default (1 MiB). */
export const DEFAULT_MAX_SSE_LINE = 1024 * 1024

/** A line grew past the parser's cap: not an event stream the gateway will hold in memory. */
export class SseLineTooLongError extends Error {
  override readonly name = 'SseLineTooLongError'
  readonly code = 'upstream_body_too_large'
  constructor(limit: number) {
    super(`upstream sent an event line longer than ${limit} characters`)
  }
}

export class SseParser {
  private readonly decoder = new TextDecoder()
  /**
   * The line still open, as the pieces that arrived: joined once its end arrives, so a line sent
   * in many chunks is not rescanned (or re-flattened) for every chunk.
   */
  private held: string[] = []
  private heldLength = 0
  /** A CR ended the last chunk: an LF starting the next one belongs to it. */
  private pendingCR = false
  private event: string | undefined
  private data: string[] = []
  private hasData = false
  private readonly maxLine: number

  constructor(opts: { maxLine?: number } = {}) {
    this.maxLine = opts.maxLine ?? DEFAULT_MAX_SSE_LINE
  }

  /** Feed bytes; returns the events completed by them. Throws SseLineTooLongError past the cap. */
  push(chunk: Uint8Array): SseEvent[] {
    return this.feed(this.decoder.decode(chunk, { stream: true }))
  }

  /** End of stream: an event without its blank line is incomplete and dropped, as the spec says. */
  end(): SseEvent[] {
    const out = this.feed(this.decoder.decode())
    this.held = []
    this.heldLength = 0
    return out
  }

  private feed(text: string): SseEvent[] {
    const out: SseEvent[] = []
    let s = text
    if (this.pendingCR && s.length > 0) {
      if (s.charCodeAt(0) === 10) s = s.slice(1)
      this.pendingCR = false
    }
    let start = 0
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i)
      if (c !== 10 && c !== 13) continue
      let line = s.slice(start, i)
      if (this.heldLength > 0) {
        this.held.push(line)
        line = this.held.join('')
        this.held = []
        this.heldLength = 0
      }
      this.line(line, out)
      if (c === 13) {
        if (i + 1 < s.length) {
          if (s.charCodeAt(i + 1) === 10) i++
        } else {
          this.pendingCR = true
        }
      }
      start = i + 1
    }
    if (start < s.length) {
      this.held.push(start === 0 ? s : s.slice(start))
      this.heldLength += s.length - start
      if (this.heldLength > this.maxLine) throw new SseLineTooLongError(this.maxLine)
    }
    return out
  }

  private line(line: string, out: SseEvent[]): void {
    if (line === '') {
      if (this.hasData) {
        out.push(
          this.event === undefined
            ? { data: this.data.join('\n') }
            : { event: this.event, data: this.data.join('\n') },
        )
      }
      this.event = undefined
      this.data = []
      this.hasData = false
      return
    }
    if (line.charCodeAt(0) === 58) return // ':' comment
    const colon = line.indexOf(':')
    const field = colon < 0 ? line : line.slice(0, colon)
    let value = colon < 0 ? '' : line.slice(colon + 1)
    if (value.startsWith(' ')) value = value.slice(1)
    if (field === 'data') {
      this.data.push(value)
      this.hasData = true
    } else if (field === 'event') {
      this.event = value
    }
    // `id` and `retry` are reconnection hints for browsers; a proxy has no use for them.
  }
}

/** One OpenAI-style SSE frame: `data: <json>\n\n`. */
export function sseData(data: string): string {
  return `data: ${data}\n\n`
}

export const SSE_DONE = 'data: [DONE]\n\n'

/** OpenAI-shaped error event: how a stream that cannot finish tells the client (never `[DONE]`). */
export function sseError(message: string, code: string, type = 'server_error'): string {
  return sseData(JSON.stringify({ error: { message, type, code, param: null } }))
}
