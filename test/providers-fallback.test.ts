// Fallback across self-hosted pools and providers: a pool scaled to zero or answering 503 hands
// the request to a provider; a provider's 429 to the next one; an early error event (nothing sent
// yet) still falls back; a failure after the first byte ends the stream with an error event and
// tries nothing else; conditions not listed in `fallback.on` do not fall back.
import OpenAI from 'openai'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type SimServer, startAnthropicSim, startOpenAISim } from '../hack/providers-sim/index.js'
import { type SimHandle, startSimulator } from '../hack/sim/index.js'
import { parseProm, promSum } from '../hack/sim/testkit.js'
import {
  type Obj,
  type ProviderGateway,
  providerDoc,
  routeDoc,
  secretEntry,
  serverDocs,
  startProviderGateway,
} from './helpers/providers.js'
import { deadPort } from './helpers/upstream.js'

let engine: SimHandle
let busy: SimHandle
let openai: SimServer
let claude: SimServer
let pg: ProviderGateway
let client: OpenAI

const OPENAI_KEY = 'sk-openai-fallback'
const CLAUDE_KEY = 'sk-ant-fallback'

beforeAll(async () => {
  engine = await startSimulator({
    name: 'ok',
    host: '127.0.0.70',
    port: 0,
    model: 'llama',
    metricsFormat: 'vllm',
    timeScale: 0.01,
  })
  busy = await startSimulator({
    name: 'busy',
    host: '127.0.0.71',
    port: 0,
    model: 'llama',
    metricsFormat: 'vllm',
    timeScale: 0.01,
    failures: { forceStatus: 503 },
  })
  openai = await startOpenAISim({ host: '127.0.0.72', flavor: 'openai', name: 'openai' })
  openai.keys.add(OPENAI_KEY)
  claude = await startAnthropicSim({ host: '127.0.0.73', name: 'claude' })
  claude.keys.add(CLAUDE_KEY)
  const dead = await deadPort('127.0.0.74')
  const toOpenAI = { externalModelProviderName: 'openai' }
  const rule = (targets: Obj[], fallback: Obj[], on?: string[]): Obj => ({
    targetModels: targets,
    fallback: { targets: fallback, ...(on ? { on } : {}) },
  })
  pg = await startProviderGateway(
    [
      ...serverDocs(
        'zero',
        [{ name: 'p0', address: '127.0.0.70', port: engine.port, ready: false }],
        { model: 'llama' },
      ),
      ...serverDocs('busy', [{ name: 'b0', address: '127.0.0.71', port: busy.port }], {
        model: 'llama',
      }),
      ...serverDocs('ok', [{ name: 'o0', address: '127.0.0.70', port: engine.port }], {
        model: 'llama',
      }),
      providerDoc('openai', {
        providerType: 'OpenAI',
        model: 'gpt-4o-mini',
        baseURL: `${openai.url}/v1`,
        auth: { secretRef: { name: 'openai', key: 'key' } },
      }),
      providerDoc('claude', {
        providerType: 'Anthropic',
        model: 'claude-haiku',
        baseURL: claude.url,
        auth: { secretRef: { name: 'claude', key: 'key' } },
      }),
      providerDoc('unreachable', {
        providerType: 'OpenAICompatible',
        baseURL: `http://127.0.0.74:${dead}/v1`,
      }),
      routeDoc('scaled-to-zero', 'zero-model', [rule([{ modelServerName: 'zero' }], [toOpenAI])]),
      routeDoc('pool-503', 'busy-model', [rule([{ modelServerName: 'busy' }], [toOpenAI])]),
      routeDoc('spill', 'spill-model', [
        rule([{ externalModelProviderName: 'claude' }], [toOpenAI]),
      ]),
      routeDoc('chain', 'chain-model', [
        rule(
          [{ modelServerName: 'zero' }],
          [
            { externalModelProviderName: 'unreachable' },
            { externalModelProviderName: 'claude' },
            toOpenAI,
          ],
        ),
      ]),
      routeDoc('only-zero', 'strict-model', [
        rule([{ externalModelProviderName: 'claude' }], [toOpenAI], ['no-ready-endpoints']),
      ]),
      routeDoc('skip', 'skip-model', [
        rule([{ modelServerName: 'zero' }], [{ externalModelProviderName: 'claude' }]),
      ]),
      routeDoc('split', 'split-model', [
        {
          targetModels: [
            { modelServerName: 'ok', weight: 50 },
            { externalModelProviderName: 'openai', weight: 50 },
          ],
        },
      ]),
    ],
    { [secretEntry('openai', 'key')]: OPENAI_KEY, [secretEntry('claude', 'key')]: CLAUDE_KEY },
  )
  client = new OpenAI({ baseURL: `${pg.gw.url}/v1`, apiKey: 'client', maxRetries: 0 })
})

afterAll(async () => {
  await pg?.close()
  await Promise.all([engine?.close(), busy?.close(), openai?.close(), claude?.close()])
})

