// Anthropic Messages ⇄ OpenAI chat completions. Requests are translated by request.ts; this file
// maps the answer: content blocks → message content + tool_calls, stop_reason → finish_reason,
// usage (cache reads/writes included in prompt_tokens), and the named event stream
// (message_start, content_block_start/delta/stop, message_delta, message_stop, ping, error) →
// OpenAI chat.completion.chunk frames ending in `[DONE]`.
import { type ProviderErrorDetail, providerErrors } from '../errors.js'
import { SSE_DONE, type SseEvent, sseData } from '../sse.js'
import {
  type BuildInput,
  type BuiltRequest,
  isObj,
  num,
  type ParsedResponse,
  type ProviderAdapter,
  ProviderStreamError,
  parseObject,
  type StreamTranslator,
} from '../types.js'
import { type ProviderUsage, toOpenAIUsage } from '../usage.js'
import { toAnthropicRequest } from './request.js'

type Obj = Record<string, unknown>

/** Anthropic → OpenAI finish reasons. */
export function finishReason(stop: unknown): string {
  switch (stop) {
    case 'max_tokens':
    case 'model_context_window_exceeded':
      return 'length'
    case 'tool_use':
      return 'tool_calls'
    case 'refusal':
      return 'content_filter'
    default:
      // end_turn, stop_sequence, pause_turn
      return 'stop'
  }
}

/** Anthropic counts cache reads and writes apart from input_tokens; OpenAI's prompt_tokens has all. */
function usageOf(u: unknown, prev?: ProviderUsage): ProviderUsage | undefined {
  if (!isObj(u)) return prev
  const read = num(u['cache_read_input_tokens'])
  const input =
    typeof u['input_tokens'] === 'number'
      ? num(u['input_tokens']) + num(u['cache_creation_input_tokens']) + read
      : (prev?.promptTokens ?? 0)
  return {
    promptTokens: input,
    completionTokens:
      typeof u['output_tokens'] === 'number'
        ? num(u['output_tokens'])
        : (prev?.completionTokens ?? 0),
    ...(read > 0
      ? { cachedPromptTokens: read }
      : prev?.cachedPromptTokens
        ? { cachedPromptTokens: prev.cachedPromptTokens }
        : {}),
  }
}

function wantsStreamUsage(body: Readonly<Record<string, unknown>>): boolean {
  const so = body['stream_options']
  return isObj(so) && so['include_usage'] === true
}

