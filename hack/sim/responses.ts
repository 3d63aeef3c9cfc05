// A minimal OpenAI Responses API (`POST /v1/responses`) as vLLM serves it: text input (a string
// or message items with input_text parts) plus `instructions`, `max_output_tokens`, `stream`. The
// answer is one assistant message with one output_text part; a stream is the named-event sequence
// the openai SDK consumes (response.created … response.output_text.delta … response.completed,
// no `[DONE]`). Tools, reasoning and stored conversations are not simulated (400 naming the field).
import { SimError } from './errors.js'
import {
  type GenerationRequest,
  type ModelCatalog,
  optionalPositiveInt,
  type ResponseMeta,
  resolveModel,
} from './openai.js'
import { applyChatTemplate, type ChatMessageLike } from './tokenizer.js'

type Json = Record<string, unknown>

const UNSUPPORTED = ['tools', 'previous_response_id', 'conversation', 'reasoning', 'background']

function itemText(content: unknown, at: string): string {
  if (typeof content === 'string') return content
  if (!Array.isArray(content))
    throw new SimError(400, 'invalid_input', `${at}.content must be a string or an array.`, 'input')
  return content
    .map((part: unknown, i) => {
      const p = part as Json
      const t = p?.['type']
      if (
        (t === 'input_text' || t === 'output_text' || t === 'text') &&
        typeof p['text'] === 'string'
      )
        return p['text']
      throw new SimError(
        400,
        'invalid_input',
        `${at}.content[${i}]: only text parts are supported.`,
        'input',
      )
    })
    .join('\n')
}

export function parseResponsesRequest(body: Json, catalog: ModelCatalog): GenerationRequest {
  for (const k of UNSUPPORTED) {
    const v = body[k]
    if (v !== undefined && v !== null && !(Array.isArray(v) && v.length === 0))
      throw new SimError(400, 'unsupported_parameter', `${k} is not supported by the simulator.`, k)
  }
  const messages: ChatMessageLike[] = []
  const instructions = body['instructions']
  if (typeof instructions === 'string' && instructions !== '')
    messages.push({ role: 'system', content: instructions })
  const input = body['input']
  if (typeof input === 'string') messages.push({ role: 'user', content: input })
  else if (Array.isArray(input) && input.length > 0) {
    input.forEach((item: unknown, i) => {
      const it = item as Json
      const role = it?.['role']
      if (typeof role !== 'string' || (it['type'] !== undefined && it['type'] !== 'message'))
        throw new SimError(400, 'invalid_input', `input[${i}] must be a message item.`, 'input')
      messages.push({ role, content: itemText(it['content'], `input[${i}]`) })
    })
  } else throw new SimError(400, 'invalid_input', 'input: Field required.', 'input')
  const s = body['stream']
  if (s !== undefined && s !== null && typeof s !== 'boolean')
    throw new SimError(400, 'invalid_parameter', 'stream must be a boolean.', 'stream')
  const { model, lora } = resolveModel(body, catalog)
  return {
    kind: 'chat',
    model,
    lora,
    prompt: applyChatTemplate(messages),
    maxTokens: optionalPositiveInt(body, 'max_output_tokens'),
    stream: s === true,
    includeUsage: true,
  }
}

export interface ResponsesUsage {
  input_tokens: number
  input_tokens_details: { cached_tokens: number }
  output_tokens: number
  output_tokens_details: { reasoning_tokens: number }
  total_tokens: number
}

export function responsesUsage(prompt: number, completion: number, cached: number): ResponsesUsage {
  return {
    input_tokens: prompt,
    input_tokens_details: { cached_tokens: cached },
    output_tokens: completion,
    output_tokens_details: { reasoning_tokens: 0 },
    total_tokens: prompt + completion,
  }
}

const msgId = (meta: ResponseMeta): string => `msg_${meta.id.slice(5)}`

function message(meta: ResponseMeta, text: string, status: 'in_progress' | 'completed'): Json {
  return {
    type: 'message',
    id: msgId(meta),
    status,
    role: 'assistant',
    content: status === 'in_progress' ? [] : [{ type: 'output_text', text, annotations: [] }],
  }
}

/** The response object; `finish` 'length' → status incomplete (max_output_tokens). */
export function responseObject(
  meta: ResponseMeta,
  text: string | null,
  finish: string | null,
  usage: ResponsesUsage | null,
  maxOutputTokens: number | null,
): Json {
  const done = text !== null
  const incomplete = finish === 'length'
  return {
    id: meta.id,
    object: 'response',
    created_at: meta.created,
    status: !done ? 'in_progress' : incomplete ? 'incomplete' : 'completed',
    error: null,
    incomplete_details: incomplete ? { reason: 'max_output_tokens' } : null,
    instructions: null,
    max_output_tokens: maxOutputTokens,
    model: meta.model,
    output: done ? [message(meta, text, 'completed')] : [],
    parallel_tool_calls: true,
    temperature: 1,
    tool_choice: 'auto',
    tools: [],
    top_p: 1,
    text: { format: { type: 'text' } },
    metadata: {},
    usage,
  }
}

/** Named SSE events of a Responses stream, numbered in order. */
export class ResponsesEvents {
  private seq = 0
  private readonly meta: ResponseMeta
  private readonly maxOutputTokens: number | null
  private text = ''

  constructor(meta: ResponseMeta, maxOutputTokens: number | null) {
    this.meta = meta
    this.maxOutputTokens = maxOutputTokens
  }

  private ev(type: string, body: Json): string {
    return `event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: this.seq++, ...body })}\n\n`
  }

  /** Before the first token. */
  start(): string {
    const r = responseObject(this.meta, null, null, null, this.maxOutputTokens)
    return (
      this.ev('response.created', { response: r }) +
      this.ev('response.in_progress', { response: r }) +
      this.ev('response.output_item.added', {
        output_index: 0,
        item: message(this.meta, '', 'in_progress'),
      }) +
      this.ev('response.content_part.added', {
        item_id: msgId(this.meta),
        output_index: 0,
        content_index: 0,
        part: { type: 'output_text', text: '', annotations: [] },
      })
    )
  }

  delta(t: string): string {
    this.text += t
    return this.ev('response.output_text.delta', {
      item_id: msgId(this.meta),
      output_index: 0,
      content_index: 0,
      delta: t,
      logprobs: [],
    })
  }

  finish(finish: string, usage: ResponsesUsage): string {
    const part = { type: 'output_text', text: this.text, annotations: [] }
    const final = responseObject(this.meta, this.text, finish, usage, this.maxOutputTokens)
    return (
      this.ev('response.output_text.done', {
        item_id: msgId(this.meta),
        output_index: 0,
        content_index: 0,
        text: this.text,
        logprobs: [],
      }) +
      this.ev('response.content_part.done', {
        item_id: msgId(this.meta),
        output_index: 0,
        content_index: 0,
        part,
      }) +
      this.ev('response.output_item.done', {
        output_index: 0,
        item: message(this.meta, this.text, 'completed'),
      }) +
      this.ev(finish === 'length' ? 'response.incomplete' : 'response.completed', {
        response: final,
      })
    )
  }
}
