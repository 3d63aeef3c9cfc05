// The SDK's OTLP/HTTP trace exporter for the configured protocol (tracing-config.ts OtlpProtocol):
// @opentelemetry/exporter-trace-otlp-proto or -http (JSON), the same SDK release, the same options.
// Only the tracing worker (tracing-worker.ts) imports this: the thread serving requests never loads
// an exporter.
import { OTLPTraceExporter as JsonExporter } from '@opentelemetry/exporter-trace-otlp-http'
import { OTLPTraceExporter as ProtobufExporter } from '@opentelemetry/exporter-trace-otlp-proto'
import type { SpanExporter } from '@opentelemetry/sdk-trace-base'
import { EXPORT_BATCH, MAX_QUEUE, type SpanExportOptions } from './span-export.js'

export function otlpExporter(opts: SpanExportOptions): SpanExporter {
  const config = {
    url: opts.url,
    // A flush (shutdown) exports the whole queue at once, one request per batch: the exporter's
    // default limit of 30 concurrent requests would fail a flush of more.
    concurrencyLimit: Math.ceil(MAX_QUEUE / EXPORT_BATCH),
    ...(opts.exportTimeoutMs !== undefined ? { timeoutMillis: opts.exportTimeoutMs } : {}),
  }
  return opts.protocol === 'http/json' ? new JsonExporter(config) : new ProtobufExporter(config)
}