export const anthropicAdapter: ProviderAdapter = {
  // chat: translated; messages (/v1/messages): the client's Anthropic body passed through.
  supports: (_p, api) => api === 'chat' || api === 'messages',

  build(input: BuildInput): BuiltRequest {
    const p = input.provider
    if (input.api === 'messages') {
      const stream = input.body['stream'] === true
      return {
        url: `${p.baseURL}/v1/messages`,
        headers: {
          'content-type': 'application/json',
          accept: stream ? 'text/event-stream' : 'application/json',
          'anthropic-version': p.anthropic?.version ?? '2023-06-01',
        },
        body:
          input.body['model'] === input.upstreamModel
            ? input.raw
            : JSON.stringify({ ...input.body, model: input.upstreamModel }),
        stream,
      }
    }
    const req = toAnthropicRequest(p, input.body, input.upstreamModel)
    return {
      url: `${p.baseURL}/v1/messages`,
      headers: {
        'content-type': 'application/json',
        accept: req.stream ? 'text/event-stream' : 'application/json',
        'anthropic-version': p.anthropic?.version ?? '2023-06-01',
      },
      body: JSON.stringify(req),
      stream: req.stream === true,
    }
  },

  parse(input, raw): ParsedResponse {
    const msg = parseObject(raw)
    if (msg === undefined || !Array.isArray(msg['content'])) {
      throw providerErrors.badResponse(input.provider, 'not an Anthropic message')
    }
    if (input.api === 'messages') {
      const u = usageOf(msg['usage'])
      return { body: raw, ...(u ? { usage: u } : {}) }
    }
    const texts: string[] = []
    const calls: Obj[] = []
    for (const block of msg['content'] as unknown[]) {
      if (!isObj(block)) continue
      if (block['type'] === 'text' && typeof block['text'] === 'string') texts.push(block['text'])
      else if (block['type'] === 'tool_use') {
        calls.push({
          id: block['id'],
          type: 'function',
          function: { name: block['name'], arguments: JSON.stringify(block['input'] ?? {}) },
        })
      }
      // thinking / redacted_thinking: only present when asked for, which the translation never does.
    }
    const usage = usageOf(msg['usage'])
    const out = {
      id: typeof msg['id'] === 'string' ? msg['id'] : `chatcmpl-${input.requestId}`,
      object: 'chat.completion',
      created: input.now,
      model: typeof msg['model'] === 'string' ? msg['model'] : input.upstreamModel,
      choices: [
        {
          index: 0,
          message: {
            role: 'assistant',
            content: texts.length > 0 ? texts.join('') : null,
            refusal: null,
            ...(calls.length > 0 ? { tool_calls: calls } : {}),
          },
          finish_reason: finishReason(msg['stop_reason']),
          logprobs: null,
        },
      ],
      ...(usage ? { usage: toOpenAIUsage(usage) } : {}),
    }
    return { body: JSON.stringify(out), ...(usage ? { usage } : {}) }
  },

  stream(input): StreamTranslator {
    return input.api === 'messages'
      ? new AnthropicPassThrough(input)
      : new AnthropicStream(input, wantsStreamUsage(input.body))
  },

  errorDetail(status, text): ProviderErrorDetail {
    const body = parseObject(text)
    const e = body?.['error']
    if (!isObj(e)) return text.trim() === '' ? {} : { message: text.trim().slice(0, 500) }
    const type = typeof e['type'] === 'string' ? e['type'] : undefined
    const message = typeof e['message'] === 'string' ? e['message'] : undefined
    return {
      ...(message !== undefined ? { message } : {}),
      ...(type === 'invalid_request_error' ||
      type === 'not_found_error' ||
      type === 'rate_limit_error'
        ? { type }
        : {}),
      ...(type === 'authentication_error' || (type === 'permission_error' && status === 403)
        ? { credentialRejected: true }
        : {}),
      ...(type === 'overloaded_error' ? { overloaded: true } : {}),
    }
  },
}

class AnthropicStream implements StreamTranslator {
  private readonly input: BuildInput
  private readonly clientWantsUsage: boolean
  private id: string
  private model: string
  /** Anthropic block index → OpenAI tool_calls index. */
  private readonly toolIndex = new Map<number, number>()
  private tools = 0
  private finish: string | undefined
  private started = false
  private done = false
  usage: ProviderUsage | undefined

  constructor(input: BuildInput, clientWantsUsage: boolean) {
    this.input = input
    this.clientWantsUsage = clientWantsUsage
    this.id = `chatcmpl-${input.requestId}`
    this.model = input.upstreamModel
  }

  private chunk(delta: Obj, finish: string | null = null): string {
    return sseData(
      JSON.stringify({
        id: this.id,
        object: 'chat.completion.chunk',
        created: this.input.now,
        model: this.model,
        choices: [{ index: 0, delta, finish_reason: finish, logprobs: null }],
      }),
    )
  }

