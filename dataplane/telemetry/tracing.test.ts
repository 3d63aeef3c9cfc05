import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { SpanKind, SpanStatusCode } from '@opentelemetry/api'
import type { ExportResult } from '@opentelemetry/core'
import { hrTimeToMilliseconds } from '@opentelemetry/core'
import { InMemorySpanExporter, type ReadableSpan } from '@opentelemetry/sdk-trace-base'
import { beforeAll, describe, expect, it, vi } from 'vitest'
import { otlpSpanCount } from '../../test/helpers/otlp-spans.js'
import { EXPORT_BATCH, MAX_QUEUE, parseTraceparent, Tracing } from './tracing.js'
import { tracingWorkerCode } from './tracing-worker-code.js'

/** The SDK's in-memory exporter, also keeping the size of each batch it was given. */
class BatchSizes extends InMemorySpanExporter {
  readonly sizes: number[] = []
  override export(spans: ReadableSpan[], done: (r: ExportResult) => void): void {
    this.sizes.push(spans.length)
    super.export(spans, done)
  }
}

// From the sources the worker's script is bundled by esbuild on first use (tracing-worker-code.ts):
// once per file, outside any test's timeout.
beforeAll(() => tracingWorkerCode().then(() => undefined), 120_000)

describe('sampling', () => {
  it('records nothing at ratio 0 unless a sampled parent says so', async () => {
    const t = new Tracing({ endpoint: 'http://127.0.0.1:9/', sampleRatio: 0 })
    const none = (): undefined => undefined
    expect(t.start(none, 'chat')).toBeUndefined()
    const tp = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'
    const sampled = t.start((n) => (n === 'traceparent' ? tp : undefined), 'chat')
    expect(sampled?.traceparent()).toMatch(/^00-0af7651916cd43dd8448eb211c80319c-[0-9a-f]{16}-01$/)
    expect(sampled?.traceparent()).not.toContain('b7ad6b7169203331')
    await t.shutdown()
  })
})

const TRACE = '0af7651916cd43dd8448eb211c80319c'
const PARENT = 'b7ad6b7169203331'

describe('traceparent', () => {
  it('parses a valid W3C header and its sampled flag', () => {
    expect(parseTraceparent(`00-${TRACE}-${PARENT}-01`)).toEqual({
      traceId: TRACE,
      spanId: PARENT,
      sampled: true,
    })
    expect(parseTraceparent(`00-${TRACE}-${PARENT}-00`, 'vendor=x')).toEqual({
      traceId: TRACE,
      spanId: PARENT,
      sampled: false,
      traceState: 'vendor=x',
    })
    // A later version may append fields; its sampled bit is read the same way.
    expect(parseTraceparent(`01-${TRACE}-${PARENT}-03-extra`)?.sampled).toBe(true)
  })

  it('rejects what the W3C spec calls invalid', () => {
    for (const bad of [
      '',
      'garbage',
      `ff-${TRACE}-${PARENT}-01`,
      `00-${'0'.repeat(32)}-${PARENT}-01`,
      `00-${TRACE}-${'0'.repeat(16)}-01`,
      `00-${TRACE}-${PARENT}-01-extra`,
      `00-${TRACE.toUpperCase()}-${PARENT}-01`,
      `00-${TRACE.slice(1)}-${PARENT}-01`,
    ])
      expect(parseTraceparent(bad), bad).toBeUndefined()
  })
})