const ask = (model: string, content = 'hi') =>
  client.chat.completions.create({ model, messages: [{ role: 'user', content }] })

describe('fallback from self-hosted to providers', () => {
  it('a pool scaled to zero: the provider answers', async () => {
    const n = openai.requests.length
    const r = await ask('zero-model')
    expect(r.choices[0]?.message.content).toBe('Hello from openai. You said: hi')
    expect(openai.requests.length).toBe(n + 1)
    expect(pg.log.at(-1)).toMatchObject({
      status: 200,
      provider: 'default/openai',
      fallbacks: [
        {
          target: 'server:default/zero',
          reason: 'no-ready-endpoints',
          status: 503,
          code: 'no_ready_endpoint',
        },
      ],
    })
  })

  it('a pool answering 503: the provider answers, stream too', async () => {
    const r = await ask('busy-model')
    expect(r.choices[0]?.message.content).toBe('Hello from openai. You said: hi')
    const stream = await client.chat.completions.create({
      model: 'busy-model',
      messages: [{ role: 'user', content: 'streamed' }],
      stream: true,
    })
    let text = ''
    for await (const c of stream) text += c.choices[0]?.delta.content ?? ''
    expect(text).toBe('Hello from openai. You said: streamed')
    const m = await pg.gw.metrics.registry.metrics()
    expect(
      promSum(parseProm(m), 'infer_gateway_fallbacks_total', {
        route: 'default/pool-503',
        from: 'server:default/busy',
        to: 'provider:default/openai',
        reason: '5xx',
      }),
    ).toBe(2)
  })

  it('weights split traffic across a pool and a provider', async () => {
    const before = openai.requests.length
    const results = await Promise.all(Array.from({ length: 40 }, () => ask('split-model')))
    const fromProvider = openai.requests.length - before
    expect(results.every((r) => (r.choices[0]?.message.content ?? '') !== '')).toBe(true)
    expect(fromProvider).toBeGreaterThan(0)
    expect(fromProvider).toBeLessThan(40)
  })
})

describe('fallback between providers', () => {
  it('a provider 429 moves on to the next provider', async () => {
    claude.failNext(429, 1, '5')
    const r = await ask('spill-model')
    expect(r.choices[0]?.message.content).toBe('Hello from openai. You said: hi')
    expect(pg.log.at(-1)).toMatchObject({
      fallbacks: [{ target: 'provider:default/claude', reason: '429', status: 429 }],
    })
  })

  it('walks a chain: no endpoints → connect failure → the third target answers', async () => {
    const r = await ask('chain-model')
    expect(r.choices[0]?.message.content).toBe('Hello from claude. You said: hi')
    expect(
      (pg.log.at(-1) as { fallbacks?: { reason: string }[] }).fallbacks?.map((f) => f.reason),
    ).toEqual(['no-ready-endpoints', 'connect-failure'])
  })

  it('an error event before any output still falls back (nothing was sent)', async () => {
    claude.errorAfter = 0
    try {
      const stream = await client.chat.completions.create({
        model: 'spill-model',
        messages: [{ role: 'user', content: 'early' }],
        stream: true,
      })
      let text = ''
      for await (const c of stream) text += c.choices[0]?.delta.content ?? ''
      expect(text).toBe('Hello from openai. You said: early')
    } finally {
      claude.errorAfter = null
    }
  })

  it('a failure after the first byte: error event, no fallback', async () => {
    claude.cutAfter = 4
    const n = openai.requests.length
    try {
      const stream = await client.chat.completions.create({
        model: 'spill-model',
        messages: [{ role: 'user', content: 'this will be cut' }],
        stream: true,
      })
      let text = ''
      const err = await (async () => {
        for await (const c of stream) text += c.choices[0]?.delta.content ?? ''
      })().catch((e) => e)
      expect(err?.message).toContain('closed the stream before it finished')
      expect(text.length).toBeGreaterThan(0)
    } finally {
      claude.cutAfter = null
    }
    expect(openai.requests.length).toBe(n)
    expect(pg.log.at(-1)).toMatchObject({
      provider: 'default/claude',
      error_code: 'upstream_stream_cut',
    })
  })

  it('only the listed conditions fall back', async () => {
    claude.failNext(429, 1, '9')
    const n = openai.requests.length
    const err = await ask('strict-model').catch((e) => e)
    expect([err.status, err.headers.get('retry-after')]).toEqual([429, '9'])
    expect(openai.requests.length).toBe(n)
  })

  it('a fallback target that cannot serve the API is skipped; the original failure is returned', async () => {
    const n = claude.requests.length
    const err = await client.completions
      .create({ model: 'skip-model', prompt: 'x' })
      .catch((e) => e)
    expect([err.status, err.code]).toEqual([503, 'no_ready_endpoint'])
    expect(claude.requests.length).toBe(n)
  })
})
