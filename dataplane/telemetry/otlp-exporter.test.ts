// Both OTLP encodings (otlp-exporter.ts) against the OpenTelemetry Collector's own receiver
// (hack/otlp-receiver): the same spans sent over http/protobuf (the default) and http/json arrive
// the same — ids, parent, tracestate, attribute types, events, status, times. And the receiver's
// count-only mode (what bench:tracing runs) counts what it got.
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ExportResultCode } from '@opentelemetry/core'
import { JsonTraceSerializer, ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer'
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace-base'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import {
  type OtlpReceiver,
  otlpSpanCount,
  startOtlpReceiver,
} from '../../test/helpers/otlp-spans.js'
import { COUNTER_SLOTS, SpanExport } from './span-export.js'
import { Tracing } from './tracing.js'
import type { OtlpProtocol } from './tracing-config.js'
import { tracingWorkerCode } from './tracing-worker-code.js'

interface OtlpValue {
  stringValue?: string
  intValue?: string
  boolValue?: boolean
  doubleValue?: number
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
  attributes?: { key: string; value: OtlpValue }[]
  events?: {
    name: string
    timeUnixNano: string
    attributes?: { key: string; value: OtlpValue }[]
  }[]
  status?: { code?: number; message?: string }
}
interface Batch {
  resourceSpans: {
    resource: { attributes?: { key: string; value: OtlpValue }[] }
    scopeSpans: { scope?: { name?: string }; spans: OtlpSpan[] }[]
  }[]
}

const HOST = '127.0.0.147'
const PARENT = 'b7ad6b7169203331'
let dir: string
let receiver: OtlpReceiver

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'igw-otlp-exporter-'))
  receiver = await startOtlpReceiver(HOST, join(dir, 'traces.jsonl'))
  // From the sources the worker's script is bundled by esbuild on first use.
  await tracingWorkerCode()
}, 300_000)

afterAll(async () => {
  await receiver?.stop()
  if (dir !== undefined) await rm(dir, { recursive: true, force: true })
})

async function received(
  file: string,
): Promise<{ service: string; scope: string; span: OtlpSpan }[]> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch {
    return []
  }
  const out: { service: string; scope: string; span: OtlpSpan }[] = []
  for (const line of text.split('\n')) {
    if (line === '') continue
    for (const rs of (JSON.parse(line) as Batch).resourceSpans) {
      const service =
        rs.resource.attributes?.find((a) => a.key === 'service.name')?.value.stringValue ?? ''
      for (const ss of rs.scopeSpans)
        for (const span of ss.spans) out.push({ service, scope: ss.scope?.name ?? '', span })
    }
  }
  return out
}

/** One span with every kind of value the gateway sets, sent over `protocol`; what arrived. */
async function roundTrip(protocol: OtlpProtocol) {
  const t = new Tracing({
    endpoint: receiver.url,
    protocol,
    serviceName: `svc-${protocol}`,
    exportDelayMs: 60_000,
  })
  const trace = Array.from({ length: 32 }, () => Math.floor(Math.random() * 16).toString(16)).join(
    '',
  )
  const before = Date.now()
  const tr = t.start(
    (n) =>
      n === 'traceparent'
        ? `00-${trace}-${PARENT}-01`
        : n === 'tracestate'
          ? 'vendor=x,other=y'
          : undefined,
    'chat',
  )
  if (tr === undefined) throw new Error('a sampled parent is recorded')
  tr.event('infer_gateway.scheduler.decision', {
    'infer_gateway.endpoint': '10.0.0.1:8000',
    'infer_gateway.candidates': 3,
    'infer_gateway.score': 0.75,
  })
  tr.model('llama', true)
  tr.end(
    503,
    {
      'infer_gateway.route': 'default/r',
      'infer_gateway.stream': true,
      'gen_ai.usage.output_tokens': 7,
    },
    'no_capacity',
  )
  await t.shutdown()
  expect(t.stats()).toEqual({
    exported: 1,
    dropped: { export_failed: 0, queue_full: 0, worker_exit: 0 },
  })
  const got = await vi.waitFor(
    async () => {
      const s = (await received(receiver.file)).find((x) => x.span.traceId === trace)
      if (s === undefined) throw new Error(`span of ${trace} not received yet`)
      return s
    },
    { timeout: 10_000, interval: 50 },
  )
  return { got, spanId: tr.spanId, before, after: Date.now() }
}

