// Request validation and response shapes of an OpenAI-compatible engine, modelled on vLLM's
// serving layer: the same acceptance rules the gateway will meet in production, and the same
// JSON the gateway must pass through (ids, `object` strings, usage with cached_tokens).

import { SimError } from './errors.js'
import { applyChatTemplate, type ChatMessageLike } from './tokenizer.js'

export interface ModelCatalog {
  baseModel: string
  isKnownAdapter(name: string): boolean
}

export interface GenerationRequest {
  kind: 'chat' | 'completion'
  /** The name the client asked for, echoed in responses. */
  model: string
  lora: string | null
  prompt: string
  /** Explicit max_tokens / max_completion_tokens, or null for the engine default. */
  maxTokens: number | null
  stream: boolean
  includeUsage: boolean
}

export interface EmbeddingRequest {
  model: string
  inputs: string[]
  dimensions: number | null
  encoding: 'float' | 'base64'
}

type Json = Record<string, unknown>

export function parseJsonBody(text: string): Json {
  let v: unknown
  try {
    v = JSON.parse(text)
  } catch (e) {
    const detail = e instanceof Error ? e.message : String(e)
    throw new SimError(400, 'invalid_json', `JSON decode error: ${detail}`)
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    throw new SimError(400, 'invalid_request_body', 'Request body must be a JSON object.')
  }
  return v as Json
}

export function resolveModel(
  body: Json,
  catalog: ModelCatalog,
): { model: string; lora: string | null } {
  const m = body['model']
  // vLLM makes `model` optional and falls back to the served model.
  if (m === undefined || m === null) return { model: catalog.baseModel, lora: null }
  if (typeof m !== 'string')
    throw new SimError(400, 'invalid_parameter', 'model must be a string.', 'model')
  if (m === catalog.baseModel) return { model: m, lora: null }
  if (catalog.isKnownAdapter(m)) return { model: m, lora: m }
  throw new SimError(404, 'model_not_found', `The model \`${m}\` does not exist.`, 'model')
}

export function optionalPositiveInt(body: Json, key: string): number | null {
  const v = body[key]
  if (v === undefined || v === null) return null
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) {
    throw new SimError(
      400,
      'invalid_parameter',
      `${key} must be an integer >= 1, got ${JSON.stringify(v)}.`,
      key,
    )
  }
  return v
}

function streamFlags(body: Json): { stream: boolean; includeUsage: boolean } {
  const s = body['stream']
  if (s !== undefined && s !== null && typeof s !== 'boolean') {
    throw new SimError(400, 'invalid_parameter', 'stream must be a boolean.', 'stream')
  }
  const stream = s === true
  const so = body['stream_options']
  if (so === undefined || so === null) return { stream, includeUsage: false }
  if (!stream) {
    throw new SimError(
      400,
      'invalid_parameter',
      'Stream options can only be defined when `stream=True`.',
      'stream_options',
    )
  }
  if (typeof so !== 'object' || Array.isArray(so)) {
    throw new SimError(
      400,
      'invalid_parameter',
      'stream_options must be an object.',
      'stream_options',
    )
  }
  return { stream, includeUsage: (so as Json)['include_usage'] === true }
}

function checkN(body: Json): void {
  const n = body['n']
  if (n === undefined || n === null || n === 1) return
  throw new SimError(400, 'unsupported_parameter', 'The simulator supports only n=1.', 'n')
}

function messageContent(content: unknown, i: number): string {
  if (content === null || content === undefined) return ''
  if (typeof content === 'string') return content
  if (Array.isArray(content)) {
    let text = ''
    for (const part of content) {
      if (typeof part === 'object' && part !== null && (part as Json)['type'] === 'text') {
        const t = (part as Json)['text']
        if (typeof t === 'string') {
          text += (text === '' ? '' : '\n') + t
          continue
        }
      }
      throw new SimError(
        400,
        'invalid_messages',
        `messages[${i}].content: only text parts are supported.`,
        'messages',
      )
    }
    return text
  }
  throw new SimError(
    400,
    'invalid_messages',
    `messages[${i}].content must be a string or an array of parts.`,
    'messages',
  )
}

export function parseChatRequest(body: Json, catalog: ModelCatalog): GenerationRequest {
  const raw = body['messages']
  if (raw === undefined)
    throw new SimError(400, 'missing_messages', 'messages: Field required.', 'messages')
  if (!Array.isArray(raw) || raw.length === 0) {
    throw new SimError(400, 'invalid_messages', 'messages must be a non-empty array.', 'messages')
  }
  const messages: ChatMessageLike[] = raw.map((m: unknown, i) => {
    if (typeof m !== 'object' || m === null || typeof (m as Json)['role'] !== 'string') {
      throw new SimError(
        400,
        'invalid_messages',
        `messages[${i}] must be an object with a string role.`,
        'messages',
      )
    }
    return {
      role: (m as Json)['role'] as string,
      content: messageContent((m as Json)['content'], i),
    }
  })
  const { model, lora } = resolveModel(body, catalog)
  checkN(body)
  const maxTokens =
    optionalPositiveInt(body, 'max_completion_tokens') ?? optionalPositiveInt(body, 'max_tokens')
  return {
    kind: 'chat',
    model,
    lora,
    prompt: applyChatTemplate(messages),
    maxTokens,
    ...streamFlags(body),
  }
}

