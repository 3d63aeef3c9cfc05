// OpenTelemetry traces against a real OTLP receiver: the OpenTelemetry Collector's otlpreceiver
// (hack/otlp-receiver, built from the Go module proxy by hack/ensure-test-deps.sh) writes what it
// receives to a file, and the spans are checked there. A client's W3C traceparent is the parent
// of the gateway's span; the engine and the provider receive the gateway span's context.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import OpenAI from 'openai'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { tracingWorkerCode } from '../dataplane/telemetry/tracing-worker-code.js'
import { type SimServer, startOpenAISim } from '../hack/providers-sim/index.js'
import { type SimHandle, startSimulator } from '../hack/sim/index.js'
import { gatewayPolicy, sha256 } from './helpers/filters.js'
import {
  type ProviderGateway,
  providerDoc,
  routeDoc,
  secretEntry,
  serverDocs,
  simpleRoute,
  startProviderGateway,
} from './helpers/providers.js'
import { deadPort } from './helpers/upstream.js'

interface OtlpValue {
  stringValue?: string
  intValue?: string
  boolValue?: boolean
  doubleValue?: number
}
interface OtlpAttr {
  key: string
  value: OtlpValue
}
interface OtlpSpan {
  traceId: string
  spanId: string
  parentSpanId: string
  name: string
  kind: number
  attributes?: OtlpAttr[]
  events?: { name: string; attributes?: OtlpAttr[] }[]
  status?: { code?: number }
}
interface Batch {
  resourceSpans: { resource: { attributes?: OtlpAttr[] }; scopeSpans: { spans: OtlpSpan[] }[] }[]
}

const KEY = 'sk-trace-test'
const GOLD_KEY = 'sk-gold-caller'
let receiver: ChildProcess
let outDir: string
let engine: SimHandle
let provider: SimServer
let pg: ProviderGateway
let client: OpenAI

function receiverBin(): string {
  const build = join(import.meta.dirname, '..', 'hack', 'otlp-receiver', 'build.sh')
  const bin = spawnSync('bash', [build, '--print-bin'], { encoding: 'utf8' }).stdout.trim()
  // CI builds it in ensure-test-deps; a developer's first run builds it here (idempotent).
  if (!existsSync(bin)) spawnSync('bash', [build], { stdio: 'inherit' })
  return bin
}

async function spans(): Promise<OtlpSpan[]> {
  let text: string
  try {
    text = await readFile(join(outDir, 'traces.jsonl'), 'utf8')
  } catch {
    return []
  }
  const out: OtlpSpan[] = []
  for (const line of text.split('\n')) {
    if (line === '') continue
    const b = JSON.parse(line) as Batch
    for (const rs of b.resourceSpans) for (const ss of rs.scopeSpans) out.push(...ss.spans)
  }
  return out
}

async function spanOf(traceId: string): Promise<OtlpSpan> {
  return vi.waitFor(
    async () => {
      const s = (await spans()).find((x) => x.traceId === traceId)
      if (s === undefined) throw new Error(`no span of trace ${traceId} received`)
      return s
    },
    { timeout: 10_000, interval: 50 },
  )
}

function attr(s: OtlpSpan, key: string): string | number | boolean | undefined {
  const v = s.attributes?.find((a) => a.key === key)?.value
  if (v === undefined) return undefined
  if (v.intValue !== undefined) return Number(v.intValue)
  return v.stringValue ?? v.boolValue ?? v.doubleValue
}

const hex = (n: number): string =>
  Array.from({ length: n }, () => Math.floor(Math.random() * 16).toString(16)).join('')

beforeAll(async () => {
  outDir = await mkdtemp(join(tmpdir(), 'igw-otlp-'))
  const port = await deadPort('127.0.0.80')
  receiver = spawn(
    receiverBin(),
    ['-http', `127.0.0.80:${port}`, '-out', join(outDir, 'traces.jsonl')],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  )
  await new Promise<void>((resolve, reject) => {
    receiver.once('error', reject)
    receiver.stdout?.once('data', () => resolve())
  })
  engine = await startSimulator({
    name: 'traced',
    host: '127.0.0.81',
    port: 0,
    model: 'llama',
    metricsFormat: 'vllm',
    timeScale: 0.01,
  })
  provider = await startOpenAISim({ host: '127.0.0.82', flavor: 'openai', name: 'openai' })
  provider.keys.add(KEY)
  pg = await startProviderGateway(
    [
      ...serverDocs('pool', [{ name: 'p0', address: '127.0.0.81', port: engine.port }], {
        model: 'llama',
      }),
      routeDoc('chat', 'chat-model', [{ targetModels: [{ modelServerName: 'pool' }] }]),
      providerDoc('openai', {
        providerType: 'OpenAI',
        model: 'gpt-4o-mini',
        baseURL: `${provider.url}/v1`,
        auth: { secretRef: { name: 'openai', key: 'key' } },
      }),
      simpleRoute('openai', 'gpt'),
      // Callers without a key are anonymous (tier free); one key has a tenant the spans must
      // never carry.
      gatewayPolicy({
        authentication: {
          apiKeys: [
            { name: 'gold-key', secretKey: 'key.gold', tenant: 'tenant-secret-42', tier: 'gold' },
          ],
        },
        anonymous: { tenant: 'public', tier: 'free' },
        defaults: { authorization: { allowAnonymous: true } },
        tiers: [{ name: 'gold' }, { name: 'free' }],
      }),
    ],
    { [secretEntry('openai', 'key')]: KEY, 'key.gold': sha256(GOLD_KEY) },
    { tracing: { endpoint: `http://127.0.0.80:${port}`, exportDelayMs: 50 } },
  )
  // The tracing worker's script (from the sources, bundled by esbuild on first use) is ready
  // before the first test waits for a span.
  await tracingWorkerCode()
  // Anonymous callers (the policy's anonymous identity): no Authorization header at all.
  client = new OpenAI({
    baseURL: `${pg.gw.url}/v1`,
    apiKey: 'unused',
    maxRetries: 0,
    defaultHeaders: { authorization: null },
  })
}, 300_000)