  push(ev: SseEvent): string[] {
    const name = ev.event
    if (name === 'ping') return []
    const data = parseObject(ev.data)
    if (data === undefined) return []
    const type = name ?? (typeof data['type'] === 'string' ? data['type'] : '')
    switch (type) {
      case 'message_start': {
        const m = data['message']
        if (isObj(m)) {
          if (typeof m['id'] === 'string') this.id = m['id']
          if (typeof m['model'] === 'string') this.model = m['model']
          this.usage = usageOf(m['usage'], this.usage)
        }
        this.started = true
        return [this.chunk({ role: 'assistant', content: '' })]
      }
      case 'content_block_start': {
        const block = data['content_block']
        const index = num(data['index'])
        if (isObj(block) && block['type'] === 'tool_use') {
          const ti = this.tools++
          this.toolIndex.set(index, ti)
          return [
            this.chunk({
              tool_calls: [
                {
                  index: ti,
                  id: block['id'],
                  type: 'function',
                  function: { name: block['name'], arguments: '' },
                },
              ],
            }),
          ]
        }
        if (
          isObj(block) &&
          block['type'] === 'text' &&
          typeof block['text'] === 'string' &&
          block['text'] !== ''
        )
          return [this.chunk({ content: block['text'] })]
        return []
      }
      case 'content_block_delta': {
        const d = data['delta']
        if (!isObj(d)) return []
        if (d['type'] === 'text_delta' && typeof d['text'] === 'string')
          return [this.chunk({ content: d['text'] })]
        if (d['type'] === 'input_json_delta' && typeof d['partial_json'] === 'string') {
          const ti = this.toolIndex.get(num(data['index']))
          if (ti === undefined || d['partial_json'] === '') return []
          return [
            this.chunk({ tool_calls: [{ index: ti, function: { arguments: d['partial_json'] } }] }),
          ]
        }
        // thinking_delta, signature_delta, citations_delta: nothing OpenAI's chunks carry.
        return []
      }
      case 'content_block_stop':
        return []
      case 'message_delta': {
        const d = data['delta']
        this.usage = usageOf(data['usage'], this.usage)
        if (isObj(d) && d['stop_reason'] !== undefined && d['stop_reason'] !== null) {
          this.finish = finishReason(d['stop_reason'])
          return [this.chunk({}, this.finish)]
        }
        return []
      }
      case 'message_stop': {
        this.done = true
        const out: string[] = []
        if (this.finish === undefined) out.push(this.chunk({}, 'stop'))
        if (this.clientWantsUsage && this.usage) {
          out.push(
            sseData(
              JSON.stringify({
                id: this.id,
                object: 'chat.completion.chunk',
                created: this.input.now,
                model: this.model,
                choices: [],
                usage: toOpenAIUsage(this.usage),
              }),
            ),
          )
        }
        out.push(SSE_DONE)
        return out
      }
      case 'error': {
        const e = data['error']
        const etype = isObj(e) && typeof e['type'] === 'string' ? e['type'] : 'api_error'
        const msg = isObj(e) && typeof e['message'] === 'string' ? e['message'] : 'stream error'
        const overloaded = etype === 'overloaded_error'
        throw new ProviderStreamError(
          overloaded ? 'provider_overloaded' : 'provider_stream_error',
          `provider "${this.input.provider.key}" (Anthropic) ended the stream with ${etype}: ${msg}`,
          overloaded || etype === 'api_error',
        )
      }
      default:
        // Anthropic may add event types; unknown ones are skipped, as its SDKs do.
        return []
    }
  }

  end(): string[] {
    if (!this.done) {
      throw new ProviderStreamError(
        'upstream_stream_cut',
        this.started
          ? 'provider closed the stream before message_stop'
          : 'provider closed the stream before it started',
        true,
      )
    }
    return []
  }
}

/**
 * /v1/messages to an Anthropic provider: the named events go to the client as they came; usage is
 * read from message_start and message_delta, message_stop ends the stream, an `error` event
 * fails it (before the first event: a fallback; after: an error event for the client).
 */
class AnthropicPassThrough implements StreamTranslator {
  private readonly input: BuildInput
  private done = false
  private started = false
  usage: ProviderUsage | undefined

  constructor(input: BuildInput) {
    this.input = input
  }

  push(ev: SseEvent): string[] {
    const name = ev.event
    if (name === 'message_start' || name === 'message_delta' || name === 'error') {
      const data = parseObject(ev.data)
      if (name === 'message_start') {
        const m = data?.['message']
        if (isObj(m)) this.usage = usageOf(m['usage'], this.usage)
      } else if (name === 'message_delta') this.usage = usageOf(data?.['usage'], this.usage)
      else {
        const e = data?.['error']
        const etype = isObj(e) && typeof e['type'] === 'string' ? e['type'] : 'api_error'
        const msg = isObj(e) && typeof e['message'] === 'string' ? e['message'] : 'stream error'
        throw new ProviderStreamError(
          etype === 'overloaded_error' ? 'provider_overloaded' : 'provider_stream_error',
          `provider "${this.input.provider.key}" (Anthropic) ended the stream with ${etype}: ${msg}`,
          etype === 'overloaded_error' || etype === 'api_error',
        )
      }
    }
    if (name === 'message_start') this.started = true
    if (name === 'message_stop') this.done = true
    return [`${name !== undefined ? `event: ${name}\n` : ''}data: ${ev.data}\n\n`]
  }

  end(): string[] {
    if (!this.done) {
      throw new ProviderStreamError(
        'upstream_stream_cut',
        this.started
          ? 'provider closed the stream before message_stop'
          : 'provider closed the stream before it started',
        true,
      )
    }
    return []
  }
}
