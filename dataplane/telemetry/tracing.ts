// OpenTelemetry traces of inference requests, off by default. With an OTLP endpoint configured
// (--otlp-endpoint, or the standard OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT variables) each sampled
// request gets one SERVER span named after the GenAI semantic conventions ("chat llama-3"), with
// gen_ai.* request/response/usage attributes, the endpoint as server.address/port, the route and
// the caller's tier (never the tenant: tenants are caller-chosen and unbounded), the scheduler's
// decision and any fallbacks as span events. A client's W3C `traceparent` is the parent; the span's
// own context goes to the engine or provider as `traceparent`, so their spans join the trace.
//
// Off, nothing here is loaded or called: the request path tests one `undefined`. On, spans are
// batched and exported over OTLP/HTTP (JSON encoding) by the maintained OpenTelemetry JS SDK.
import {
  type Attributes,
  type Context,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  type TextMapGetter,
  type Tracer,
} from '@opentelemetry/api'
import { W3CTraceContextPropagator } from '@opentelemetry/core'
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http'
import { resourceFromAttributes } from '@opentelemetry/resources'
import {
  BasicTracerProvider,
  BatchSpanProcessor,
  ParentBasedSampler,
  TraceIdRatioBasedSampler,
} from '@opentelemetry/sdk-trace-base'

/** A tracing setting that cannot work (bad endpoint URL, ratio outside 0..1). */
export class TracingConfigError extends Error {
  readonly code: 'invalid_tracing_endpoint' | 'invalid_tracing_sample_ratio'
  constructor(code: TracingConfigError['code'], message: string) {
    super(message)
    this.name = 'TracingConfigError'
    this.code = code
  }
}

export interface TracingOptions {
  /**
   * Where traces go. A base URL (`http://collector:4318`) gets `/v1/traces` appended, like
   * OTEL_EXPORTER_OTLP_ENDPOINT; a URL whose path already ends in `/v1/traces` is used as is.
   */
  readonly endpoint: string
  /** Share of new traces (no sampled parent) recorded, 0..1 (default 1). */
  readonly sampleRatio?: number
  /** `service.name` of the resource (default OTEL_SERVICE_NAME or "infer-gateway"). */
  readonly serviceName?: string
  /** Longest wait between exports (default 1000 ms; tests shorten it). */
  readonly exportDelayMs?: number
}

/** Tracing settings from the environment, when no flag gave them (OpenTelemetry's own names). */
export function tracingFromEnv(
  env: Readonly<Record<string, string | undefined>>,
): Pick<TracingOptions, 'endpoint'> | undefined {
  const traces = env['OTEL_EXPORTER_OTLP_TRACES_ENDPOINT']
  if (traces !== undefined && traces !== '') return { endpoint: traces }
  const base = env['OTEL_EXPORTER_OTLP_ENDPOINT']
  if (base !== undefined && base !== '') return { endpoint: base }
  return undefined
}

