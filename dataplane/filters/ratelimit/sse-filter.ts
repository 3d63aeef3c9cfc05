// The rate limiter's view of a streamed response. It passes SSE events through whole (holding a
// partial event until its blank line arrives) and:
// - counts output tokens as they stream (one per choice per content delta: engines stream a
//   token per event; the final `usage` corrects the count when it settles);
// - when the count passes the output tokens reserved for the request, reserves more; if the
//   limit has no more room, ends the stream with an OpenAI-shaped error event instead of the
//   tokens beyond it (the upstream request is aborted, so the engine stops generating);
// - drops the usage-only chunk (`choices: []` + `usage`) when the gateway asked the engine for
//   usage (`stream_options.include_usage`) and the client did not.
import type { StreamFilter, StreamFilterResult } from '../../proxy/respond.js'

export interface StreamBudget {
  /** Output tokens currently reserved for this response. */
  readonly reservedOutput: number
  /** Reserve `n` more output tokens; false when the limits have no room. */
  extend(n: number): Promise<boolean>
}

export interface SseLimitFilterOptions {
  readonly stripUsageChunk: boolean
  readonly budget?: StreamBudget
  /** Tokens reserved per extension. */
  readonly extendBy: number
}

const encoder = new TextEncoder()

export function errorEventText(message: string, code: string): string {
  const body = JSON.stringify({ error: { message, type: 'rate_limit_error', code, param: null } })
  return `data: ${body}\n\n`
}

type Json = Record<string, unknown>

function tokensOf(obj: Json): number {
  // A Responses API stream: one output token per text delta event.
  if (obj['type'] === 'response.output_text.delta') return 1
  const choices = obj['choices']
  if (!Array.isArray(choices)) return 0
  let n = 0
  for (const c of choices) {
    if (typeof c !== 'object' || c === null) continue
    const ch = c as Json
    const delta = ch['delta']
    if (typeof ch['text'] === 'string' && ch['text'] !== '') n++
    else if (typeof delta === 'object' && delta !== null) {
      const d = delta as Json
      if (
        (typeof d['content'] === 'string' && d['content'] !== '') ||
        (typeof d['reasoning_content'] === 'string' && d['reasoning_content'] !== '') ||
        (Array.isArray(d['tool_calls']) && d['tool_calls'].length > 0)
      )
        n++
    }
  }
  return n
}

export class SseLimitFilter implements StreamFilter {
  private readonly opts: SseLimitFilterOptions
  private readonly decoder = new TextDecoder()
  private pending = ''
  /** Output tokens counted so far. */
  streamed = 0
  /** Set when the filter ended the stream. */
  cut = false

  constructor(opts: SseLimitFilterOptions) {
    this.opts = opts
  }

  async transform(chunk: Uint8Array): Promise<StreamFilterResult> {
    let text = this.pending + this.decoder.decode(chunk, { stream: true })
    if (text.includes('\r')) text = text.replace(/\r\n?/g, '\n')
    let out = ''
    let start = 0
    for (;;) {
      const end = text.indexOf('\n\n', start)
      if (end < 0) break
      const event = text.slice(start, end)
      start = end + 2
      const verdict = this.judge(event)
      if (verdict === 'drop') continue
      const budget = this.opts.budget
      if (verdict > 0 && budget !== undefined) {
        this.streamed += verdict
        while (this.streamed > budget.reservedOutput) {
          if (!(await budget.extend(this.opts.extendBy))) {
            this.cut = true
            this.pending = ''
            return {
              out: encoder.encode(
                out +
                  errorEventText(
                    'the response was stopped: it reached your output token rate limit',
                    'rate_limit_exceeded',
                  ),
              ),
              end: 'rate_limited',
            }
          }
        }
      } else if (verdict > 0) {
        this.streamed += verdict
      }
      out += `${event}\n\n`
    }
    this.pending = text.slice(start)
    return out === '' ? {} : { out: encoder.encode(out) }
  }

  flush(): Uint8Array | undefined {
    const rest = this.pending + this.decoder.decode()
    this.pending = ''
    return rest === '' ? undefined : encoder.encode(rest)
  }

  /** 'drop', or the number of output tokens the event carries. */
  private judge(event: string): 'drop' | number {
    let data = ''
    for (const line of event.split('\n')) {
      if (line.startsWith('data:'))
        data += line.charCodeAt(5) === 32 ? line.slice(6) : line.slice(5)
    }
    if (data === '' || data.charCodeAt(0) !== 123 /* { */) return 0
    let obj: Json
    try {
      obj = JSON.parse(data) as Json
    } catch {
      return 0
    }
    const choices = obj['choices']
    if (
      this.opts.stripUsageChunk &&
      Array.isArray(choices) &&
      choices.length === 0 &&
      typeof obj['usage'] === 'object' &&
      obj['usage'] !== null
    )
      return 'drop'
    return tokensOf(obj)
  }
}
