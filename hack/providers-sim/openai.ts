// OpenAI-compatible provider simulator, in the flavors the gateway talks to: OpenAI itself
// (/v1/chat/completions, /v1/completions, /v1/embeddings, /v1/responses, `Authorization: Bearer`), Azure OpenAI
// (/openai/deployments/{deployment}/…?api-version=…, `api-key`), DeepSeek (/chat/completions,
// prompt cache usage fields), the Hugging Face router (/v1/chat/completions) and a TGI endpoint
// (/v1/chat/completions and /v1/completions, `{"error": "...", "error_type": ...}` errors). Bodies
// and chunks are typed with the official `openai` SDK's types so they stay what SDKs parse.
import type { IncomingMessage, ServerResponse } from 'node:http'
import type {
  ChatCompletion,
  ChatCompletionChunk,
  ChatCompletionCreateParams,
} from 'openai/resources/chat/completions'
import type { Completion, CompletionCreateParams } from 'openai/resources/completions'
import type { CreateEmbeddingResponse, EmbeddingCreateParams } from 'openai/resources/embeddings'
import type { ResponseCreateParams } from 'openai/resources/responses/responses'
import {
  countTokens,
  EventWriter,
  json,
  pieces,
  type RecordedRequest,
  replyTo,
  type SimServer,
  type SimState,
  startSim,
  textOf,
} from './common.js'
import { responses } from './openai-responses.js'

export type OpenAIFlavor = 'openai' | 'azure' | 'deepseek' | 'hf-router' | 'tgi'

export interface OpenAISimOptions {
  readonly host: string
  readonly flavor: OpenAIFlavor
  /** Name used in replies ("Hello from <name>"). */
  readonly name?: string
  /** Azure: the deployment that exists. */
  readonly deployment?: string
}

type Api = 'chat' | 'completions' | 'embeddings' | 'responses'

function route(flavor: OpenAIFlavor, path: string, deployment: string): Api | undefined {
  const table: Record<OpenAIFlavor, Record<string, Api>> = {
    openai: {
      '/v1/chat/completions': 'chat',
      '/v1/completions': 'completions',
      '/v1/embeddings': 'embeddings',
      '/v1/responses': 'responses',
    },
    azure: {
      [`/openai/deployments/${deployment}/chat/completions`]: 'chat',
      [`/openai/deployments/${deployment}/completions`]: 'completions',
      [`/openai/deployments/${deployment}/embeddings`]: 'embeddings',
    },
    deepseek: { '/chat/completions': 'chat', '/v1/chat/completions': 'chat' },
    'hf-router': { '/v1/chat/completions': 'chat' },
    tgi: { '/v1/chat/completions': 'chat', '/v1/completions': 'completions' },
  }
  return table[flavor][path]
}

function presentedKey(flavor: OpenAIFlavor, h: IncomingMessage['headers']): string | undefined {
  if (flavor === 'azure') return typeof h['api-key'] === 'string' ? h['api-key'] : undefined
  const a = h.authorization
  return typeof a === 'string' && a.startsWith('Bearer ') ? a.slice(7) : undefined
}

/** Each flavor's published error body. */
function errorBody(
  flavor: OpenAIFlavor,
  status: number,
  message: string,
  code: string,
  key?: string,
): unknown {
  if (flavor === 'tgi')
    return { error: message, error_type: status === 429 ? 'overloaded' : 'validation' }
  if (flavor === 'azure') return { error: { code: String(status), message } }
  const type =
    status === 401
      ? flavor === 'deepseek'
        ? 'authentication_error'
        : 'invalid_request_error'
      : status === 429
        ? 'requests'
        : status >= 500
          ? 'server_error'
          : 'invalid_request_error'
  return {
    error: {
      // OpenAI's real 401 quotes the presented key, masked: the gateway must not pass it on.
      message:
        status === 401 && key !== undefined
          ? `Incorrect API key provided: ${key.slice(0, 3)}***${key.slice(-2)}.`
          : message,
      type,
      param: null,
      code,
    },
  }
}

export async function startOpenAISim(opts: OpenAISimOptions): Promise<SimServer> {
  const name = opts.name ?? opts.flavor
  const deployment = opts.deployment ?? 'gpt-4o-mini-deploy'
  return startSim(opts.host, async (req, res, rec, state) => {
    const fail = (
      status: number,
      message: string,
      code: string,
      headers: Record<string, string> = {},
      key?: string,
    ) => json(res, status, errorBody(opts.flavor, status, message, code, key), headers)
    const api = route(opts.flavor, rec.path, deployment)
    if (req.method !== 'POST' || api === undefined)
      return fail(404, 'Resource not found', 'not_found')
    if (opts.flavor === 'azure' && !rec.query.get('api-version'))
      return fail(404, 'Resource not found (api-version missing)', 'not_found')
    const key = presentedKey(opts.flavor, req.headers)
    if (key === undefined || !state.keys.has(key))
      return fail(401, 'Invalid authentication', 'invalid_api_key', {}, key)
    const scripted = state.takeFailure()
    if (scripted) {
      return fail(
        scripted.status,
        scripted.status === 429
          ? 'Rate limit reached for requests'
          : 'The server had an error while processing your request',
        scripted.status === 429 ? 'rate_limit_exceeded' : 'server_error',
        scripted.retryAfter !== undefined ? { 'retry-after': scripted.retryAfter } : {},
      )
    }
    const body = rec.body
    if (typeof body !== 'object' || body === null)
      return fail(400, 'We could not parse the JSON body', 'invalid_json')
    if (api === 'chat')
      return chat(res, body as ChatCompletionCreateParams, name, opts.flavor, state)
    if (api === 'completions') return completion(res, body as CompletionCreateParams, name)
    if (api === 'responses') return responses(res, body as ResponseCreateParams, name, state)
    return embeddings(res, body as EmbeddingCreateParams)
  })
}

