// Precise KV-cache routing end to end: simulated vLLM engines publishing KV events (ZMQ, vLLM's
// wire format) behind the real data plane with the kv-cache scorer, called with the openai client.
// A prompt group follows the engine that holds its blocks; when that engine evicts them and another
// engine computes them, the group follows the events to the new holder, which the approximate
// index (what we dispatched) would not know.
import OpenAI from 'openai'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type Gateway, startGateway } from '../dataplane/gateway.js'
import { type SimHandle, startSimulator } from '../hack/sim/index.js'
import { postJson } from '../hack/sim/testkit.js'
import { ConfigVolume, manifests } from './helpers/config.js'
import { until } from './helpers/until.js'

const EVENTS_PORT = 25557
const REPLAY_PORT = 25558
const HOSTS = ['127.0.2.21', '127.0.2.22', '127.0.2.23']
const SYSTEM = (topic: string) =>
  `You are the support assistant for ${topic}. ${'Answer politely, cite the manual, keep it short. '.repeat(8)}`

type Obj = Record<string, unknown>

let sims: SimHandle[] = []
let gw: Gateway
let vol: ConfigVolume
let client: OpenAI
const log: Obj[] = []

beforeAll(async () => {
  sims = await Promise.all(
    HOSTS.map((host, i) =>
      startSimulator({
        name: `kv-${i}`,
        host,
        port: 0,
        model: 'kv-model',
        metricsFormat: 'vllm',
        seed: i,
        zeroLatency: true,
        // 40 blocks of 16 tokens: one prompt group (~9 blocks) fits a few times, not dozens.
        numGpuBlocks: 40,
        blockSize: 16,
        defaultMaxTokens: 4,
        kvEvents: { port: EVENTS_PORT, replayPort: REPLAY_PORT, hashSeed: '7' },
      }),
    ),
  )
  const yaml = manifests(
    [
      {
        name: 'kv',
        model: 'kv-model',
        endpoints: sims.map((s) => ({ name: s.name, address: s.host, port: s.port })),
        scheduler: {
          plugins: [
            {
              name: 'kv-cache',
              weight: 10,
              args: {
                eventsPort: EVENTS_PORT,
                replayPort: REPLAY_PORT,
                blockSize: 16,
                hashSeed: '7',
                tokenizer: 'words',
              },
            },
            { name: 'least-pending', weight: 1 },
          ],
        },
      },
    ],
    [{ name: 'kv', modelName: 'kv-model', rules: [{ targetModels: [{ modelServerName: 'kv' }] }] }],
  )
  vol = await ConfigVolume.create({ 'gateway.yaml': yaml })
  gw = await startGateway({
    config: { kind: 'manifests', paths: [vol.dir] },
    port: 0,
    pollMs: 100,
    explain: true,
    accessLog: (e) => log.push({ ...e }),
    scheduler: { scrape: { intervalMs: 200, timeoutMs: 2000 } },
  })
  client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'unused', maxRetries: 0 })
}, 60_000)

afterAll(async () => {
  await gw?.shutdown({ deadlineMs: 1000 })
  await Promise.all(sims.map((s) => s.close()))
  await vol?.remove()
})

interface KvEndpointDebug {
  blocks: number
  lastSeq: string | null
  events: number
}

async function kvDebug(): Promise<Record<string, KvEndpointDebug>> {
  const body = (await (await fetch(`${gw.url}/debug/endpoints`)).json()) as {
    servers: Record<
      string,
      { state?: Record<string, { endpoints?: Record<string, KvEndpointDebug> }> }
    >
  }
  return body.servers['default/kv']?.state?.['kv-cache']?.endpoints ?? {}
}

async function ask(topic: string, question: string): Promise<string> {
  const before = log.length
  await client.chat.completions.create({
    model: 'kv-model',
    messages: [
      { role: 'system', content: SYSTEM(topic) },
      { role: 'user', content: question },
    ],
    max_tokens: 4,
  })
  const line = log.slice(before).find((l) => l['status'] === 200)
  return String(line?.['endpoint'] ?? '')
}

/** Events seen so far per endpoint (by sim name). */
async function events(): Promise<Record<string, number>> {
  const d = await kvDebug()
  return Object.fromEntries(Object.entries(d).map(([k, v]) => [k, v.events]))
}

describe('kv-cache routing from engine KV events', () => {
  it('subscribes to every engine and sends a prompt group where its blocks are', async () => {
    // The first request starts the subscribers; wait until each engine's stream has delivered.
    await ask('warm-up', 'hello')
    for (let i = 0; i < 3; i++) await ask(`warm-up ${i}`, 'hello again')
    await until(
      async () => {
        const d = await kvDebug()
        return sims.every((s) => d[s.name]?.lastSeq !== null && d[s.name] !== undefined)
      },
      20_000,
      'events from every engine',
    )

    const first = await ask('the billing team', 'Why was I charged twice?')
    const holder = first.split(':')[0] as string
    // The engine's events (not our dispatch) say it holds the prompt now.
    await until(
      async () =>
        (await kvDebug())[sims.find((s) => first.startsWith(s.host))?.name ?? '']?.blocks !== 0,
      20_000,
      'the holder to report blocks',
    )
    for (const q of ['Can I get a refund?', 'Where is my invoice?', 'How do I change my card?']) {
      expect(await ask('the billing team', q)).toBe(first)
    }
    expect(holder).not.toBe('')
  }, 60_000)

  it('follows the blocks when the holder evicts them and another engine computes them', async () => {
    const before = await events()
    const first = await ask('the shipping desk', 'Where is my parcel?')
    const holder = sims.find((s) => first.startsWith(s.host)) as SimHandle
    const other = sims.find((s) => s !== holder) as SimHandle
    // The group follows the holder's events, not our dispatch: ask again once they are in (on a
    // busy machine the second request can otherwise beat the store event and see a tie).
    await until(
      async () => ((await events())[holder.name] ?? 0) > (before[holder.name] ?? 0),
      20_000,
      "the holder's store event",
    )
    expect(await ask('the shipping desk', 'Can I change the address?')).toBe(first)

    // Straight to the engines, not through the gateway: the holder's cache fills with other
    // prompts (evicting the group), the other engine computes the group's prompt.
    const ev0 = await events()
    for (let i = 0; i < 8; i++) {
      const r = await postJson(`${holder.url}/v1/chat/completions`, {
        model: 'kv-model',
        max_tokens: 4,
        messages: [
          {
            role: 'user',
            content: `Unrelated filler number ${i}. ${'Lorem ipsum dolor sit amet. '.repeat(20)}`,
          },
        ],
      })
      expect(r.status).toBe(200)
    }
    expect(holder.stats().kvEvictions).toBeGreaterThan(0)
    const r = await postJson(`${other.url}/v1/chat/completions`, {
      model: 'kv-model',
      max_tokens: 4,
      messages: [
        { role: 'system', content: SYSTEM('the shipping desk') },
        { role: 'user', content: 'Where is my parcel?' },
      ],
    })
    expect(r.status).toBe(200)
    await until(
      async () => {
        const ev = await events()
        return (
          (ev[holder.name] ?? 0) > (ev0[holder.name] ?? 0) &&
          (ev[other.name] ?? 0) > (ev0[other.name] ?? 0)
        )
      },
      20_000,
      'the eviction and the new store to arrive',
    )

    const moved = await ask('the shipping desk', 'Do you deliver on Sundays?')
    expect(moved.startsWith(other.host)).toBe(true)
  }, 60_000)
})
