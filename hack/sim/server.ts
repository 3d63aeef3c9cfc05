// One simulated engine = one node:http server on its own address. No framework: in zero-latency
// mode this is the backend of the proxy benchmark and must cost as little as possible.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Engine, type EngineTicket, type GenerationResult } from './engine.js'
import { codeForStatus, SimError } from './errors.js'
import {
  type KvEventsOptions,
  type KvEventsPublisher,
  peekPrompt,
  startKvEvents,
} from './kv-events.js'
import { METRICS_FORMATS, type MetricsFormat, SimMetrics } from './metrics.js'
import {
  fullResponse,
  type GenerationRequest,
  type ModelCatalog,
  parseChatRequest,
  parseCompletionRequest,
  parseEmbeddingRequest,
  parseJsonBody,
  type ResponseMeta,
  roleChunk,
  streamChunk,
  usageChunk,
  usageOf,
} from './openai.js'
import {
  BOOTSTRAP_WAIT_MS,
  type PdCounters,
  PdState,
  roomOf,
  SIM_ROLES,
  type SimRole,
} from './pd.js'
import {
  parseResponsesRequest,
  ResponsesEvents,
  responseObject,
  responsesUsage,
} from './responses.js'
import { createRng, generateWords, hash32, pseudoEmbedding } from './rng.js'
import { tokenize } from './tokenizer.js'

/**
 * The listen backlog of every instance: uvicorn's default (`--backlog 2048`), which vLLM's and
 * SGLang's OpenAI servers run under. Node's default is 511: a gateway opening hundreds of
 * connections while the engine's loop was busy overflowed it, and the kernel dropped the SYNs;
 * the client's retry a second later then met a 1 s connect timeout (the 504s of 5,000 streams).
 * The kernel caps it at net.core.somaxconn (4096 on Linux >= 5.4).
 */
export const SIM_LISTEN_BACKLOG = 2048

export interface SimFailures {
  /** Probability (0..1) that an inference request fails with an OpenAI-shaped 500; drawn from the seeded RNG. */
  errorRate: number
  /** Wall-clock delay before anything is answered (not scaled by timeScale: it is for gateway timeouts). */
  stallMs: number
  /** Destroy the socket after this many SSE chunks (non-stream: mid-body); null = off. */
  dropMidStream: number | null
  /** Answer every inference request with this status (e.g. 429, 503); null = off. */
  forceStatus: number | null
  /** GET /health answers 503. */
  unhealthy: boolean
}

export interface SimOptions {
  name: string
  /** Loopback address such as 127.0.0.2. */
  host: string
  /** 0 = ephemeral. */
  port: number
  model: string
  metricsFormat: MetricsFormat
  seed?: number
  /** Multiplies every modelled latency (0.1 = ten times faster). */
  timeScale?: number
  /** No modelled waiting at all (benchmarks); queueing and caching are still accounted. */
  zeroLatency?: boolean
  prefillOverheadMs?: number
  prefillMsPerToken?: number
  decodeMsPerToken?: number
  /** ITL grows by this fraction per extra running sequence. */
  batchSlowdown?: number
  maxNumSeqs?: number
  numGpuBlocks?: number
  blockSize?: number
  maxModelLen?: number
  /** Output length when the request gives no max_tokens. */
  defaultMaxTokens?: number
  embeddingDim?: number
  loras?: readonly string[]
  maxLoras?: number
  loraLoadMs?: number
  failures?: Partial<SimFailures>
  /** Prefill/decode role (hack/sim/pd.ts); default both (an aggregated engine). */
  role?: SimRole
  /** KV received from a prefill pod: ms per prompt token not cached here (default 0.02). */
  kvTransferMsPerToken?: number
  /** Prefill stalls decode on this engine (engine.ts); default false, the original model. */
  prefillInterference?: boolean
  /** Publish KV events as vLLM's ZMQ publisher does (hack/sim/kv-events.ts); default off. */
  kvEvents?: KvEventsOptions | null
}

export type ResolvedSimOptions = Required<Omit<SimOptions, 'failures'>> & { failures: SimFailures }

