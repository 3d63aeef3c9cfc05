// OpenAI chat completions / embeddings → Gemini's native API (generateContent,
// streamGenerateContent?alt=sse, batchEmbedContents). Native rather than Gemini's
// OpenAI-compatible endpoint because: every response (every stream chunk too) carries
// usageMetadata, so cost accounting works for streams without relying on stream_options; thinking
// tokens are reported apart (billed as output); safety stops come back as explicit finish reasons
// we map to `content_filter`; and errors carry a machine-readable reason (API_KEY_INVALID) the
// gateway needs to tell "our key was rejected" from "your request was bad" (Gemini says 400 for
// both). The price is this translation, unit tested field by field.

import type { SnapshotProvider } from '../../../api/snapshot.js'
import type { GatewayError } from '../../errors.js'
import { providerErrors } from '../errors.js'
import { isObj } from '../types.js'

export interface GeminiPart {
  text?: string
  inlineData?: { mimeType: string; data: string }
  fileData?: { mimeType?: string; fileUri: string }
  functionCall?: { name: string; args: Record<string, unknown>; id?: string }
  functionResponse?: { name: string; response: Record<string, unknown>; id?: string }
  thought?: boolean
}

export interface GeminiContent {
  role: 'user' | 'model'
  parts: GeminiPart[]
}

export interface GeminiGenerationConfig {
  temperature?: number
  topP?: number
  topK?: number
  maxOutputTokens?: number
  stopSequences?: string[]
  candidateCount?: number
  presencePenalty?: number
  frequencyPenalty?: number
  seed?: number
  responseMimeType?: string
  responseJsonSchema?: Record<string, unknown>
  thinkingConfig?: { thinkingBudget: number }
}

export interface GeminiRequest {
  contents: GeminiContent[]
  systemInstruction?: { parts: { text: string }[] }
  tools?: {
    functionDeclarations: {
      name: string
      description?: string
      parametersJsonSchema?: Record<string, unknown>
    }[]
  }[]
  toolConfig?: {
    functionCallingConfig: { mode: 'AUTO' | 'ANY' | 'NONE'; allowedFunctionNames?: string[] }
  }
  generationConfig?: GeminiGenerationConfig
}

export interface GeminiEmbedRequest {
  requests: {
    model: string
    content: { parts: { text: string }[] }
    outputDimensionality?: number
  }[]
}

type Obj = Readonly<Record<string, unknown>>

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
  'n',
  'stop',
  'presence_penalty',
  'frequency_penalty',
  'seed',
  'response_format',
  'tools',
  'tool_choice',
  'parallel_tool_calls',
  'reasoning_effort',
  'user',
  'logprobs',
  'store',
  'metadata',
])

/** Gemini's own mapping of OpenAI's reasoning effort to thinking budgets. */
const THINKING_BUDGET: Readonly<Record<string, number>> = { low: 1024, medium: 8192, high: 24576 }

const AUDIO_TYPES: Readonly<Record<string, string>> = { wav: 'audio/wav', mp3: 'audio/mp3' }

