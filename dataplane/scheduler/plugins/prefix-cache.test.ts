import { describe, expect, it } from 'vitest'
import { EndpointState } from '../state.js'
import { chat, endpoint, pickContext, request, scores, scraped, server, state } from '../testkit.js'
import { COLD_PLACEMENT_SCORE, PrefixCachePlugin } from './prefix-cache.js'

const SYSTEM = 'You are a careful assistant for the billing team. '.repeat(30) // ~1.5 kB shared
const ticket = { promptTokens: 10, outputTokens: 10, stream: false }

function req(text: string, now = 0, opts: { model?: string; isLora?: boolean } = {}) {
  return request(pickContext(server([]), chat(text), {}, opts), now)
}

describe('prefix-cache', () => {
  it('occupancy: the share of the engine KV cache the remembered blocks fill, 0 after a restart', () => {
    const p = new PrefixCachePlugin({})
    const [a, b] = [state('a', 2), state('b', 3)]
    // 100 blocks of 16 tokens: 100 of our 16-token blocks.
    scraped(a, 0, { numGpuBlocks: 100, blockSize: 16 })
    expect(p.occupancy(a)).toBe(0)
    const r = req(`${SYSTEM} Question one?`)
    p.onDispatch(r, a)
    const n = p.hashes(r).length
    expect(n).toBeGreaterThan(10)
    expect(p.occupancy(a)).toBeCloseTo(n / 100, 12)
    expect(p.occupancy(b)).toBe(0)
    // Full: never above 1.
    for (let i = 0; i < 20; i++) p.onDispatch(req(`${i} ${SYSTEM}`), a)
    expect(p.occupancy(a)).toBe(1)
    p.onEndpointReset(a)
    expect(p.occupancy(a)).toBe(0)
  })

  it("occupancy: a throwaway state sharing a live one's slot reads its own table", () => {
    const p = new PrefixCachePlugin({})
    const live = state('a', 2)
    const other = new EndpointState(endpoint('a', 2), live.slot)
    for (const e of [live, other]) scraped(e, 0, { numGpuBlocks: 100, blockSize: 16 })
    const r = req(`${SYSTEM} Question one?`)
    const n = p.hashes(r).length
    p.onDispatch(r, live)
    expect(p.occupancy(other)).toBe(0)
    p.onDispatch(req(`other ${SYSTEM}`), other)
    const m = p.hashes(req(`other ${SYSTEM}`)).length
    expect(p.occupancy(other)).toBeCloseTo(m / 100, 12)
    expect(p.occupancy(live)).toBeCloseTo(n / 100, 12)
    p.forget(other)
    expect(p.occupancy(other)).toBe(0)
    expect(p.occupancy(live)).toBeCloseTo(n / 100, 12)
  })

  it('scores the fraction of the prompt each endpoint holds, recorded at dispatch', () => {
    const p = new PrefixCachePlugin({})
    const [a, b, c] = [state('a', 2), state('b', 3), state('c', 4)]
    const first = req(`${SYSTEM} Question one?`)
    // Recorded when sent, before any response: the next request of the burst follows it.
    p.onDispatch(first, b)
    const next = req(`${SYSTEM} Question two, a different one?`)
    const s = scores(p, next, [a, b, c]) as number[]
    expect(s[0]).toBe(0)
    expect(s[2]).toBe(0)
    const n = p.hashes(next).length
    expect(s[1]).toBeGreaterThan(0.8)
    expect(s[1]).toBeLessThan(1)
    expect(s[1]).toBeCloseTo(p.matchDepths(p.hashes(next), [b])[b.slot]! / n, 12)
    // The exact same prompt matches fully.
    expect(scores(p, req(`${SYSTEM} Question one?`), [a, b, c])?.[1]).toBe(1)
  })

  it('credits the longest match per endpoint', () => {
    const p = new PrefixCachePlugin({})
    const [a, b] = [state('a', 2), state('b', 3)]
    p.record(a, p.hashes(req(SYSTEM.slice(0, 600))))
    p.record(b, p.hashes(req(`${SYSTEM} and more`)))
    const s = scores(p, req(`${SYSTEM} and more, then a question`), [a, b]) as number[]
    expect(s[1]).toBeGreaterThan(s[0] as number)
    expect(s[0]).toBeGreaterThan(0)
  })

  it('keys on the model or adapter: another adapter does not match', () => {
    const p = new PrefixCachePlugin({})
    const [a, b] = [state('a', 2), state('b', 3)]
    p.onDispatch(req(SYSTEM, 0, { model: 'lora-x', isLora: true }), a)
    const same = req(SYSTEM, 0, { model: 'lora-x', isLora: true })
    const other = req(SYSTEM, 0, { model: 'lora-y', isLora: true })
    expect(p.matchDepths(p.hashes(same), [a, b])[a.slot]).toBe(p.hashes(same).length)
    expect(p.matchDepths(p.hashes(other), [a, b])[a.slot]).toBe(0)
  })

  it('stops preferring a cached endpoint once its load exceeds the best alternative by loadMargin', () => {
    const p = new PrefixCachePlugin({ loadMargin: 4 })
    const [a, b] = [state('a', 2), state('b', 3)]
    p.onDispatch(req(`${SYSTEM} q0`), a)
    for (let i = 0; i < 4; i++) a.dispatchStarted(ticket, 0)
    expect((scores(p, req(`${SYSTEM} q1`), [a, b]) as number[])[0]).toBeGreaterThan(0.9)
    a.dispatchStarted(ticket, 0) // 5 ahead of b now
    expect((scores(p, req(`${SYSTEM} q2`), [a, b]) as number[])[0]).toBe(0)
  })

  it('places a prefix nobody holds by rendezvous hashing, the same way on every replica', () => {
    const eps = () => ['pod-a', 'pod-b', 'pod-c', 'pod-d'].map((n, i) => state(n, 10 + i))
    const winners = new Set<string>()
    for (let g = 0; g < 40; g++) {
      const text = `Group ${g} system prompt: ${'policy text '.repeat(60)}`
      const picks = [new PrefixCachePlugin({}), new PrefixCachePlugin({})].map((p) => {
        const list = eps()
        const s = scores(p, req(`${text} user question ${Math.random()}`), list) as number[]
        expect(s.filter((x) => x === COLD_PLACEMENT_SCORE)).toHaveLength(1)
        return list[s.indexOf(COLD_PLACEMENT_SCORE)]?.name
      })
      // Two replicas with no shared state agree.
      expect(picks[0]).toBe(picks[1])
      winners.add(picks[0] as string)
    }
    expect(winners.size).toBe(4)
  })

  it('places cold prefixes only among endpoints near the least loaded one', () => {
    const p = new PrefixCachePlugin({ coldLoadMargin: 0 })
    const [a, b] = [state('a', 2), state('b', 3)]
    b.dispatchStarted(ticket, 0)
    for (let g = 0; g < 20; g++) {
      const s = scores(p, req(`Group ${g}: ${'x y '.repeat(200)}`), [a, b]) as number[]
      expect(s).toEqual([COLD_PLACEMENT_SCORE, 0])
    }
  })

  it('bounds each endpoint to its KV capacity, evicting the tail of old prompts first', () => {
    const p = new PrefixCachePlugin({ lruCapacity: 16, blockSizeTokens: 4, charsPerToken: 4 })
    const a = state('a', 2)
    const completion = (text: string) => request(pickContext(server([]), { prompt: text }), 0)
    const old = completion('o'.repeat(16 * 12))
    p.onDispatch(old, a) // 12 blocks
    p.onDispatch(completion('n'.repeat(16 * 8)), a) // 8 more: 4 of the old prompt's deepest go
    const depth = p.matchDepths(p.hashes(old), [a])[a.slot]
    expect(depth).toBe(8)
    expect(p.stats().blocksIndexed).toBe(16)
    // The engine's real cache size wins over the configured fallback.
    scraped(a, 0, { numGpuBlocks: 100, blockSize: 16 })
    expect(p.capacityOf(a)).toBe(400)
  })

  it('sizes each table by the engine tokens a block of ours is, learned from prompt tokens per request', () => {
    const p = new PrefixCachePlugin({})
    const a = state('a', 2)
    // 1024 blocks of 16 tokens. Our blocks are 64 characters: 16 tokens at the assumed 4 a token.
    scraped(a, 0, { numGpuBlocks: 1024, blockSize: 16 })
    expect(p.capacityOf(a)).toBe(1024)
    const r = req(`${SYSTEM} Question?`)
    const blocks = p.hashes(r).length
    const ok = { status: 200, durationMs: 10 }
    // The engine says each request was blocks × 10.7 tokens (about 6 characters a token).
    for (let i = 0; i < 25; i++) {
      scraped(a, i + 1, {
        numGpuBlocks: 1024,
        blockSize: 16,
        promptTokensPerRequest: blocks * 10.7,
      })
      p.onDispatch(r, a)
      p.onComplete(r, a, ok)
    }
    expect(p.tokensPerBlock).toBeCloseTo(10.7, 6)
    expect(p.capacityOf(a)).toBe(Math.ceil((1024 * 16) / 10.7))
    // Failed requests and scrapes already seen teach nothing; a small drift moves nothing.
    const before = p.tokensPerBlock
    p.onComplete(req('short'), a, { status: 0, failure: 'connect', durationMs: 0 })
    scraped(a, 100, { numGpuBlocks: 1024, blockSize: 16, promptTokensPerRequest: blocks * 11 })
    p.onDispatch(r, a)
    expect(p.tokensPerBlock).toBe(before)
  })

  it('forgets an endpoint that left', () => {
    const p = new PrefixCachePlugin({})
    const [a, b] = [state('a', 2), state('b', 3)]
    p.onDispatch(req(SYSTEM), a)
    p.onDispatch(req(SYSTEM), b)
    p.forget(a)
    const s = scores(p, req(SYSTEM), [a, b]) as number[]
    expect(s[0]).toBe(0)
    expect(s[1]).toBe(1)
    p.forget(b)
    expect(p.stats().blocksIndexed).toBe(0)
  })

  it('abstains on an empty prompt', () => {
    const p = new PrefixCachePlugin({})
    expect(scores(p, request(pickContext(server([]), {}), 0), [state('a', 2)])).toBeUndefined()
  })
})
