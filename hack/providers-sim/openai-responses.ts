// OpenAI's Responses API (`POST /v1/responses`) for the provider simulator's `openai` flavor:
// text input, one assistant message back, usage as input/output tokens; a stream is the named
// event sequence ending in response.completed (no `[DONE]`). Typed with the openai SDK's types.
import type { ServerResponse } from 'node:http'
import type {
  ResponseCreateParams,
  ResponseOutputMessage,
  ResponseStreamEvent,
} from 'openai/resources/responses/responses'
import { countTokens, EventWriter, json, pieces, replyTo, type SimState, textOf } from './common.js'

function inputText(input: ResponseCreateParams['input']): { all: string; lastUser: string } {
  if (typeof input === 'string') return { all: input, lastUser: input }
  const texts: string[] = []
  let lastUser = ''
  for (const item of input ?? []) {
    if ('content' in item && 'role' in item) {
      const t = textOf(item.content)
      texts.push(t)
      if (item.role === 'user') lastUser = t
    }
  }
  return { all: texts.join(' '), lastUser }
}

export async function responses(
  res: ServerResponse,
  p: ResponseCreateParams,
  name: string,
  state: SimState,
): Promise<void> {
  if (typeof p.model !== 'string' || p.input === undefined) {
    return json(res, 400, {
      error: {
        message: "Missing required parameter: 'input'.",
        type: 'invalid_request_error',
        param: 'input',
        code: 'missing_required_parameter',
      },
    })
  }
  const { all, lastUser } = inputText(p.input)
  const text = replyTo(name, lastUser)
  const created = Math.floor(Date.now() / 1000)
  const id = `resp_sim${created}`
  const msg = (status: 'in_progress' | 'completed', t: string): ResponseOutputMessage => ({
    type: 'message',
    id: `msg_sim${created}`,
    status,
    role: 'assistant',
    content: status === 'completed' ? [{ type: 'output_text', text: t, annotations: [] }] : [],
  })
  const usage = {
    input_tokens: countTokens(`${p.instructions ?? ''} ${all}`),
    input_tokens_details: { cached_tokens: 0 },
    output_tokens: countTokens(text),
    output_tokens_details: { reasoning_tokens: 0 },
    total_tokens: countTokens(`${p.instructions ?? ''} ${all}`) + countTokens(text),
  }
  const response = (done: boolean): Record<string, unknown> => ({
    id,
    object: 'response',
    created_at: created,
    status: done ? 'completed' : 'in_progress',
    error: null,
    incomplete_details: null,
    instructions: p.instructions ?? null,
    metadata: {},
    model: `${p.model}-sim`,
    output: done ? [msg('completed', text)] : [],
    output_text: done ? text : '',
    parallel_tool_calls: true,
    temperature: 1,
    tool_choice: 'auto',
    tools: [],
    top_p: 1,
    usage: done ? usage : null,
  })
  if (p.stream !== true) return json(res, 200, response(true))

  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
  const w = new EventWriter(res, state)
  let seq = 0
  const ev = (e: { type: ResponseStreamEvent['type'] } & Record<string, unknown>): string =>
    `event: ${e.type}\ndata: ${JSON.stringify({ ...e, sequence_number: seq++ })}\n\n`
  const onError = () =>
    `event: error\ndata: ${JSON.stringify({ type: 'error', code: 'server_error', message: 'stream interrupted', param: null, sequence_number: seq++ })}\n\n`
  const base = { item_id: `msg_sim${created}`, output_index: 0, content_index: 0 }
  const frames = [
    ev({ type: 'response.created', response: response(false) }),
    ev({ type: 'response.in_progress', response: response(false) }),
    ev({ type: 'response.output_item.added', output_index: 0, item: msg('in_progress', '') }),
    ev({
      type: 'response.content_part.added',
      ...base,
      part: { type: 'output_text', text: '', annotations: [] },
    }),
    ...pieces(text).map((delta) =>
      ev({ type: 'response.output_text.delta', ...base, delta, logprobs: [] }),
    ),
    ev({ type: 'response.output_text.done', ...base, text, logprobs: [] }),
    ev({ type: 'response.output_item.done', output_index: 0, item: msg('completed', text) }),
    ev({ type: 'response.completed', response: response(true) }),
  ]
  for (const f of frames) if (!(await w.write(f, onError))) return
  res.end()
}