export interface SimStats {
  name: string
  /** Inference requests received (chat, completions, embeddings). */
  requests: number
  completed: number
  /** Requests answered with an injected failure (errorRate, forceStatus, drop). */
  injectedFailures: number
  running: number
  waiting: number
  kvUsage: number
  kvEvictions: number
  prefixQueryTokens: number
  prefixHitTokens: number
  promptTokens: number
  generationTokens: number
  aborted: number
  loadedLoras: string[]
  loraLoads: number
  role: SimRole
  /** Prefill/decode handshakes (hack/sim/pd.ts). */
  pd: PdCounters
}

export interface SimHandle {
  name: string
  url: string
  host: string
  port: number
  setFailures(f: Partial<SimFailures>): void
  stats(): SimStats
  /** W3C `traceparent` of the last POST requests (newest last, at most 64): trace propagation tests. */
  traceparents(): readonly string[]
  /** The KV-event publisher when `kvEvents` was given. */
  kvEvents: KvEventsPublisher | null
  close(): Promise<void>
}

const NO_FAILURES: SimFailures = {
  errorRate: 0,
  stallMs: 0,
  dropMidStream: null,
  forceStatus: null,
  unhealthy: false,
}
const MAX_BODY_BYTES = 8 * 1024 * 1024

function bad(message: string): SimError {
  return new SimError(400, 'invalid_sim_options', message)
}

function checkNum(name: string, v: number, min: number, integer: boolean): number {
  if (!Number.isFinite(v) || v < min || (integer && !Number.isInteger(v))) {
    throw bad(`${name} must be ${integer ? 'an integer' : 'a number'} >= ${min}, got ${v}`)
  }
  return v
}

/** Validate a partial failure config (used by setFailures and POST /sim/failures). */
export function validateFailures(f: unknown): Partial<SimFailures> {
  if (typeof f !== 'object' || f === null || Array.isArray(f)) {
    throw new SimError(400, 'invalid_failures', 'failures must be a JSON object')
  }
  const o = f as Record<string, unknown>
  const out: Partial<SimFailures> = {}
  for (const [k, v] of Object.entries(o)) {
    const fail = (why: string) => new SimError(400, 'invalid_failures', `${k}: ${why}`)
    if (k === 'errorRate') {
      if (typeof v !== 'number' || !(v >= 0 && v <= 1)) throw fail('must be a number in [0, 1]')
      out.errorRate = v
    } else if (k === 'stallMs') {
      if (typeof v !== 'number' || !(v >= 0) || !Number.isFinite(v))
        throw fail('must be a number >= 0')
      out.stallMs = v
    } else if (k === 'dropMidStream') {
      if (v !== null && (typeof v !== 'number' || !Number.isInteger(v) || v < 0))
        throw fail('must be null or an integer >= 0')
      out.dropMidStream = v
    } else if (k === 'forceStatus') {
      if (v !== null && (typeof v !== 'number' || !Number.isInteger(v) || v < 400 || v > 599)) {
        throw fail('must be null or an HTTP status 400..599')
      }
      out.forceStatus = v
    } else if (k === 'unhealthy') {
      if (typeof v !== 'boolean') throw fail('must be a boolean')
      out.unhealthy = v
    } else {
      throw new SimError(400, 'invalid_failures', `unknown failure field ${k}`)
    }
  }
  return out
}

