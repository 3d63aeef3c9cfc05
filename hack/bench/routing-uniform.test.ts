// Issue 9, the uniform regime: sglang-router's cache_aware was 1-3 ms under us at TTFT p90 in every
// bench:routing run. Is it its choice? This replays bench:routing's uniform requests (same seed,
// same prompts, the simulator's engine on virtual time: no HTTP, no CPU contention) through three
// pickers: round-robin, join-shortest-queue, and one that does what cache_aware does with no prefix
// match (every prompt here is distinct): the worker whose radix tree is smallest, i.e. the fewest
// prompt characters routed to it so far. If the choice mattered, the p90s would differ here.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { Engine, type EngineConfig } from '../sim/engine.js'
import { applyChatTemplate, tokenize } from '../sim/index.js'
import { createRng } from '../sim/rng.js'
import { percentile } from './load.js'
import { poissonTimes } from './routing-load.js'
import { PREFILL_BOUND } from './virtual-fleet.js'
import { words } from './words.js'

const PODS = 4
const SCALE = 2
const PROMPT = 600
const OUT = 16
const DURATION_MS = 8000
const WARMUP_MS = 2000

/** bench:routing's uniform plan at `load` (routing.ts uniform(): rng 20, 600 words, 16 out). */
function plan(load: number): { at: number; text: string }[] {
  const e = PREFILL_BOUND
  const decode = OUT * e.decodeMsPerToken * (1 + (e.batchSlowdown * (e.maxNumSeqs - 1)) / 2)
  const sec = (SCALE * (e.prefillOverheadMs + PROMPT * e.prefillMsPerToken + decode)) / 1000
  const cap = (PODS * e.maxNumSeqs) / sec
  const r = createRng(20)
  return poissonTimes(load * cap, DURATION_MS, r).map((at) => ({
    at,
    text: applyChatTemplate([{ role: 'user', content: words(PROMPT, r) }]),
  }))
}

interface Picker {
  /** The pod for a request; `inflight` = requests sent to each pod and not finished. */
  pick(text: string, inflight: readonly number[]): number
}

const roundRobin = (): Picker => {
  let i = 0
  return { pick: () => i++ % PODS }
}
const shortestQueue = (): Picker => ({
  pick: (_t, inflight) => inflight.indexOf(Math.min(...inflight)),
})
/** cache_aware with no prefix match: the smallest tree (characters routed; nothing evicted in 8 s). */
const smallestTree = (): Picker => {
  const chars = new Array<number>(PODS).fill(0)
  return {
    pick: (text) => {
      const i = chars.indexOf(Math.min(...chars))
      chars[i] = (chars[i] ?? 0) + text.length
      return i
    },
  }
}

interface Outcome {
  /** Engine TTFT (queue + prefill) of the requests after the warm-up, ascending. */
  readonly ttft: number[]
  /** Queue waits (ms) over the same requests, ascending. */
  readonly queue: number[]
  readonly perPod: number[]
}

async function replay(picker: Picker, load: number): Promise<Outcome> {
  const config: EngineConfig = {
    ...PREFILL_BOUND,
    timeScale: SCALE,
    zeroLatency: false,
    maxModelLen: 32_768,
    loras: [],
    maxLoras: 0,
  }
  const engines = Array.from({ length: PODS }, () => new Engine(config))
  const inflight = new Array<number>(PODS).fill(0)
  const perPod = new Array<number>(PODS).fill(0)
  const ttft: number[] = []
  const queue: number[] = []
  const outTokens = Array.from({ length: OUT }, (_, i) => ` t${i}`)
  for (const req of plan(load)) {
    setTimeout(() => {
      const p = picker.pick(req.text, inflight)
      inflight[p] = (inflight[p] ?? 0) + 1
      perPod[p] = (perPod[p] ?? 0) + 1
      engines[p]?.submit(
        {
          lora: null,
          promptTokens: tokenize(req.text),
          outputTokens: outTokens,
          finishReason: 'length',
          streaming: true,
        },
        {
          token: () => {},
          finish: (r) => {
            inflight[p] = (inflight[p] ?? 0) - 1
            if (req.at < WARMUP_MS) return
            ttft.push(r.ttftMs)
            queue.push(r.queueMs)
          },
        },
      )
    }, req.at)
  }
  vi.advanceTimersByTime(DURATION_MS + 10_000)
  for (const e of engines) e.close()
  return { ttft: ttft.sort((a, b) => a - b), queue: queue.sort((a, b) => a - b), perPod }
}

const realNow = performance.now
beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'], now: 1_700_000_000_000 })
  // The engine reads performance.now(): on virtual time that is the faked Date.now().
  performance.now = () => Date.now()
})
afterEach(() => {
  performance.now = realNow
  vi.useRealTimers()
})

describe("uniform regime on virtual time: cache_aware's smallest-tree choice against ours", () => {
  // One prefill for every request: 617 prompt tokens (600 words and the chat template).
  const floor = SCALE * (PREFILL_BOUND.prefillOverheadMs + 617 * PREFILL_BOUND.prefillMsPerToken)

  it('every prompt has the same token count, so balancing prefill tokens is balancing requests', () => {
    const counts = new Set(plan(0.7).map((r) => tokenize(r.text).length))
    expect([...counts]).toEqual([617])
  })

  it('at 70 % all three pickers have TTFT p90 = the prefill floor: the choice cannot make 1-3 ms', async () => {
    for (const make of [roundRobin, shortestQueue, smallestTree]) {
      const o = await replay(make(), 0.7)
      expect(o.ttft.length).toBeGreaterThan(150)
      expect(percentile(o.ttft, 90)).toBeCloseTo(floor, 6)
      expect(percentile(o.queue, 90)).toBe(0)
    }
  })

  it('smallest-tree is near round-robin: per-pod counts within 2 of each other', async () => {
    const o = await replay(smallestTree(), 0.7)
    expect(Math.max(...o.perPod) - Math.min(...o.perPod)).toBeLessThanOrEqual(2)
  })
})
