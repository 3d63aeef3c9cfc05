// OpenAI-compatible providers: OpenAI, Azure OpenAI, DeepSeek, Hugging Face (router and TGI
// endpoints) and any OpenAI-compatible server. Bodies pass through (the model rewritten when the
// provider says so); what differs is the URL (Azure: deployment path + api-version query), which
// APIs exist, and the key header. Streams pass through event by event; to count tokens of streams
// the gateway asks for `stream_options.include_usage` and, when the client did not, drops the
// usage-only chunk that adds so the client sees what it asked for.
import type { SnapshotProvider } from '../../../api/snapshot.js'
import { openAIStyleErrorDetail } from '../errors.js'
import { SSE_DONE, type SseEvent, sseData } from '../sse.js'
import {
  type BuildInput,
  type BuiltRequest,
  type ParsedResponse,
  type ProviderAdapter,
  type ProviderApi,
  ProviderStreamError,
  parseObject,
  type StreamTranslator,
} from '../types.js'
import { openAIUsage, type ProviderUsage } from '../usage.js'

const SUFFIX: Readonly<Record<ProviderApi, string>> = {
  chat: 'chat/completions',
  completions: 'completions',
  embeddings: 'embeddings',
  responses: 'responses',
  // Never sent: no OpenAI-type provider is asked for Anthropic's API (supports() says no).
  messages: 'messages',
}

function supported(p: SnapshotProvider): ReadonlySet<ProviderApi> {
  switch (p.type) {
    case 'DeepSeek':
      // DeepSeek's completions endpoint is the FIM beta under another base path; no embeddings.
      return new Set(['chat'])
    case 'HuggingFace':
      // The router serves chat completions; a TGI endpoint also serves completions.
      return new Set(p.huggingFace?.api === 'TGI' ? ['chat', 'completions'] : ['chat'])
    case 'OpenAI':
    case 'OpenAICompatible':
      // The Responses API: OpenAI's own, and compatible servers that implement it (vLLM, SGLang,
      // LiteLLM, …); a server that does not answers 404, passed to the client as it is.
      return new Set(['chat', 'completions', 'embeddings', 'responses'])
    default:
      return new Set(['chat', 'completions', 'embeddings'])
  }
}

export function openAIUrl(p: SnapshotProvider, api: ProviderApi): string {
  if (p.type === 'AzureOpenAI' && p.azure) {
    const d = encodeURIComponent(p.azure.deployment)
    return `${p.baseURL}/openai/deployments/${d}/${SUFFIX[api]}?api-version=${encodeURIComponent(p.azure.apiVersion)}`
  }
  return `${p.baseURL}/${SUFFIX[api]}`
}

function wantsStreamUsage(body: Readonly<Record<string, unknown>>): boolean {
  const so = body['stream_options']
  return (
    typeof so === 'object' &&
    so !== null &&
    (so as Record<string, unknown>)['include_usage'] === true
  )
}

export const openAIAdapter: ProviderAdapter = {
  supports: (p, api) => supported(p).has(api),

  build(input: BuildInput): BuiltRequest {
    const { body, api } = input
    const stream = api !== 'embeddings' && body['stream'] === true
    const rewriteModel = body['model'] !== input.upstreamModel
    // A Responses stream always ends with its usage (response.completed); it has no stream_options.
    const injectUsage = stream && api !== 'responses' && !wantsStreamUsage(body)
    let out: string | Uint8Array = input.raw
    if (rewriteModel || injectUsage) {
      const next: Record<string, unknown> = { ...body, model: input.upstreamModel }
      if (injectUsage) {
        const so = body['stream_options']
        next['stream_options'] = {
          ...(typeof so === 'object' && so !== null ? so : {}),
          include_usage: true,
        }
      }
      out = JSON.stringify(next)
    }
    return {
      url: openAIUrl(input.provider, api),
      headers: {
        'content-type': 'application/json',
        accept: stream ? 'text/event-stream' : 'application/json',
      },
      body: out,
      stream,
    }
  },

  parse(_input, body): ParsedResponse {
    const obj = parseObject(body)
    if (obj === undefined) throw new Error('response body is not a JSON object')
    const usage = openAIUsage(obj['usage'])
    return { body, ...(usage ? { usage } : {}) }
  },

  stream(input): StreamTranslator {
    return input.api === 'responses'
      ? new ResponsesPassThrough()
      : new PassThroughStream(wantsStreamUsage(input.body))
  },

  errorDetail: (_status, text) => openAIStyleErrorDetail(text),
}

class PassThroughStream implements StreamTranslator {
  private readonly clientWantsUsage: boolean
  private done = false
  usage: ProviderUsage | undefined

  constructor(clientWantsUsage: boolean) {
    this.clientWantsUsage = clientWantsUsage
  }

  push(ev: SseEvent): string[] {
    const data = ev.data
    if (data === '[DONE]') {
      this.done = true
      return [SSE_DONE]
    }
    // Only events that can carry usage or an error are parsed; content chunks pass as they are.
    if (data.includes('"usage"') || data.includes('"error"')) {
      const obj = parseObject(data)
      if (obj !== undefined) {
        const err = obj['error']
        if (typeof err === 'object' && err !== null && obj['choices'] === undefined) {
          const msg = (err as Record<string, unknown>)['message']
          throw new ProviderStreamError(
            'provider_stream_error',
            `provider ended the stream with an error: ${typeof msg === 'string' ? msg : 'unknown'}`,
            true,
          )
        }
        const u = openAIUsage(obj['usage'])
        if (u) this.usage = u
        const choices = obj['choices']
        if (u && !this.clientWantsUsage && Array.isArray(choices) && choices.length === 0) return []
      }
    }
    return [sseData(data)]
  }

  end(): string[] {
    if (!this.done) {
      throw new ProviderStreamError(
        'upstream_stream_cut',
        'provider closed the stream before it finished',
        true,
      )
    }
    return []
  }
}

/** Events that end a Responses API stream (it has no `[DONE]`). */
const RESPONSES_END = new Set(['response.completed', 'response.incomplete', 'response.failed'])

/**
 * A Responses API stream, passed through event by event with its names (the SDKs dispatch on the
 * `type` in the data, but clients reading raw SSE see `event:` too). Usage comes from the final
 * event's `response.usage`; an `error` event ends the stream as a provider error.
 */
export class ResponsesPassThrough implements StreamTranslator {
  private done = false
  usage: ProviderUsage | undefined

  push(ev: SseEvent): string[] {
    const data = ev.data
    let type = ev.event
    if (type === undefined || RESPONSES_END.has(type) || type === 'error') {
      const obj = parseObject(data)
      if (obj !== undefined) {
        if (typeof obj['type'] === 'string') type = obj['type']
        const r = obj['response']
        if (typeof r === 'object' && r !== null) {
          const u = openAIUsage((r as Record<string, unknown>)['usage'])
          if (u) this.usage = u
        }
        if (type === 'error') {
          const msg = obj['message']
          throw new ProviderStreamError(
            'provider_stream_error',
            `provider ended the stream with an error: ${typeof msg === 'string' ? msg : 'unknown'}`,
            true,
          )
        }
      }
    }
    if (type !== undefined && RESPONSES_END.has(type)) this.done = true
    return [type !== undefined ? `event: ${type}\n${sseData(data)}` : sseData(data)]
  }

  end(): string[] {
    if (!this.done) {
      throw new ProviderStreamError(
        'upstream_stream_cut',
        'provider closed the stream before it finished',
        true,
      )
    }
    return []
  }
}
