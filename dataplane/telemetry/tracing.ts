// OpenTelemetry traces of inference requests, off by default. With an OTLP endpoint configured
// (--otlp-endpoint, or the standard OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT variables) each sampled
// request gets one SERVER span named after the GenAI semantic conventions ("chat llama-3"), with
// gen_ai.* request/response/usage attributes, the endpoint as server.address/port, the route and
// the caller's tier (never the tenant: tenants are caller-chosen and unbounded), the scheduler's
// decision and any fallbacks as span events. A client's W3C `traceparent` is the parent; the span's
// own context goes to the engine or provider as `traceparent`, so their spans join the trace.
//
// Off, nothing here is called: the request path tests one `undefined`. On, spans are batched and
// exported over OTLP/HTTP (JSON encoding) by the maintained OpenTelemetry JS SDK (its
// BatchSpanProcessor and OTLPTraceExporter).
//
// Why the span is recorded here and not by the SDK's Tracer (issue 15: ≤ 50 µs added per request
// at 500 req/s): the gateway records exactly one span per request, explicitly passed along (no
// context manager, no active span), with attributes whose keys and value types it owns. The SDK
// Tracer's generic path (context lookups, propagator and sampler calls, attribute sanitising and
// span-limit checks on every call, ids made even for unsampled requests) cost ~15 µs CPU per
// request in a hot loop, against ~3 µs for this, and more in the real server. So the request path
// keeps a few fields (a start time as a number, one attribute object, the events) and builds one
// ReadableSpan — the SDK's own export interface — when the request ends; the SDK batches, encodes
// and sends it. Sampling has the SDK's ParentBased(TraceIdRatio) semantics: a client's sampled
// traceparent is followed, an unsampled one never recorded, new traces are recorded at the ratio;
// an unsampled request costs one random number and nothing more.
//
// Export stays off the request (issue 15): the SDK's BatchSpanProcessor serialises and sends a
// batch synchronously inside onEnd once maxExportBatchSize spans wait, and with 512 that was a
// ~15 ms event-loop stall inside some request's end every second at 500 req/s (p99 tripled). So
// ended spans are handed to the processor in a setImmediate, after the request's response has
// been written, and batches are EXPORT_BATCH spans: each export blocks the loop for about
// EXPORT_BATCH × the JSON encoding of one span (~30 µs), ~4 ms. Smaller batches stall less but
// cost more CPU per span (one OTLP request each: 64 measured ~+30 µs per span over 512 on a busy
// machine, 128 in between).
import { randomFillSync } from 'node:crypto'
import {
  type HrTime,
  type Link,
  type SpanContext,
  SpanKind,
  type SpanStatus,
  SpanStatusCode,
  TraceFlags,
} from '@opentelemetry/api'
import { type InstrumentationScope, millisToHrTime, TraceState } from '@opentelemetry/core'
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http'
import { type Resource, resourceFromAttributes } from '@opentelemetry/resources'
import {
  BatchSpanProcessor,
  type ReadableSpan,
  type TimedEvent,
} from '@opentelemetry/sdk-trace-base'
import { TracingConfigError, type TracingOptions, tracesUrl } from './tracing-config.js'

/** GenAI operation names by the gateway's API kind. */
const OPERATION: Readonly<Record<string, string>> = {
  chat: 'chat',
  completions: 'text_completion',
  embeddings: 'embeddings',
  responses: 'chat',
  messages: 'chat',
}

/** Span attribute values the gateway sets (never arrays, never undefined: no sanitising needed). */
export type SpanAttributes = Record<string, string | number | boolean>

/** A remote parent from a W3C `traceparent` (and `tracestate`) header. */
export interface TraceParent {
  readonly traceId: string
  readonly spanId: string
  readonly sampled: boolean
  readonly traceState?: string
}

