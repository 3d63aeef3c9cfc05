// One ext_proc stream = one HTTP request through the gateway (Envoy). The Endpoint Picker
// protocol (GAIE docs/proposals/004-endpoint-picker-protocol) on top of Envoy's ext_proc phases:
//
//   request headers → [body chunks, buffered up to a cap] → decide → destination header
//   `x-gateway-destination-endpoint` + dynamic metadata `envoy.lb` (the same "primary,fallback,…"
//   string) → response headers (the served endpoint from `metadata_context`) → response body
//   (usage read for accounting) → end of stream: the in-flight place is released. A stream that
//   ends early (client gone, gateway reset) releases it too.
//
// Body modes (Envoy's processing_mode, announced in `protocol_config` of the first message since
// Envoy 1.34; `--body-mode` otherwise):
// - FULL_DUPLEX_STREAMED (GAIE's mode): the headers answer waits for the whole body; the body goes
//   back as `streamed_response` chunks (≤ 62,000 bytes each, as GAIE's EPP sends them).
// - BUFFERED: headers are answered at once (Envoy waits for that before sending the body); the
//   destination and any body rewrite ride on the body answer.
// - NONE / STREAMED: the body never comes whole before Envoy routes, so the pick is made on
//   the headers alone (no prompt: prefix affinity cannot help).

import { ClientSignal } from '../abort.js'
import { errors, GatewayError } from '../errors.js'
import { parseUsage, SseUsageScanner, type Usage, usageFromTail } from '../proxy/respond.js'
import type { Decision, EppCore } from './core.js'
import { type DecisionTrace, Mark, type PhaseRecorder } from './phases.js'
import {
  BodyMode,
  type CommonResponseOut,
  type HeaderMap,
  type HeaderValueOptionOut,
  headerValue,
  OVERWRITE_IF_EXISTS_OR_ADD,
  type ProcessingRequest,
  type ProcessingResponse,
  plainValue,
  type StructValue,
  stringStruct,
} from './proto.js'

export const DESTINATION_HEADER = 'x-gateway-destination-endpoint'
export const DESTINATION_NAMESPACE = 'envoy.lb'
export const SERVED_KEY = 'x-gateway-destination-endpoint-served'
export const SUBSET_NAMESPACE = 'envoy.lb.subset_hint'
export const SUBSET_KEY = 'x-gateway-destination-endpoint-subset'
/** Envoy implementations cap one streamed chunk at 64 KiB; GAIE's EPP sends 62,000 bytes. */
export const BODY_CHUNK_BYTES = 62_000
/** Tail of a non-streamed response kept to read `usage` from (it comes last). */
const TAIL_BYTES = 4096

export interface StreamOptions {
  /** Body mode when the gateway does not announce one (`protocol_config`). */
  readonly bodyMode: BodyMode
  readonly maxBodyBytes: number
  readonly now?: () => number
  /** Each decision (or refusal), for metrics: ms from request headers to the answer. */
  readonly onDecision?: (result: string, ms: number) => void
  /** `--debug-phases`: each decision's steps timed (phases.ts). */
  readonly phases?: PhaseRecorder
  /**
   * Runs `write`, which sends several answers, so that they leave together (server.ts: one
   * socket write instead of one per answer). Default: each as it is sent.
   */
  readonly together?: (write: () => void) => void
}

/** Writes one answer; `written` (if given) is called once it is on the socket. */
type Send = (r: ProcessingResponse, written?: () => void) => void

export class ExtProcStream {
  readonly #core: EppCore
  readonly #send: Send
  readonly #opts: StreamOptions
  readonly #now: () => number
  /** Not a Node AbortSignal: one costs ~20 µs per stream in the EPP's profile (abort.ts). */
  readonly #abort = new ClientSignal()
  #requestMode: number | undefined
  #responseMode: number | undefined
  readonly #headers = new Map<string, string>()
  #subset: string[] | undefined
  #chunks: Buffer[] = []
  #bodyBytes = 0
  #headersAt = 0
  #decision: Decision | undefined
  /** An ImmediateResponse went out: Envoy ends the stream; anything else is ignored. */
  #answered = false
  #status = 0
  #sse = false
  #scanner: SseUsageScanner | undefined
  #tail = ''
  #firstByteMs: number | undefined
  #decidedAt = 0
  #deciding = false
  /** The decision being timed (`phases` only). */
  #trace: DecisionTrace | undefined

  constructor(core: EppCore, send: Send, opts: StreamOptions) {
    this.#core = core
    this.#send = send
    this.#opts = opts
    this.#now = opts.now ?? (() => performance.now())
  }

