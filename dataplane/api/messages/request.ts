// Anthropic Messages → OpenAI chat completions: what /v1/messages sends to self-hosted engines and
// OpenAI-type providers (the reverse of providers/anthropic/request.ts). What maps: `system`
// (string or text blocks) → one system message; user/assistant turns with text and image blocks
// (base64 → data: URL, url → URL); assistant `tool_use` blocks → `tool_calls`; user `tool_result`
// blocks → `tool` messages (placed before the turn's other content, right after the assistant's
// calls as OpenAI requires); max_tokens, temperature, top_p, top_k (vLLM and SGLang take it),
// stop_sequences → stop, metadata.user_id → user, tools (input_schema → parameters), tool_choice
// (any → required, tool → a named function, disable_parallel_tool_use → parallel_tool_calls:
// false); `stream` adds `stream_options.include_usage` (the Anthropic stream reports usage at its
// end). What does not translate — extended thinking, documents, server tools, citations,
// cache_control beyond ignoring it — is a 400 naming the field, never silently dropped.
import { invalidMessages, unsupportedMessages } from './errors.js'

type Obj = Record<string, unknown>

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v)

/** Top-level fields that translate (or are harmless: service_tier, container are not). */
const KNOWN = new Set([
  'model',
  'max_tokens',
  'messages',
  'system',
  'temperature',
  'top_p',
  'top_k',
  'stop_sequences',
  'stream',
  'metadata',
  'tools',
  'tool_choice',
])

interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | 'tool'
  content: string | Obj[] | null
  tool_calls?: Obj[]
  tool_call_id?: string
}

function textBlocks(v: unknown, at: string): string {
  if (typeof v === 'string') return v
  if (!Array.isArray(v)) throw invalidMessages(at, 'must be a string or an array of text blocks')
  return v
    .map((b: unknown, i) => {
      if (!isObj(b) || b['type'] !== 'text' || typeof b['text'] !== 'string')
        throw unsupportedMessages(`${at}[${i}].type`, 'only text blocks are supported here')
      return b['text']
    })
    .join('\n')
}

function imagePart(b: Obj, at: string): Obj {
  const src = b['source']
  if (!isObj(src)) throw invalidMessages(`${at}.source`, 'is required')
  if (src['type'] === 'base64' && typeof src['data'] === 'string')
    return {
      type: 'image_url',
      image_url: { url: `data:${String(src['media_type'])};base64,${src['data']}` },
    }
  if (src['type'] === 'url' && typeof src['url'] === 'string')
    return { type: 'image_url', image_url: { url: src['url'] } }
  throw unsupportedMessages(`${at}.source.type`, 'only base64 and url image sources translate')
}

function translateTurn(msg: unknown, i: number, out: ChatMessage[]): void {
  const at = `messages[${i}]`
  if (!isObj(msg)) throw invalidMessages(at, 'must be an object')
  const role = msg['role']
  if (role !== 'user' && role !== 'assistant')
    throw invalidMessages(`${at}.role`, 'must be "user" or "assistant"')
  const content = msg['content']
  if (typeof content === 'string') {
    out.push({ role, content })
    return
  }
  if (!Array.isArray(content))
    throw invalidMessages(`${at}.content`, 'must be a string or an array')
  const parts: Obj[] = []
  const calls: Obj[] = []
  const results: ChatMessage[] = []
  content.forEach((b: unknown, j) => {
    const bat = `${at}.content[${j}]`
    if (!isObj(b)) throw invalidMessages(bat, 'must be an object')
    switch (b['type']) {
      case 'text':
        if (typeof b['text'] !== 'string') throw invalidMessages(`${bat}.text`, 'must be a string')
        parts.push({ type: 'text', text: b['text'] })
        return
      case 'image':
        if (role !== 'user') throw invalidMessages(`${bat}.type`, 'images belong to user turns')
        parts.push(imagePart(b, bat))
        return
      case 'tool_use': {
        if (role !== 'assistant')
          throw invalidMessages(`${bat}.type`, 'tool_use belongs to assistant turns')
        if (typeof b['id'] !== 'string' || typeof b['name'] !== 'string')
          throw invalidMessages(bat, 'tool_use needs an id and a name')
        calls.push({
          id: b['id'],
          type: 'function',
          function: { name: b['name'], arguments: JSON.stringify(b['input'] ?? {}) },
        })
        return
      }
      case 'tool_result': {
        if (role !== 'user')
          throw invalidMessages(`${bat}.type`, 'tool_result belongs to user turns')
        if (typeof b['tool_use_id'] !== 'string')
          throw invalidMessages(`${bat}.tool_use_id`, 'is required')
        const c = b['content']
        const text = c === undefined ? '' : textBlocks(c, `${bat}.content`)
        // OpenAI has no error flag on tool results; the text says so instead.
        results.push({
          role: 'tool',
          tool_call_id: b['tool_use_id'],
          content: b['is_error'] === true ? `Error: ${text}` : text,
        })
        return
      }
      default:
        throw unsupportedMessages(
          `${bat}.type`,
          `content blocks of type ${JSON.stringify(b['type'])} do not translate to OpenAI chat`,
        )
    }
  })
  // Tool results answer the previous assistant turn's calls: they come first.
  out.push(...results)
  const onlyText = parts.every((p) => p['type'] === 'text')
  const merged: string | Obj[] | null =
    parts.length === 0 ? null : onlyText ? parts.map((p) => p['text'] as string).join('') : parts
  if (role === 'assistant') {
    if (merged !== null || calls.length > 0)
      out.push({ role, content: merged, ...(calls.length > 0 ? { tool_calls: calls } : {}) })
  } else if (merged !== null) out.push({ role, content: merged })
}

