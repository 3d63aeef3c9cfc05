// Anthropic Messages API simulator (POST /v1/messages): `x-api-key` + `anthropic-version`
// headers, the API's validation of the body (max_tokens required, user/assistant roles,
// tool_result only answering the previous turn's tool_use ids, temperature 0..1), stop sequences
// and max_tokens stops, cache-read usage, the named SSE event sequence (message_start, ping,
// content_block_start/delta/stop, message_delta, message_stop; `error` events) and its error
// bodies (`{"type":"error","error":{"type":…}}`, 529 overloaded). Requests are read as, and
// answers built as, the official @anthropic-ai/sdk types.
import type { ServerResponse } from 'node:http'
import type {
  ContentBlock,
  Message,
  MessageCreateParams,
  MessageParam,
  RawMessageStreamEvent,
  StopReason,
} from '@anthropic-ai/sdk/resources/messages'
import {
  countTokens,
  EventWriter,
  json,
  pieces,
  replyTo,
  type SimServer,
  type SimState,
  startSim,
} from './common.js'

export interface AnthropicSimOptions {
  readonly host: string
  readonly name?: string
}

const ERROR_TYPES: Readonly<Record<number, string>> = {
  400: 'invalid_request_error',
  401: 'authentication_error',
  403: 'permission_error',
  404: 'not_found_error',
  413: 'request_too_large',
  429: 'rate_limit_error',
  500: 'api_error',
  529: 'overloaded_error',
}

function error(
  res: ServerResponse,
  status: number,
  message: string,
  headers: Record<string, string> = {},
): void {
  json(
    res,
    status,
    {
      type: 'error',
      error: { type: ERROR_TYPES[status] ?? 'api_error', message },
      request_id: 'req_sim',
    },
    headers,
  )
}

function blocks(m: MessageParam): ReadonlyArray<Record<string, unknown>> {
  return typeof m.content === 'string'
    ? [{ type: 'text', text: m.content }]
    : (m.content as unknown as Record<string, unknown>[])
}

function textOfBlocks(m: MessageParam): string {
  return blocks(m)
    .map((b) => (b['type'] === 'text' ? String(b['text']) : ''))
    .filter((s) => s !== '')
    .join(' ')
}

/** MessageCreateParams' fields (the SDK's request type); anything else is rejected as the API does. */
const PARAMS = new Set([
  'max_tokens',
  'messages',
  'model',
  'cache_control',
  'container',
  'diagnostics',
  'inference_geo',
  'metadata',
  'output_config',
  'service_tier',
  'speed',
  'stop_sequences',
  'stream',
  'system',
  'thinking',
  'tool_choice',
  'tools',
  'user_profile_id',
  'workspace_id',
])

/** What the real API rejects, in its words (roughly); undefined = valid. */
function invalid(p: MessageCreateParams, version: string): string | undefined {
  if (typeof p.model !== 'string' || p.model === '') return 'model: Field required'
  if (typeof p.max_tokens !== 'number' || !Number.isInteger(p.max_tokens) || p.max_tokens < 1)
    return 'max_tokens: Field required'
  if (!Array.isArray(p.messages) || p.messages.length === 0)
    return 'messages: at least one message is required'
  for (const k of Object.keys(p)) {
    // Sampling parameters exist in API version 2023-06-01 only (the SDK's types follow 2026-10-21).
    const sampling =
      version < '2026-10-21' && (k === 'temperature' || k === 'top_p' || k === 'top_k')
    if (!PARAMS.has(k) && !sampling) return `${k}: Extra inputs are not permitted`
  }
  const temperature = (p as { temperature?: number }).temperature
  if (temperature !== undefined && (temperature < 0 || temperature > 1))
    return 'temperature: Input should be less than or equal to 1'
  let prevToolUses = new Set<string>()
  for (const [i, m] of p.messages.entries()) {
    if (m.role !== 'user' && m.role !== 'assistant')
      return `messages.${i}.role: Input should be 'user' or 'assistant'`
    const bs = blocks(m)
    if (bs.length === 0) return `messages.${i}: all messages must have non-empty content`
    const uses = new Set<string>()
    for (const b of bs) {
      if (b['type'] === 'tool_use') {
        if (m.role !== 'assistant')
          return `messages.${i}: tool_use blocks must be in assistant turns`
        uses.add(String(b['id']))
      }
      if (b['type'] === 'tool_result') {
        if (m.role !== 'user') return `messages.${i}: tool_result blocks must be in user turns`
        if (!prevToolUses.has(String(b['tool_use_id'])))
          return `messages.${i}: unexpected \`tool_use_id\` found in \`tool_result\` blocks: ${String(b['tool_use_id'])}. Each \`tool_result\` block must have a corresponding \`tool_use\` block in the previous message.`
      }
    }
    prevToolUses = uses
  }
  for (const t of p.tools ?? []) {
    const tool = t as unknown as Record<string, unknown>
    const schema = tool['input_schema'] as Record<string, unknown> | undefined
    if (typeof tool['name'] !== 'string' || schema?.['type'] !== 'object')
      return 'tools: input_schema.type must be "object"'
  }
  return undefined
}

