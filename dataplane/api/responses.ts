// OpenAI's Responses API (`POST /v1/responses`), routed like chat by `model`. Bodies and event
// streams pass through unchanged; what the gateway needs of them is the rate limiter's view (the
// input it estimates tokens from, the output it reserves) and which targets can serve them.
//
// Self-hosted engines: a capability by engine type plus try-and-map. TGI has no Responses API, so
// a TGI ModelServer is refused before anything is sent (400 unsupported_api; a fallback target
// that can serve it is tried instead). vLLM, SGLang, TensorRT-LLM and Generic servers are sent the
// request; one that answers 404 or 405 (an older version without the endpoint) is mapped to the
// same 400 unsupported_api, so clients see one error whichever engine lacks the API.
import type { SnapshotServer } from '../../api/snapshot.js'
import { GatewayError } from '../errors.js'

type Json = Readonly<Record<string, unknown>>

export function servesResponses(server: SnapshotServer): boolean {
  return server.engine !== 'TGI'
}

export function responsesUnsupported(server: SnapshotServer, status?: number): GatewayError {
  return new GatewayError(
    400,
    'unsupported_api',
    status === undefined
      ? `model server "${server.key}" (${server.engine}) does not serve /v1/responses`
      : `model server "${server.key}" does not serve /v1/responses (it answered HTTP ${status})`,
  )
}

function text(content: unknown): string {
  if (typeof content === 'string') return content
  if (!Array.isArray(content)) return ''
  let out = ''
  for (const p of content) {
    if (typeof p === 'object' && p !== null && typeof (p as Json)['text'] === 'string')
      out += (p as Json)['text'] as string
  }
  return out
}

/**
 * The request as the rate limiter sees chat: `instructions` and `input` as messages, tools as
 * tools, `max_output_tokens` as max_tokens. `stream_options.include_usage` is set so the limiter
 * never asks for usage through a field the Responses API does not have: its streams always end
 * with usage (response.completed).
 */
export function responsesAdmissionView(body: Json): Record<string, unknown> {
  const messages: { role: string; content: string }[] = []
  const instructions = body['instructions']
  if (typeof instructions === 'string') messages.push({ role: 'system', content: instructions })
  const input = body['input']
  if (typeof input === 'string') messages.push({ role: 'user', content: input })
  else if (Array.isArray(input)) {
    for (const item of input) {
      if (typeof item !== 'object' || item === null) continue
      const it = item as Json
      const role = typeof it['role'] === 'string' ? it['role'] : 'user'
      // Message items carry `content`; tool outputs `output`; anything else counts as its JSON.
      const content =
        it['content'] !== undefined
          ? text(it['content'])
          : typeof it['output'] === 'string'
            ? it['output']
            : JSON.stringify(it)
      messages.push({ role, content })
    }
  }
  return {
    model: body['model'],
    messages,
    ...(body['tools'] !== undefined ? { tools: body['tools'] } : {}),
    ...(body['max_output_tokens'] !== undefined ? { max_tokens: body['max_output_tokens'] } : {}),
    ...(body['stream'] === true ? { stream: true, stream_options: { include_usage: true } } : {}),
  }
}