class T {
  readonly p: SnapshotProvider
  constructor(p: SnapshotProvider) {
    this.p = p
  }
  unsupported(param: string, why: string): GatewayError {
    return providerErrors.unsupportedParameter(this.p, param, why)
  }
  invalid(param: string, why: string): GatewayError {
    return providerErrors.invalidParameter(this.p, param, why)
  }
  text(content: unknown, param: string): string {
    if (typeof content === 'string') return content
    if (!Array.isArray(content)) throw this.invalid(param, 'must be a string or an array of parts')
    return content
      .map((part: unknown, i) => {
        if (isObj(part) && part['type'] === 'text' && typeof part['text'] === 'string')
          return part['text']
        if (isObj(part) && part['type'] === 'refusal' && typeof part['refusal'] === 'string')
          return part['refusal']
        throw this.unsupported(`${param}[${i}].type`, 'only text parts are supported here')
      })
      .join('\n')
  }
  userParts(content: unknown, param: string): GeminiPart[] {
    if (typeof content === 'string') return [{ text: content }]
    if (!Array.isArray(content)) throw this.invalid(param, 'must be a string or an array of parts')
    return content.map((part: unknown, i): GeminiPart => {
      const at = `${param}[${i}]`
      if (!isObj(part)) throw this.invalid(at, 'must be an object')
      if (part['type'] === 'text' && typeof part['text'] === 'string') return { text: part['text'] }
      if (part['type'] === 'image_url') {
        const iu = part['image_url']
        const url = isObj(iu) ? iu['url'] : undefined
        if (typeof url !== 'string') throw this.invalid(`${at}.image_url.url`, 'is required')
        const m = /^data:([^;,]+);base64,(.*)$/s.exec(url)
        if (m) return { inlineData: { mimeType: m[1] ?? '', data: m[2] ?? '' } }
        if (url.startsWith('https://generativelanguage.googleapis.com/'))
          return { fileData: { fileUri: url } }
        throw this.unsupported(
          `${at}.image_url.url`,
          'Gemini takes inline base64 images (data: URLs) or Files API URIs, not arbitrary URLs',
        )
      }
      if (part['type'] === 'input_audio') {
        const ia = part['input_audio']
        const fmt = isObj(ia) ? ia['format'] : undefined
        const data = isObj(ia) ? ia['data'] : undefined
        const mime = typeof fmt === 'string' ? AUDIO_TYPES[fmt] : undefined
        if (mime === undefined || typeof data !== 'string')
          throw this.invalid(`${at}.input_audio`, 'needs format wav or mp3 and base64 data')
        return { inlineData: { mimeType: mime, data } }
      }
      throw this.unsupported(`${at}.type`, `"${String(part['type'])}" parts are not supported`)
    })
  }
}

function push(out: GeminiContent[], role: 'user' | 'model', parts: GeminiPart[]): void {
  const last = out.at(-1)
  if (last && last.role === role) last.parts.push(...parts)
  else out.push({ role, parts })
}

function toolResponse(text: string): Record<string, unknown> {
  // Gemini wants an object; a tool that returned JSON object text keeps its structure.
  try {
    const v: unknown = JSON.parse(text)
    if (isObj(v)) return { ...v }
  } catch {
    // plain text
  }
  return { result: text }
}