interface Answer {
  readonly content: ContentBlock[]
  readonly stop: StopReason
  readonly stopSequence: string | null
  readonly output: number
}

function answer(p: MessageCreateParams, name: string): Answer {
  const last = p.messages[p.messages.length - 1] as MessageParam
  const results = blocks(last).filter((b) => b['type'] === 'tool_result')
  const wantsTool =
    (p.tools?.length ?? 0) > 0 && p.tool_choice?.type !== 'none' && results.length === 0
  if (wantsTool) {
    const tool = p.tools?.[0] as unknown as { name: string }
    const block = {
      type: 'tool_use',
      id: 'toolu_sim01',
      name: tool.name,
      input: { location: 'Paris' },
      caller: null,
    } as unknown as ContentBlock
    return { content: [block], stop: 'tool_use', stopSequence: null, output: 12 }
  }
  let text =
    results.length > 0
      ? `The tool said: ${results.map((r) => (typeof r['content'] === 'string' ? r['content'] : JSON.stringify(r['content']))).join(' ')}`
      : replyTo(name, textOfBlocks(last))
  let stop: StopReason = 'end_turn'
  let stopSequence: string | null = null
  for (const s of p.stop_sequences ?? []) {
    const at = text.indexOf(s)
    if (at >= 0) {
      text = text.slice(0, at)
      stop = 'stop_sequence'
      stopSequence = s
      break
    }
  }
  const words = pieces(text)
  if (words.length > p.max_tokens) {
    text = words.slice(0, p.max_tokens).join('')
    stop = 'max_tokens'
  }
  const block = { type: 'text', text, citations: null } as ContentBlock
  return { content: [block], stop, stopSequence, output: countTokens(text) }
}

