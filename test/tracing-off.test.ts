// Tracing off costs nothing per request: no span is started or ended, and a client's traceparent
// reaches the engine unchanged. The same request through a gateway with tracing on (ratio 1; spans
// kept by the SDK's in-memory exporter) starts and exports exactly one span, so the spies can tell
// the two apart. On but not sampled (ratio 0), a request does no span work either. And off, the
// OpenTelemetry SDK is not even loaded.
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { BatchSpanProcessor, InMemorySpanExporter } from '@opentelemetry/sdk-trace-base'
import OpenAI from 'openai'
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import { RequestTrace, Tracing } from '../dataplane/telemetry/tracing.js'
import { type SimHandle, startSimulator } from '../hack/sim/index.js'
import {
  type ProviderGateway,
  routeDoc,
  serverDocs,
  startProviderGateway,
} from './helpers/providers.js'

const root = join(import.meta.dirname, '..')
let engine: SimHandle
const exporter = new InMemorySpanExporter()
const gateways: ProviderGateway[] = []

async function gateway(tracing: boolean, sampleRatio = 1): Promise<ProviderGateway> {
  const docs = [
    ...serverDocs('pool', [{ name: 'p0', address: '127.0.0.85', port: engine.port }], {
      model: 'llama',
    }),
    routeDoc('chat', 'chat-model', [{ targetModels: [{ modelServerName: 'pool' }] }]),
  ]
  const extra = tracing
    ? { tracing: { endpoint: 'http://127.0.0.86:4318', exporter, exportDelayMs: 20, sampleRatio } }
    : {}
  const pg = await startProviderGateway(docs, {}, extra)
  gateways.push(pg)
  return pg
}

async function chat(pg: ProviderGateway, traceparent?: string): Promise<void> {
  const client = new OpenAI({ baseURL: `${pg.gw.url}/v1`, apiKey: 'unused', maxRetries: 0 })
  await client.chat.completions.create(
    { model: 'chat-model', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 },
    traceparent !== undefined ? { headers: { traceparent } } : {},
  )
}

beforeAll(async () => {
  engine = await startSimulator({
    name: 'untraced',
    host: '127.0.0.85',
    port: 0,
    model: 'llama',
    metricsFormat: 'vllm',
    timeScale: 0.01,
  })
})

afterEach(() => {
  vi.restoreAllMocks()
})

afterAll(async () => {
  for (const pg of gateways) await pg.close()
  await engine?.close()
})

describe('tracing off', () => {
  const tp = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'

  it('starts and ends no span; the client traceparent passes through unchanged', async () => {
    const pg = await gateway(false)
    const start = vi.spyOn(Tracing.prototype, 'start')
    const ended = vi.spyOn(BatchSpanProcessor.prototype, 'onEnd')
    await chat(pg, tp)
    expect(engine.traceparents().at(-1)).toBe(tp)
    expect(start).not.toHaveBeenCalled()
    expect(ended).not.toHaveBeenCalled()
  })

  it('on, the same request is one span and the engine gets its context', async () => {
    const pg = await gateway(true)
    const start = vi.spyOn(Tracing.prototype, 'start')
    const ended = vi.spyOn(BatchSpanProcessor.prototype, 'onEnd')
    await chat(pg, tp)
    expect(start).toHaveBeenCalledTimes(1)
    await vi.waitFor(() => expect(ended).toHaveBeenCalledTimes(1))
    await vi.waitFor(() => expect(exporter.getFinishedSpans().length).toBe(1))
    const sent = engine.traceparents().at(-1)
    expect(sent).toMatch(/^00-4bf92f3577b34da6a3ce929d0e0e4736-[0-9a-f]{16}-01$/)
    expect(sent).not.toBe(tp)
  })

  it('on but not sampled (ratio 0), a request makes no span, ids, traceparent or export', async () => {
    const pg = await gateway(true, 0)
    const start = vi.spyOn(Tracing.prototype, 'start')
    const traceparent = vi.spyOn(RequestTrace.prototype, 'traceparent')
    const end = vi.spyOn(RequestTrace.prototype, 'end')
    const ended = vi.spyOn(BatchSpanProcessor.prototype, 'onEnd')
    const exported = exporter.getFinishedSpans().length
    const seen = engine.traceparents().length
    await chat(pg)
    await chat(pg)
    expect(start).toHaveBeenCalledTimes(2)
    expect(start.mock.results.map((r) => r.value)).toEqual([undefined, undefined])
    expect(traceparent).not.toHaveBeenCalled()
    expect(end).not.toHaveBeenCalled()
    // The engine saw both requests, neither with a traceparent the gateway made up.
    expect(engine.traceparents().length).toBe(seen)
    await new Promise((r) => setImmediate(r))
    expect(ended).not.toHaveBeenCalled()
    expect(exporter.getFinishedSpans().length).toBe(exported)
  })

  it('does not load the OpenTelemetry SDK (the settings module does not import it)', () => {
    // A fresh process: this test file itself imports the SDK. The data plane's entry points are
    // loaded and the tracing flags read; then the span recorder, to prove the check sees a load.
    // The API package does not count: prom-client loads it (exemplars) whatever tracing does.
    const url = (p: string): string => JSON.stringify(pathToFileURL(join(root, p)).href)
    const script = `
      const { createRequire } = await import('node:module')
      const otel = () => Object.keys(createRequire(import.meta.url).cache).filter((k) => /@opentelemetry\\/(?!api\\/)/.test(k)).length
      const { tracingArgs } = await import(${url('dataplane/command.ts')})
      await import(${url('dataplane/gateway.ts')})
      tracingArgs({}, {})
      const off = otel()
      await import(${url('dataplane/telemetry/tracing.ts')})
      process.stdout.write(JSON.stringify({ off, on: otel() }))`
    const r = spawnSync(
      process.execPath,
      ['--import', 'tsx', '--input-type=module', '-e', script],
      {
        cwd: root,
        encoding: 'utf8',
      },
    )
    expect(r.stderr).toBe('')
    const loaded = JSON.parse(r.stdout) as { off: number; on: number }
    expect(loaded.off).toBe(0)
    expect(loaded.on).toBeGreaterThan(0)
  })
})