describe('request spans', () => {
  const header =
    (h: Record<string, string>) =>
    (n: string): string | undefined =>
      h[n]

  it('ends as one SERVER span with the GenAI attributes, events and the client parent', async () => {
    const exporter = new InMemorySpanExporter()
    const t = new Tracing({ endpoint: 'http://127.0.0.1:9/', exporter })
    const tr = t.start(
      header({ traceparent: `00-${TRACE}-${PARENT}-01`, tracestate: 'vendor=x' }),
      'completions',
    )
    if (tr === undefined) throw new Error('a sampled parent must be recorded')
    expect(tr.traceparent()).toBe(`00-${TRACE}-${tr.spanId}-01`)
    tr.event('infer_gateway.scheduler.decision', { 'infer_gateway.endpoint': '10.0.0.1:8000' })
    tr.model('llama', true)
    tr.end(503, { 'infer_gateway.route': 'default/r' }, 'upstream_unavailable')
    tr.end(200, {}) // a second end is ignored
    await t.flush()
    const spans = exporter.getFinishedSpans()
    expect(spans.length).toBe(1)
    const s = spans[0]
    if (s === undefined) throw new Error('no span')
    expect(s.name).toBe('text_completion llama')
    expect(s.kind).toBe(SpanKind.SERVER)
    expect(s.spanContext().traceId).toBe(TRACE)
    expect(s.spanContext().spanId).toBe(tr.spanId)
    expect(s.spanContext().traceState?.get('vendor')).toBe('x')
    expect(s.parentSpanContext).toMatchObject({ traceId: TRACE, spanId: PARENT, isRemote: true })
    expect(s.attributes).toEqual({
      'gen_ai.operation.name': 'text_completion',
      'gen_ai.request.model': 'llama',
      'infer_gateway.route': 'default/r',
      'http.response.status_code': 503,
      'error.type': 'upstream_unavailable',
    })
    expect(s.status).toEqual({ code: SpanStatusCode.ERROR, message: 'upstream_unavailable' })
    expect(s.events.map((e) => e.name)).toEqual(['infer_gateway.scheduler.decision'])
    const start = hrTimeToMilliseconds(s.startTime)
    const end = hrTimeToMilliseconds(s.endTime)
    // Wall-clock times of this process (not measured against the clock: only ordered).
    expect(end).toBeGreaterThanOrEqual(start)
    expect(start).toBeGreaterThan(Date.UTC(2020, 0, 1))
    expect(hrTimeToMilliseconds(s.duration)).toBeCloseTo(end - start, 3)
    // The event's wall-clock time (computed at export) falls within the span.
    const at = hrTimeToMilliseconds(s.events[0]?.time ?? [0, 0])
    expect(at).toBeGreaterThanOrEqual(start)
    expect(at).toBeLessThanOrEqual(end)
    await t.shutdown()
  })

  it('a new trace gets fresh ids and no parent; an unroutable model stays out of the name', async () => {
    const exporter = new InMemorySpanExporter()
    const t = new Tracing({ endpoint: 'http://127.0.0.1:9/', exporter })
    // An invalid traceparent is a new trace, not an error.
    const a = t.start(header({ traceparent: 'not-a-traceparent' }), 'chat')
    const b = t.start(header({}), 'chat')
    if (a === undefined || b === undefined) throw new Error('ratio 1 records every new trace')
    expect(a.traceId).toMatch(/^[0-9a-f]{32}$/)
    expect(a.spanId).toMatch(/^[0-9a-f]{16}$/)
    expect(a.traceId).not.toBe(b.traceId)
    expect(a.spanId).not.toBe(b.spanId)
    a.model('whatever-the-caller-sent', false)
    a.end(404, {}, 'model_not_found')
    b.end(200, {})
    await t.flush()
    const [sa, sb] = exporter.getFinishedSpans()
    expect(sa?.name).toBe('chat')
    expect(sa?.attributes['gen_ai.request.model']).toBe('whatever-the-caller-sent')
    expect(sa?.status.code).toBe(SpanStatusCode.UNSET) // 4xx is the client's error
    expect(sa?.parentSpanContext).toBeUndefined()
    expect(sb?.attributes['error.type']).toBeUndefined()
    await t.shutdown()
  })

  it('an unsampled client parent is never recorded, whatever the ratio', async () => {
    const t = new Tracing({ endpoint: 'http://127.0.0.1:9/', sampleRatio: 1 })
    expect(t.start(header({ traceparent: `00-${TRACE}-${PARENT}-00` }), 'chat')).toBeUndefined()
    await t.shutdown()
  })
})

describe('export off the request path', () => {
  it('hands ended spans over after the turn and exports them in batches of EXPORT_BATCH', async () => {
    const exporter = new BatchSizes()
    // No timer export during the test: only a full batch starts one.
    const t = new Tracing({ endpoint: 'http://127.0.0.1:9/', exporter, exportDelayMs: 60_000 })
    const n = EXPORT_BATCH * 3
    for (let i = 0; i < n; i++) t.start(() => undefined, 'chat')?.end(200, {})
    // Ending a request encodes and sends nothing, even when a batch is full.
    expect(exporter.sizes).toEqual([])
    await vi.waitFor(() => expect(exporter.getFinishedSpans().length).toBe(n))
    expect(exporter.sizes).toEqual([EXPORT_BATCH, EXPORT_BATCH, EXPORT_BATCH])
    await t.shutdown()
  })

  it('flush and shutdown export spans still waiting for their hand-over', async () => {
    const exporter = new BatchSizes()
    const t = new Tracing({ endpoint: 'http://127.0.0.1:9/', exporter, exportDelayMs: 60_000 })
    t.start(() => undefined, 'chat')?.end(200, {})
    await t.flush()
    expect(exporter.sizes).toEqual([1])
    t.start(() => undefined, 'chat')?.end(200, {})
    await t.shutdown()
    expect(exporter.sizes).toEqual([1, 1])
  })

  it('a flush of a full queue exports every batch over OTLP/HTTP at once', async () => {
    // A real OTLP/HTTP endpoint on loopback, counting the spans of each (protobuf) request.
    let received = 0
    const server = createServer((req, res) => {
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => chunks.push(c))
      req.on('end', () => {
        received += otlpSpanCount(Buffer.concat(chunks), req.headers['content-type'])
        // An empty ExportTraceServiceResponse: full success.
        res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end()
      })
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.91', r))
    const { port } = server.address() as AddressInfo
    try {
      const t = new Tracing({ endpoint: `http://127.0.0.91:${port}`, exportDelayMs: 60_000 })
      // Ended in one turn: all are queued before any export starts, and a flush sends them as
      // MAX_QUEUE / EXPORT_BATCH concurrent requests (the exporter's own limit must allow them).
      const n = MAX_QUEUE
      for (let i = 0; i < n; i++) t.start(() => undefined, 'chat')?.end(200, {})
      await t.flush()
      expect(received).toBe(n)
      await t.shutdown()
    } finally {
      await new Promise((r) => server.close(r))
    }
  })
})