export function resolveOptions(o: SimOptions): ResolvedSimOptions {
  if (o.name === '') throw bad('name must not be empty')
  if (o.model === '') throw bad('model must not be empty')
  if (!METRICS_FORMATS.includes(o.metricsFormat))
    throw bad(`metricsFormat must be one of ${METRICS_FORMATS.join(', ')}`)
  const loras = [...(o.loras ?? [])]
  if (loras.includes(o.model)) throw bad('a LoRA adapter cannot share the base model name')
  const r: ResolvedSimOptions = {
    name: o.name,
    host: o.host,
    port: checkNum('port', o.port, 0, true),
    model: o.model,
    metricsFormat: o.metricsFormat,
    seed: checkNum('seed', o.seed ?? 42, 0, true),
    timeScale: checkNum('timeScale', o.timeScale ?? 1, 0, false),
    zeroLatency: o.zeroLatency ?? false,
    kvEvents: o.kvEvents ?? null,
    prefillOverheadMs: checkNum('prefillOverheadMs', o.prefillOverheadMs ?? 10, 0, false),
    prefillMsPerToken: checkNum('prefillMsPerToken', o.prefillMsPerToken ?? 0.1, 0, false),
    decodeMsPerToken: checkNum('decodeMsPerToken', o.decodeMsPerToken ?? 15, 0, false),
    batchSlowdown: checkNum('batchSlowdown', o.batchSlowdown ?? 0.02, 0, false),
    maxNumSeqs: checkNum('maxNumSeqs', o.maxNumSeqs ?? 16, 1, true),
    numGpuBlocks: checkNum('numGpuBlocks', o.numGpuBlocks ?? 2048, 1, true),
    blockSize: checkNum('blockSize', o.blockSize ?? 16, 1, true),
    maxModelLen: checkNum('maxModelLen', o.maxModelLen ?? 8192, 2, true),
    defaultMaxTokens: checkNum('defaultMaxTokens', o.defaultMaxTokens ?? 16, 1, true),
    embeddingDim: checkNum('embeddingDim', o.embeddingDim ?? 384, 1, true),
    loras,
    maxLoras: checkNum('maxLoras', o.maxLoras ?? 1, 1, true),
    loraLoadMs: checkNum('loraLoadMs', o.loraLoadMs ?? 50, 0, false),
    role: checkRole(o.role ?? 'both'),
    kvTransferMsPerToken: checkNum(
      'kvTransferMsPerToken',
      o.kvTransferMsPerToken ?? 0.02,
      0,
      false,
    ),
    prefillInterference: o.prefillInterference ?? false,
    failures: { ...NO_FAILURES, ...validateFailures(o.failures ?? {}) },
  }
  return r
}

function checkRole(r: SimRole): SimRole {
  if (!SIM_ROLES.includes(r)) throw bad(`role must be one of ${SIM_ROLES.join(', ')}, got ${r}`)
  return r
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body)
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
  })
  res.end(text)
}

function sendError(res: ServerResponse, e: unknown): void {
  const err =
    e instanceof SimError
      ? e
      : new SimError(500, 'internal_error', e instanceof Error ? e.message : String(e))
  if (res.headersSent) {
    res.destroy()
    return
  }
  sendJson(res, err.status, err.toBody())
}

/**
 * Abort a response mid-body the way a crashing engine does: whatever was written still reaches the
 * client (socket.end flushes, res.destroy would discard it), then the connection closes without the
 * terminating chunk, so the client sees a truncated body.
 */
function cutConnection(res: ServerResponse): void {
  const sock = res.socket
  if (sock === null) {
    res.destroy()
    return
  }
  sock.end(() => sock.destroy())
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    req.on('data', (c: Buffer) => {
      size += c.length
      if (size > MAX_BODY_BYTES) {
        reject(new SimError(413, 'body_too_large', `Request body exceeds ${MAX_BODY_BYTES} bytes.`))
        req.destroy()
        return
      }
      chunks.push(c)
    })
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')))
    req.on('error', reject)
    req.on('close', () => {
      if (!req.complete) reject(new SimError(499, 'client_closed', 'client closed the request'))
    })
  })
}

