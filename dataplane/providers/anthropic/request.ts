// OpenAI chat completions → Anthropic Messages (POST /v1/messages). What maps: system/developer
// messages → `system`; user/assistant turns (consecutive ones merged, as Anthropic would); image
// parts (data: URLs → base64 sources, https URLs → url sources); assistant `tool_calls` →
// `tool_use` blocks; `tool` messages → `tool_result` blocks in the following user turn; tools and
// tool_choice (required → any, parallel_tool_calls: false → disable_parallel_tool_use);
// max_tokens / max_completion_tokens (Anthropic requires one: the provider's default fills in);
// stop → stop_sequences; user → metadata.user_id. Sampling parameters depend on the API version
// the provider pins (`anthropic-version`): 2023-06-01 takes temperature (0..1 only: OpenAI's 0..2
// is not rescaled), top_p and top_k; 2026-10-21 has none of them, so there OpenAI's defaults
// (temperature 1, top_p 1) pass as the no-ops they are and other values are a 400. Everything else
// that would change the answer (n > 1, logprobs, penalties, seed, JSON modes, audio, …) is a 400
// naming the field, never dropped; only a message's `name` is left out (Anthropic has no place
// for it).

import type { SnapshotProvider } from '../../../api/snapshot.js'
import type { GatewayError } from '../../errors.js'
import { providerErrors } from '../errors.js'
import { isObj } from '../types.js'

export interface AnthropicTextBlock {
  type: 'text'
  text: string
}
export type AnthropicImageSource =
  | {
      type: 'base64'
      media_type: 'image/jpeg' | 'image/png' | 'image/gif' | 'image/webp'
      data: string
    }
  | { type: 'url'; url: string }
export interface AnthropicImageBlock {
  type: 'image'
  source: AnthropicImageSource
}
export interface AnthropicToolUseBlock {
  type: 'tool_use'
  id: string
  name: string
  input: Record<string, unknown>
}
export interface AnthropicToolResultBlock {
  type: 'tool_result'
  tool_use_id: string
  content: string | AnthropicTextBlock[]
}
export type AnthropicContentBlock =
  | AnthropicTextBlock
  | AnthropicImageBlock
  | AnthropicToolUseBlock
  | AnthropicToolResultBlock

export interface AnthropicMessage {
  role: 'user' | 'assistant'
  content: string | AnthropicContentBlock[]
}

export interface AnthropicTool {
  name: string
  description?: string
  input_schema: { type: 'object'; [k: string]: unknown }
}

export type AnthropicToolChoice =
  | { type: 'auto'; disable_parallel_tool_use?: boolean }
  | { type: 'any'; disable_parallel_tool_use?: boolean }
  | { type: 'tool'; name: string; disable_parallel_tool_use?: boolean }
  | { type: 'none' }

/** The subset of Anthropic's MessageCreateParams the translation produces. */
export interface AnthropicRequest {
  model: string
  max_tokens: number
  messages: AnthropicMessage[]
  system?: string | AnthropicTextBlock[]
  /** API version 2023-06-01 only. */
  temperature?: number
  /** API version 2023-06-01 only. */
  top_p?: number
  /** API version 2023-06-01 only. */
  top_k?: number
  stop_sequences?: string[]
  stream?: boolean
  tools?: AnthropicTool[]
  tool_choice?: AnthropicToolChoice
  metadata?: { user_id: string }
}

type Obj = Readonly<Record<string, unknown>>

/** Fields that translate (or are no-ops at the values OpenAI treats as "off"). */
const KNOWN = new Set([
  'model',
  'messages',
  'stream',
  'stream_options',
  'max_tokens',
  'max_completion_tokens',
  'temperature',
  'top_p',
  'top_k',
  'stop',
  'tools',
  'tool_choice',
  'parallel_tool_calls',
  'user',
  'n',
  'presence_penalty',
  'frequency_penalty',
  'logprobs',
  'response_format',
  'store',
  'metadata',
])

const IMAGE_TYPES = new Set(['image/jpeg', 'image/png', 'image/gif', 'image/webp'])

class Translator {
  private readonly p: SnapshotProvider
  constructor(p: SnapshotProvider) {
    this.p = p
  }

  unsupported(param: string, why: string): GatewayError {
    return providerErrors.unsupportedParameter(this.p, param, why)
  }
  invalid(param: string, why: string): GatewayError {
    return providerErrors.invalidParameter(this.p, param, why)
  }