/** The OTLP/HTTP traces URL for an endpoint as given (see TracingOptions.endpoint). */
export function tracesUrl(endpoint: string): string {
  let u: URL
  try {
    u = new URL(endpoint)
  } catch {
    throw new TracingConfigError(
      'invalid_tracing_endpoint',
      `OTLP endpoint "${endpoint}" is not a URL`,
    )
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:')
    throw new TracingConfigError(
      'invalid_tracing_endpoint',
      `OTLP endpoint "${endpoint}" must be http(s)`,
    )
  if (u.pathname.endsWith('/v1/traces')) return u.toString()
  u.pathname = `${u.pathname.replace(/\/+$/, '')}/v1/traces`
  return u.toString()
}

const GETTER: TextMapGetter<(name: string) => string | undefined> = {
  get: (carrier, key) => carrier(key),
  keys: () => ['traceparent', 'tracestate'],
}

/** GenAI operation names by the gateway's API kind. */
const OPERATION: Readonly<Record<string, string>> = {
  chat: 'chat',
  completions: 'text_completion',
  embeddings: 'embeddings',
  responses: 'chat',
  messages: 'chat',
}

export class Tracing {
  readonly #provider: BasicTracerProvider
  readonly #tracer: Tracer
  readonly #propagator = new W3CTraceContextPropagator()
  readonly url: string

  constructor(opts: TracingOptions) {
    this.url = tracesUrl(opts.endpoint)
    const ratio = opts.sampleRatio ?? 1
    if (!(ratio >= 0 && ratio <= 1))
      throw new TracingConfigError(
        'invalid_tracing_sample_ratio',
        `trace sample ratio must be within 0..1, got ${ratio}`,
      )
    this.#provider = new BasicTracerProvider({
      resource: resourceFromAttributes({
        'service.name': opts.serviceName ?? process.env['OTEL_SERVICE_NAME'] ?? 'infer-gateway',
      }),
      // A sampled parent is followed (the client decided); new traces are sampled at the ratio.
      sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(ratio) }),
      spanProcessors: [
        new BatchSpanProcessor(new OTLPTraceExporter({ url: this.url }), {
          scheduledDelayMillis: opts.exportDelayMs ?? 1000,
          maxQueueSize: 8192,
          maxExportBatchSize: 512,
        }),
      ],
    })
    this.#tracer = this.#provider.getTracer('infer-gateway')
  }

  /**
   * The span of one inference request, or undefined when it is not sampled (nothing is recorded
   * and the client's own `traceparent`, if any, goes to the engine unchanged).
   */
  start(header: (name: string) => string | undefined, api: string): RequestTrace | undefined {
    const parent: Context =
      header('traceparent') === undefined
        ? ROOT_CONTEXT
        : this.#propagator.extract(ROOT_CONTEXT, header, GETTER)
    const operation = OPERATION[api] ?? api
    const span = this.#tracer.startSpan(
      operation,
      { kind: SpanKind.SERVER, attributes: { 'gen_ai.operation.name': operation } },
      parent,
    )
    if (!span.isRecording()) return undefined
    return new RequestTrace(span, operation)
  }

  /** Exports what is still buffered. */
  async flush(): Promise<void> {
    await this.#provider.forceFlush()
  }

  async shutdown(): Promise<void> {
    await this.#provider.shutdown()
  }
}

/** One request's span: attributes and events as the request goes, ended once. */
export class RequestTrace {
  readonly #span: Span
  readonly #operation: string
  #ended = false

  constructor(span: Span, operation: string) {
    this.#span = span
    this.#operation = operation
  }

  /** `traceparent` for the upstream request: this span is the engine's (or provider's) parent. */
  traceparent(): string {
    const c = this.#span.spanContext()
    return `00-${c.traceId}-${c.spanId}-${c.traceFlags & 1 ? '01' : '00'}`
  }

  /**
   * The model asked for. The span name becomes "{operation} {model}" only for a model the config
   * routes: span names must stay few, and callers can send any string.
   */
  model(model: string, routed: boolean): void {
    if (routed) this.#span.updateName(`${this.#operation} ${model}`)
    this.#span.setAttribute('gen_ai.request.model', model)
  }

  event(name: string, attributes: Attributes): void {
    this.#span.addEvent(name, attributes)
  }

  /** Ends the span (once): final attributes, and an error status for 5xx answers. */
  end(status: number, attributes: Attributes, errorType?: string): void {
    if (this.#ended) return
    this.#ended = true
    const s = this.#span
    s.setAttributes(attributes)
    s.setAttribute('http.response.status_code', status)
    if (errorType !== undefined && errorType !== '') s.setAttribute('error.type', errorType)
    // Server spans: only 5xx are errors of this service (OpenTelemetry HTTP conventions).
    if (status >= 500) s.setStatus({ code: SpanStatusCode.ERROR, message: errorType ?? '' })
    s.end()
  }
}
