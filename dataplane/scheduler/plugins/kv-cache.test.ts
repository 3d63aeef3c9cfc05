import { afterEach, describe, expect, it } from 'vitest'
import { encodeBatch } from '../../kv-events/wire.js'
import type { EndpointState } from '../state.js'
import { chat, pickContext, request, scores, server, state } from '../testkit.js'
import { KvCachePlugin } from './kv-cache.js'

const SYSTEM = 'You are a careful assistant for the billing team. '.repeat(20)

function req(text: string) {
  return request(pickContext(server([]), chat(text), {}), 0)
}

const plugins: KvCachePlugin[] = []
afterEach(() => {
  for (const p of plugins.splice(0)) p.close()
})

function plugin(args: Record<string, number | string> = {}): KvCachePlugin {
  // A port nothing listens on: these tests feed the indexes directly; ZMQ just keeps reconnecting.
  const p = new KvCachePlugin({ eventsPort: 1, ...args })
  plugins.push(p)
  return p
}

function big(keys: Uint32Array, from: number, to: number): bigint[] {
  const out: bigint[] = []
  for (let i = from; i < to; i++)
    out.push((BigInt(keys[2 * i] as number) << 32n) | BigInt(keys[2 * i + 1] as number))
  return out
}

let seq = 0n
function store(p: KvCachePlugin, ep: EndpointState, hashes: bigint[]): void {
  const payload = encodeBatch(0, [
    {
      type: 'BlockStored',
      hashes,
      parent: null,
      tokenIds: [],
      blockSize: 16,
      loraId: null,
      medium: null,
    },
  ])
  const st = p.subscriber(ep).state
  expect(st.onMessage(st.lastSeq === null ? seq++ : st.lastSeq + 1n, payload)).not.toBe('gap')
}
function remove(p: KvCachePlugin, ep: EndpointState, hashes: bigint[]): void {
  const st = p.subscriber(ep).state
  st.onMessage(
    (st.lastSeq ?? -1n) + 1n,
    encodeBatch(0, [{ type: 'BlockRemoved', hashes, medium: null }]),
  )
}

