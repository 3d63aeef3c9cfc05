// Gemini API simulator (generativelanguage.googleapis.com shape): POST
// /v1beta/models/{model}:generateContent, :streamGenerateContent?alt=sse (SSE frames each holding a
// whole GenerateContentResponse, CRLF-terminated, no end sentinel) and :batchEmbedContents; the key
// in `x-goog-api-key`; Google's error body (`{"error":{"code","message","status","details"}}`),
// including the 400 INVALID_ARGUMENT + API_KEY_INVALID it answers for a bad key. There is no npm
// SDK in this project for Gemini, so the shapes below follow the REST reference by hand.
import type { ServerResponse } from 'node:http'
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

export interface GeminiSimOptions {
  readonly host: string
  readonly name?: string
}

interface Part {
  text?: string
  thought?: boolean
  functionCall?: { name: string; args: Record<string, unknown>; id?: string }
  functionResponse?: { name: string; response: Record<string, unknown>; id?: string }
  inlineData?: { mimeType: string; data: string }
}
interface Content {
  role?: string
  parts?: Part[]
}
interface GenerateContentRequest {
  contents?: Content[]
  systemInstruction?: { parts?: Part[] }
  tools?: { functionDeclarations?: { name: string }[] }[]
  toolConfig?: { functionCallingConfig?: { mode?: string } }
  generationConfig?: { maxOutputTokens?: number; stopSequences?: string[]; candidateCount?: number }
}

const STATUS: Readonly<Record<number, string>> = {
  400: 'INVALID_ARGUMENT',
  403: 'PERMISSION_DENIED',
  404: 'NOT_FOUND',
  429: 'RESOURCE_EXHAUSTED',
  500: 'INTERNAL',
  503: 'UNAVAILABLE',
}

function error(
  res: ServerResponse,
  code: number,
  message: string,
  details?: unknown[],
  headers: Record<string, string> = {},
): void {
  json(
    res,
    code,
    {
      error: { code, message, status: STATUS[code] ?? 'UNKNOWN', ...(details ? { details } : {}) },
    },
    headers,
  )
}

const REQUEST_FIELDS = new Set([
  'contents',
  'systemInstruction',
  'tools',
  'toolConfig',
  'generationConfig',
  'safetySettings',
  'cachedContent',
])

function invalid(r: GenerateContentRequest): string | undefined {
  for (const k of Object.keys(r))
    if (!REQUEST_FIELDS.has(k))
      return `Invalid JSON payload received. Unknown name "${k}": Cannot find field.`
  if (!Array.isArray(r.contents) || r.contents.length === 0)
    return '* GenerateContentRequest.contents: contents is not specified'
  const called = new Set<string>()
  for (const [i, c] of r.contents.entries()) {
    if (c.role !== 'user' && c.role !== 'model')
      return `* GenerateContentRequest.contents[${i}].role: must be user or model`
    if (!Array.isArray(c.parts) || c.parts.length === 0)
      return `* GenerateContentRequest.contents[${i}].parts: contents.parts must not be empty.`
    for (const p of c.parts) {
      if (p.functionCall) called.add(p.functionCall.name)
      if (p.functionResponse && !called.has(p.functionResponse.name))
        return `* GenerateContentRequest.contents[${i}]: function response ${p.functionResponse.name} has no matching function call`
    }
  }
  return undefined
}

function textOf(parts: Part[] | undefined): string {
  return (parts ?? [])
    .map((p) => p.text ?? '')
    .filter((s) => s !== '')
    .join(' ')
}