  text(content: unknown, param: string, allowRefusal = false): string {
    if (typeof content === 'string') return content
    if (!Array.isArray(content)) throw this.invalid(param, 'must be a string or an array of parts')
    const parts: string[] = []
    content.forEach((part: unknown, i) => {
      if (!isObj(part)) throw this.invalid(`${param}[${i}]`, 'must be an object')
      if (part['type'] === 'text' && typeof part['text'] === 'string') parts.push(part['text'])
      else if (allowRefusal && part['type'] === 'refusal' && typeof part['refusal'] === 'string')
        parts.push(part['refusal'])
      else throw this.unsupported(`${param}[${i}].type`, `only text parts are supported here`)
    })
    return parts.join('\n')
  }

  userBlocks(content: unknown, param: string): AnthropicContentBlock[] {
    if (typeof content === 'string') return [{ type: 'text', text: content }]
    if (!Array.isArray(content)) throw this.invalid(param, 'must be a string or an array of parts')
    return content.map((part: unknown, i): AnthropicContentBlock => {
      const at = `${param}[${i}]`
      if (!isObj(part)) throw this.invalid(at, 'must be an object')
      if (part['type'] === 'text' && typeof part['text'] === 'string')
        return { type: 'text', text: part['text'] }
      if (part['type'] === 'image_url') return { type: 'image', source: this.image(part, at) }
      throw this.unsupported(
        `${at}.type`,
        `"${String(part['type'])}" parts are not supported (text and image_url are)`,
      )
    })
  }