export function parseCompletionRequest(body: Json, catalog: ModelCatalog): GenerationRequest {
  const p = body['prompt']
  let prompt: string
  if (typeof p === 'string') prompt = p
  else if (Array.isArray(p) && p.length === 1 && typeof p[0] === 'string') prompt = p[0]
  else if (Array.isArray(p) && p.length > 0 && p.every((x) => typeof x === 'number')) {
    // Token-id prompts: keep one simulator token per id.
    prompt = p.map((x) => ` t${String(x)}`).join('')
  } else if (p === undefined) {
    throw new SimError(400, 'missing_prompt', 'prompt: Field required.', 'prompt')
  } else {
    throw new SimError(
      400,
      'invalid_prompt',
      'prompt must be a string, a one-element string array or token ids.',
      'prompt',
    )
  }
  const { model, lora } = resolveModel(body, catalog)
  checkN(body)
  return {
    kind: 'completion',
    model,
    lora,
    prompt,
    maxTokens: optionalPositiveInt(body, 'max_tokens'),
    ...streamFlags(body),
  }
}

export function parseEmbeddingRequest(body: Json, catalog: ModelCatalog): EmbeddingRequest {
  const input = body['input']
  let inputs: string[]
  const ids = (a: unknown[]) => a.map((x) => ` t${String(x)}`).join('')
  if (typeof input === 'string') inputs = [input]
  else if (Array.isArray(input) && input.length > 0 && input.every((x) => typeof x === 'string'))
    inputs = input as string[]
  else if (Array.isArray(input) && input.length > 0 && input.every((x) => typeof x === 'number'))
    inputs = [ids(input)]
  else if (Array.isArray(input) && input.length > 0 && input.every((x) => Array.isArray(x)))
    inputs = (input as unknown[][]).map(ids)
  else if (input === undefined)
    throw new SimError(400, 'missing_input', 'input: Field required.', 'input')
  else
    throw new SimError(
      400,
      'invalid_input',
      'input must be a string, string array or token ids.',
      'input',
    )
  const { model } = resolveModel(body, catalog)
  const enc = body['encoding_format']
  if (enc !== undefined && enc !== null && enc !== 'float' && enc !== 'base64') {
    throw new SimError(
      400,
      'invalid_parameter',
      'encoding_format must be "float" or "base64".',
      'encoding_format',
    )
  }
  return {
    model,
    inputs,
    dimensions: optionalPositiveInt(body, 'dimensions'),
    encoding: enc === 'base64' ? 'base64' : 'float',
  }
}

export interface Usage {
  prompt_tokens: number
  completion_tokens: number
  total_tokens: number
  prompt_tokens_details: { cached_tokens: number }
}

export function usageOf(prompt: number, completion: number, cached: number): Usage {
  return {
    prompt_tokens: prompt,
    completion_tokens: completion,
    total_tokens: prompt + completion,
    prompt_tokens_details: { cached_tokens: cached },
  }
}

export interface ResponseMeta {
  id: string
  created: number
  model: string
}

export function fullResponse(
  kind: GenerationRequest['kind'],
  meta: ResponseMeta,
  text: string,
  finishReason: string,
  usage: Usage,
): Json {
  const choice =
    kind === 'chat'
      ? {
          index: 0,
          message: { role: 'assistant', content: text },
          logprobs: null,
          finish_reason: finishReason,
          stop_reason: null,
        }
      : { index: 0, text, logprobs: null, finish_reason: finishReason, stop_reason: null }
  return {
    id: meta.id,
    object: kind === 'chat' ? 'chat.completion' : 'text_completion',
    created: meta.created,
    model: meta.model,
    choices: [choice],
    usage,
  }
}

/** One streamed token; `finishReason` only on the last one. */
export function streamChunk(
  kind: GenerationRequest['kind'],
  meta: ResponseMeta,
  text: string,
  finishReason: string | null,
): Json {
  const choice =
    kind === 'chat'
      ? { index: 0, delta: { content: text }, logprobs: null, finish_reason: finishReason }
      : { index: 0, text, logprobs: null, finish_reason: finishReason }
  return {
    id: meta.id,
    object: kind === 'chat' ? 'chat.completion.chunk' : 'text_completion',
    created: meta.created,
    model: meta.model,
    choices: [choice],
  }
}

/** vLLM opens a chat stream with a role-only delta (empty content) before the first token. */
export function roleChunk(meta: ResponseMeta): Json {
  return {
    id: meta.id,
    object: 'chat.completion.chunk',
    created: meta.created,
    model: meta.model,
    choices: [
      { index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null },
    ],
  }
}

export function usageChunk(
  kind: GenerationRequest['kind'],
  meta: ResponseMeta,
  usage: Usage,
): Json {
  return {
    id: meta.id,
    object: kind === 'chat' ? 'chat.completion.chunk' : 'text_completion',
    created: meta.created,
    model: meta.model,
    choices: [],
    usage,
  }
}