  /** The picked endpoints (tests). */
  get decision(): Decision | undefined {
    return this.#decision
  }

  /** `receivedAt`: when grpc-js handed the message over (performance.now(); `phases` only). */
  async handle(req: ProcessingRequest, receivedAt?: number): Promise<void> {
    if (this.#answered) return
    if (req.protocol_config !== undefined && this.#requestMode === undefined) {
      this.#requestMode = req.protocol_config.request_body_mode ?? BodyMode.NONE
      this.#responseMode = req.protocol_config.response_body_mode ?? BodyMode.NONE
    }
    switch (req.request) {
      case 'request_headers':
        return this.#requestHeaders(req)
      case 'request_body':
        return this.#requestBody(
          req.request_body?.body,
          req.request_body?.end_of_stream === true,
          receivedAt,
        )
      case 'request_trailers':
        return this.#requestTrailers()
      case 'response_headers':
        return this.#responseHeaders(req)
      case 'response_body':
        return this.#responseBody(
          req.response_body?.body,
          req.response_body?.end_of_stream === true,
        )
      case 'response_trailers':
        this.#end(undefined)
        this.#send({ response_trailers: {} })
        return
      default:
        return
    }
  }

  /** The gRPC stream is over; `reset` = it ended before the response did (client or gateway gone). */
  close(reset: boolean): void {
    // Only a decision still under way (waiting in admission) listens.
    if (this.#deciding) this.#abort.abort('the ext_proc stream ended')
    if (reset) this.#end('aborted')
    else this.#end(this.#status > 0 ? undefined : 'aborted')
  }

  get #reqMode(): number {
    return this.#requestMode ?? this.#opts.bodyMode
  }
  get #respMode(): number {
    return this.#responseMode ?? this.#opts.bodyMode
  }

  async #requestHeaders(req: ProcessingRequest): Promise<void> {
    this.#headersAt = this.#now()
    readHeaders(req.request_headers?.headers, this.#headers)
    this.#subset = subsetHint(req)
    const mode = this.#reqMode
    if (
      req.request_headers?.end_of_stream === true ||
      mode === BodyMode.NONE ||
      mode === BodyMode.STREAMED
    ) {
      // No body to wait for: pick on the headers.
      const d = await this.#decide(undefined)
      if (d === undefined) return
      this.#send({
        request_headers: { response: destinationResponse(d, undefined) },
        dynamic_metadata: destinationMetadata(d),
      })
      return
    }
    if (mode === BodyMode.BUFFERED || mode === BodyMode.BUFFERED_PARTIAL) {
      // Envoy sends the body only after this answer; the destination comes with the body's.
      this.#send({ request_headers: { response: {} } })
    }
    // FULL_DUPLEX_STREAMED: the headers answer waits for the body (the protocol allows it).
  }

  async #requestBody(
    chunk: Buffer | undefined,
    end: boolean,
    receivedAt: number | undefined,
  ): Promise<void> {
    if (this.#decision !== undefined) {
      // The pick was made on the headers (NONE/STREAMED): the body passes untouched.
      this.#send({ request_body: { response: {} } })
      return
    }
    if (chunk !== undefined && chunk.length > 0) {
      this.#bodyBytes += chunk.length
      if (this.#bodyBytes > this.#opts.maxBodyBytes) {
        this.#chunks = []
        this.#immediate(errors.bodyTooLarge(this.#opts.maxBodyBytes), 'body_too_large')
        return
      }
      this.#chunks.push(chunk)
    }
    if (!end) return
    const phases = this.#opts.phases
    if (phases !== undefined) {
      this.#trace = phases.begin(receivedAt ?? performance.now())
      this.#trace.mark(Mark.HANDLE)
    }
    await this.#bodyComplete(true)
  }

  async #requestTrailers(): Promise<void> {
    // Full duplex: a body followed by trailers ends with the trailers, not an end_of_stream chunk.
    if (this.#decision === undefined && this.#reqMode === BodyMode.FULL_DUPLEX_STREAMED) {
      await this.#bodyComplete(false)
      if (this.#answered) return
    }
    this.#send({ request_trailers: {} })
  }

  async #bodyComplete(endOfStream: boolean): Promise<void> {
    const raw =
      this.#chunks.length === 1 ? (this.#chunks[0] as Buffer) : Buffer.concat(this.#chunks)
    this.#chunks = []
    const trace = this.#trace
    this.#trace = undefined
    trace?.mark(Mark.CONCAT)
    const d = await this.#decide(raw, trace)
    if (d === undefined) return
    trace?.mark(Mark.DECIDED)
    const out = d.body ?? raw
    if (this.#reqMode === BodyMode.FULL_DUPLEX_STREAMED) {
      // The destination, then the body: the gateway needs both before the request can leave.
      const together = this.#opts.together
      if (together !== undefined) together(() => this.#streamedAnswers(d, out, endOfStream, trace))
      else this.#streamedAnswers(d, out, endOfStream, trace)
      trace?.mark(Mark.WRITE2)
      this.#traced(trace)
      return
    }
    // BUFFERED: the destination header still applies (the request has not left Envoy yet).
    const common = destinationResponse(d, d.body !== undefined ? out : undefined)
    const answer: ProcessingResponse = {
      request_body: {
        response: d.body !== undefined ? { ...common, body_mutation: { body: out } } : common,
      },
      dynamic_metadata: destinationMetadata(d),
    }
    trace?.mark(Mark.BUILT1)
    this.#send(answer, trace?.wrote(answer))
    trace?.mark(Mark.WRITE1)
    this.#traced(trace)
  }

  /** FULL_DUPLEX_STREAMED's answers to the request: headers (destination), then the body. */
  #streamedAnswers(
    d: Decision,
    out: Buffer,
    endOfStream: boolean,
    trace: DecisionTrace | undefined,
  ): void {
    const first: ProcessingResponse = {
      request_headers: {
        response: destinationResponse(d, d.body !== undefined ? out : undefined),
      },
      dynamic_metadata: destinationMetadata(d),
    }
    trace?.mark(Mark.BUILT1)
    this.#send(first, trace?.wrote(first))
    trace?.mark(Mark.WRITE1)
    for (let at = 0; ; at += BODY_CHUNK_BYTES) {
      const last = at + BODY_CHUNK_BYTES >= out.length
      const chunk: ProcessingResponse = {
        request_body: {
          response: {
            body_mutation: {
              streamed_response: {
                body: out.subarray(at, at + BODY_CHUNK_BYTES),
                end_of_stream: last && endOfStream,
              },
            },
          },
        },
      }
      this.#send(chunk, trace?.wrote(chunk))
      if (last) break
    }
  }

  /** The decision's answers are written: its trace ends after the bookkeeping that follows. */
  #traced(trace: DecisionTrace | undefined): void {
    if (trace === undefined) return
    this.#core.afterAnswer(() => {
      trace.mark(Mark.BOOKKEPT)
      trace.close()
    })
  }

  async #decide(body: Buffer | undefined, trace?: DecisionTrace): Promise<Decision | undefined> {
    this.#deciding = true
    try {
      const d = await this.#core.decide({
        headers: this.#headers,
        body,
        subset: this.#subset,
        signal: this.#abort,
        ...(trace !== undefined ? { trace } : {}),
      })
      if (this.#abort.aborted) {
        // The stream ended while the request waited in admission: nothing to send it to.
        d.finish({ status: 0, failure: 'aborted' })
        return undefined
      }
      this.#decision = d
      this.#decidedAt = this.#now()
      const ms = this.#decidedAt - this.#headersAt
      const onDecision = this.#opts.onDecision
      // Metrics wait for the answer to be written (EppCore.afterAnswer).
      if (onDecision !== undefined) this.#core.afterAnswer(() => onDecision('routed', ms))
      return d
    } catch (e) {
      const err = e instanceof GatewayError ? e : errors.internal()
      if (!this.#abort.aborted) this.#immediate(err, err.code)
      return undefined
    } finally {
      this.#deciding = false
    }
  }

  #immediate(err: GatewayError, result: string): void {
    this.#answered = true
    this.#opts.onDecision?.(result, this.#now() - this.#headersAt)
    const set: HeaderValueOptionOut[] = [header('content-type', 'application/json')]
    for (const [k, v] of Object.entries(err.headers)) set.push(header(k, v))
    this.#send({
      immediate_response: {
        status: { code: err.status },
        headers: { set_headers: set },
        body: Buffer.from(JSON.stringify(err.toBody())),
        details: `infer_gateway_epp_${err.code}`,
      },
    })
  }

  #responseHeaders(req: ProcessingRequest): void {
    readHeaders(req.response_headers?.headers, this.#headers, true)
    this.#status = Number(this.#headers.get(':status') ?? 0) || 0
    this.#sse = (this.#headers.get('content-type') ?? '')
      .toLowerCase()
      .startsWith('text/event-stream')
    if (this.#sse) this.#scanner = new SseUsageScanner()
    const served = servedEndpoint(req)
    if (served !== undefined) this.#decision?.served(served)
    this.#send({ response_headers: { response: {} } })
    if (req.response_headers?.end_of_stream === true) this.#end(undefined)
  }

  #responseBody(chunk: Buffer | undefined, end: boolean): void {
    if (chunk !== undefined && chunk.length > 0) {
      if (this.#firstByteMs === undefined) this.#firstByteMs = this.#now() - this.#decidedAt
      if (this.#scanner !== undefined) this.#scanner.push(chunk)
      else this.#tail = (this.#tail + chunk.toString('utf8')).slice(-TAIL_BYTES)
    }
    if (this.#respMode === BodyMode.FULL_DUPLEX_STREAMED) {
      this.#send({
        response_body: {
          response: {
            body_mutation: {
              streamed_response: { body: chunk ?? Buffer.alloc(0), end_of_stream: end },
            },
          },
        },
      })
    } else {
      this.#send({ response_body: { response: {} } })
    }
    if (end) this.#end(undefined)
  }

  /**
   * The request is over: usage and status to the scheduler, in-flight released (once), after the
   * last answer is written (EppCore.afterAnswer: the next decision applies it first).
   */
  #end(failure: 'aborted' | undefined): void {
    const d = this.#decision
    if (d === undefined) return
    this.#decision = undefined
    const status = this.#status
    const firstByteMs = this.#firstByteMs
    const scanner = this.#scanner
    const tail = this.#tail
    this.#core.afterAnswer(() => {
      const usage: Usage | undefined = scanner?.usage ?? tailUsage(tail)
      d.finish({
        status,
        ...(failure !== undefined ? { failure } : {}),
        ...(firstByteMs !== undefined ? { firstByteMs } : {}),
        ...(usage !== undefined
          ? { promptTokens: usage.promptTokens, completionTokens: usage.completionTokens }
          : {}),
      })
    })
  }
}

