// Latency-model behaviour observed from a real HTTP client, the way a gateway would see it.
import { afterEach, describe, expect, it } from 'vitest'
import { type SimHandle, type SimOptions, startSimulator } from './server.js'
import { postJson, postSse, promValue, scrapeProm } from './testkit.js'

const sims: SimHandle[] = []
afterEach(async () => {
  await Promise.all(sims.splice(0).map((s) => s.close()))
})

async function sim(over: Partial<SimOptions>): Promise<SimHandle> {
  const s = await startSimulator({
    name: 'lat',
    host: '127.0.0.2',
    port: 0,
    model: 'm',
    metricsFormat: 'vllm',
    prefillOverheadMs: 5,
    prefillMsPerToken: 0,
    decodeMsPerToken: 3,
    batchSlowdown: 0,
    ...over,
  })
  sims.push(s)
  return s
}

describe('queueing', () => {
  it('with maxNumSeqs=1, the second concurrent request only gets its first token after the first finished', async () => {
    const s = await sim({ maxNumSeqs: 1 })
    const body = (p: string) => ({ model: 'm', prompt: p, max_tokens: 10, stream: true })
    // Warm up (JIT, connection pool): client and server share one event loop, so a cold client
    // observes the first stream late and would blur the comparison.
    await postSse(`${s.url}/v1/completions`, body('warm up'))
    const [a, b] = await Promise.all([
      postSse(`${s.url}/v1/completions`, body('first request')),
      postSse(`${s.url}/v1/completions`, body('second request')),
    ])
    expect(a.done && b.done).toBe(true)
    const [first, second] = (a.ttftMs ?? 0) <= (b.ttftMs ?? 0) ? [a, b] : [b, a]
    // The first one's generation = 5 ms prefill + 9 x 3 ms decode >= 32 ms; the second queued behind it.
    expect(first.lastTextMs ?? 0).toBeGreaterThanOrEqual(32)
    // Independent of client jitter: the second waited for the whole first generation plus its own prefill.
    expect(second.ttftMs ?? 0).toBeGreaterThanOrEqual(32 + 5)
    // And as observed: its first token comes after the first's last one. Client and server share
    // one event loop here, so allow 10 ms of delivery jitter on a loaded machine.
    expect(second.ttftMs ?? 0).toBeGreaterThanOrEqual(
      (first.lastTextMs ?? Number.POSITIVE_INFINITY) - 10,
    )
  })

  it('with room for both, they overlap', async () => {
    const s = await sim({ maxNumSeqs: 2 })
    const body = (p: string) => ({ model: 'm', prompt: p, max_tokens: 10, stream: true })
    const [a, b] = await Promise.all([
      postSse(`${s.url}/v1/completions`, body('first request')),
      postSse(`${s.url}/v1/completions`, body('second request')),
    ])
    expect(Math.max(a.ttftMs ?? 0, b.ttftMs ?? 0)).toBeLessThan(Math.min(a.totalMs, b.totalMs))
  })
})

describe('prefix cache', () => {
  it('a repeated long prompt hits the cache: cached_tokens > 0 and a shorter TTFT', async () => {
    const s = await sim({ prefillMsPerToken: 0.4, blockSize: 16 })
    const prompt = Array.from({ length: 200 }, (_, i) => `word${i}`).join(' ')
    const req = {
      model: 'm',
      messages: [{ role: 'user', content: prompt }],
      max_tokens: 2,
      stream: true,
      stream_options: { include_usage: true },
    }
    const cold = await postSse(`${s.url}/v1/chat/completions`, req)
    const warm = await postSse(`${s.url}/v1/chat/completions`, req)
    type U = { usage?: { prompt_tokens: number; prompt_tokens_details: { cached_tokens: number } } }
    const coldUsage = (cold.events.at(-1) as U).usage
    const warmUsage = (warm.events.at(-1) as U).usage
    expect(coldUsage?.prompt_tokens_details.cached_tokens).toBe(0)
    const cached = warmUsage?.prompt_tokens_details.cached_tokens ?? 0
    expect(cached).toBeGreaterThan(0)
    expect(cached % 16).toBe(0)
    expect(cached).toBeLessThan(warmUsage?.prompt_tokens ?? 0)
    // ~210 tokens x 0.4 ms = ~84 ms cold prefill versus < 16 tokens x 0.4 ms warm.
    expect(cold.ttftMs ?? 0).toBeGreaterThan(70)
    // Client-observed: best of three warm requests (all hit), so one scheduling hiccup of a
    // loaded CI machine cannot fail the comparison.
    const more = [
      await postSse(`${s.url}/v1/chat/completions`, req),
      await postSse(`${s.url}/v1/chat/completions`, req),
    ]
    const bestWarm = Math.min(...[warm, ...more].map((r) => r.ttftMs ?? Number.POSITIVE_INFINITY))
    expect(bestWarm).toBeLessThan((cold.ttftMs ?? 0) - 40)
    expect(s.stats().prefixHitTokens).toBe(3 * cached)
  })

  it('a tiny cache evicts an old prefix (LRU) so it misses again', async () => {
    // 8 blocks x 4 tokens. 'a' needs 6 blocks (20 + 4 tokens); 'b' needs all 8 (28 + 4), so it
    // must evict every cached block of 'a'.
    const s = await sim({ numGpuBlocks: 8, blockSize: 4, maxModelLen: 32 })
    const ask = async (tag: string, n: number) => {
      const prompt = Array.from({ length: n }, (_, i) => `${tag}${i}`).join(' ')
      const r = await postJson(`${s.url}/v1/completions`, { model: 'm', prompt, max_tokens: 4 })
      return (r.json as { usage: { prompt_tokens_details: { cached_tokens: number } } }).usage
        .prompt_tokens_details.cached_tokens
    }
    expect(await ask('a', 20)).toBe(0)
    expect(await ask('a', 20)).toBe(16) // 19 tokens may be reused -> 4 full blocks
    expect(await ask('b', 28)).toBe(0)
    expect(s.stats().kvEvictions).toBeGreaterThan(0)
    expect(await ask('a', 20)).toBe(0)
  })
})

