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
}

function supported(p: SnapshotProvider): ReadonlySet<ProviderApi> {
  switch (p.type) {
    case 'DeepSeek':
      // DeepSeek's completions endpoint is the FIM beta under another base path; no embeddings.
      return new Set(['chat'])
    case 'HuggingFace':
      // The router serves chat completions; a TGI endpoint also serves completions.
      return new Set(p.huggingFace?.api === 'TGI' ? ['chat', 'completions'] : ['chat'])
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
    const injectUsage = stream && !wantsStreamUsage(body)
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
    return new PassThroughStream(wantsStreamUsage(input.body))
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