export function toGeminiRequest(p: SnapshotProvider, body: Obj): GeminiRequest {
  const t = new T(p)
  for (const k of Object.keys(body)) {
    if (!KNOWN.has(k)) throw t.unsupported(k, 'Gemini has no equivalent')
  }
  if (body['logprobs'] === true)
    throw t.unsupported('logprobs', 'log probabilities are not translated')
  if (body['store'] === true)
    throw t.unsupported('store', 'stored completions are an OpenAI feature')
  if (body['parallel_tool_calls'] === false)
    throw t.unsupported(
      'parallel_tool_calls',
      'Gemini cannot be told to call one function at a time',
    )

  const messages = body['messages']
  if (!Array.isArray(messages) || messages.length === 0)
    throw t.invalid('messages', 'must be a non-empty array')
  const system: { text: string }[] = []
  const contents: GeminiContent[] = []
  /** tool_call_id → function name, from earlier assistant turns (Gemini answers by name). */
  const callNames = new Map<string, string>()
  messages.forEach((msg: unknown, i) => {
    const at = `messages[${i}]`
    if (!isObj(msg)) throw t.invalid(at, 'must be an object')
    switch (msg['role']) {
      case 'system':
      case 'developer':
        system.push({ text: t.text(msg['content'], `${at}.content`) })
        return
      case 'user':
        push(contents, 'user', t.userParts(msg['content'], `${at}.content`))
        return
      case 'assistant': {
        const parts: GeminiPart[] = []
        const c = msg['content']
        if (c !== undefined && c !== null) {
          const text = t.text(c, `${at}.content`)
          if (text !== '') parts.push({ text })
        }
        const calls = msg['tool_calls']
        if (Array.isArray(calls)) {
          calls.forEach((call: unknown, j) => {
            const cat = `${at}.tool_calls[${j}]`
            if (!isObj(call) || call['type'] !== 'function' || !isObj(call['function']))
              throw t.unsupported(`${cat}.type`, 'only function tool calls are supported')
            const fn = call['function']
            const name = fn['name']
            const id = call['id']
            if (typeof name !== 'string' || name === '')
              throw t.invalid(`${cat}.function.name`, 'is required')
            if (typeof id === 'string') callNames.set(id, name)
            let args: unknown = {}
            const raw = fn['arguments']
            if (typeof raw === 'string' && raw.trim() !== '') {
              try {
                args = JSON.parse(raw)
              } catch {
                throw t.invalid(`${cat}.function.arguments`, 'must be a JSON object')
              }
            }
            if (!isObj(args)) throw t.invalid(`${cat}.function.arguments`, 'must be a JSON object')
            parts.push({
              functionCall: { name, args: { ...args }, ...(typeof id === 'string' ? { id } : {}) },
            })
          })
        }
        if (parts.length > 0) push(contents, 'model', parts)
        return
      }
      case 'tool': {
        const id = msg['tool_call_id']
        const name = typeof id === 'string' ? callNames.get(id) : undefined
        if (name === undefined)
          throw t.invalid(
            `${at}.tool_call_id`,
            'must name a tool call of an earlier assistant message (Gemini answers functions by name)',
          )
        push(contents, 'user', [
          {
            functionResponse: {
              name,
              response: toolResponse(t.text(msg['content'], `${at}.content`)),
              ...(typeof id === 'string' ? { id } : {}),
            },
          },
        ])
        return
      }
      case 'function':
        throw t.unsupported(`${at}.role`, '"function" messages are deprecated; use tools')
      default:
        throw t.invalid(`${at}.role`, `unknown role ${JSON.stringify(msg['role'])}`)
    }
  })
  if (contents.length === 0) throw t.invalid('messages', 'must contain a user or assistant message')

  const req: GeminiRequest = { contents }
  if (system.length > 0) req.systemInstruction = { parts: system }
  const gc: GeminiGenerationConfig = {}
  const num = (k: string, set: (v: number) => void): void => {
    const v = body[k]
    if (v === undefined || v === null) return
    if (typeof v !== 'number' || !Number.isFinite(v)) throw t.invalid(k, 'must be a number')
    set(v)
  }
  num('temperature', (v) => {
    gc.temperature = v
  })
  num('top_p', (v) => {
    gc.topP = v
  })
  num('top_k', (v) => {
    gc.topK = v
  })
  num('presence_penalty', (v) => {
    if (v !== 0) gc.presencePenalty = v
  })
  num('frequency_penalty', (v) => {
    if (v !== 0) gc.frequencyPenalty = v
  })
  num('seed', (v) => {
    gc.seed = v
  })
  num('n', (v) => {
    if (!Number.isInteger(v) || v < 1) throw t.invalid('n', 'must be a positive integer')
    if (v !== 1) gc.candidateCount = v
  })
  const maxTokens = body['max_completion_tokens'] ?? body['max_tokens']
  if (maxTokens !== undefined && maxTokens !== null) {
    if (typeof maxTokens !== 'number' || !Number.isInteger(maxTokens) || maxTokens < 1)
      throw t.invalid('max_tokens', 'must be a positive integer')
    gc.maxOutputTokens = maxTokens
  }
  const stop = body['stop']
  if (stop !== undefined && stop !== null) {
    const list = typeof stop === 'string' ? [stop] : stop
    if (!Array.isArray(list) || !list.every((s) => typeof s === 'string'))
      throw t.invalid('stop', 'must be a string or an array of strings')
    if (list.length > 0) gc.stopSequences = [...list]
  }
  const rf = body['response_format']
  if (isObj(rf)) {
    if (rf['type'] === 'json_object') gc.responseMimeType = 'application/json'
    else if (rf['type'] === 'json_schema') {
      const js = rf['json_schema']
      const schema = isObj(js) ? js['schema'] : undefined
      if (!isObj(schema)) throw t.invalid('response_format.json_schema.schema', 'is required')
      gc.responseMimeType = 'application/json'
      gc.responseJsonSchema = { ...schema }
    } else if (rf['type'] !== 'text') {
      throw t.unsupported('response_format.type', `"${String(rf['type'])}" is not supported`)
    }
  }
  const effort = body['reasoning_effort']
  if (effort !== undefined && effort !== null) {
    const budget = typeof effort === 'string' ? THINKING_BUDGET[effort] : undefined
    if (budget === undefined)
      throw t.unsupported(
        'reasoning_effort',
        'only low, medium and high map to Gemini thinking budgets',
      )
    gc.thinkingConfig = { thinkingBudget: budget }
  }
  if (Object.keys(gc).length > 0) req.generationConfig = gc

  const tools = body['tools']
  if (tools !== undefined && tools !== null) {
    if (!Array.isArray(tools)) throw t.invalid('tools', 'must be an array')
    const decls = tools.map((tool: unknown, i) => {
      if (!isObj(tool) || tool['type'] !== 'function' || !isObj(tool['function']))
        throw t.unsupported(`tools[${i}].type`, 'only function tools are supported')
      const fn = tool['function']
      const name = fn['name']
      if (typeof name !== 'string' || name === '')
        throw t.invalid(`tools[${i}].function.name`, 'is required')
      const params = fn['parameters']
      if (params !== undefined && !isObj(params))
        throw t.invalid(`tools[${i}].function.parameters`, 'must be a JSON Schema object')
      const desc = fn['description']
      return {
        name,
        ...(typeof desc === 'string' ? { description: desc } : {}),
        ...(params !== undefined ? { parametersJsonSchema: { ...params } } : {}),
      }
    })
    if (decls.length > 0) req.tools = [{ functionDeclarations: decls }]
  }
  const choice = body['tool_choice']
  if (choice !== undefined && choice !== null) {
    if (choice === 'none') req.toolConfig = { functionCallingConfig: { mode: 'NONE' } }
    else if (choice === 'auto') req.toolConfig = { functionCallingConfig: { mode: 'AUTO' } }
    else if (choice === 'required') req.toolConfig = { functionCallingConfig: { mode: 'ANY' } }
    else if (
      isObj(choice) &&
      isObj(choice['function']) &&
      typeof choice['function']['name'] === 'string'
    )
      req.toolConfig = {
        functionCallingConfig: { mode: 'ANY', allowedFunctionNames: [choice['function']['name']] },
      }
    else
      throw t.invalid(
        'tool_choice',
        'must be none, auto, required or {type: "function", function: {name}}',
      )
  }
  return req
}