describe('LoRA slots over HTTP', () => {
  it('a second adapter waits until the slot holder finishes, then pays the load time', async () => {
    const s = await sim({ loras: ['la', 'lb'], maxLoras: 1, loraLoadMs: 25 })
    const body = (model: string) => ({ model, prompt: 'hello', max_tokens: 6, stream: true })
    const [a, b] = await Promise.all([
      postSse(`${s.url}/v1/completions`, body('la')),
      postSse(`${s.url}/v1/completions`, body('lb')),
    ])
    const [first, second] = (a.ttftMs ?? 0) <= (b.ttftMs ?? 0) ? [a, b] : [b, a]
    expect(first.ttftMs ?? 0).toBeGreaterThanOrEqual(25 + 5 - 1)
    // second: waits for the whole first request (25 load + 5 prefill + 5 x 3 decode), then its own
    // load + prefill: a causal lower bound that client-side jitter cannot break.
    expect(second.ttftMs ?? 0).toBeGreaterThanOrEqual(45 + 25 + 5)
    // As observed by the client (10 ms allowance for delivery jitter on a shared event loop).
    expect(second.ttftMs ?? 0).toBeGreaterThanOrEqual(
      (first.lastTextMs ?? Number.POSITIVE_INFINITY) + 25 - 10,
    )
    expect(s.stats().loraLoads).toBe(2)
    expect(s.stats().loadedLoras).toHaveLength(1)
  })

  it('a loaded adapter is reused without paying the load again', async () => {
    const s = await sim({ loras: ['la'], maxLoras: 1, loraLoadMs: 40 })
    const body = { model: 'la', prompt: 'hello', max_tokens: 1, stream: true }
    const cold = await postSse(`${s.url}/v1/completions`, body)
    const warm = [
      await postSse(`${s.url}/v1/completions`, body),
      await postSse(`${s.url}/v1/completions`, body),
    ]
    expect(cold.ttftMs ?? 0).toBeGreaterThanOrEqual(40)
    expect(Math.min(...warm.map((r) => r.ttftMs ?? Number.POSITIVE_INFINITY))).toBeLessThan(30)
    expect(s.stats().loraLoads).toBe(1)
  })
})

describe('time scale', () => {
  it('timeScale shrinks every modelled latency', async () => {
    const slow = await sim({ decodeMsPerToken: 10, prefillOverheadMs: 20 })
    const fast = await sim({
      name: 'fast',
      host: '127.0.0.3',
      decodeMsPerToken: 10,
      prefillOverheadMs: 20,
      timeScale: 0.1,
    })
    const body = { model: 'm', prompt: 'x', max_tokens: 8 }
    const a = await postJson(`${slow.url}/v1/completions`, body)
    const b = await postJson(`${fast.url}/v1/completions`, body)
    // The client waits at least the modelled time (timers fire late, never early)…
    expect(a.ms).toBeGreaterThanOrEqual(90) // 20 + 7 x 10
    expect(b.ms).toBeGreaterThanOrEqual(9)
    // …and the engines' own schedule (not this loaded machine's HTTP round trip) is exactly a
    // tenth: 90 ms against 9 ms from admission to the last token (e2e less the time queued).
    const modelled = async (url: string) => {
      const m = await scrapeProm(`${url}/metrics`)
      return (
        promValue(m, 'vllm:e2e_request_latency_seconds_sum') -
        promValue(m, 'vllm:request_queue_time_seconds_sum')
      )
    }
    expect(await modelled(slow.url)).toBeCloseTo(0.09, 6)
    expect(await modelled(fast.url)).toBeCloseTo(0.009, 6)
  })
})
