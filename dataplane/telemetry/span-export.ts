// The exporting half of tracing (telemetry/tracing.ts records, this exports): finished request
// spans arrive as compact records (SpanRecord: a tuple of strings and numbers plus the attribute
// object), become ReadableSpans — the SDK's export interface — and go to the maintained
// OpenTelemetry JS SDK's BatchSpanProcessor and a SpanExporter: the SDK's OTLP/HTTP exporter
// (otlp-exporter.ts, protobuf or JSON) in the tracing worker thread (tracing-worker.ts), so that
// the SDK's OTLP transform, encoding and HTTP requests (tens of µs of CPU per span, issue 15) stay
// off the thread that serves requests; in process only when the embedder passes its own
// SpanExporter (tests read spans back with the SDK's InMemorySpanExporter).
//
// Accounting is in an Int32Array (a SharedArrayBuffer's between the threads): the sender adds the
// spans it hands over to IN_FLIGHT, this side subtracts them once the exporter has answered for
// them, and counts them EXPORTED or FAILED. The sender bounds IN_FLIGHT by MAX_QUEUE, which is the
// processor's own queue size: the processor never drops silently, every span is counted.
import {
  type HrTime,
  type Link,
  type SpanContext,
  SpanKind,
  type SpanStatus,
  SpanStatusCode,
  TraceFlags,
} from '@opentelemetry/api'
import {
  type ExportResult,
  ExportResultCode,
  type InstrumentationScope,
  millisToHrTime,
  TraceState,
} from '@opentelemetry/core'
import { type Resource, resourceFromAttributes } from '@opentelemetry/resources'
import {
  BatchSpanProcessor,
  type ReadableSpan,
  type SpanExporter,
  type TimedEvent,
} from '@opentelemetry/sdk-trace-base'
import type { OtlpProtocol } from './tracing-config.js'

/** Span attribute values the gateway sets (never arrays, never undefined: no sanitising needed). */
export type SpanAttributes = Record<string, string | number | boolean>

/** A span event: name, wall-clock time in epoch milliseconds, attributes. */
export type EventRecord = readonly [name: string, timeMs: number, attributes: SpanAttributes]

/**
 * One finished request span as the request path hands it over: a tuple (one array, no keys) so
 * that a batch crosses to the worker as one cheap structured clone. Times are epoch milliseconds.
 * parentSpanId is '' for a new trace; traceState '' for none; events undefined for none.
 */
export type SpanRecord = readonly [
  name: string,
  traceId: string,
  spanId: string,
  parentSpanId: string,
  traceState: string,
  startMs: number,
  endMs: number,
  statusCode: SpanStatusCode,
  statusMessage: string,
  attributes: SpanAttributes,
  events: readonly EventRecord[] | undefined,
]

/** Slots of the accounting array (see the header). */
export const IN_FLIGHT = 0
export const EXPORTED = 1
export const FAILED = 2
export const COUNTER_SLOTS = 3

/**
 * Spans per OTLP export. Each HTTP request has a fixed cost in the worker besides its spans': on
 * the busy two-core machine the SDK's encoding and sending cost ~47 µs per span in requests of
 * 32 spans, ~30 in requests of 128 and ~25 in requests of 512 (issue 15). At 500 spans a second
 * that is one request a second; a protobuf request of 512 gateway spans is ~400 KB, far below a
 * Collector's default body limit (20 MiB).
 */
export const EXPORT_BATCH = 512
/** Spans handed over and not yet answered for, at most (more are dropped and counted). */
export const MAX_QUEUE = 8192

export interface SpanExportOptions {
  /** OTLP/HTTP traces URL (already resolved: tracing-config.ts tracesUrl). */
  readonly url: string
  /** The wire encoding (otlp-exporter.ts). */
  readonly protocol: OtlpProtocol
  readonly serviceName: string
  /** Longest wait between exports. */
  readonly exportDelayMs: number
  /** One OTLP request's deadline, retries included (default: the SDK's 10 s). */
  readonly exportTimeoutMs?: number
}

const SCOPE: InstrumentationScope = { name: 'infer-gateway' }
const NO_LINKS: Link[] = []
const UNSET: SpanStatus = { code: SpanStatusCode.UNSET }

