// Gemini native API ⇄ OpenAI: the request side is in request.ts (why native: see there). Answers:
// candidates → choices (text parts joined, thought parts left out, functionCall parts →
// tool_calls), finishReason → finish_reason (safety-type stops → content_filter), usageMetadata →
// usage (thinking tokens count as output, as Google bills them). Streams are SSE frames each
// holding a whole GenerateContentResponse with no terminal sentinel: a stream that ends before a
// finishReason is a cut, reported as an error event.
import type { SnapshotProvider } from '../../../api/snapshot.js'
import { type ProviderErrorDetail, providerErrors } from '../errors.js'
import { SSE_DONE, type SseEvent, sseData } from '../sse.js'
import {
  type BuildInput,
  type BuiltRequest,
  isObj,
  num,
  type ParsedResponse,
  type ProviderAdapter,
  ProviderStreamError,
  parseObject,
  type StreamTranslator,
} from '../types.js'
import { type ProviderUsage, toOpenAIUsage } from '../usage.js'
import { toGeminiEmbedRequest, toGeminiRequest } from './request.js'

type Obj = Record<string, unknown>

const FILTERED = new Set([
  'SAFETY',
  'RECITATION',
  'BLOCKLIST',
  'PROHIBITED_CONTENT',
  'SPII',
  'IMAGE_SAFETY',
  'IMAGE_PROHIBITED_CONTENT',
])

export function geminiFinish(reason: unknown, hasToolCalls: boolean): string {
  if (reason === 'MAX_TOKENS') return 'length'
  if (typeof reason === 'string' && FILTERED.has(reason)) return 'content_filter'
  return hasToolCalls ? 'tool_calls' : 'stop'
}

export function geminiUsage(u: unknown): ProviderUsage | undefined {
  if (!isObj(u)) return undefined
  const thoughts = num(u['thoughtsTokenCount'])
  const cached = num(u['cachedContentTokenCount'])
  return {
    promptTokens: num(u['promptTokenCount']) + num(u['toolUsePromptTokenCount']),
    completionTokens: num(u['candidatesTokenCount']) + thoughts,
    ...(cached > 0 ? { cachedPromptTokens: cached } : {}),
    ...(thoughts > 0 ? { reasoningTokens: thoughts } : {}),
  }
}

function modelPath(p: SnapshotProvider, model: string): string {
  const v = p.gemini?.apiVersion ?? 'v1beta'
  return `${p.baseURL}/${v}/models/${encodeURIComponent(model.replace(/^models\//, ''))}`
}

interface Choice {
  content: string | null
  toolCalls: Obj[]
  finish: string | null
}

/** One candidate's parts: visible text and function calls (ids made up when Gemini sends none). */
function readParts(cand: Obj, callBase: number, prefix: string): { text: string; calls: Obj[] } {
  const content = cand['content']
  const parts = isObj(content) && Array.isArray(content['parts']) ? content['parts'] : []
  let text = ''
  const calls: Obj[] = []
  for (const part of parts as unknown[]) {
    if (!isObj(part) || part['thought'] === true) continue
    if (typeof part['text'] === 'string') text += part['text']
    const fc = part['functionCall']
    if (isObj(fc)) {
      calls.push({
        index: callBase + calls.length,
        id: typeof fc['id'] === 'string' ? fc['id'] : `call_${prefix}_${callBase + calls.length}`,
        type: 'function',
        function: { name: fc['name'], arguments: JSON.stringify(fc['args'] ?? {}) },
      })
    }
  }
  return { text, calls }
}

function wantsStreamUsage(body: Readonly<Record<string, unknown>>): boolean {
  const so = body['stream_options']
  return isObj(so) && so['include_usage'] === true
}