export async function startSimulator(opts: SimOptions): Promise<SimHandle> {
  const o = resolveOptions(opts)
  let failures: SimFailures = { ...o.failures }
  const failRng = createRng(hash32('failures', o.seed))
  const metrics = new SimMetrics({
    model: o.model,
    format: o.metricsFormat,
    maxModelLen: o.maxModelLen,
    loraEnabled: o.loras.length > 0,
  })
  const engine = new Engine(
    {
      timeScale: o.timeScale,
      zeroLatency: o.zeroLatency,
      prefillOverheadMs: o.prefillOverheadMs,
      prefillMsPerToken: o.prefillMsPerToken,
      decodeMsPerToken: o.decodeMsPerToken,
      batchSlowdown: o.batchSlowdown,
      maxNumSeqs: o.maxNumSeqs,
      numGpuBlocks: o.numGpuBlocks,
      blockSize: o.blockSize,
      maxModelLen: o.maxModelLen,
      loras: o.loras,
      maxLoras: o.maxLoras,
      loraLoadMs: o.loraLoadMs,
      prefillInterference: o.prefillInterference,
      kvTransferMsPerToken: o.kvTransferMsPerToken,
    },
    metrics,
  )
  const pd = new PdState(o.role, o.name, o.host, o.seed)
  const catalog: ModelCatalog = {
    baseModel: o.model,
    isKnownAdapter: (n) => engine.lora.isKnown(n),
  }
  const counters = { requests: 0, completed: 0, injected: 0, ids: 0 }
  const timers = new Set<{ timer: NodeJS.Timeout; resolve: () => void }>()

  /** A cancellable wait; resolves early on close(). Returns false if the response closed meanwhile. */
  const wait = (ms: number, res: ServerResponse): Promise<boolean> =>
    new Promise((resolve) => {
      const entry = {
        timer: setTimeout(() => {
          timers.delete(entry)
          resolve(!res.destroyed)
        }, ms),
        resolve: () => resolve(false),
      }
      timers.add(entry)
    })

  const nextMeta = (prefix: string, model: string): ResponseMeta => {
    counters.ids++
    const id = `${prefix}-${hash32(o.name, o.seed).toString(16).padStart(8, '0')}${counters.ids.toString(16).padStart(12, '0')}`
    return { id, created: Math.floor(Date.now() / 1000), model }
  }

  /** Shared front of every inference route: stall, forced status, random error. */
  const frontDoor = async (res: ServerResponse): Promise<boolean> => {
    counters.requests++
    metrics.requestReceived()
    if (failures.stallMs > 0 && !(await wait(failures.stallMs, res))) return false
    if (failures.forceStatus !== null) {
      counters.injected++
      metrics.requestFailed(
        failures.forceStatus === 429 || failures.forceStatus === 503 ? 'overloaded' : 'generation',
      )
      const s = failures.forceStatus
      throw new SimError(s, codeForStatus(s), `Injected failure: status ${s}.`)
    }
    if (failures.errorRate > 0 && failRng() < failures.errorRate) {
      counters.injected++
      metrics.requestFailed('generation')
      throw new SimError(500, 'internal_server_error', 'Injected failure: internal server error.')
    }
    return true
  }

  const generate = async (
    req: IncomingMessage,
    res: ServerResponse,
    kind: GenerationRequest['kind'] | 'responses',
  ) => {
    const text = await readBody(req)
    if (!(await frontDoor(res))) return
    let parsed: GenerationRequest
    let body: Record<string, unknown>
    try {
      body = parseJsonBody(text)
      parsed =
        kind === 'chat'
          ? parseChatRequest(body, catalog)
          : kind === 'responses'
            ? parseResponsesRequest(body, catalog)
            : parseCompletionRequest(body, catalog)
    } catch (e) {
      metrics.requestFailed('validation')
      throw e
    }
    const promptTokens = tokenize(parsed.prompt)
    const n = parsed.maxTokens ?? o.defaultMaxTokens
    // Refused before generating anything: max_tokens 1e308 must not make the simulator allocate it.
    if (n > o.maxModelLen) {
      metrics.requestFailed('validation')
      throw new SimError(
        400,
        'context_length_exceeded',
        `max_tokens ${n} exceeds this model's maximum context length of ${o.maxModelLen} tokens.`,
        'max_tokens',
      )
    }
    // PD: an SGLang prefill engine stops after the prompt (one token); its room exists from now.
    const room = o.role === 'prefill' ? roomOf(body) : undefined
    if (room !== undefined) pd.openRoom(room)
    let output = generateWords(o.seed, `${parsed.model}\u0000${parsed.prompt}`, n)
    if (room !== undefined) output = output.slice(0, 1)
    const gone = new AbortController()
    res.on('close', () => {
      gone.abort()
      if (room !== undefined && !res.writableEnded) pd.closeRoom(room, undefined)
    })
    // PD: where this prompt's KV comes from (a prefill pod named by the request, or computed).
    const source = await pd.source(body, req, parsed.prompt, gone.signal).catch((e: unknown) => {
      metrics.requestFailed('generation')
      throw e
    })
    if (res.destroyed) return
    const kvTransfer = source === 'transfer' ? { kvTransfer: true } : {}
    /** A finished prompt (not on decode-only pods): kept for decode pods, room closed. */
    const prefilled = (r: GenerationResult): Record<string, unknown> | undefined => {
      if (o.role === 'decode') return undefined
      if (room !== undefined) pd.closeRoom(room, r.promptTokens)
      return pd.prefilled(body, parsed.prompt, r.promptTokens, o.blockSize)
    }
    const meta = nextMeta(
      kind === 'chat' ? 'chatcmpl' : kind === 'responses' ? 'resp' : 'cmpl',
      parsed.model,
    )
    // Responses API streams are named events (already framed), not `data:` chunks.
    const events = kind === 'responses' ? new ResponsesEvents(meta, parsed.maxTokens) : undefined
    const drop = failures.dropMidStream
    const submit: Engine['submit'] = (spec, sink) => {
      try {
        return engine.submit(spec, sink)
      } catch (e) {
        metrics.requestFailed('validation')
        throw e
      }
    }
    let ticket: EngineTicket | null = null
    let cancelPending = false
    const cancel = () => {
      if (ticket !== null) ticket.cancel()
      else cancelPending = true
    }
    res.on('close', () => {
      if (!res.writableEnded) cancel()
    })
    const finishCommon = () => {
      counters.completed++
    }

    if (parsed.stream) {
      let chunks = 0
      let dropped = false
      const head = () => {
        if (!res.headersSent) {
          res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
        }
      }
      const dropNow = () => {
        dropped = true
        counters.injected++
        cancel()
        cutConnection(res)
      }
      const write = (obj: unknown) => {
        if (dropped || res.destroyed) return
        if (drop !== null && chunks >= drop) {
          head()
          dropNow()
          return
        }
        head()
        res.write(typeof obj === 'string' ? obj : `data: ${JSON.stringify(obj)}\n\n`)
        chunks++
        if (drop !== null && chunks >= drop) dropNow()
      }
      ticket = submit(
        {
          lora: parsed.lora,
          promptTokens,
          outputTokens: output,
          finishReason: parsed.maxTokens !== null ? 'length' : 'stop',
          streaming: true,
          ...kvTransfer,
        },
        {
          token: (t, i) => {
            if (events !== undefined) {
              write(i === 0 ? events.start() + events.delta(t) : events.delta(t))
              return
            }
            if (i === 0 && kind === 'chat') write(roleChunk(meta))
            write(
              streamChunk(
                parsed.kind,
                meta,
                t,
                i === output.length - 1 ? (parsed.maxTokens !== null ? 'length' : 'stop') : null,
              ),
            )
          },
          finish: (r: GenerationResult) => {
            prefilled(r)
            if (events !== undefined) {
              if (r.completionTokens === 0) write(events.start())
              write(
                events.finish(
                  r.finishReason,
                  responsesUsage(r.promptTokens, r.completionTokens, r.cachedTokens),
                ),
              )
              if (dropped || res.destroyed) return
              finishCommon()
              res.end()
              return
            }
            if (parsed.includeUsage)
              write(
                usageChunk(
                  parsed.kind,
                  meta,
                  usageOf(r.promptTokens, r.completionTokens, r.cachedTokens),
                ),
              )
            if (dropped || res.destroyed) return
            finishCommon()
            head()
            res.end('data: [DONE]\n\n')
          },
        },
      )
      if (cancelPending) ticket.cancel()
      // Headers go out at once (as Starlette's StreamingResponse does); the first data waits for TTFT.
      if (!res.writableEnded && !res.destroyed) {
        head()
        res.flushHeaders()
        if (drop === 0) dropNow()
      }
      return
    }

    ticket = submit(
      {
        lora: parsed.lora,
        promptTokens,
        outputTokens: output,
        finishReason: parsed.maxTokens !== null ? 'length' : 'stop',
        streaming: false,
        ...kvTransfer,
      },
      {
        token: () => {},
        finish: (r: GenerationResult) => {
          const kvParams = prefilled(r)
          if (res.destroyed) return
          const answer = JSON.stringify(
            events !== undefined
              ? responseObject(
                  meta,
                  output.join(''),
                  r.finishReason,
                  responsesUsage(r.promptTokens, r.completionTokens, r.cachedTokens),
                  parsed.maxTokens,
                )
              : {
                  ...fullResponse(
                    parsed.kind,
                    meta,
                    output.join(''),
                    r.finishReason,
                    usageOf(r.promptTokens, r.completionTokens, r.cachedTokens),
                  ),
                  // vLLM answers a do_remote_decode prefill with where to pull its blocks.
                  ...(kvParams !== undefined ? { kv_transfer_params: kvParams } : {}),
                },
          )
          if (drop !== null) {
            counters.injected++
            res.writeHead(200, {
              'content-type': 'application/json',
              'content-length': Buffer.byteLength(answer),
            })
            res.write(answer.slice(0, Math.floor(answer.length / 2)))
            cutConnection(res)
            return
          }
          finishCommon()
          res.writeHead(200, {
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(answer),
          })
          res.end(answer)
        },
      },
    )
    if (cancelPending) ticket.cancel()
  }

  const embeddings = async (req: IncomingMessage, res: ServerResponse) => {
    const text = await readBody(req)
    if (!(await frontDoor(res))) return
    let parsed: ReturnType<typeof parseEmbeddingRequest>
    try {
      parsed = parseEmbeddingRequest(parseJsonBody(text), catalog)
    } catch (e) {
      metrics.requestFailed('validation')
      throw e
    }
    const dim = parsed.dimensions ?? o.embeddingDim
    let tokens = 0
    for (const s of parsed.inputs) tokens += tokenize(s).length
    // Embedding is a prefill-only pass; it is paced but does not occupy a decode slot.
    const ms = o.zeroLatency
      ? 0
      : (o.prefillOverheadMs + tokens * o.prefillMsPerToken) * o.timeScale
    if (ms > 0 && !(await wait(ms, res))) return
    const meta = nextMeta('embd', parsed.model)
    const data = parsed.inputs.map((s, index) => {
      const v = pseudoEmbedding(o.seed, s, dim)
      const embedding =
        parsed.encoding === 'base64'
          ? Buffer.from(new Float32Array(v).buffer).toString('base64')
          : v
      return { object: 'embedding', index, embedding }
    })
    counters.completed++
    sendJson(res, 200, {
      id: meta.id,
      object: 'list',
      created: meta.created,
      model: parsed.model,
      data,
      usage: {
        prompt_tokens: tokens,
        total_tokens: tokens,
        completion_tokens: 0,
        prompt_tokens_details: null,
      },
    })
  }

  const models = (res: ServerResponse) => {
    const created = Math.floor(Date.now() / 1000)
    const card = (id: string, parent: string | null) => ({
      id,
      object: 'model',
      created,
      owned_by: 'vllm',
      root: parent === null ? id : `/adapters/${id}`,
      parent,
      max_model_len: o.maxModelLen,
    })
    sendJson(res, 200, {
      object: 'list',
      data: [card(o.model, null), ...o.loras.map((l) => card(l, o.model))],
    })
  }

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    res.setHeader('x-inference-pod', o.name)
    const path = (req.url ?? '/').split('?')[0] ?? '/'
    const method = req.method ?? 'GET'
    const route = `${method} ${path}`
    switch (route) {
      case 'POST /v1/chat/completions':
        return generate(req, res, 'chat')
      case 'POST /v1/completions':
        return generate(req, res, 'completion')
      case 'POST /v1/responses':
        return generate(req, res, 'responses')
      case 'POST /v1/embeddings':
        return embeddings(req, res)
      case 'GET /v1/models':
        return models(res)
      case 'GET /health':
        res.writeHead(failures.unhealthy ? 503 : 200, { 'content-length': 0 })
        res.end()
        return
      case 'GET /metrics': {
        const body = metrics.render(engine.gauges(), Date.now() / 1000)
        res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' })
        res.end(body)
        return
      }
      case 'GET /sim/failures':
        return sendJson(res, 200, failures)
      case 'POST /sim/failures': {
        const patch = validateFailures(parseJsonBody(await readBody(req)))
        failures = { ...failures, ...patch }
        return sendJson(res, 200, failures)
      }
      case 'GET /sim/stats':
        return sendJson(res, 200, stats())
      case 'POST /sim/kv/peek': {
        // Bench-only oracle (hack/bench/kv-oracle.ts): what this engine's cache holds of a prompt.
        const parsed = parseChatRequest(parseJsonBody(await readBody(req)), catalog)
        return sendJson(res, 200, peekPrompt(engine.kv, parsed.prompt, parsed.lora))
      }
      case 'POST /sim/kv/pull':
        return sendJson(res, 200, pd.pull(parseJsonBody(await readBody(req))))
      default:
        if (method === 'GET' && path.startsWith('/sim/bootstrap/')) {
          const room = decodeURIComponent(path.slice('/sim/bootstrap/'.length))
          return sendJson(res, 200, await pd.awaitRoom(room, BOOTSTRAP_WAIT_MS))
        }
        throw new SimError(404, 'route_not_found', `No route for ${method} ${path}.`)
    }
  }

  const stats = (): SimStats => {
    const g = engine.gauges()
    const t = metrics.totals()
    return {
      name: o.name,
      requests: counters.requests,
      completed: counters.completed,
      injectedFailures: counters.injected,
      running: g.running,
      waiting: g.waiting,
      kvUsage: g.kvUsage,
      kvEvictions: g.kv.evictions,
      prefixQueryTokens: t.prefixQueries,
      prefixHitTokens: t.prefixHits,
      promptTokens: t.promptTokens,
      generationTokens: t.generationTokens,
      aborted: t.aborted,
      loadedLoras: g.loadedLoras,
      loraLoads: engine.lora.counters().loads,
      role: o.role,
      pd: { ...pd.counters },
    }
  }

  const traceparents: string[] = []
  const server: Server = createServer((req, res) => {
    const tp = req.headers['traceparent']
    if (req.method === 'POST' && typeof tp === 'string') {
      if (traceparents.length >= 64) traceparents.shift()
      traceparents.push(tp)
    }
    handle(req, res).catch((e: unknown) => {
      if (e instanceof SimError && e.code === 'client_closed') return
      sendError(res, e)
    })
  })

  await new Promise<void>((resolve, reject) => {
    const onError = (e: Error) =>
      reject(
        new SimError(
          500,
          'listen_failed',
          `${o.name}: cannot listen on ${o.host}:${o.port}: ${e.message}`,
        ),
      )
    server.once('error', onError)
    server.listen({ port: o.port, host: o.host, backlog: SIM_LISTEN_BACKLOG }, () => {
      server.off('error', onError)
      resolve()
    })
  })
  const port = (server.address() as AddressInfo).port
  pd.port = port
  const kvEvents =
    o.kvEvents === null
      ? null
      : await startKvEvents(engine.kv, o.host, {
          engine: o.metricsFormat === 'sglang' ? 'sglang' : 'vllm',
          ...o.kvEvents,
        })
  let closing: Promise<void> | null = null

  return {
    name: o.name,
    host: o.host,
    port,
    url: `http://${o.host}:${port}`,
    setFailures: (f) => {
      failures = { ...failures, ...validateFailures(f) }
    },
    stats,
    traceparents: () => traceparents,
    kvEvents,
    close: () => {
      if (closing === null) {
        const kvClosed = kvEvents?.close()
        closing = new Promise<void>((resolve) => {
          engine.close()
          for (const t of timers) {
            clearTimeout(t.timer)
            t.resolve()
          }
          timers.clear()
          server.close(() => resolve())
          // Keep-alive sockets (and streams in flight) would hold close() open: end them now.
          server.closeAllConnections()
        }).then(() => kvClosed)
      }
      return closing
    },
  }
}