describe('OTLP encodings against the Collector receiver', () => {
  it.each(['http/protobuf', 'http/json'] as const)('%s: the span arrives whole', async (p) => {
    const { got, spanId, before, after } = await roundTrip(p)
    const s = got.span
    expect(got.service).toBe(`svc-${p}`)
    expect(got.scope).toBe('infer-gateway')
    expect(s.spanId).toBe(spanId)
    expect(s.parentSpanId).toBe(PARENT)
    expect(s.traceState).toBe('vendor=x,other=y')
    expect(s.name).toBe('chat llama')
    expect(s.kind).toBe(2) // SERVER
    expect(s.status).toEqual({ code: 2, message: 'no_capacity' })
    const start = Number(BigInt(s.startTimeUnixNano) / 1_000_000n)
    const end = Number(BigInt(s.endTimeUnixNano) / 1_000_000n)
    expect(start).toBeGreaterThanOrEqual(before - 1)
    expect(end).toBeGreaterThanOrEqual(start)
    expect(end).toBeLessThanOrEqual(after + 1)
    // Attribute types survive both encodings: string, bool, int, and the gateway's own.
    const attrs = Object.fromEntries((s.attributes ?? []).map((a) => [a.key, a.value]))
    expect(attrs).toEqual({
      'infer_gateway.route': { stringValue: 'default/r' },
      'infer_gateway.stream': { boolValue: true },
      'gen_ai.usage.output_tokens': { intValue: '7' },
      'gen_ai.operation.name': { stringValue: 'chat' },
      'gen_ai.request.model': { stringValue: 'llama' },
      'http.response.status_code': { intValue: '503' },
      'error.type': { stringValue: 'no_capacity' },
    })
    expect(s.events?.map((e) => e.name)).toEqual(['infer_gateway.scheduler.decision'])
    const ev = Object.fromEntries((s.events?.[0]?.attributes ?? []).map((a) => [a.key, a.value]))
    expect(ev).toEqual({
      'infer_gateway.endpoint': { stringValue: '10.0.0.1:8000' },
      'infer_gateway.candidates': { intValue: '3' },
      'infer_gateway.score': { doubleValue: 0.75 },
    })
  })

  it('the count-only receiver counts every span of both encodings', async () => {
    const file = join(dir, 'counts.txt')
    const counting = await startOtlpReceiver('127.0.0.148', file, true)
    try {
      for (const [protocol, n] of [
        ['http/protobuf', 70],
        ['http/json', 5],
      ] as const) {
        const t = new Tracing({ endpoint: counting.url, protocol, exportDelayMs: 60_000 })
        for (let i = 0; i < n; i++) t.start(() => undefined, 'chat')?.end(200, { i })
        await t.shutdown()
        expect(t.stats().exported).toBe(n)
      }
      await vi.waitFor(
        async () => {
          const lines = (await readFile(file, 'utf8')).split('\n').filter((l) => l !== '')
          expect(lines.reduce((a, l) => a + Number(l), 0)).toBe(75)
        },
        { timeout: 10_000, interval: 50 },
      )
    } finally {
      await counting.stop()
    }
  })
})

describe('the protocol setting', () => {
  it('picks the encoding on the wire: protobuf by default, JSON when asked', async () => {
    const seen: (string | undefined)[] = []
    const server = createServer((req, res) => {
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => chunks.push(c))
      req.on('end', () => {
        const type = req.headers['content-type']
        seen.push(`${type} ${otlpSpanCount(Buffer.concat(chunks), type)}`)
        res.writeHead(200, { 'content-type': type }).end(type === 'application/json' ? '{}' : '')
      })
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.149', r))
    try {
      const url = `http://127.0.0.149:${(server.address() as AddressInfo).port}`
      for (const protocol of [undefined, 'http/json', 'http/protobuf'] as const) {
        const t = new Tracing({
          endpoint: url,
          exportDelayMs: 60_000,
          ...(protocol ? { protocol } : {}),
        })
        for (let i = 0; i < 2; i++) t.start(() => undefined, 'chat')?.end(200, {})
        await t.shutdown()
      }
      expect(seen).toEqual([
        'application/x-protobuf 2',
        'application/json 2',
        'application/x-protobuf 2',
      ])
    } finally {
      await new Promise((r) => server.close(r))
    }
  })
})

describe('otlpSpanCount (the tests’ stand-in endpoints)', () => {
  it('counts the spans of the SDK’s protobuf and JSON requests alike', async () => {
    let spans: ReadableSpan[] = []
    const capture: SpanExporter = {
      export(s, done) {
        spans = s
        done({ code: ExportResultCode.SUCCESS })
      },
      shutdown: async () => {},
    }
    const exp = new SpanExport(
      { url: 'http://unused', protocol: 'http/protobuf', serviceName: 's', exportDelayMs: 60_000 },
      new Int32Array(new SharedArrayBuffer(COUNTER_SLOTS * 4)),
      capture,
    )
    const rec = (i: number) =>
      [
        'chat',
        `${i}`.padStart(32, 'a'),
        `${i}`.padStart(16, 'b'),
        i % 2 === 0 ? '' : 'c'.repeat(16),
        '',
        1,
        2,
        0,
        '',
        { k: i, s: 'x'.repeat(200) },
        i % 3 === 0 ? [['e', 1.5, { n: i }] as const] : undefined,
      ] as const
    exp.add(Array.from({ length: 37 }, (_, i) => rec(i)))
    await exp.flush()
    expect(spans.length).toBe(37)
    const pb = ProtobufTraceSerializer.serializeRequest(spans)
    const js = JsonTraceSerializer.serializeRequest(spans)
    if (pb === undefined || js === undefined) throw new Error('serializer returned nothing')
    expect(otlpSpanCount(Buffer.from(pb), 'application/x-protobuf')).toBe(37)
    expect(otlpSpanCount(Buffer.from(js), 'application/json')).toBe(37)
    expect(() => otlpSpanCount(Buffer.from(pb), 'text/plain')).toThrow(/content type/)
  })
})