export function toGeminiEmbedRequest(
  p: SnapshotProvider,
  body: Obj,
  model: string,
): GeminiEmbedRequest {
  const t = new T(p)
  for (const k of Object.keys(body)) {
    if (!['model', 'input', 'dimensions', 'encoding_format', 'user'].includes(k))
      throw t.unsupported(k, 'Gemini embeddings have no equivalent')
  }
  const input = body['input']
  const list = typeof input === 'string' ? [input] : input
  if (!Array.isArray(list) || list.length === 0 || !list.every((s) => typeof s === 'string'))
    throw t.unsupported(
      'input',
      'Gemini embeds text: give a string or an array of strings (not token ids)',
    )
  const fmt = body['encoding_format']
  if (fmt !== undefined && fmt !== 'float' && fmt !== 'base64')
    throw t.invalid('encoding_format', 'must be float or base64')
  const dims = body['dimensions']
  if (dims !== undefined && (typeof dims !== 'number' || !Number.isInteger(dims) || dims < 1))
    throw t.invalid('dimensions', 'must be a positive integer')
  return {
    requests: list.map((text: string) => ({
      model: `models/${model}`,
      content: { parts: [{ text }] },
      ...(typeof dims === 'number' ? { outputDimensionality: dims } : {}),
    })),
  }
}
