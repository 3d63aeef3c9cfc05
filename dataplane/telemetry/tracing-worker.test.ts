// The export worker thread (tracing.ts → tracing-worker.ts → the SDK's OTLP/HTTP exporter) against
// a real OTLP/HTTP JSON endpoint on loopback: spans arrive whole, a dead collector or a dead worker
// never reaches the request path (drops counted, also on /metrics), shutdown flushes.
import { readFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Worker } from 'node:worker_threads'
import { SpanStatusCode } from '@opentelemetry/api'
import { Registry } from 'prom-client'
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import { statNice } from '../../hack/bench/thread-cpu.js'
import { deadPort } from '../../test/helpers/upstream.js'
import { MAX_QUEUE, POST_DELAY_MS, RESTART_MS, Tracing } from './tracing.js'
import { tracingWorkerCode } from './tracing-worker-code.js'

interface OtlpAttr {
  key: string
  value: { stringValue?: string; intValue?: string; boolValue?: boolean }
}
interface OtlpSpan {
  traceId: string
  spanId: string
  parentSpanId?: string
  traceState?: string
  name: string
  kind: number
  startTimeUnixNano: string
  endTimeUnixNano: string
  attributes: OtlpAttr[]
  events?: { name: string; timeUnixNano: string; attributes?: OtlpAttr[] }[]
  status?: { code?: number; message?: string }
}
interface OtlpRequest {
  resourceSpans: { resource: { attributes: OtlpAttr[] }; scopeSpans: { spans: OtlpSpan[] }[] }[]
}

const HOST = '127.0.0.93'
const TRACE = '0af7651916cd43dd8448eb211c80319c'
const PARENT = 'b7ad6b7169203331'
const none = (): undefined => undefined

/** An OTLP/HTTP JSON traces endpoint keeping every span it was sent, with its service.name. */
async function collector(): Promise<{ url: string; spans: OtlpSpan[]; services: string[] }> {
  const spans: OtlpSpan[] = []
  const services: string[] = []
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString()) as OtlpRequest
      for (const rs of body.resourceSpans) {
        const svc = rs.resource.attributes.find((a) => a.key === 'service.name')
        for (const ss of rs.scopeSpans)
          for (const s of ss.spans) {
            spans.push(s)
            services.push(svc?.value.stringValue ?? '')
          }
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}')
    })
  })
  await new Promise<void>((r) => server.listen(0, HOST, r))
  cleanups.push(() => new Promise((r) => server.close(() => r())))
  return { url: `http://${HOST}:${(server.address() as AddressInfo).port}`, spans, services }
}

// From the sources the worker's script is bundled by esbuild on first use (tracing-worker-code.ts):
// once per file, outside any test's timeout.
beforeAll(() => tracingWorkerCode().then(() => undefined), 120_000)

const cleanups: (() => Promise<void>)[] = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

function tracing(url: string, extra: Partial<ConstructorParameters<typeof Tracing>[0]> = {}) {
  const registry = new Registry()
  const t = new Tracing(
    // JSON: the stand-in collector reads it (protobuf, the default, is checked against the
    // Collector's receiver in otlp-exporter.test.ts).
    {
      endpoint: url,
      protocol: 'http/json',
      exportDelayMs: 60_000,
      serviceName: 'svc-under-test',
      ...extra,
    },
    { registry },
  )
  cleanups.push(() => t.shutdown())
  return { t, registry }
}

function value(a: OtlpAttr[] | undefined, key: string): string | number | boolean | undefined {
  const v = a?.find((x) => x.key === key)?.value
  if (v === undefined) return undefined
  return v.intValue !== undefined ? Number(v.intValue) : (v.stringValue ?? v.boolValue)
}

