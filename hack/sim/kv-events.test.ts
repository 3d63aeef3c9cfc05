// The simulator's KV-event publisher against our subscriber over real ZMQ on loopback: stores and
// evictions of the real cache arrive as vLLM batches, block hashes are what a router computes from
// the prompt, and lost batches are recovered from the replay socket (or reset the index without one).

import { afterEach, describe, expect, it } from 'vitest'
import { blockKeys, noneHash, sglangBlockKeys } from '../../dataplane/kv-events/block-hash.js'
import { KvEventSubscriber } from '../../dataplane/kv-events/subscriber.js'
import { wordTokenIds } from '../../dataplane/kv-events/tokens.js'
import { flattenPrompt } from '../../dataplane/scheduler/prompt.js'
import { until } from '../../test/helpers/until.js'
import { type SimHandle, startSimulator } from './server.js'
import { postJson } from './testkit.js'

const open: { close(): unknown }[] = []
afterEach(async () => {
  for (const o of open.splice(0)) await o.close()
})

const body = (topic: string) => ({
  model: 'm',
  max_tokens: 4,
  messages: [
    { role: 'system', content: `You answer questions about ${topic}. `.repeat(6) },
    { role: 'user', content: `Tell me everything about ${topic}, please.` },
  ],
})

function keysOf(b: Record<string, unknown>): Uint32Array {
  return blockKeys(wordTokenIds(flattenPrompt(b)), 16, noneHash('0'), null, 1000)
}

async function sim(
  host: string,
  numGpuBlocks: number,
  replay: boolean,
  metricsFormat: 'vllm' | 'sglang' = 'vllm',
): Promise<SimHandle> {
  const s = await startSimulator({
    name: host,
    host,
    port: 0,
    model: 'm',
    metricsFormat,
    zeroLatency: true,
    numGpuBlocks,
    blockSize: 16,
    kvEvents: { port: 0, ...(replay ? { replayPort: 0 } : {}), hashSeed: '0' },
  })
  open.push(s)
  return s
}

function subscribe(s: SimHandle, replay: boolean): KvEventSubscriber {
  const kv = s.kvEvents
  if (kv === null) throw new Error('no publisher')
  const sub = new KvEventSubscriber({
    endpoint: `tcp://${s.host}:${kv.port}`,
    ...(replay && kv.replayPort !== undefined
      ? { replayEndpoint: `tcp://${s.host}:${kv.replayPort}` }
      : {}),
    topic: '',
    maxBlocks: 100_000,
  })
  open.push(sub)
  return sub
}

/** Sends requests until the subscriber has seen a batch (PUB drops what precedes the connection). */
async function warm(s: SimHandle, sub: KvEventSubscriber): Promise<void> {
  for (let i = 0; sub.state.lastSeq === null; i++) {
    if (i > 200) throw new Error('no events arrived')
    await postJson(`${s.url}/v1/chat/completions`, body(`warm-up ${i}`))
    await new Promise((r) => setTimeout(r, 20))
  }
}

describe('simulator KV events', () => {
  it('publishes stores with the hashes a router computes, and evictions as removals', async () => {
    const s = await sim('127.0.2.1', 24, true)
    const sub = subscribe(s, true)
    await warm(s, sub)
    const a = body('lighthouses')
    const ka = keysOf(a)
    expect(ka.length / 2).toBeGreaterThanOrEqual(4)
    expect((await postJson(`${s.url}/v1/chat/completions`, a)).status).toBe(200)
    await until(() => sub.state.index.prefixRun(ka) === ka.length / 2, 10_000, 'the prompt blocks')
    // The bench oracle's view (POST /sim/kv/peek) agrees with the events: every full block held.
    const peek = (await postJson(`${s.url}/sim/kv/peek`, a)).json as {
      promptTokens: number
      cachedTokens: number
    }
    expect(peek.cachedTokens).toBe(16 * Math.floor((peek.promptTokens - 1) / 16))
    expect(peek.cachedTokens).toBe((16 * ka.length) / 2)
    // A cache of 24 blocks cannot keep them while other prompts pass through.
    for (const t of ['volcanoes', 'glaciers', 'deserts', 'rainforests', 'coral reefs'])
      await postJson(`${s.url}/v1/chat/completions`, body(t))
    await until(
      () => sub.state.index.prefixRun(ka) === 0,
      10_000,
      'the eviction of the first prompt',
    )
    expect((await postJson(`${s.url}/sim/kv/peek`, a)).json).toMatchObject({ cachedTokens: 0 })
    expect(s.stats().kvEvictions).toBeGreaterThan(0)
    expect(sub.state.index.size).toBeLessThanOrEqual(24)
    expect(sub.state.stats.resets).toBe(0)
  })

  it("publishes SGLang's page hashes for an SGLang-typed pod", async () => {
    const s = await sim('127.0.2.4', 24, false, 'sglang')
    const sub = subscribe(s, false)
    await warm(s, sub)
    const a = body('tide pools')
    const tokens = wordTokenIds(flattenPrompt(a))
    const ks = sglangBlockKeys(tokens, 16, 1000)
    expect(ks.length / 2).toBeGreaterThanOrEqual(4)
    expect((await postJson(`${s.url}/v1/chat/completions`, a)).status).toBe(200)
    await until(
      () => sub.state.index.prefixRun(ks) === ks.length / 2,
      10_000,
      'the SGLang page hashes',
    )
    // vLLM's hashes of the same prompt are not what this engine reports.
    expect(sub.state.index.prefixRun(keysOf(a))).toBe(0)
    for (const t of ['volcanoes', 'glaciers', 'deserts', 'rainforests', 'coral reefs'])
      await postJson(`${s.url}/v1/chat/completions`, body(t))
    await until(() => sub.state.index.prefixRun(ks) === 0, 10_000, 'the SGLang removals')
    expect(sub.state.stats.malformed).toBe(0)
  })

  it('recovers lost batches from the replay socket; without one, resets and rebuilds', async () => {
    for (const replay of [true, false]) {
      const s = await sim(replay ? '127.0.2.2' : '127.0.2.3', 2048, replay)
      const sub = subscribe(s, replay)
      await warm(s, sub)
      const lost = body('lost batch')
      s.kvEvents?.dropNext(1)
      await postJson(`${s.url}/v1/chat/completions`, lost)
      const next = body('the batch after')
      await postJson(`${s.url}/v1/chat/completions`, next)
      const kn = keysOf(next)
      await until(
        () => sub.state.index.prefixRun(kn) === kn.length / 2,
        10_000,
        'the batch after the gap',
      )
      expect(sub.state.stats.gaps).toBe(1)
      const kl = keysOf(lost)
      if (replay) {
        expect(sub.state.stats.replays).toBe(1)
        expect(sub.state.index.prefixRun(kl)).toBe(kl.length / 2)
        expect(sub.state.stats.resets).toBe(0)
      } else {
        expect(sub.state.stats.resets).toBe(1)
        expect(sub.state.index.prefixRun(kl)).toBe(0)
      }
    }
  })
})