function tailUsage(tail: string): Usage | undefined {
  if (tail === '') return undefined
  try {
    // A small body parses whole; a large one is read from its tail.
    return parseUsage((JSON.parse(tail) as Record<string, unknown>)['usage'])
  } catch {
    return usageFromTail(tail)
  }
}

function header(key: string, value: string): HeaderValueOptionOut {
  return {
    header: { key, raw_value: Buffer.from(value) },
    append_action: OVERWRITE_IF_EXISTS_OR_ADD,
  }
}

/** Request-headers answer: the destination (replacing any the client sent), route re-evaluated. */
function destinationResponse(d: Decision, body: Buffer | undefined): CommonResponseOut {
  const set = [header(DESTINATION_HEADER, d.endpoints.join(','))]
  if (body !== undefined) set.push(header('content-length', String(body.length)))
  return { header_mutation: { set_headers: set }, clear_route_cache: true }
}

function destinationMetadata(d: Decision): StructValue {
  return {
    fields: {
      [DESTINATION_NAMESPACE]: {
        struct_value: stringStruct({ [DESTINATION_HEADER]: d.endpoints.join(',') }),
      },
    },
  }
}

function readHeaders(
  map: HeaderMap | undefined,
  into: Map<string, string>,
  response = false,
): void {
  if (response) {
    into.delete(':status')
    into.delete('content-type')
  }
  for (const h of map?.headers ?? []) {
    const k = h.key.toLowerCase()
    if (response && k !== ':status' && k !== 'content-type') continue
    into.set(k, headerValue(h))
  }
}

/** `envoy.lb.subset_hint` / `x-gateway-destination-endpoint-subset`: a list or a comma string. */
export function subsetHint(req: ProcessingRequest): string[] | undefined {
  const ns = req.metadata_context?.filter_metadata?.[SUBSET_NAMESPACE]
  const v = ns?.fields?.[SUBSET_KEY]
  if (v === undefined) return undefined
  const plain = plainValue(v)
  const items = Array.isArray(plain) ? plain : [plain]
  const out: string[] = []
  for (const item of items) {
    if (typeof item !== 'string') continue
    for (const e of item.split(',')) if (e.trim() !== '') out.push(e.trim())
  }
  return out
}

/** `envoy.lb` / `x-gateway-destination-endpoint-served` of the response phase. */
function servedEndpoint(req: ProcessingRequest): string | undefined {
  const v = req.metadata_context?.filter_metadata?.[DESTINATION_NAMESPACE]?.fields?.[SERVED_KEY]
  const s = plainValue(v)
  return typeof s === 'string' && s !== '' ? s : undefined
}