const TRACEPARENT = /^[ \t]*([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?[ \t]*$/
const ZERO_TRACE = '0'.repeat(32)
const ZERO_SPAN = '0'.repeat(16)

/**
 * The parent of a W3C `traceparent` header, or undefined when it is not a valid one (the request
 * is then a new trace, as OpenTelemetry's W3CTraceContextPropagator treats it): version `ff` and
 * all-zero ids are invalid; version 00 has exactly four fields, later versions may have more.
 */
export function parseTraceparent(value: string, tracestate?: string): TraceParent | undefined {
  const m = TRACEPARENT.exec(value)
  if (m === null) return undefined
  const [, version, traceId, spanId, flags, rest] = m as unknown as [
    string,
    string,
    string,
    string,
    string,
    string | undefined,
  ]
  if (version === 'ff' || (version === '00' && rest !== undefined)) return undefined
  if (traceId === ZERO_TRACE || spanId === ZERO_SPAN) return undefined
  const sampled = (Number.parseInt(flags, 16) & 1) === 1
  return tracestate !== undefined && tracestate !== ''
    ? { traceId, spanId, sampled, traceState: tracestate }
    : { traceId, spanId, sampled }
}

// Span and trace ids from a pool of crypto-random bytes refilled 4 KiB at a time: one
// randomFillSync per ~170 spans, not a syscall per span.
const POOL = Buffer.allocUnsafe(4096)
let poolAt = POOL.length

function randomHex(bytes: number): string {
  if (poolAt + bytes > POOL.length) {
    randomFillSync(POOL)
    poolAt = 0
  }
  const s = POOL.toString('hex', poolAt, poolAt + bytes)
  poolAt += bytes
  // All zeros is the invalid id (probability 2^-64 for a span id): draw again.
  return /[^0]/.test(s) ? s : randomHex(bytes)
}

const SCOPE: InstrumentationScope = { name: 'infer-gateway' }
const NO_LINKS: Link[] = []
const OK: SpanStatus = { code: SpanStatusCode.UNSET }
/** performance.now() is relative to this; wall-clock span times are computed at export. */
const ORIGIN = performance.timeOrigin
/** Spans per OTLP export: encoding one batch is a short stall, requests stay few (see above). */
export const EXPORT_BATCH = 128
/** Spans waiting for export at most (more are dropped, counted by the SDK). */
const MAX_QUEUE = 8192

export class Tracing {
  readonly #processor: BatchSpanProcessor
  readonly #resource: Resource
  readonly #ratio: number
  /** Ended spans not yet handed to the processor (drained by one setImmediate). */
  #ended: EndedSpan[] = []
  #drainScheduled = false
  readonly #enqueue = (span: EndedSpan): void => {
    this.#ended.push(span)
    if (this.#drainScheduled) return
    this.#drainScheduled = true
    setImmediate(this.#drain)
  }
  readonly #drain = (): void => {
    this.#drainScheduled = false
    const spans = this.#ended
    this.#ended = []
    for (const s of spans) this.#processor.onEnd(s)
  }
  readonly url: string

  constructor(opts: TracingOptions) {
    this.url = tracesUrl(opts.endpoint)
    const ratio = opts.sampleRatio ?? 1
    if (!(ratio >= 0 && ratio <= 1))
      throw new TracingConfigError(
        'invalid_tracing_sample_ratio',
        `trace sample ratio must be within 0..1, got ${ratio}`,
      )
    this.#ratio = ratio
    // Resolved once: every span shares this object (the exporter groups spans by it).
    this.#resource = resourceFromAttributes({
      'service.name': opts.serviceName ?? process.env['OTEL_SERVICE_NAME'] ?? 'infer-gateway',
    })
    this.#processor = new BatchSpanProcessor(
      // A flush (shutdown) exports the whole queue at once, one request per batch: the exporter's
      // default limit of 30 concurrent requests would fail a flush of more than 30 batches.
      opts.exporter ??
        new OTLPTraceExporter({ url: this.url, concurrencyLimit: MAX_QUEUE / EXPORT_BATCH }),
      {
        scheduledDelayMillis: opts.exportDelayMs ?? 1000,
        maxQueueSize: MAX_QUEUE,
        maxExportBatchSize: EXPORT_BATCH,
      },
    )
  }

  /**
   * The span of one inference request, or undefined when it is not sampled (nothing is recorded
   * and the client's own `traceparent`, if any, goes to the engine unchanged).
   */
  start(header: (name: string) => string | undefined, api: string): RequestTrace | undefined {
    const tp = header('traceparent')
    const parent = tp === undefined ? undefined : parseTraceparent(tp, header('tracestate'))
    if (parent !== undefined) {
      // The client decided.
      if (!parent.sampled) return undefined
    } else if (this.#ratio < 1 && !(Math.random() < this.#ratio)) return undefined
    return new RequestTrace(this.#enqueue, this.#resource, OPERATION[api] ?? api, parent)
  }

  /** Exports what is still buffered. */
  async flush(): Promise<void> {
    this.#drain()
    await this.#processor.forceFlush()
  }

  async shutdown(): Promise<void> {
    this.#drain()
    await this.#processor.shutdown()
  }
}

/** One request's span: attributes and events as the request goes, ended (and exported) once. */
export class RequestTrace {
  readonly #sink: (span: EndedSpan) => void
  readonly #resource: Resource
  readonly #operation: string
  readonly #parent: TraceParent | undefined
  readonly traceId: string
  readonly spanId: string
  /** performance.now() at the start. */
  readonly #start = performance.now()
  #name: string
  #model: string | undefined
  #events: TimedEvent[] | undefined
  #ended = false

  constructor(
    sink: (span: EndedSpan) => void,
    resource: Resource,
    operation: string,
    parent: TraceParent | undefined,
  ) {
    this.#sink = sink
    this.#resource = resource
    this.#operation = operation
    this.#name = operation
    this.#parent = parent
    this.traceId = parent?.traceId ?? randomHex(16)
    this.spanId = randomHex(8)
  }

  /** `traceparent` for the upstream request: this span is the engine's (or provider's) parent. */
  traceparent(): string {
    return `00-${this.traceId}-${this.spanId}-01`
  }

  /**
   * The model asked for. The span name becomes "{operation} {model}" only for a model the config
   * routes: span names must stay few, and callers can send any string.
   */
  model(model: string, routed: boolean): void {
    if (routed) this.#name = `${this.#operation} ${model}`
    this.#model = model
  }

  event(name: string, attributes: SpanAttributes): void {
    const e = new Event(name, performance.now(), attributes)
    if (this.#events === undefined) this.#events = [e]
    else this.#events.push(e)
  }

  /**
   * Ends the span (once) and hands it to the batch exporter: final attributes, and an error status
   * for 5xx answers. `attributes` becomes the span's (the caller builds it for this call).
   */
  end(status: number, attributes: SpanAttributes, errorType?: string): void {
    if (this.#ended) return
    this.#ended = true
    const a = attributes
    a['gen_ai.operation.name'] = this.#operation
    if (this.#model !== undefined) a['gen_ai.request.model'] = this.#model
    a['http.response.status_code'] = status
    if (errorType !== undefined && errorType !== '') a['error.type'] = errorType
    // Server spans: only 5xx are errors of this service (OpenTelemetry HTTP conventions).
    const st: SpanStatus =
      status >= 500 ? { code: SpanStatusCode.ERROR, message: errorType ?? '' } : OK
    this.#sink(
      new EndedSpan({
        name: this.#name,
        traceId: this.traceId,
        spanId: this.spanId,
        parent: this.#parent,
        start: this.#start,
        end: performance.now(),
        status: st,
        attributes: a,
        events: this.#events ?? [],
        resource: this.#resource,
      }),
    )
  }
}

/** A span event whose wall-clock time, like the span's, is computed only when exported. */
class Event implements TimedEvent {
  readonly name: string
  readonly attributes: SpanAttributes
  /** performance.now() when it happened. */
  readonly #at: number

  constructor(name: string, at: number, attributes: SpanAttributes) {
    this.name = name
    this.#at = at
    this.attributes = attributes
  }

  get time(): HrTime {
    return millisToHrTime(ORIGIN + this.#at)
  }
}

interface EndedFields {
  readonly name: string
  readonly traceId: string
  readonly spanId: string
  readonly parent: TraceParent | undefined
  /** performance.now() at start and end. */
  readonly start: number
  readonly end: number
  readonly status: SpanStatus
  readonly attributes: SpanAttributes
  readonly events: TimedEvent[]
  readonly resource: Resource
}

/**
 * A finished request span as the SDK's exporters read it. Times are kept as performance.now()
 * numbers and turned into wall-clock HrTime only when the exporter asks (off the request path).
 */
class EndedSpan implements ReadableSpan {
  readonly kind = SpanKind.SERVER
  readonly links = NO_LINKS
  readonly ended = true
  readonly instrumentationScope = SCOPE
  readonly droppedAttributesCount = 0
  readonly droppedEventsCount = 0
  readonly droppedLinksCount = 0
  /** Only present with a parent (`declare`: no field is emitted, so absent stays absent). */
  declare readonly parentSpanContext?: SpanContext
  readonly #f: EndedFields

  constructor(f: EndedFields) {
    this.#f = f
    const p = f.parent
    if (p !== undefined)
      this.parentSpanContext = {
        traceId: p.traceId,
        spanId: p.spanId,
        traceFlags: TraceFlags.SAMPLED,
        isRemote: true,
      }
  }

  get name(): string {
    return this.#f.name
  }

  get status(): SpanStatus {
    return this.#f.status
  }

  get attributes(): SpanAttributes {
    return this.#f.attributes
  }

  get events(): TimedEvent[] {
    return this.#f.events
  }

  get resource(): Resource {
    return this.#f.resource
  }

  spanContext(): SpanContext {
    const { traceId, spanId, parent } = this.#f
    return parent?.traceState !== undefined
      ? {
          traceId,
          spanId,
          traceFlags: TraceFlags.SAMPLED,
          traceState: new TraceState(parent.traceState),
        }
      : { traceId, spanId, traceFlags: TraceFlags.SAMPLED }
  }

  get startTime(): HrTime {
    return millisToHrTime(ORIGIN + this.#f.start)
  }

  get endTime(): HrTime {
    return millisToHrTime(ORIGIN + this.#f.end)
  }

  get duration(): HrTime {
    return millisToHrTime(this.#f.end - this.#f.start)
  }
}
