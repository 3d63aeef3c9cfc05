import { describe, expect, it } from 'vitest'
import { blockHashes, KvCache } from './kv-cache.js'

const toks = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => ` ${prefix}${i}`)

describe('blockHashes', () => {
  it('hashes only full blocks and chains each hash on its parent', () => {
    const a = blockHashes(toks('a', 10), 4)
    expect(a).toHaveLength(2)
    // Same second block, different first block: the chained hash of block 1 must differ too.
    const b = toks('a', 8)
    b[0] = ' changed'
    const hb = blockHashes(b, 4)
    expect(hb[0]).not.toBe(a[0])
    expect(hb[1]).not.toBe(a[1])
    expect(blockHashes(toks('a', 8), 4)).toEqual(a)
    expect(blockHashes(toks('a', 8), 4, 'lora-x')[0]).not.toBe(a[0])
    // Extending from known prefix hashes gives the same chain as hashing from scratch.
    const long = toks('a', 17)
    expect(blockHashes(long, 4, '', a)).toEqual(blockHashes(long, 4))
  })
})

describe('KvCache', () => {
  it('reuses committed prefix blocks and counts referenced blocks as used', () => {
    const kv = new KvCache(16, 4)
    const prompt = toks('p', 12)
    const h = blockHashes(prompt, 4)
    const a = kv.allocate(h, 12, 16)
    expect(a?.cachedTokens).toBe(0)
    expect(kv.usage()).toBe(4 / 16)
    if (a === null) throw new Error('unreachable')
    kv.commit(a, h)
    // A concurrent request with the same prompt shares the prompt blocks; 12-token prompt with a
    // 1-token minimum recompute keeps 2 of 3 blocks (11 tokens -> 2 full blocks).
    const b = kv.allocate(h, 12, 16)
    expect(b?.cachedTokens).toBe(8)
    expect(kv.usage()).toBe((4 + 2) / 16)
    if (b === null) throw new Error('unreachable')
    kv.release(a)
    kv.release(b)
    expect(kv.usage()).toBe(0)
    expect(kv.peekCachedTokens(h, 13)).toBe(12)
  })

  it('refuses an allocation that does not fit and leaves state unchanged', () => {
    const kv = new KvCache(4, 4)
    const a = kv.allocate([], 4, 12)
    expect(a).not.toBeNull()
    expect(kv.allocate([], 4, 8)).toBeNull()
    expect(kv.stats().usedBlocks).toBe(3)
  })

  it('evicts the least recently freed blocks first (LRU) in a tiny cache', () => {
    const kv = new KvCache(8, 4)
    const run = (p: string[]) => {
      const h = blockHashes(p, 4)
      const a = kv.allocate(h, p.length, p.length + 4)
      if (a === null) throw new Error('no room')
      kv.commit(a, h)
      kv.release(a)
      return a.cachedTokens
    }
    const A = toks('a', 13)
    const B = toks('b', 13)
    const C = toks('c', 13)
    expect(run(A)).toBe(0) // 4 blocks: uses the 4 never-used blocks first
    expect(run(B)).toBe(0) // the other 4 never-used blocks; A survives
    expect(kv.peekCachedTokens(blockHashes(A, 4), 13)).toBe(12)
    expect(run(C)).toBe(0) // must evict: A was freed first, so A goes
    expect(kv.stats().evictions).toBeGreaterThan(0)
    expect(kv.peekCachedTokens(blockHashes(A, 4), 13)).toBe(0)
    expect(kv.peekCachedTokens(blockHashes(B, 4), 13)).toBe(12)
    expect(run(B)).toBe(12)
  })

  it('never evicts blocks referenced by a running request', () => {
    const kv = new KvCache(4, 4)
    const p = toks('x', 8)
    const h = blockHashes(p, 4)
    const held = kv.allocate(h, 8, 8)
    if (held === null) throw new Error('no room')
    kv.commit(held, h)
    expect(kv.allocate([], 4, 12)).toBeNull()
    const other = kv.allocate([], 4, 8)
    expect(other).not.toBeNull()
    expect(kv.peekCachedTokens(h, 9)).toBe(8)
  })
})