describe('the export worker', () => {
  it('sends each span whole: ids, parent, tracestate, attributes, events, status, times', async () => {
    const c = await collector()
    const { t } = tracing(c.url)
    const tr = t.start(
      (n) =>
        n === 'traceparent'
          ? `00-${TRACE}-${PARENT}-01`
          : n === 'tracestate'
            ? 'vendor=x'
            : undefined,
      'chat',
    )
    if (tr === undefined) throw new Error('a sampled parent is recorded')
    tr.event('infer_gateway.scheduler.decision', {
      'infer_gateway.endpoint': '10.0.0.1:8000',
      'infer_gateway.candidates': 3,
    })
    tr.model('llama', true)
    tr.end(502, { 'infer_gateway.route': 'default/r', 'infer_gateway.stream': true }, 'bad_gw')
    // A new trace without a parent, in the same batch.
    t.start(none, 'embeddings')?.end(200, {})
    await t.flush()
    expect(c.spans.length).toBe(2)
    expect(c.services).toEqual(['svc-under-test', 'svc-under-test'])
    const s = c.spans.find((x) => x.traceId === TRACE)
    if (s === undefined) throw new Error('the parented span did not arrive')
    expect(s.spanId).toBe(tr.spanId)
    expect(s.parentSpanId).toBe(PARENT)
    expect(s.traceState).toBe('vendor=x')
    expect(s.name).toBe('chat llama')
    expect(s.kind).toBe(2) // SPAN_KIND_SERVER
    expect(s.status).toEqual({ code: SpanStatusCode.ERROR, message: 'bad_gw' })
    expect(value(s.attributes, 'infer_gateway.route')).toBe('default/r')
    expect(value(s.attributes, 'infer_gateway.stream')).toBe(true)
    expect(value(s.attributes, 'http.response.status_code')).toBe(502)
    expect(value(s.attributes, 'gen_ai.request.model')).toBe('llama')
    expect(value(s.attributes, 'error.type')).toBe('bad_gw')
    const ev = s.events?.[0]
    expect(ev?.name).toBe('infer_gateway.scheduler.decision')
    expect(value(ev?.attributes, 'infer_gateway.candidates')).toBe(3)
    const [start, end, at] = [s.startTimeUnixNano, s.endTimeUnixNano, ev?.timeUnixNano ?? '0'].map(
      BigInt,
    ) as [bigint, bigint, bigint]
    expect(start).toBeGreaterThan(BigInt(Date.UTC(2020, 0, 1)) * 1_000_000n)
    expect(at >= start && at <= end).toBe(true)
    const fresh = c.spans.find((x) => x.traceId !== TRACE)
    expect(fresh?.name).toBe('embeddings')
    expect(fresh?.parentSpanId ?? '').toBe('')
    expect(fresh?.events ?? []).toEqual([])
    expect(t.stats()).toEqual({
      exported: 2,
      dropped: { export_failed: 0, queue_full: 0, worker_exit: 0 },
    })
  })

  it('a collector that is down costs the request path nothing: failed exports are counted', async () => {
    const { t, registry } = tracing(`http://${HOST}:${await deadPort(HOST)}`, {
      exportTimeoutMs: 300,
    })
    for (let i = 0; i < 5; i++) t.start(none, 'chat')?.end(200, {})
    await t.flush()
    expect(t.stats()).toEqual({
      exported: 0,
      dropped: { export_failed: 5, queue_full: 0, worker_exit: 0 },
    })
    const text = await registry.metrics()
    expect(text).toContain('infer_gateway_trace_spans_dropped_total{reason="export_failed"} 5')
    expect(text).toContain('infer_gateway_trace_spans_exported_total 0')
  })

  it('holds at most MAX_QUEUE spans; the rest are dropped and counted', async () => {
    const c = await collector()
    const { t, registry } = tracing(c.url)
    // All ended in one turn: none has been answered for yet.
    for (let i = 0; i < MAX_QUEUE + 7; i++) t.start(none, 'chat')?.end(200, {})
    expect(t.stats().dropped.queue_full).toBe(7)
    await t.flush()
    expect(c.spans.length).toBe(MAX_QUEUE)
    expect(await registry.metrics()).toContain(
      'infer_gateway_trace_spans_dropped_total{reason="queue_full"} 7',
    )
    // Answered for: room again.
    t.start(none, 'chat')?.end(200, {})
    await t.flush()
    expect(t.stats().exported).toBe(MAX_QUEUE + 1)
  })

  it('a worker that dies loses what it held (counted); a new one takes over', async () => {
    const c = await collector()
    const { t } = tracing(c.url)
    t.start(none, 'chat')?.end(200, {})
    await t.flush()
    expect(c.spans.length).toBe(1)
    const w = t.worker()
    if (w === undefined) throw new Error('the worker runs after a flush')
    // Handed over (posted) but not exported when the thread ends, as in a crash.
    t.start(none, 'chat')?.end(200, {})
    t.start(none, 'chat')?.end(200, {})
    await new Promise((r) => setTimeout(r, POST_DELAY_MS + 250)) // the batch's timer posts them
    await w.terminate()
    expect(t.stats().dropped.worker_exit).toBe(2)
    expect(t.worker()).toBeUndefined()
    // Spans keep being taken; once RESTART_MS has passed a new worker exports them.
    await vi.waitFor(
      async () => {
        t.start(none, 'chat')?.end(200, {})
        await t.flush()
        // A new thread, not the one that was terminated.
        expect(t.worker()).toBeInstanceOf(Worker)
        expect(t.worker()).not.toBe(w)
        expect(c.spans.length).toBeGreaterThan(1)
      },
      { timeout: RESTART_MS * 20, interval: 100 },
    )
    expect(t.stats().exported).toBe(c.spans.length)
  })

  it.runIf(process.platform === 'linux')(
    'the worker runs at the lowest OS priority, on its own thread only',
    async () => {
      const c = await collector()
      const { t } = tracing(c.url)
      t.start(none, 'chat')?.end(200, {})
      await t.flush()
      const p = t.workerPriority()
      if (p === undefined || 'error' in p) throw new Error(`not lowered: ${JSON.stringify(p)}`)
      expect(p.tid).not.toBe(process.pid)
      // Read back from the kernel, not from what the worker said.
      const nice = (tid: number): number =>
        statNice(readFileSync(`/proc/${process.pid}/task/${tid}/stat`, 'utf8'))
      expect(nice(p.tid)).toBe(19)
      expect(nice(process.pid)).not.toBe(19)
      expect(c.spans.length).toBe(1)
    },
  )

  it('a worker that cannot lower its priority says why and still exports', async () => {
    const c = await collector()
    // 20 is outside -20..19: the OS call is refused (os.setPriority throws).
    const { t } = tracing(c.url, { workerNice: 20 })
    for (let i = 0; i < 3; i++) t.start(none, 'chat')?.end(200, {})
    await t.flush()
    expect(t.workerPriority()).toEqual({ error: expect.stringContaining('priority') })
    expect(c.spans.length).toBe(3)
    expect(t.stats().exported).toBe(3)
  })

  it('shutdown exports what waits, ends the worker, and counts later spans as dropped', async () => {
    const c = await collector()
    const t = new Tracing({ endpoint: c.url, protocol: 'http/json', exportDelayMs: 60_000 })
    for (let i = 0; i < 3; i++) t.start(none, 'chat')?.end(200, {})
    await t.shutdown()
    expect(c.spans.length).toBe(3)
    expect(t.worker()).toBeUndefined()
    t.start(none, 'chat')?.end(200, {})
    expect(t.stats()).toEqual({
      exported: 3,
      dropped: { export_failed: 0, queue_full: 0, worker_exit: 1 },
    })
  })
})