afterAll(async () => {
  await pg?.close()
  await engine?.close()
  await provider?.close()
  receiver?.kill('SIGTERM')
  if (outDir) await rm(outDir, { recursive: true, force: true })
})

const hello = [{ role: 'user' as const, content: 'Tell me a short story about tracing.' }]

describe('OpenTelemetry traces', () => {
  it('a streamed chat: child of the client traceparent, GenAI attributes, decision event, context sent to the engine', async () => {
    const traceId = hex(32)
    const parent = hex(16)
    const stream = await client.chat.completions.create(
      { model: 'chat-model', messages: hello, max_tokens: 5, stream: true },
      { headers: { traceparent: `00-${traceId}-${parent}-01` } },
    )
    for await (const _ of stream) {
      // drain
    }
    const s = await spanOf(traceId)
    expect(s.parentSpanId).toBe(parent)
    expect(s.name).toBe('chat chat-model')
    expect(s.kind).toBe(2) // SERVER
    expect(attr(s, 'gen_ai.operation.name')).toBe('chat')
    expect(attr(s, 'gen_ai.request.model')).toBe('chat-model')
    expect(attr(s, 'gen_ai.response.model')).toBe('llama')
    expect(attr(s, 'gen_ai.usage.output_tokens')).toBe(5)
    expect(attr(s, 'gen_ai.usage.input_tokens')).toBeGreaterThan(5)
    expect(attr(s, 'server.address')).toBe('127.0.0.81')
    expect(attr(s, 'server.port')).toBe(engine.port)
    expect(attr(s, 'infer_gateway.route')).toBe('default/chat')
    expect(attr(s, 'infer_gateway.tier')).toBe('free')
    expect(attr(s, 'http.response.status_code')).toBe(200)
    const decision = s.events?.find((e) => e.name === 'infer_gateway.scheduler.decision')
    expect(
      decision?.attributes?.find((a) => a.key === 'infer_gateway.endpoint')?.value.stringValue,
    ).toBe(`127.0.0.81:${engine.port}`)
    // The engine saw the gateway's span as its parent, in the client's trace.
    expect(engine.traceparents().at(-1)).toBe(`00-${traceId}-${s.spanId}-01`)
  })

  it('a provider request carries the gateway span context to the provider', async () => {
    const traceId = hex(32)
    const r = await client.chat.completions.create(
      { model: 'gpt', messages: hello, max_tokens: 3 },
      { headers: { traceparent: `00-${traceId}-${hex(16)}-01` } },
    )
    expect(r.choices.length).toBe(1)
    const s = await spanOf(traceId)
    expect(attr(s, 'infer_gateway.target')).toBe('provider:default/openai')
    expect(attr(s, 'gen_ai.provider.name')).toBe('OpenAI')
    expect(attr(s, 'gen_ai.response.model')).toBe('gpt-4o-mini')
    const sent = provider.requests.at(-1)?.headers['traceparent']
    expect(sent).toBe(`00-${traceId}-${s.spanId}-01`)
  })

  it('an unsampled client trace records nothing; its traceparent reaches the engine unchanged', async () => {
    const traceId = hex(32)
    const tp = `00-${traceId}-${hex(16)}-00`
    await client.chat.completions.create(
      { model: 'chat-model', messages: hello, max_tokens: 2 },
      { headers: { traceparent: tp } },
    )
    expect(engine.traceparents().at(-1)).toBe(tp)
    // A later sampled request is exported; the unsampled one never is.
    const later = hex(32)
    await client.chat.completions.create(
      { model: 'chat-model', messages: hello, max_tokens: 2 },
      { headers: { traceparent: `00-${later}-${hex(16)}-01` } },
    )
    await spanOf(later)
    expect((await spans()).some((x) => x.traceId === traceId)).toBe(false)
  })

  it('carries the caller tier, never the tenant', async () => {
    const traceId = hex(32)
    const gold = new OpenAI({ baseURL: `${pg.gw.url}/v1`, apiKey: GOLD_KEY, maxRetries: 0 })
    await gold.chat.completions.create(
      { model: 'chat-model', messages: hello, max_tokens: 2 },
      { headers: { traceparent: `00-${traceId}-${hex(16)}-01` } },
    )
    const s = await spanOf(traceId)
    expect(attr(s, 'infer_gateway.tier')).toBe('gold')
    const text = JSON.stringify(s)
    expect(text).not.toContain('tenant-secret-42')
    expect(text).not.toContain(GOLD_KEY)
  })

  it('an error answer is a span too (404 unknown model, error.type)', async () => {
    const traceId = hex(32)
    const res = await fetch(`${pg.gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', traceparent: `00-${traceId}-${hex(16)}-01` },
      body: JSON.stringify({ model: 'nope', messages: hello }),
    })
    expect(res.status).toBe(404)
    const s = await spanOf(traceId)
    expect(attr(s, 'http.response.status_code')).toBe(404)
    expect(attr(s, 'error.type')).toBe('model_not_found')
    expect(attr(s, 'gen_ai.request.model')).toBe('nope')
    // An unrouted model name stays out of the span name (span names must stay few).
    expect(s.name).toBe('chat')
  })
})