function toolChoice(v: unknown): { tool_choice: unknown; parallel?: false } {
  if (!isObj(v)) throw invalidMessages('tool_choice', 'must be an object')
  const parallel = v['disable_parallel_tool_use'] === true ? { parallel: false as const } : {}
  switch (v['type']) {
    case 'auto':
      return { tool_choice: 'auto', ...parallel }
    case 'any':
      return { tool_choice: 'required', ...parallel }
    case 'none':
      return { tool_choice: 'none' }
    case 'tool':
      if (typeof v['name'] !== 'string') throw invalidMessages('tool_choice.name', 'is required')
      return { tool_choice: { type: 'function', function: { name: v['name'] } }, ...parallel }
    default:
      throw invalidMessages('tool_choice.type', 'must be auto, any, tool or none')
  }
}

/** The OpenAI chat request for an Anthropic Messages body; throws a 400 naming the field. */
export function messagesToChat(body: Readonly<Obj>): Obj {
  for (const k of Object.keys(body)) {
    if (!KNOWN.has(k))
      throw unsupportedMessages(k, 'not available when the model is served through OpenAI chat')
  }
  const max = body['max_tokens']
  if (typeof max !== 'number' || !Number.isInteger(max) || max < 1)
    throw invalidMessages('max_tokens', 'is required and must be a positive integer')
  const messages = body['messages']
  if (!Array.isArray(messages) || messages.length === 0)
    throw invalidMessages('messages', 'must be a non-empty array')
  const out: ChatMessage[] = []
  const system = body['system']
  if (system !== undefined) out.push({ role: 'system', content: textBlocks(system, 'system') })
  messages.forEach((m: unknown, i) => {
    translateTurn(m, i, out)
  })

  const chat: Obj = { model: body['model'], messages: out, max_tokens: max }
  for (const k of ['temperature', 'top_p', 'top_k'] as const) {
    const v = body[k]
    if (v === undefined) continue
    if (typeof v !== 'number') throw invalidMessages(k, 'must be a number')
    chat[k] = v
  }
  const stop = body['stop_sequences']
  if (stop !== undefined) {
    if (!Array.isArray(stop) || !stop.every((s) => typeof s === 'string'))
      throw invalidMessages('stop_sequences', 'must be an array of strings')
    if (stop.length > 0) chat['stop'] = stop
  }
  const md = body['metadata']
  if (md !== undefined) {
    if (!isObj(md)) throw invalidMessages('metadata', 'must be an object')
    if (typeof md['user_id'] === 'string') chat['user'] = md['user_id']
  }
  const tools = body['tools']
  if (tools !== undefined) {
    if (!Array.isArray(tools)) throw invalidMessages('tools', 'must be an array')
    chat['tools'] = tools.map((t: unknown, i) => {
      const at = `tools[${i}]`
      if (!isObj(t)) throw invalidMessages(at, 'must be an object')
      if (t['type'] !== undefined && t['type'] !== 'custom')
        throw unsupportedMessages(`${at}.type`, 'server tools do not translate to OpenAI chat')
      if (typeof t['name'] !== 'string') throw invalidMessages(`${at}.name`, 'is required')
      if (!isObj(t['input_schema'])) throw invalidMessages(`${at}.input_schema`, 'is required')
      return {
        type: 'function',
        function: {
          name: t['name'],
          ...(typeof t['description'] === 'string' ? { description: t['description'] } : {}),
          parameters: t['input_schema'],
        },
      }
    })
  }
  if (body['tool_choice'] !== undefined) {
    const tc = toolChoice(body['tool_choice'])
    chat['tool_choice'] = tc.tool_choice
    if (tc.parallel === false) chat['parallel_tool_calls'] = false
  }
  const stream = body['stream']
  if (stream !== undefined && typeof stream !== 'boolean')
    throw invalidMessages('stream', 'must be a boolean')
  if (stream === true) {
    chat['stream'] = true
    chat['stream_options'] = { include_usage: true }
  }
  return chat
}