export async function startGeminiSim(opts: GeminiSimOptions): Promise<SimServer> {
  const name = opts.name ?? 'gemini'
  return startSim(opts.host, async (req, res, rec, state) => {
    const m =
      /^\/(v1beta|v1)\/models\/([^/:]+):(generateContent|streamGenerateContent|batchEmbedContents)$/.exec(
        rec.path,
      )
    if (req.method !== 'POST' || !m) return error(res, 404, `Method not found: ${rec.path}`)
    const key = req.headers['x-goog-api-key']
    if (typeof key !== 'string' || !state.keys.has(key)) {
      return error(res, 400, 'API key not valid. Please pass a valid API key.', [
        {
          '@type': 'type.googleapis.com/google.rpc.ErrorInfo',
          reason: 'API_KEY_INVALID',
          domain: 'googleapis.com',
          metadata: { service: 'generativelanguage.googleapis.com' },
        },
      ])
    }
    const scripted = state.takeFailure()
    if (scripted) {
      return error(
        res,
        scripted.status,
        scripted.status === 429
          ? 'Resource has been exhausted (e.g. check quota).'
          : 'The model is overloaded. Please try again later.',
        undefined,
        scripted.retryAfter !== undefined ? { 'retry-after': scripted.retryAfter } : {},
      )
    }
    const model = m[2] ?? ''
    if (m[3] === 'batchEmbedContents') return embed(res, rec.body, model)
    const r = rec.body as GenerateContentRequest
    const why = typeof r === 'object' && r !== null ? invalid(r) : 'Invalid JSON payload'
    if (why !== undefined) return error(res, 400, why)
    const stream = m[3] === 'streamGenerateContent'
    if (stream && rec.query.get('alt') !== 'sse')
      return error(res, 400, 'this simulator streams only with alt=sse')
    const contents = r.contents ?? []
    const last = contents[contents.length - 1]
    const responses = (last?.parts ?? []).filter((p) => p.functionResponse)
    const decls = r.tools?.flatMap((t) => t.functionDeclarations ?? []) ?? []
    const promptTokens =
      contents.reduce((n, c) => n + countTokens(textOf(c.parts)), 0) +
      countTokens(textOf(r.systemInstruction?.parts))
    const usage = (out: number) => ({
      promptTokenCount: promptTokens,
      candidatesTokenCount: out,
      thoughtsTokenCount: 3,
      totalTokenCount: promptTokens + out + 3,
    })
    if (
      decls.length > 0 &&
      responses.length === 0 &&
      r.toolConfig?.functionCallingConfig?.mode !== 'NONE'
    ) {
      const call: Part = {
        functionCall: { name: decls[0]?.name ?? 'tool', args: { location: 'Paris' } },
      }
      const body = {
        candidates: [{ content: { role: 'model', parts: [call] }, finishReason: 'STOP', index: 0 }],
        usageMetadata: usage(5),
        modelVersion: `${model}-001`,
        responseId: 'resp-sim',
      }
      if (!stream) return json(res, 200, body)
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      res.end(`data: ${JSON.stringify(body)}\r\n\r\n`)
      return
    }
    let text =
      responses.length > 0
        ? `The tool said: ${JSON.stringify(responses[0]?.functionResponse?.response)}`
        : replyTo(name, textOf(last?.parts))
    let finish = 'STOP'
    const max = r.generationConfig?.maxOutputTokens
    const words = pieces(text)
    if (max !== undefined && words.length > max) {
      text = words.slice(0, max).join('')
      finish = 'MAX_TOKENS'
    }
    if (textOf(last?.parts).includes('forbidden')) {
      text = ''
      finish = 'SAFETY'
    }
    const n = r.generationConfig?.candidateCount ?? 1
    if (!stream) {
      return json(res, 200, {
        candidates: Array.from({ length: n }, (_, index) => ({
          content: {
            role: 'model',
            parts: [{ text: 'thinking about it', thought: true }, { text }],
          },
          finishReason: finish,
          index,
          safetyRatings: [],
        })),
        usageMetadata: usage(countTokens(text) * n),
        modelVersion: `${model}-001`,
        responseId: 'resp-sim',
      })
    }
    await streamText(res, state, model, pieces(text), finish, usage(countTokens(text)))
  })
}

async function streamText(
  res: ServerResponse,
  state: SimState,
  model: string,
  words: string[],
  finish: string,
  usage: Record<string, number>,
): Promise<void> {
  res.writeHead(200, { 'content-type': 'text/event-stream' })
  const w = new EventWriter(res, state)
  const onError = () =>
    `data: ${JSON.stringify({ error: { code: 503, message: 'The model is overloaded.', status: 'UNAVAILABLE' } })}\r\n\r\n`
  // Gemini sends a few tokens per frame; the last frame carries finishReason and final usage.
  const frames: string[][] = []
  for (let i = 0; i < words.length; i += 2) frames.push(words.slice(i, i + 2))
  if (frames.length === 0) frames.push([])
  for (const [i, f] of frames.entries()) {
    const lastFrame = i === frames.length - 1
    const body = {
      candidates: [
        {
          content: { role: 'model', parts: [{ text: f.join('') }] },
          ...(lastFrame ? { finishReason: finish } : {}),
          index: 0,
        },
      ],
      usageMetadata: lastFrame ? usage : { promptTokenCount: usage['promptTokenCount'] },
      modelVersion: `${model}-001`,
      responseId: 'resp-sim',
    }
    if (!(await w.write(`data: ${JSON.stringify(body)}\r\n\r\n`, onError))) return
  }
  res.end()
}

function embed(res: ServerResponse, body: unknown, model: string): void {
  const reqs = (
    body as {
      requests?: { model?: string; content?: { parts?: Part[] }; outputDimensionality?: number }[]
    }
  ).requests
  if (!Array.isArray(reqs) || reqs.length === 0) {
    error(res, 400, '* BatchEmbedContentsRequest.requests: requests is not specified')
    return
  }
  const wrong = reqs.find((r) => r.model !== `models/${model}`)
  if (wrong !== undefined) {
    error(
      res,
      400,
      `* BatchEmbedContentsRequest.requests: model ${String(wrong.model)} does not match models/${model}`,
    )
    return
  }
  json(res, 200, {
    embeddings: reqs.map((r, i) => ({
      values: Array.from(
        { length: r.outputDimensionality ?? 4 },
        (_, k) => (textOf(r.content?.parts).length + i + k) / 100,
      ),
    })),
  })
}