export const geminiAdapter: ProviderAdapter = {
  supports: (_p, api) => api === 'chat' || api === 'embeddings',

  build(input: BuildInput): BuiltRequest {
    const p = input.provider
    const base = modelPath(p, input.upstreamModel)
    if (input.api === 'embeddings') {
      return {
        url: `${base}:batchEmbedContents`,
        headers: { 'content-type': 'application/json', accept: 'application/json' },
        body: JSON.stringify(
          toGeminiEmbedRequest(p, input.body, input.upstreamModel.replace(/^models\//, '')),
        ),
        stream: false,
      }
    }
    const req = toGeminiRequest(p, input.body)
    const stream = input.body['stream'] === true
    return {
      url: stream ? `${base}:streamGenerateContent?alt=sse` : `${base}:generateContent`,
      headers: {
        'content-type': 'application/json',
        accept: stream ? 'text/event-stream' : 'application/json',
      },
      body: JSON.stringify(req),
      stream,
    }
  },

  parse(input, raw): ParsedResponse {
    const r = parseObject(raw)
    if (r === undefined) throw providerErrors.badResponse(input.provider, 'not a JSON object')
    if (input.api === 'embeddings') return parseEmbeddings(input, r)
    const usage = geminiUsage(r['usageMetadata'])
    const cands = Array.isArray(r['candidates']) ? (r['candidates'] as unknown[]) : []
    const choices: Choice[] = cands.filter(isObj).map((c, i) => {
      const { text, calls } = readParts(c, 0, `${i}`)
      return {
        content: text === '' && calls.length > 0 ? null : text,
        toolCalls: calls.map(({ index: _i, ...rest }) => rest),
        finish: geminiFinish(c['finishReason'], calls.length > 0),
      }
    })
    // A blocked prompt has no candidates, only promptFeedback.blockReason.
    if (choices.length === 0)
      choices.push({ content: null, toolCalls: [], finish: 'content_filter' })
    const out = {
      id: typeof r['responseId'] === 'string' ? r['responseId'] : `chatcmpl-${input.requestId}`,
      object: 'chat.completion',
      created: input.now,
      model: typeof r['modelVersion'] === 'string' ? r['modelVersion'] : input.upstreamModel,
      choices: choices.map((c, i) => ({
        index: i,
        message: {
          role: 'assistant',
          content: c.content,
          refusal: null,
          ...(c.toolCalls.length > 0 ? { tool_calls: c.toolCalls } : {}),
        },
        finish_reason: c.finish,
        logprobs: null,
      })),
      ...(usage ? { usage: toOpenAIUsage(usage) } : {}),
    }
    return { body: JSON.stringify(out), ...(usage ? { usage } : {}) }
  },

  stream(input): StreamTranslator {
    return new GeminiStream(input, wantsStreamUsage(input.body))
  },

  errorDetail(_status, text): ProviderErrorDetail {
    let v: unknown = parseObject(text)
    if (v === undefined) {
      try {
        const arr: unknown = JSON.parse(text)
        v = Array.isArray(arr) ? arr[0] : undefined
      } catch {
        return text.trim() === '' ? {} : { message: text.trim().slice(0, 500) }
      }
    }
    const e = isObj(v) ? v['error'] : undefined
    if (!isObj(e)) return {}
    const details = Array.isArray(e['details']) ? e['details'] : []
    const keyInvalid = details.some(
      (d: unknown) =>
        isObj(d) && (d['reason'] === 'API_KEY_INVALID' || d['reason'] === 'API_KEY_EXPIRED'),
    )
    const status = e['status']
    return {
      ...(typeof e['message'] === 'string' ? { message: e['message'] } : {}),
      ...(status === 'INVALID_ARGUMENT' || status === 'FAILED_PRECONDITION'
        ? { type: 'invalid_request_error' }
        : {}),
      ...(keyInvalid || status === 'UNAUTHENTICATED' ? { credentialRejected: true } : {}),
    }
  },
}

function parseEmbeddings(input: BuildInput, r: Obj): ParsedResponse {
  const list = Array.isArray(r['embeddings']) ? (r['embeddings'] as unknown[]) : undefined
  if (list === undefined) throw providerErrors.badResponse(input.provider, 'no embeddings')
  const base64 = input.body['encoding_format'] === 'base64'
  const data = list.map((e, index) => {
    const values = isObj(e) && Array.isArray(e['values']) ? (e['values'] as number[]) : []
    return {
      object: 'embedding',
      index,
      // The openai SDK asks for base64 by default: little-endian float32, as OpenAI sends it.
      embedding: base64 ? Buffer.from(new Float32Array(values).buffer).toString('base64') : values,
    }
  })
  const out = {
    object: 'list',
    data,
    model: input.upstreamModel,
    // batchEmbedContents reports no token counts.
    usage: { prompt_tokens: 0, total_tokens: 0 },
  }
  return { body: JSON.stringify(out) }
}

class GeminiStream implements StreamTranslator {
  private readonly input: BuildInput
  private readonly clientWantsUsage: boolean
  private id: string
  private model: string
  /** candidate index → number of tool calls so far / finished. */
  private readonly calls = new Map<number, number>()
  private readonly started = new Set<number>()
  private readonly finished = new Set<number>()
  private blocked = false
  usage: ProviderUsage | undefined

  constructor(input: BuildInput, clientWantsUsage: boolean) {
    this.input = input
    this.clientWantsUsage = clientWantsUsage
    this.id = `chatcmpl-${input.requestId}`
    this.model = input.upstreamModel
  }

  private chunk(index: number, delta: Obj, finish: string | null = null): string {
    return sseData(
      JSON.stringify({
        id: this.id,
        object: 'chat.completion.chunk',
        created: this.input.now,
        model: this.model,
        choices: [{ index, delta, finish_reason: finish, logprobs: null }],
      }),
    )
  }

  push(ev: SseEvent): string[] {
    const r = parseObject(ev.data)
    if (r === undefined) return []
    const err = r['error']
    if (isObj(err)) {
      const code = num(err['code'])
      throw new ProviderStreamError(
        'provider_stream_error',
        `provider "${this.input.provider.key}" (Gemini) ended the stream with an error: ${typeof err['message'] === 'string' ? err['message'] : String(err['status'])}`,
        code >= 500 || code === 429,
      )
    }
    if (typeof r['responseId'] === 'string') this.id = r['responseId']
    if (typeof r['modelVersion'] === 'string') this.model = r['modelVersion']
    const u = geminiUsage(r['usageMetadata'])
    if (u) this.usage = u
    const out: string[] = []
    const cands = Array.isArray(r['candidates']) ? (r['candidates'] as unknown[]) : []
    if (
      cands.length === 0 &&
      isObj(r['promptFeedback']) &&
      r['promptFeedback']['blockReason'] !== undefined
    ) {
      this.blocked = true
      out.push(this.chunk(0, { role: 'assistant', content: '' }))
      out.push(this.chunk(0, {}, 'content_filter'))
      return out
    }
    cands.forEach((c, pos) => {
      if (!isObj(c)) return
      const index = typeof c['index'] === 'number' ? c['index'] : pos
      const base = this.calls.get(index) ?? 0
      const { text, calls } = readParts(c, base, `${index}`)
      this.calls.set(index, base + calls.length)
      const delta: Obj = {}
      if (!this.started.has(index)) {
        this.started.add(index)
        delta['role'] = 'assistant'
      }
      if (text !== '' || delta['role'] !== undefined) delta['content'] = text
      if (calls.length > 0) delta['tool_calls'] = calls
      if (Object.keys(delta).length > 0) out.push(this.chunk(index, delta))
      if (c['finishReason'] !== undefined && c['finishReason'] !== 'FINISH_REASON_UNSPECIFIED') {
        this.finished.add(index)
        out.push(
          this.chunk(index, {}, geminiFinish(c['finishReason'], (this.calls.get(index) ?? 0) > 0)),
        )
      }
    })
    return out
  }

  end(): string[] {
    const complete =
      this.blocked ||
      (this.started.size > 0 && [...this.started].every((i) => this.finished.has(i)))
    if (!complete) {
      throw new ProviderStreamError(
        'upstream_stream_cut',
        'provider closed the stream before a finish reason',
        true,
      )
    }
    const out: string[] = []
    if (this.clientWantsUsage && this.usage) {
      out.push(
        sseData(
          JSON.stringify({
            id: this.id,
            object: 'chat.completion.chunk',
            created: this.input.now,
            model: this.model,
            choices: [],
            usage: toOpenAIUsage(this.usage),
          }),
        ),
      )
    }
    out.push(SSE_DONE)
    return out
  }
}