/** The SDK's batch processor and exporter, fed with SpanRecords, every span accounted for. */
export class SpanExport {
  readonly #processor: BatchSpanProcessor
  readonly #resource: Resource

  constructor(opts: SpanExportOptions, counters: Int32Array, exporter: SpanExporter) {
    // Resolved once: every span shares this object (the exporter groups spans by it).
    this.#resource = resourceFromAttributes({ 'service.name': opts.serviceName })
    this.#processor = new BatchSpanProcessor(new CountingExporter(exporter, counters), {
      scheduledDelayMillis: opts.exportDelayMs,
      maxQueueSize: MAX_QUEUE,
      maxExportBatchSize: EXPORT_BATCH,
      ...(opts.exportTimeoutMs !== undefined ? { exportTimeoutMillis: opts.exportTimeoutMs } : {}),
    })
  }

  add(batch: readonly SpanRecord[]): void {
    for (const r of batch) this.#processor.onEnd(new RecordSpan(r, this.#resource))
  }

  flush(): Promise<void> {
    return this.#processor.forceFlush()
  }

  shutdown(): Promise<void> {
    return this.#processor.shutdown()
  }
}

/** Counts what the exporter answered for each batch (the only place every span passes). */
class CountingExporter implements SpanExporter {
  readonly #inner: SpanExporter
  readonly #counters: Int32Array

  constructor(inner: SpanExporter, counters: Int32Array) {
    this.#inner = inner
    this.#counters = counters
  }

  export(spans: ReadableSpan[], done: (r: ExportResult) => void): void {
    this.#inner.export(spans, (r) => {
      const n = spans.length
      Atomics.add(this.#counters, r.code === ExportResultCode.SUCCESS ? EXPORTED : FAILED, n)
      Atomics.sub(this.#counters, IN_FLIGHT, n)
      done(r)
    })
  }

  shutdown(): Promise<void> {
    return this.#inner.shutdown()
  }

  forceFlush(): Promise<void> {
    return this.#inner.forceFlush?.() ?? Promise.resolve()
  }
}

function hr(ms: number): HrTime {
  return millisToHrTime(ms)
}

/** A SpanRecord as the SDK's exporters read a finished span. */
class RecordSpan implements ReadableSpan {
  readonly kind = SpanKind.SERVER
  readonly links = NO_LINKS
  readonly ended = true
  readonly instrumentationScope = SCOPE
  readonly droppedAttributesCount = 0
  readonly droppedEventsCount = 0
  readonly droppedLinksCount = 0
  readonly name: string
  readonly status: SpanStatus
  readonly attributes: SpanAttributes
  readonly events: TimedEvent[]
  readonly resource: Resource
  readonly startTime: HrTime
  readonly endTime: HrTime
  readonly duration: HrTime
  /** Only present with a parent (`declare`: no field is emitted, so absent stays absent). */
  declare readonly parentSpanContext?: SpanContext
  readonly #context: SpanContext

  constructor(r: SpanRecord, resource: Resource) {
    const [name, traceId, spanId, parentSpanId, traceState, start, end, code, message, a, ev] = r
    this.name = name
    this.status = code === SpanStatusCode.UNSET ? UNSET : { code, message }
    this.attributes = a
    this.events =
      ev === undefined
        ? []
        : ev.map(([n, at, attributes]) => ({ name: n, time: hr(at), attributes }))
    this.resource = resource
    this.startTime = hr(start)
    this.endTime = hr(end)
    this.duration = hr(end - start)
    this.#context =
      traceState !== ''
        ? {
            traceId,
            spanId,
            traceFlags: TraceFlags.SAMPLED,
            traceState: new TraceState(traceState),
          }
        : { traceId, spanId, traceFlags: TraceFlags.SAMPLED }
    if (parentSpanId !== '')
      this.parentSpanContext = {
        traceId,
        spanId: parentSpanId,
        traceFlags: TraceFlags.SAMPLED,
        isRemote: true,
      }
  }

  spanContext(): SpanContext {
    return this.#context
  }
}