describe('kv-cache', () => {
  it('scores the run of leading prompt blocks each engine reports resident', () => {
    const p = plugin()
    const [a, b, c] = [state('a', 2), state('b', 3), state('c', 4)]
    const r = req(`${SYSTEM} What is my balance?`)
    const keys = p.keys(r) ?? new Uint32Array()
    const n = keys.length / 2
    expect(n).toBeGreaterThan(8)
    store(p, a, big(keys, 0, 4))
    store(p, b, big(keys, 0, n))
    // c has events but none of these blocks; a block beyond a gap does not count.
    store(p, c, big(keys, 5, n))
    const s = scores(p, r, [a, b, c]) as number[]
    expect(s).toEqual([4 / n, 1, 0])
    expect(p.decisions.events).toBe(1)
    // Evicting block 2 on a cuts its run to 2.
    remove(p, a, big(keys, 2, 3))
    expect(scores(p, req(`${SYSTEM} What is my balance?`), [a, b, c])?.[0]).toBe(2 / n)
  })

  it('falls back to the approximate prefix index while no endpoint has events', () => {
    const p = plugin()
    const [a, b] = [state('a', 5), state('b', 6)]
    const first = req(`${SYSTEM} Question one?`)
    // No events: the scores are exactly the approximate prefix-cache index's.
    expect(scores(p, first, [a, b])).toEqual(scores(p.fallback, first, [a, b]))
    p.onDispatch(first, b)
    const s = scores(p, req(`${SYSTEM} Question two?`), [a, b]) as number[]
    expect(s[1]).toBeGreaterThan(0.5)
    expect(s[0]).toBeLessThan(s[1] as number)
    expect(p.decisions.approximate).toBe(2)
    expect(p.decisions.events).toBe(0)
  })

  it('uses events where they exist and the approximate index for the rest', () => {
    const p = plugin()
    const [a, b] = [state('a', 7), state('b', 8)]
    const warm = req(`${SYSTEM} Question one?`)
    p.onDispatch(warm, b) // b: no events, only what we dispatched
    const r = req(`${SYSTEM} Question one?`)
    const keys = p.keys(r) ?? new Uint32Array()
    store(p, a, big(keys, 0, 1))
    const s = scores(p, r, [a, b]) as number[]
    expect(s[0]).toBeCloseTo(1 / (keys.length / 2), 12)
    expect(s[1]).toBe(1)
  })

  it('counts a prompt in flight to an engine as resident there until it completes', () => {
    const p = plugin()
    const [a, b] = [state('a', 11), state('b', 12)]
    const first = req(`${SYSTEM} Burst one?`)
    const keys = p.keys(first) ?? new Uint32Array()
    const n = keys.length / 2
    // Both engines have events (an unrelated block each), neither holds this prompt yet.
    store(p, a, [1n])
    store(p, b, [2n])
    // Nobody holds it: only the rendezvous placement every replica would make (the test below).
    expect([...(scores(p, first, [a, b]) ?? [])].sort()).toEqual([0, 0.25])
    p.onDispatch(first, b)
    // The next request of the burst shares the system prompt's blocks: they are on their way to b.
    const second = req(`${SYSTEM} Burst two?`)
    const k2 = p.keys(second) ?? new Uint32Array()
    let shared = 0
    while (
      shared < n &&
      k2[2 * shared] === keys[2 * shared] &&
      k2[2 * shared + 1] === keys[2 * shared + 1]
    )
      shared++
    // Past the head that cold placement keys on (8 blocks): only the run counts.
    expect(shared).toBeGreaterThanOrEqual(8)
    expect(shared).toBeLessThan(n)
    expect(scores(p, second, [a, b])).toEqual([0, shared / (k2.length / 2)])
    // Completed without its blocks ever reported (evicted, or the request failed): no credit left.
    p.onComplete(first, b)
    expect([...(scores(p, req(`${SYSTEM} Burst two?`), [a, b]) ?? [])].sort()).toEqual([0, 0.25])
  })

  it('places a prompt nobody holds on the same endpoint from every replica', () => {
    // Two data-plane replicas, each with its own plugin: the engines' events reach both, but each
    // knows only its own prompts in flight, and blocks are reported after prefill. A new prefix
    // arriving at both at once must not be computed on two pods.
    const [r1, r2] = [plugin(), plugin()]
    const eps = [state('a', 21), state('b', 22), state('c', 23), state('d', 24)]
    for (const p of [r1, r2]) for (const [i, e] of eps.entries()) store(p, e, [BigInt(100 + i)])
    const picks: number[] = []
    for (let g = 0; g < 6; g++) {
      const text = `Group ${g}. ${SYSTEM} Hello?`
      const s1 = scores(r1, req(text), eps) as number[]
      const s2 = scores(r2, req(text), eps) as number[]
      expect(s1).toEqual(s2)
      const best = s1.indexOf(Math.max(...s1))
      expect(s1[best]).toBe(0.25)
      picks.push(best)
      // Replica 1 sends it; replica 2 does not see that, and still picks the same endpoint.
      r1.onDispatch(req(text), eps[best] as EndpointState)
      expect((scores(r2, req(text), eps) as number[]).indexOf(0.25)).toBe(best)
    }
    // Rendezvous spreads different prefixes over the endpoints (not all on the first).
    expect(new Set(picks).size).toBeGreaterThan(1)
  })

  it('hashes as SGLang does with engine: sglang', () => {
    const p = plugin({ engine: 'sglang' })
    const a = state('a', 13)
    const r = req(`${SYSTEM} Paged?`)
    const keys = p.keys(r) ?? new Uint32Array()
    const vllm = plugin().keys(req(`${SYSTEM} Paged?`)) ?? new Uint32Array()
    expect(keys.length).toBe(vllm.length)
    expect(keys[0] === vllm[0] && keys[1] === vllm[1]).toBe(false)
    store(p, a, big(keys, 0, 9))
    expect(scores(p, r, [a])).toEqual([9 / (keys.length / 2)])
    expect(p.debug()['engine']).toBe('sglang')
  })

  it('forgets an engine that restarted, and gives a loaded engine no credit', () => {
    const p = plugin({ loadMargin: 1 })
    const [a, b] = [state('a', 9), state('b', 10)]
    const r = req(`${SYSTEM} Again?`)
    const keys = p.keys(r) ?? new Uint32Array()
    const all = big(keys, 0, keys.length / 2)
    store(p, a, all)
    store(p, b, all)
    for (let i = 0; i < 3; i++)
      a.dispatchStarted({ promptTokens: 10, outputTokens: 10, stream: false }, 0)
    expect(scores(p, req(`${SYSTEM} Again?`), [a, b])).toEqual([0, 1])
    p.onEndpointReset(b)
    expect(p.subscriber(b).state.index.size).toBe(0)
    expect(p.subscriber(b).state.lastSeq).toBeNull()
  })
})
