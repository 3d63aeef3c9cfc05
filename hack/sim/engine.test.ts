import { performance } from 'node:perf_hooks'
import { describe, expect, it, vi } from 'vitest'
import { Engine, type EngineConfig, type GenerationResult, type GenerationSpec } from './engine.js'
import { SimError } from './errors.js'

const base: EngineConfig = {
  timeScale: 1,
  zeroLatency: false,
  prefillOverheadMs: 5,
  prefillMsPerToken: 0,
  decodeMsPerToken: 2,
  batchSlowdown: 0,
  maxNumSeqs: 4,
  numGpuBlocks: 64,
  blockSize: 4,
  maxModelLen: 256,
  loras: ['la', 'lb'],
  maxLoras: 1,
  loraLoadMs: 20,
}

const spec = (over: Partial<GenerationSpec> = {}): GenerationSpec => ({
  lora: null,
  promptTokens: Array.from({ length: 8 }, (_, i) => ` p${i}`),
  outputTokens: Array.from({ length: 5 }, (_, i) => ` o${i}`),
  finishReason: 'length',
  streaming: true,
  ...over,
})

interface Run {
  done: Promise<GenerationResult>
  tokens: string[]
  firstAt: () => number
  lastAt: () => number
  cancel: () => void
}

function run(engine: Engine, s: GenerationSpec): Run {
  const tokens: string[] = []
  let firstAt = -1
  let lastAt = -1
  let cancel = () => {}
  const done = new Promise<GenerationResult>((resolve) => {
    cancel = engine.submit(s, {
      token: (t) => {
        lastAt = performance.now()
        if (tokens.length === 0) firstAt = lastAt
        tokens.push(t)
      },
      finish: resolve,
    }).cancel
  })
  return { done, tokens, firstAt: () => firstAt, lastAt: () => lastAt, cancel }
}

