// OpenAI chat answers → Anthropic Messages answers, for /v1/messages served by a self-hosted engine
// or an OpenAI-type provider: a chat.completion becomes a `message` (text and tool_use blocks,
// stop_reason, usage), a chat.completion.chunk stream becomes Anthropic's named events
// (message_start, content_block_start/delta/stop for text and tool_use blocks, message_delta with
// the stop reason and usage, message_stop), and every error — a JSON error body or an error event
// in a stream — leaves in Anthropic's error shape. Answers of Anthropic providers pass through;
// only an error event the gateway itself appended to such a stream is reshaped.
import { SseParser } from '../../providers/sse.js'
import { anthropicErrorBody, anthropicErrorEvent } from './errors.js'

type Obj = Record<string, unknown>

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v)
const num = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) ? v : 0)

export function stopReason(finish: unknown): string {
  switch (finish) {
    case 'length':
      return 'max_tokens'
    case 'tool_calls':
    case 'function_call':
      return 'tool_use'
    case 'content_filter':
      return 'refusal'
    default:
      return 'end_turn'
  }
}

function usageOf(u: unknown): { input_tokens: number; output_tokens: number } & Obj {
  if (!isObj(u)) return { input_tokens: 0, output_tokens: 0 }
  const details = u['prompt_tokens_details']
  const cached = isObj(details) ? num(details['cached_tokens']) : 0
  // Anthropic counts cache reads apart from input_tokens (OpenAI's prompt_tokens has them all).
  return {
    input_tokens: num(u['prompt_tokens']) - cached,
    output_tokens: num(u['completion_tokens']),
    ...(cached > 0 ? { cache_read_input_tokens: cached } : {}),
  }
}

const messageId = (id: unknown): string =>
  typeof id === 'string' && id.startsWith('msg_') ? id : `msg_${typeof id === 'string' ? id : ''}`

/** A chat.completion body as an Anthropic message. */
export function chatToMessage(chat: Obj, model: string): Obj {
  const choices = chat['choices']
  const c = Array.isArray(choices) && isObj(choices[0]) ? choices[0] : {}
  const msg = isObj(c['message']) ? c['message'] : {}
  const content: Obj[] = []
  if (typeof msg['content'] === 'string' && msg['content'] !== '')
    content.push({ type: 'text', text: msg['content'] })
  const calls = msg['tool_calls']
  if (Array.isArray(calls)) {
    for (const call of calls) {
      if (!isObj(call) || !isObj(call['function'])) continue
      const fn = call['function']
      let input: unknown = {}
      try {
        input = JSON.parse(typeof fn['arguments'] === 'string' ? fn['arguments'] : '{}')
      } catch {
        // Arguments a model produced that are not JSON stay visible as a string.
        input = { arguments: fn['arguments'] }
      }
      content.push({ type: 'tool_use', id: call['id'], name: fn['name'], input })
    }
  }
  return {
    id: messageId(chat['id']),
    type: 'message',
    role: 'assistant',
    model,
    content,
    stop_reason: stopReason(c['finish_reason']),
    stop_sequence: null,
    usage: usageOf(chat['usage']),
  }
}

const frame = (type: string, body: Obj): string =>
  `event: ${type}\ndata: ${JSON.stringify({ type, ...body })}\n\n`

/** Error event text → status, message and code (OpenAI's error object). */
function openAIError(obj: Obj): { status: number; message: string; code: string } {
  const e = isObj(obj['error']) ? obj['error'] : {}
  const type = e['type']
  const status =
    type === 'rate_limit_error'
      ? 429
      : type === 'timeout_error'
        ? 504
        : type === 'invalid_request_error'
          ? 400
          : 500
  return {
    status,
    message: typeof e['message'] === 'string' ? e['message'] : 'stream error',
    code: typeof e['code'] === 'string' ? e['code'] : '',
  }
}

/** OpenAI chat chunks in, Anthropic events out, one upstream event at a time. */
export class ChatToMessagesStream {
  private readonly model: string
  private started = false
  private finished = false
  private index = -1
  private open: 'text' | 'tool' | undefined
  /** OpenAI tool_calls index → Anthropic content block index. */
  private readonly tools = new Map<number, number>()
  private stop: string | undefined
  private usage: Obj = { input_tokens: 0, output_tokens: 0 }

  constructor(model: string) {
    this.model = model
  }

  private close(): string {
    if (this.open === undefined) return ''
    this.open = undefined
    return frame('content_block_stop', { index: this.index })
  }

  private startMessage(id: unknown): string {
    this.started = true
    return (
      frame('message_start', {
        message: {
          id: messageId(id),
          type: 'message',
          role: 'assistant',
          model: this.model,
          content: [],
          stop_reason: null,
          stop_sequence: null,
          usage: { input_tokens: 0, output_tokens: 0 },
        },
      }) + frame('ping', {})
    )
  }