export async function startAnthropicSim(opts: AnthropicSimOptions): Promise<SimServer> {
  const name = opts.name ?? 'anthropic'
  return startSim(opts.host, async (req, res, rec, state) => {
    if (req.method !== 'POST' || rec.path !== '/v1/messages') return error(res, 404, 'Not found')
    // x-api-key, or (as the current SDK sends it) Authorization: Bearer.
    const auth = req.headers.authorization
    const key =
      req.headers['x-api-key'] ?? (auth?.startsWith('Bearer ') ? auth.slice(7) : undefined)
    if (typeof key !== 'string' || !state.keys.has(key)) return error(res, 401, 'invalid x-api-key')
    const version = req.headers['anthropic-version']
    if (typeof version !== 'string') return error(res, 400, 'anthropic-version: header is required')
    const scripted = state.takeFailure()
    if (scripted) {
      return error(
        res,
        scripted.status,
        scripted.status === 529
          ? 'Overloaded'
          : scripted.status === 429
            ? 'Number of request tokens has exceeded your per-minute rate limit'
            : 'Internal server error',
        scripted.retryAfter !== undefined ? { 'retry-after': scripted.retryAfter } : {},
      )
    }
    const p = rec.body as MessageCreateParams
    const why =
      typeof p === 'object' && p !== null ? invalid(p, version) : 'body must be a JSON object'
    if (why !== undefined) return error(res, 400, why)
    const system =
      typeof p.system === 'string' ? p.system : (p.system ?? []).map((b) => b.text).join(' ')
    const cached = countTokens(system)
    const input = p.messages.reduce((n, m) => n + countTokens(textOfBlocks(m as MessageParam)), 0)
    const a = answer(p, name)
    const message: Message = {
      id: 'msg_sim01',
      type: 'message',
      role: 'assistant',
      model: p.model,
      content: a.content,
      stop_reason: a.stop,
      stop_sequence: a.stopSequence,
      stop_details: null,
      container: null,
      diagnostics: null,
      usage: {
        input_tokens: input,
        output_tokens: a.output,
        cache_creation_input_tokens: 0,
        cache_read_input_tokens: cached,
        cache_creation: null,
        inference_geo: null,
        output_tokens_details: null,
        server_tool_use: null,
        service_tier: 'standard',
        speed: null,
      },
    } as Message
    if (p.stream !== true) return json(res, 200, message)
    await stream(res, state, message, a)
  })
}

async function stream(
  res: ServerResponse,
  state: SimState,
  message: Message,
  a: Answer,
): Promise<void> {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
  const w = new EventWriter(res, state)
  const frame = (e: RawMessageStreamEvent | { type: 'ping' }): string =>
    `event: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`
  const onError = () =>
    `event: error\ndata: ${JSON.stringify({ type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } })}\n\n`
  const start = {
    type: 'message_start',
    message: {
      ...message,
      content: [],
      stop_reason: null,
      stop_sequence: null,
      usage: { ...message.usage, output_tokens: 1 },
    },
  } as RawMessageStreamEvent
  if (!(await w.write(frame(start), onError))) return
  if (!(await w.write(frame({ type: 'ping' }), onError))) return
  for (const [index, block] of a.content.entries()) {
    const b = block as unknown as Record<string, unknown>
    if (b['type'] === 'tool_use') {
      const startBlock = {
        type: 'content_block_start',
        index,
        content_block: { ...b, input: {} },
      } as unknown as RawMessageStreamEvent
      if (!(await w.write(frame(startBlock), onError))) return
      const js = JSON.stringify(b['input'])
      const half = Math.floor(js.length / 2)
      for (const part of [js.slice(0, half), js.slice(half)]) {
        const d = {
          type: 'content_block_delta',
          index,
          delta: { type: 'input_json_delta', partial_json: part },
        } as RawMessageStreamEvent
        if (!(await w.write(frame(d), onError))) return
      }
    } else {
      const startBlock = {
        type: 'content_block_start',
        index,
        content_block: { type: 'text', text: '', citations: null },
      } as RawMessageStreamEvent
      if (!(await w.write(frame(startBlock), onError))) return
      for (const piece of pieces(String(b['text']))) {
        const d = {
          type: 'content_block_delta',
          index,
          delta: { type: 'text_delta', text: piece },
        } as RawMessageStreamEvent
        if (!(await w.write(frame(d), onError))) return
      }
    }
    if (!(await w.write(frame({ type: 'content_block_stop', index }), onError))) return
  }
  const delta = {
    type: 'message_delta',
    delta: {
      stop_reason: a.stop,
      stop_sequence: a.stopSequence,
      stop_details: null,
      container: null,
    },
    usage: {
      output_tokens: a.output,
      input_tokens: message.usage.input_tokens,
      cache_read_input_tokens: message.usage.cache_read_input_tokens,
      cache_creation_input_tokens: 0,
      output_tokens_details: null,
      server_tool_use: null,
    },
  } as RawMessageStreamEvent
  if (!(await w.write(frame(delta), onError))) return
  res.end(frame({ type: 'message_stop' }))
}