describe('Engine', () => {
  it('delivers every output token in order and reports usage', async () => {
    const e = new Engine(base)
    const r = run(e, spec())
    const res = await r.done
    expect(r.tokens).toEqual([' o0', ' o1', ' o2', ' o3', ' o4'])
    expect(res).toMatchObject({
      promptTokens: 8,
      completionTokens: 5,
      cachedTokens: 0,
      finishReason: 'length',
    })
    // TTFT = overhead 5 ms; then 4 inter-token gaps of 2 ms.
    expect(res.ttftMs).toBeGreaterThanOrEqual(5)
    expect(res.e2eMs - res.ttftMs).toBeCloseTo(8, 5)
  })

  it('with maxNumSeqs=1 the second request really waits for the first to finish', async () => {
    const e = new Engine({ ...base, maxNumSeqs: 1 })
    const t0 = performance.now()
    const a = run(e, spec())
    const b = run(e, spec({ promptTokens: [' other', ' prompt'] }))
    expect(e.gauges()).toMatchObject({ running: 1, waiting: 1 })
    const [ra, rb] = await Promise.all([a.done, b.done])
    expect(rb.ttftMs).toBeGreaterThanOrEqual(ra.e2eMs)
    // Sinks run synchronously inside the engine, so these wall-clock stamps are exact:
    // b's first token comes a full prefill (5 ms) after a's last one.
    expect(b.firstAt() - a.lastAt()).toBeGreaterThanOrEqual(5)
    expect(b.firstAt() - t0).toBeGreaterThanOrEqual(ra.e2eMs)
  })

  it('zero-latency mode completes synchronously but still accounts the queue and cache', () => {
    const e = new Engine({ ...base, zeroLatency: true, maxNumSeqs: 1 })
    const results: GenerationResult[] = []
    e.submit(spec(), { token: () => {}, finish: (r) => results.push(r) })
    e.submit(spec(), { token: () => {}, finish: (r) => results.push(r) })
    expect(results).toHaveLength(2)
    expect(results[1]?.cachedTokens).toBe(4) // 8-token prompt: the first block is reusable
    expect(e.gauges()).toMatchObject({ running: 0, waiting: 0, kvUsage: 0 })
  })

  it('a prefix whose prefill is still running is a hit that waits for it (vLLM v1 registers blocks when it schedules them)', async () => {
    // Virtual time, so both requests arrive at the same engine-clock instant whatever the load.
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] })
    const realNow = performance.now
    performance.now = () => Date.now()
    try {
      const e = new Engine({ ...base, prefillMsPerToken: 1 })
      const prompt = Array.from({ length: 40 }, (_, i) => ` s${i}`)
      const a = run(e, spec({ promptTokens: prompt }))
      const b = run(e, spec({ promptTokens: prompt }))
      await vi.advanceTimersByTimeAsync(200)
      const [ra, rb] = await Promise.all([a.done, b.done])
      // 40 tokens in blocks of 4: 9 whole blocks reusable (one token is always computed).
      expect(ra.cachedTokens).toBe(0)
      expect(rb.cachedTokens).toBe(36)
      // b's prefill (5 ms + 4 tokens) starts when a's (5 + 40 ms) ends: not in parallel with
      // it, and not the full 45 ms again.
      expect(ra.ttftMs).toBe(45)
      expect(rb.ttftMs).toBe(45 + 9)
    } finally {
      performance.now = realNow
      vi.useRealTimers()
    }
  })

  it('rejects a request that can never fit', () => {
    const e = new Engine({ ...base, maxModelLen: 10 })
    expect(() => e.submit(spec(), { token: () => {}, finish: () => {} })).toThrow(SimError)
    try {
      e.submit(spec(), { token: () => {}, finish: () => {} })
    } catch (err) {
      expect((err as SimError).code).toBe('context_length_exceeded')
      expect((err as SimError).status).toBe(400)
    }
  })

  it('blocks on KV capacity head-of-line and frees blocks on cancel', async () => {
    // 8 blocks of 4 tokens; each request needs ceil((8+5)/4)=4 blocks -> two fit, the third waits.
    const e = new Engine({ ...base, numGpuBlocks: 8, decodeMsPerToken: 50 })
    const a = run(e, spec())
    run(e, spec({ promptTokens: [' x'] }))
    const c = run(e, spec({ promptTokens: [' y'] }))
    // b needs only 2 blocks: a(4) + b(2) + c(2) fit; a fourth big one does not.
    const d = run(e, spec({ promptTokens: Array.from({ length: 20 }, (_, i) => ` d${i}`) }))
    expect(e.gauges()).toMatchObject({ running: 3, waiting: 1, kvUsage: 1 })
    a.cancel()
    // a's 4 blocks freed -> d needs ceil(25/4)=7 blocks, still not enough (4 free).
    expect(e.gauges()).toMatchObject({ running: 2, waiting: 1 })
    c.cancel()
    expect(e.gauges().waiting).toBe(1)
    e.close()
    expect(e.gauges()).toMatchObject({ running: 0, waiting: 0, kvUsage: 0 })
    expect(d.tokens).toEqual([])
  })

  it('waits for a LoRA slot held by a running adapter, then loads (paying the load time)', async () => {
    const e = new Engine({ ...base, maxLoras: 1, loraLoadMs: 20 })
    const a = run(e, spec({ lora: 'la' }))
    const b = run(e, spec({ lora: 'lb' }))
    const plain = run(e, spec({ promptTokens: [' base'] }))
    // b is skipped (slot busy with running 'la'); the base-model request behind it runs.
    expect(e.gauges()).toMatchObject({
      running: 2,
      waiting: 1,
      runningLoras: ['la'],
      waitingLoras: ['lb'],
    })
    const [ra, rb] = await Promise.all([a.done, b.done, plain.done])
    expect(ra.ttftMs).toBeGreaterThanOrEqual(20 + 5) // load + prefill overhead
    // b is admitted when a finishes, then pays load (20) + prefill (5).
    expect(b.firstAt() - a.lastAt()).toBeGreaterThanOrEqual(25)
    expect(rb.ttftMs - rb.queueMs).toBeGreaterThanOrEqual(25)
    expect(e.lora.loaded()).toEqual(['lb'])
    expect(e.lora.counters()).toEqual({ loads: 2, evictions: 1 })
  })

  it('slows decoding as the batch grows (batchSlowdown)', async () => {
    const cfg = { ...base, batchSlowdown: 1, decodeMsPerToken: 10 }
    const solo = new Engine(cfg)
    const r1 = await run(solo, spec()).done
    expect(r1.e2eMs - r1.ttftMs).toBeCloseTo(40, 5) // 4 gaps x 10 ms
    const busy = new Engine(cfg)
    const runs = [0, 1, 2].map((i) => run(busy, spec({ promptTokens: [` q${i}`] })))
    const all = await Promise.all(runs.map((r) => r.done))
    // 3 running -> ITL x3 (120 ms of decode) while all three overlap; allow for timer lag on a
    // loaded machine, which lets some sequences finish early and shrinks the batch.
    const slowest = Math.max(...all.map((r) => r.e2eMs - r.ttftMs))
    expect(slowest).toBeGreaterThan(1.5 * 40)
  })
})
