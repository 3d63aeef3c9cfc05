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

export class SseParser {
  private readonly decoder = new TextDecoder()
  private buf = ''
  /** A CR ended the last chunk: an LF starting the next one belongs to it. */
  private pendingCR = false
  private event: string | undefined
  private data: string[] = []
  private hasData = false

  /** Feed bytes; returns the events completed by them. */
  push(chunk: Uint8Array): SseEvent[] {
    return this.feed(this.decoder.decode(chunk, { stream: true }))
  }

  /** End of stream: an event without its blank line is incomplete and dropped, as the spec says. */
  end(): SseEvent[] {
    const out = this.feed(this.decoder.decode())
    this.buf = ''
    return out
  }

  private feed(text: string): SseEvent[] {
    const out: SseEvent[] = []
    let s = this.buf + text
    if (this.pendingCR && s.startsWith('\n')) s = s.slice(1)
    this.pendingCR = false
    let start = 0
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i)
      if (c !== 10 && c !== 13) continue
      this.line(s.slice(start, i), out)
      if (c === 13) {
        if (i + 1 < s.length) {
          if (s.charCodeAt(i + 1) === 10) i++
        } else {
          this.pendingCR = true
        }
      }
      start = i + 1
    }
    this.buf = s.slice(start)
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