  /** Frames for one upstream data payload. */
  push(data: string): string {
    if (this.finished) return ''
    if (data === '[DONE]') return this.end()
    let obj: Obj
    try {
      const v: unknown = JSON.parse(data)
      if (!isObj(v)) return ''
      obj = v
    } catch {
      return ''
    }
    if (obj['error'] !== undefined && obj['choices'] === undefined) {
      this.finished = true
      const e = openAIError(obj)
      return anthropicErrorEvent(e.status, e.message, e.code)
    }
    let out = this.started ? '' : this.startMessage(obj['id'])
    if (obj['usage'] !== undefined && obj['usage'] !== null) this.usage = usageOf(obj['usage'])
    const choices = obj['choices']
    const c = Array.isArray(choices) && isObj(choices[0]) ? choices[0] : undefined
    if (c === undefined) return out
    const delta = isObj(c['delta']) ? c['delta'] : {}
    const text = delta['content']
    if (typeof text === 'string' && text !== '') {
      if (this.open !== 'text') {
        out += this.close()
        this.index++
        this.open = 'text'
        out += frame('content_block_start', {
          index: this.index,
          content_block: { type: 'text', text: '' },
        })
      }
      out += frame('content_block_delta', {
        index: this.index,
        delta: { type: 'text_delta', text },
      })
    }
    const calls = delta['tool_calls']
    if (Array.isArray(calls)) {
      for (const call of calls) {
        if (!isObj(call)) continue
        const ti = num(call['index'])
        const fn = isObj(call['function']) ? call['function'] : {}
        if (typeof call['id'] === 'string' || !this.tools.has(ti)) {
          out += this.close()
          this.index++
          this.open = 'tool'
          this.tools.set(ti, this.index)
          out += frame('content_block_start', {
            index: this.index,
            content_block: {
              type: 'tool_use',
              id: call['id'],
              name: fn['name'],
              input: {},
            },
          })
        }
        const args = fn['arguments']
        if (typeof args === 'string' && args !== '')
          out += frame('content_block_delta', {
            index: this.tools.get(ti),
            delta: { type: 'input_json_delta', partial_json: args },
          })
      }
    }
    const finish = c['finish_reason']
    if (typeof finish === 'string') {
      this.stop = stopReason(finish)
      out += this.close()
    }
    return out
  }

  /** `[DONE]`: the stop reason and usage, then message_stop. */
  private end(): string {
    if (this.finished) return ''
    this.finished = true
    const head = this.started ? '' : this.startMessage('')
    return (
      head +
      this.close() +
      frame('message_delta', {
        delta: { stop_reason: this.stop ?? 'end_turn', stop_sequence: null },
        usage: this.usage,
      }) +
      frame('message_stop', {})
    )
  }
}

const enc = new TextEncoder()

/**
 * Runs every upstream event through `each` (an event's data, its name) and writes what it returns.
 */
function eventStream(
  body: ReadableStream<Uint8Array>,
  each: (data: string, event: string | undefined) => string,
): ReadableStream<Uint8Array> {
  const parser = new SseParser()
  return body.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        let out = ''
        for (const ev of parser.push(chunk)) out += each(ev.data, ev.event)
        if (out !== '') controller.enqueue(enc.encode(out))
      },
      flush(controller) {
        let out = ''
        for (const ev of parser.end()) out += each(ev.data, ev.event)
        if (out !== '') controller.enqueue(enc.encode(out))
      },
    }),
  )
}

function headersOf(res: Response, contentType: string): Headers {
  const h = new Headers(res.headers)
  h.delete('content-length')
  h.set('content-type', contentType)
  return h
}

/**
 * The client's answer on /v1/messages. `passthrough`: the target spoke Anthropic (its answer
 * stays as it is). `model`: the model the client asked for, which translated answers report.
 */
export async function messagesAnswer(
  res: Response,
  passthrough: boolean,
  model: string,
  requestId: string | undefined,
): Promise<Response> {
  const ct = res.headers.get('content-type') ?? ''
  if (res.status >= 400) {
    let message = `HTTP ${res.status}`
    let code: string | undefined
    const text = await res.text()
    try {
      const obj: unknown = JSON.parse(text)
      if (isObj(obj) && isObj(obj['error'])) {
        const e = obj['error']
        if (obj['type'] === 'error')
          return new Response(text, {
            status: res.status,
            headers: headersOf(res, 'application/json'),
          })
        if (typeof e['message'] === 'string') message = e['message']
        if (typeof e['code'] === 'string') code = e['code']
      } else if (isObj(obj) && typeof obj['detail'] === 'string') message = obj['detail']
    } catch {
      if (text.trim() !== '') message = text.trim().slice(0, 500)
    }
    return new Response(JSON.stringify(anthropicErrorBody(res.status, message, code, requestId)), {
      status: res.status,
      headers: headersOf(res, 'application/json'),
    })
  }
  if (ct.startsWith('text/event-stream')) {
    if (res.body === null) return res
    if (passthrough) {
      // Anthropic's own events go through; only an OpenAI-shaped error event the gateway appended
      // (a stream cut after the first byte) is reshaped.
      const stream = eventStream(res.body, (data, event) => {
        if (event === undefined && data.startsWith('{"error"')) {
          try {
            const obj: unknown = JSON.parse(data)
            if (isObj(obj)) {
              const e = openAIError(obj)
              return anthropicErrorEvent(e.status, e.message, e.code)
            }
          } catch {
            // not an error event after all: passed as it came
          }
        }
        return `${event !== undefined ? `event: ${event}\n` : ''}data: ${data}\n\n`
      })
      return new Response(stream, { status: res.status, headers: headersOf(res, ct) })
    }
    const t = new ChatToMessagesStream(model)
    const stream = eventStream(res.body, (data) => t.push(data))
    return new Response(stream, {
      status: res.status,
      headers: headersOf(res, 'text/event-stream; charset=utf-8'),
    })
  }
  if (passthrough) return res
  const text = await res.text()
  let obj: unknown
  try {
    obj = JSON.parse(text)
  } catch {
    return new Response(
      JSON.stringify(
        anthropicErrorBody(
          502,
          'upstream answered with a body that is not JSON',
          'upstream_bad_response',
          requestId,
        ),
      ),
      { status: 502, headers: headersOf(res, 'application/json') },
    )
  }
  return new Response(JSON.stringify(chatToMessage(isObj(obj) ? obj : {}, model)), {
    status: res.status,
    headers: headersOf(res, 'application/json'),
  })
}