export interface Fleet {
  /** The running instances; `restart` replaces an entry in place. */
  sims: SimHandle[]
  /**
   * Restart one instance the way a container restart looks from outside: the listener closes
   * (in-flight streams are cut, new connections are refused) for `downMs`, then a fresh engine
   * listens on the same address and port with an empty KV cache, no loaded adapters, counters
   * from zero and a new process start time. Resolves with the new handle once it listens.
   */
  restart(name: string, downMs: number): Promise<SimHandle>
  close(): Promise<void>
}

export async function startFleet(opts: readonly SimOptions[]): Promise<Fleet> {
  const results = await Promise.allSettled(opts.map((o) => startSimulator(o)))
  const sims: SimHandle[] = []
  let failure: unknown = null
  for (const r of results) {
    if (r.status === 'fulfilled') sims.push(r.value)
    else failure ??= r.reason
  }
  const close = async () => {
    await Promise.all(sims.map((s) => s.close()))
  }
  if (failure !== null) {
    await close()
    throw failure
  }
  const restart = async (name: string, downMs: number): Promise<SimHandle> => {
    const i = sims.findIndex((s) => s.name === name)
    const old = sims[i]
    const o = opts.find((x) => x.name === name)
    if (old === undefined || o === undefined) {
      throw new SimError(404, 'unknown_instance', `no instance named ${name} in this fleet`)
    }
    await old.close()
    await new Promise((r) => setTimeout(r, downMs))
    // Same port: the endpoint address a gateway knows stays valid, as a pod IP does.
    const fresh = await startSimulator({ ...o, port: old.port })
    sims[i] = fresh
    return fresh
  }
  return { sims, restart, close }
}
