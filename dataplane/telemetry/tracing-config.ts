// Tracing settings (telemetry/tracing.ts): what the flags and OpenTelemetry's environment variables
// give, validated. Kept apart from the span recorder so that reading the settings — which every
// data plane does — never loads the OpenTelemetry SDK; with tracing off it is not loaded at all.
import type { SpanExporter } from '@opentelemetry/sdk-trace-base'

/** A tracing setting that cannot work (bad endpoint URL, ratio outside 0..1, unknown protocol). */
export class TracingConfigError extends Error {
  readonly code:
    | 'invalid_tracing_endpoint'
    | 'invalid_tracing_sample_ratio'
    | 'invalid_tracing_protocol'
  constructor(code: TracingConfigError['code'], message: string) {
    super(message)
    this.name = 'TracingConfigError'
    this.code = code
  }
}

/**
 * OTLP over HTTP, as OTEL_EXPORTER_OTLP_PROTOCOL names it. Protobuf is OTLP's default encoding and
 * the default here: a batch is half the bytes of JSON, and a Collector decodes it several times
 * faster (bench:tracing, issue 15). JSON stays for receivers that only take JSON. gRPC is not
 * offered: the Collector's OTLP receiver takes both on its HTTP port (4318).
 */
export type OtlpProtocol = 'http/protobuf' | 'http/json'

export const OTLP_PROTOCOLS: readonly OtlpProtocol[] = ['http/protobuf', 'http/json']

/** An OTLP protocol as given (flag or environment), checked; `source` names where it came from. */
export function otlpProtocol(value: string, source: string): OtlpProtocol {
  const p = OTLP_PROTOCOLS.find((x) => x === value.trim())
  if (p === undefined)
    throw new TracingConfigError(
      'invalid_tracing_protocol',
      `${source} must be one of ${OTLP_PROTOCOLS.join(', ')}, got "${value}"`,
    )
  return p
}

export interface TracingOptions {
  /**
   * Where traces go. A base URL (`http://collector:4318`) gets `/v1/traces` appended, like
   * OTEL_EXPORTER_OTLP_ENDPOINT; a URL whose path already ends in `/v1/traces` is used as is.
   */
  readonly endpoint: string
  /** How spans are encoded on the wire (default http/protobuf). */
  readonly protocol?: OtlpProtocol
  /** Share of new traces (no sampled parent) recorded, 0..1 (default 1). */
  readonly sampleRatio?: number
  /** `service.name` of the resource (default OTEL_SERVICE_NAME or "infer-gateway"). */
  readonly serviceName?: string
  /** Longest wait between exports (default 1000 ms; tests shorten it). */
  readonly exportDelayMs?: number
  /** One OTLP export's deadline, retries included (default: the SDK's 10 s; tests shorten it). */
  readonly exportTimeoutMs?: number
  /**
   * Where batches go instead of OTLP/HTTP to `endpoint` (embedding, and tests reading spans back
   * with the SDK's InMemorySpanExporter).
   */
  readonly exporter?: SpanExporter
  /**
   * The export worker thread's nice value (default 19, the lowest priority: thread-priority.ts).
   * Tests give one the OS refuses, to see a worker that cannot lower its priority still export.
   */
  readonly workerNice?: number
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

/**
 * The protocol the environment asks for (OpenTelemetry's names, the traces-specific one first),
 * undefined when neither is set.
 */
export function protocolFromEnv(
  env: Readonly<Record<string, string | undefined>>,
): OtlpProtocol | undefined {
  for (const name of ['OTEL_EXPORTER_OTLP_TRACES_PROTOCOL', 'OTEL_EXPORTER_OTLP_PROTOCOL']) {
    const v = env[name]
    if (v !== undefined && v !== '') return otlpProtocol(v, name)
  }
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