  image(part: Obj, at: string): AnthropicImageSource {
    const iu = part['image_url']
    const url = isObj(iu) ? iu['url'] : undefined
    if (typeof url !== 'string') throw this.invalid(`${at}.image_url.url`, 'is required')
    const m = /^data:([^;,]+);base64,(.*)$/s.exec(url)
    if (m) {
      const mediaType = m[1] ?? ''
      if (!IMAGE_TYPES.has(mediaType))
        throw this.unsupported(
          `${at}.image_url.url`,
          `image type ${mediaType} (jpeg, png, gif, webp are)`,
        )
      return {
        type: 'base64',
        media_type: mediaType as 'image/jpeg' | 'image/png' | 'image/gif' | 'image/webp',
        data: m[2] ?? '',
      }
    }
    if (/^https?:\/\//.test(url)) return { type: 'url', url }
    throw this.invalid(`${at}.image_url.url`, 'must be a data: URL (base64) or an http(s) URL')
  }

  toolUse(call: unknown, at: string): AnthropicToolUseBlock {
    if (!isObj(call) || call['type'] !== 'function' || !isObj(call['function']))
      throw this.unsupported(`${at}.type`, 'only function tool calls are supported')
    const fn = call['function']
    const id = call['id']
    const name = fn['name']
    if (typeof id !== 'string' || id === '') throw this.invalid(`${at}.id`, 'is required')
    if (typeof name !== 'string' || name === '')
      throw this.invalid(`${at}.function.name`, 'is required')
    const args = fn['arguments']
    let input: unknown = {}
    if (typeof args === 'string' && args.trim() !== '') {
      try {
        input = JSON.parse(args)
      } catch {
        throw this.invalid(
          `${at}.function.arguments`,
          'must be a JSON object (Anthropic needs parsed arguments)',
        )
      }
    }
    if (!isObj(input)) throw this.invalid(`${at}.function.arguments`, 'must be a JSON object')
    return { type: 'tool_use', id, name, input: { ...input } }
  }
}

function push(
  out: AnthropicMessage[],
  role: 'user' | 'assistant',
  blocks: AnthropicContentBlock[],
): void {
  const last = out.at(-1)
  if (last && last.role === role) {
    // Anthropic merges consecutive turns of one role; doing it here keeps tool_result blocks
    // in the one user turn that must follow the assistant's tool_use turn.
    const prev =
      typeof last.content === 'string'
        ? [{ type: 'text' as const, text: last.content }]
        : last.content
    last.content = [...prev, ...blocks]
    return
  }
  out.push({ role, content: blocks })
}

/** Plain single text block → string (what clients and the API print most compactly). */
function compact(m: AnthropicMessage): AnthropicMessage {
  if (Array.isArray(m.content) && m.content.length === 1) {
    const b = m.content[0]
    if (b?.type === 'text') return { role: m.role, content: b.text }
  }
  return m
}

/** API versions before 2026-10-21 take temperature, top_p and top_k. */
export function samplingVersion(p: SnapshotProvider): boolean {
  return (p.anthropic?.version ?? '2023-06-01') < '2026-10-21'
}

export function toAnthropicRequest(
  p: SnapshotProvider,
  body: Obj,
  upstreamModel: string,
): AnthropicRequest {
  const t = new Translator(p)
  for (const k of Object.keys(body)) {
    if (!KNOWN.has(k)) throw t.unsupported(k, 'Anthropic has no equivalent')
  }
  const n = body['n']
  if (n !== undefined && n !== null && n !== 1) throw t.unsupported('n', 'only n=1 is supported')
  for (const k of ['presence_penalty', 'frequency_penalty'] as const) {
    const v = body[k]
    if (v !== undefined && v !== null && v !== 0)
      throw t.unsupported(k, 'Anthropic has no penalties')
  }
  if (body['logprobs'] === true)
    throw t.unsupported('logprobs', 'Anthropic returns no log probabilities')
  const rf = body['response_format']
  if (rf !== undefined && rf !== null && !(isObj(rf) && rf['type'] === 'text'))
    throw t.unsupported(
      'response_format',
      'JSON modes are not available through the Messages API translation',
    )
  if (body['store'] === true)
    throw t.unsupported('store', 'stored completions are an OpenAI feature')

  const messages = body['messages']
  if (!Array.isArray(messages) || messages.length === 0)
    throw t.invalid('messages', 'must be a non-empty array')

  const system: AnthropicTextBlock[] = []
  const out: AnthropicMessage[] = []
  messages.forEach((msg: unknown, i) => {
    const at = `messages[${i}]`
    if (!isObj(msg)) throw t.invalid(at, 'must be an object')
    const role = msg['role']
    switch (role) {
      case 'system':
      case 'developer':
        // Anthropic has one system prompt; instructions given mid-conversation join it.
        system.push({ type: 'text', text: t.text(msg['content'], `${at}.content`) })
        return
      case 'user':
        push(out, 'user', t.userBlocks(msg['content'], `${at}.content`))
        return
      case 'assistant': {
        if (msg['function_call'] !== undefined && msg['function_call'] !== null)
          throw t.unsupported(`${at}.function_call`, 'use tool_calls')
        if (msg['audio'] !== undefined && msg['audio'] !== null)
          throw t.unsupported(`${at}.audio`, 'audio is not supported')
        const blocks: AnthropicContentBlock[] = []
        const c = msg['content']
        if (c !== undefined && c !== null) {
          const text = t.text(c, `${at}.content`, true)
          if (text !== '') blocks.push({ type: 'text', text })
        }
        const calls = msg['tool_calls']
        if (calls !== undefined && calls !== null) {
          if (!Array.isArray(calls)) throw t.invalid(`${at}.tool_calls`, 'must be an array')
          calls.forEach((call: unknown, j) => {
            blocks.push(t.toolUse(call, `${at}.tool_calls[${j}]`))
          })
        }
        // Anthropic rejects empty turns; an empty assistant message carries nothing.
        if (blocks.length > 0) push(out, 'assistant', blocks)
        return
      }
      case 'tool': {
        const id = msg['tool_call_id']
        if (typeof id !== 'string' || id === '')
          throw t.invalid(`${at}.tool_call_id`, 'is required')
        push(out, 'user', [
          {
            type: 'tool_result',
            tool_use_id: id,
            content: t.text(msg['content'], `${at}.content`),
          },
        ])
        return
      }
      case 'function':
        throw t.unsupported(`${at}.role`, '"function" messages are deprecated; use tools')
      default:
        throw t.invalid(`${at}.role`, `unknown role ${JSON.stringify(role)}`)
    }
  })
  if (out.length === 0) throw t.invalid('messages', 'must contain a user or assistant message')

  const maxTokens = body['max_completion_tokens'] ?? body['max_tokens']
  if (
    maxTokens !== undefined &&
    maxTokens !== null &&
    (typeof maxTokens !== 'number' || !Number.isInteger(maxTokens) || maxTokens < 1)
  )
    throw t.invalid('max_tokens', 'must be a positive integer')
  const req: AnthropicRequest = {
    model: upstreamModel,
    max_tokens: typeof maxTokens === 'number' ? maxTokens : (p.anthropic?.defaultMaxTokens ?? 4096),
    messages: out.map(compact),
  }
  if (system.length === 1 && system[0]) req.system = system[0].text
  else if (system.length > 1) req.system = system

  if (samplingVersion(p)) {
    const temperature = body['temperature']
    if (temperature !== undefined && temperature !== null) {
      if (typeof temperature !== 'number' || temperature < 0)
        throw t.invalid('temperature', 'must be a number >= 0')
      if (temperature > 1)
        throw t.unsupported(
          'temperature',
          `Anthropic accepts 0..1, got ${temperature} (OpenAI's 0..2 scale is not rescaled)`,
        )
      req.temperature = temperature
    }
    const topP = body['top_p']
    if (topP !== undefined && topP !== null) {
      if (typeof topP !== 'number') throw t.invalid('top_p', 'must be a number')
      req.top_p = topP
    }
    const topK = body['top_k']
    if (topK !== undefined && topK !== null) {
      if (typeof topK !== 'number' || !Number.isInteger(topK))
        throw t.invalid('top_k', 'must be an integer')
      req.top_k = topK
    }
  } else {
    for (const k of ['temperature', 'top_p', 'top_k'] as const) {
      const v = body[k]
      if (v !== undefined && v !== null && !(v === 1 && k !== 'top_k'))
        throw t.unsupported(
          k,
          `Anthropic API version ${p.anthropic?.version} takes no sampling parameters`,
        )
    }
  }
  const stop = body['stop']
  if (stop !== undefined && stop !== null) {
    const list = typeof stop === 'string' ? [stop] : stop
    if (!Array.isArray(list) || !list.every((s) => typeof s === 'string'))
      throw t.invalid('stop', 'must be a string or an array of strings')
    if (list.length > 0) req.stop_sequences = [...list]
  }
  if (body['stream'] === true) req.stream = true
  const user = body['user']
  if (typeof user === 'string' && user !== '') req.metadata = { user_id: user }

  const tools = body['tools']
  if (tools !== undefined && tools !== null) {
    if (!Array.isArray(tools)) throw t.invalid('tools', 'must be an array')
    req.tools = tools.map((tool: unknown, i): AnthropicTool => {
      const at = `tools[${i}]`
      if (!isObj(tool) || tool['type'] !== 'function' || !isObj(tool['function']))
        throw t.unsupported(`${at}.type`, 'only function tools are supported')
      const fn = tool['function']
      const name = fn['name']
      if (typeof name !== 'string' || name === '')
        throw t.invalid(`${at}.function.name`, 'is required')
      const params = fn['parameters']
      if (params !== undefined && !isObj(params))
        throw t.invalid(`${at}.function.parameters`, 'must be a JSON Schema object')
      if (params !== undefined && params['type'] !== undefined && params['type'] !== 'object')
        throw t.unsupported(`${at}.function.parameters.type`, 'tool input must be an object schema')
      const desc = fn['description']
      return {
        name,
        ...(typeof desc === 'string' ? { description: desc } : {}),
        input_schema: { ...(params ?? { properties: {} }), type: 'object' },
      }
    })
  }
  const choice = body['tool_choice']
  const noParallel = body['parallel_tool_calls'] === false
  if (choice !== undefined && choice !== null) {
    if (choice === 'none') req.tool_choice = { type: 'none' }
    else if (choice === 'auto') req.tool_choice = { type: 'auto' }
    else if (choice === 'required') req.tool_choice = { type: 'any' }
    else if (
      isObj(choice) &&
      choice['type'] === 'function' &&
      isObj(choice['function']) &&
      typeof choice['function']['name'] === 'string'
    )
      req.tool_choice = { type: 'tool', name: choice['function']['name'] }
    else
      throw t.invalid(
        'tool_choice',
        'must be none, auto, required or {type: "function", function: {name}}',
      )
  }
  if (noParallel && req.tools !== undefined) {
    const tc = req.tool_choice ?? { type: 'auto' }
    if (tc.type !== 'none') req.tool_choice = { ...tc, disable_parallel_tool_use: true }
  }
  return req
}