function usageFor(
  flavor: OpenAIFlavor,
  prompt: number,
  completion: number,
): NonNullable<ChatCompletion['usage']> {
  const u: NonNullable<ChatCompletion['usage']> = {
    prompt_tokens: prompt,
    completion_tokens: completion,
    total_tokens: prompt + completion,
  }
  // DeepSeek's context-cache fields (half the prompt "cached" so cost math is exercised).
  if (flavor === 'deepseek') {
    const hit = Math.floor(prompt / 2)
    Object.assign(u, { prompt_cache_hit_tokens: hit, prompt_cache_miss_tokens: prompt - hit })
  }
  return u
}

async function chat(
  res: ServerResponse,
  p: ChatCompletionCreateParams,
  name: string,
  flavor: OpenAIFlavor,
  state: SimState,
): Promise<void> {
  if (typeof p.model !== 'string' || !Array.isArray(p.messages) || p.messages.length === 0) {
    return json(
      res,
      400,
      errorBody(flavor, 400, "'messages' is a required property", 'invalid_request_error'),
    )
  }
  const promptText = p.messages.map((m) => textOf('content' in m ? m.content : '')).join(' ')
  const lastUser = [...p.messages].reverse().find((m) => m.role === 'user')
  const text = replyTo(name, lastUser ? textOf(lastUser.content) : '')
  const prompt = countTokens(promptText)
  const completionTokens = countTokens(text)
  const created = Math.floor(Date.now() / 1000)
  const id = `chatcmpl-sim${created}`
  if (p.stream !== true) {
    const out: ChatCompletion = {
      id,
      object: 'chat.completion',
      created,
      model: `${p.model}-sim`,
      choices: [
        {
          index: 0,
          message: { role: 'assistant', content: text, refusal: null },
          finish_reason: 'stop',
          logprobs: null,
        },
      ],
      usage: usageFor(flavor, prompt, completionTokens),
    }
    return json(res, 200, out)
  }
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
  const w = new EventWriter(res, state)
  const includeUsage = p.stream_options?.include_usage === true
  const chunk = (
    delta: ChatCompletionChunk.Choice.Delta,
    finish: ChatCompletionChunk.Choice['finish_reason'] = null,
  ): string => {
    const c: ChatCompletionChunk = {
      id,
      object: 'chat.completion.chunk',
      created,
      model: `${p.model}-sim`,
      choices: [{ index: 0, delta, finish_reason: finish, logprobs: null }],
      ...(includeUsage ? { usage: null } : {}),
    }
    return `data: ${JSON.stringify(c)}\n\n`
  }
  const onError = () =>
    `data: ${JSON.stringify({ error: { message: 'stream interrupted', type: 'server_error', code: 'server_error', param: null } })}\n\n`
  if (!(await w.write(chunk({ role: 'assistant', content: '' }), onError))) return
  for (const piece of pieces(text)) if (!(await w.write(chunk({ content: piece }), onError))) return
  if (!(await w.write(chunk({}, 'stop'), onError))) return
  if (includeUsage) {
    const u: ChatCompletionChunk = {
      id,
      object: 'chat.completion.chunk',
      created,
      model: `${p.model}-sim`,
      choices: [],
      usage: usageFor(flavor, prompt, completionTokens),
    }
    if (!(await w.write(`data: ${JSON.stringify(u)}\n\n`, onError))) return
  }
  res.end('data: [DONE]\n\n')
}

function completion(res: ServerResponse, p: CompletionCreateParams, name: string): void {
  const prompt = typeof p.prompt === 'string' ? p.prompt : ''
  const text = replyTo(name, prompt)
  const out: Completion = {
    id: 'cmpl-sim',
    object: 'text_completion',
    created: Math.floor(Date.now() / 1000),
    model: String(p.model),
    choices: [{ index: 0, text, finish_reason: 'stop', logprobs: null }],
    usage: {
      prompt_tokens: countTokens(prompt),
      completion_tokens: countTokens(text),
      total_tokens: countTokens(prompt) + countTokens(text),
    },
  }
  json(res, 200, out)
}

function embeddings(res: ServerResponse, p: EmbeddingCreateParams): void {
  const inputs = typeof p.input === 'string' ? [p.input] : (p.input as string[])
  const dims = p.dimensions ?? 8
  const vectors = inputs.map((s, i) =>
    Array.from({ length: dims }, (_, k) => ((s.length + i + k) % 10) / 10),
  )
  const out: CreateEmbeddingResponse = {
    object: 'list',
    model: p.model,
    data: vectors.map((v, index) => ({
      object: 'embedding',
      index,
      // Like OpenAI: base64 little-endian float32 when asked (the SDK's default).
      embedding: (p.encoding_format === 'base64'
        ? Buffer.from(new Float32Array(v).buffer).toString('base64')
        : v) as number[],
    })),
    usage: {
      prompt_tokens: inputs.reduce((n, s) => n + countTokens(s), 0),
      total_tokens: inputs.reduce((n, s) => n + countTokens(s), 0),
    },
  }
  json(res, 200, out)
}

export type { RecordedRequest }
