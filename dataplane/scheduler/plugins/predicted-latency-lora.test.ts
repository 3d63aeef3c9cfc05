// predicted-latency for requests naming a LoRA adapter (issue 9, multi-LoRA): the adapter's load,
// and the wait for a slot when every adapter slot is busy, are part of the predicted TTFT.
import { describe, expect, it } from 'vitest'
import type { LoraInfo } from '../../engines/view.js'
import { adapterBound } from '../../engines/view.js'
import type { EndpointState } from '../state.js'
import { pickContext, request, scores, scraped, server, state } from '../testkit.js'
import { PredictedLatencyPlugin } from './predicted-latency.js'

// 300 distinct words, as bench:routing's multi-LoRA prompts: longer than the affinity key.
const PROMPT = Array.from({ length: 300 }, (_, i) => `w${(i * 7919) % 1000}`).join(' ')

function loraReq(adapter: string, now = 0) {
  return request(
    pickContext(
      server([]),
      { messages: [{ role: 'user', content: PROMPT }], max_tokens: 16, stream: true },
      {},
      { isLora: true, model: adapter },
    ),
    now,
  )
}

function best(s: readonly number[], eps: readonly EndpointState[]): string {
  let i = 0
  for (let j = 1; j < s.length; j++) if ((s[j] as number) > (s[i] as number)) i = j
  return eps[i]?.name as string
}

const lora = (running: string[], waiting: string[] = []): LoraInfo => ({
  maxLora: 2,
  running,
  waiting,
})

describe('predicted-latency with LoRA adapters', () => {
  it("sends a request to its adapter's pod with a short queue, not to a free batch slot whose adapter slots are all busy", () => {
    // The trace of a collapse (virtual time, seed 31): the adapter's pod had requests queued, the
    // others had free batch slots but both adapter slots running other adapters. Sent there, the
    // request waited ~1.9 s for an adapter to drain (the engine skips it meanwhile), evicted one,
    // and the evicted adapter's next request did the same elsewhere.
    const p = new PredictedLatencyPlugin({ maxNumSeqs: 8 })
    const home = scraped(state('home', 2), 0, {
      running: 8,
      waiting: 2,
      lora: lora(['sql', 'chat']),
      tpotMeanSec: 0.02,
    })
    const busy = ['b', 'c', 'd'].map((n, i) =>
      scraped(state(n, 3 + i), 0, {
        running: 5,
        waiting: 0,
        lora: lora([`x${i}`, `y${i}`]),
        tpotMeanSec: 0.02,
      }),
    )
    const eps = [home, ...busy]
    const r = loraReq('sql', 10)
    expect(best(scores(p, r, eps) as number[], eps)).toBe('home')
    // Its predicted TTFT on a blocked pod includes a load and a drain; at home, only the queue.
    expect(p.predict(r, busy[0] as EndpointState).ttftMs).toBeGreaterThan(p.predict(r, home).ttftMs)
  })

  it('an adapter with a free slot elsewhere costs a load: a long queue at home still loses', () => {
    const p = new PredictedLatencyPlugin({ maxNumSeqs: 8, loraLoadMs: 50 })
    const home = scraped(state('home', 2), 0, {
      running: 8,
      waiting: 24,
      lora: lora(['sql', 'chat']),
      tpotMeanSec: 0.02,
    })
    const free = scraped(state('free', 3), 0, {
      running: 1,
      waiting: 0,
      lora: lora(['x']),
      tpotMeanSec: 0.02,
    })
    const eps = [home, free]
    expect(best(scores(p, loraReq('sql', 10), eps) as number[], eps)).toBe('free')
  })

  it('adapter-bound queueing is not a full batch: capacity stays the batch limit', () => {
    const p = new PredictedLatencyPlugin({ maxNumSeqs: 8 })
    // 3 running (adapters sql, chat), 1 waiting for a third adapter: a free batch slot remains.
    const m = { running: 3, waiting: 1, lora: lora(['sql', 'chat'], ['x']) }
    expect(adapterBound(m)).toBe(true)
    const ep = scraped(state('a', 2), 0, m)
    expect(p.capacity(ep, 10)).toBe(8)
    expect(ep.learnedCapacity).toBe(0)
    // Queued behind a full batch (the waiting adapter runs already): that is the limit.
    const full = scraped(state('b', 3), 0, {
      running: 6,
      waiting: 1,
      lora: lora(['sql', 'chat'], ['sql']),
    })
    expect(adapterBound({ lora: lora(['sql', 'chat'], ['sql']) })).toBe(false)
    expect(full.learnedCapacity).toBe(6)
    expect(p.capacity(full, 10)).toBe(6)
  })

  it('learns what a load adds from requests sent where their adapter was not loaded', () => {
    const p = new PredictedLatencyPlugin({ maxNumSeqs: 8, loraLoadMs: 100 })
    const ep = scraped(state('a', 2), 0, { running: 0, waiting: 0, lora: lora([]) })
    const before = p.loraLoadMs
    for (let k = 0; k < 20; k++) {
      const r = loraReq(`ad-${k}`, 10 + k)
      scores(p, r, [ep])
      ep.dispatchStarted(r.ticket, r.now)
      p.onDispatch(r, ep)
      // The prefill line is the prior's (10 ms + tokens × 0.1); 400 ms above it is the load.
      const line = 10 + (r.ticket.promptTokens as number) * 0.1
      const o = {
        status: 200,
        firstByteMs: line + 400,
        durationMs: line + 700,
        completionTokens: 16,
      }
      p.onComplete(r, ep, o)
      ep.dispatchEnded(r.ticket, o, r.now + 1)
    }
    expect(before).toBe(100)
    expect(p.loraLoadMs).toBeGreaterThan(350)
    expect(p.loraLoadMs).toBeLessThan(450)
  })
})
