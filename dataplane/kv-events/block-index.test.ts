import { describe, expect, it } from 'vitest'
import { BlockIndex } from './block-index.js'

function rnd(seed: number): () => number {
  let s = seed >>> 0
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    return s
  }
}

describe('BlockIndex', () => {
  it('adds, finds and deletes 64-bit hashes, including ones that collide on the low half', () => {
    const ix = new BlockIndex(1000)
    ix.add(1, 7)
    ix.add(2, 7)
    ix.add(0, 0)
    expect(ix.has(1, 7)).toBe(true)
    expect(ix.has(2, 7)).toBe(true)
    expect(ix.has(3, 7)).toBe(false)
    expect(ix.has(0, 0)).toBe(true)
    expect(ix.size).toBe(3)
    expect(ix.delete(1, 7)).toBe(true)
    expect(ix.has(1, 7)).toBe(false)
    expect(ix.has(2, 7)).toBe(true)
    expect(ix.delete(1, 7)).toBe(false)
    expect(ix.size).toBe(2)
  })

  it('matches a Set under random adds and deletes (backward-shift deletion keeps probe runs intact)', () => {
    const ix = new BlockIndex(100_000, 16)
    const ref = new Set<string>()
    const r = rnd(7)
    for (let i = 0; i < 50_000; i++) {
      // Few distinct keys so deletes hit; hi from a small range forces probe clustering.
      const hi = r() % 4
      const lo = r() % 3000
      if (r() % 3 === 0) {
        expect(ix.delete(hi, lo)).toBe(ref.delete(`${hi}:${lo}`))
      } else {
        ix.add(hi, lo)
        ref.add(`${hi}:${lo}`)
      }
    }
    expect(ix.size).toBe(ref.size)
    for (let hi = 0; hi < 4; hi++)
      for (let lo = 0; lo < 3000; lo++) expect(ix.has(hi, lo)).toBe(ref.has(`${hi}:${lo}`))
  })

  it('clears itself when more blocks arrive than an engine can hold (missed removals)', () => {
    const ix = new BlockIndex(4)
    for (let i = 1; i <= 4; i++) ix.add(0, i)
    expect(ix.size).toBe(4)
    ix.add(0, 4) // already held: no overflow
    expect(ix.overflows).toBe(0)
    ix.add(0, 5)
    expect(ix.overflows).toBe(1)
    expect(ix.size).toBe(1)
    expect(ix.has(0, 5)).toBe(true)
    expect(ix.has(0, 1)).toBe(false)
  })

  it('prefixRun counts leading resident keys up to the first gap', () => {
    const ix = new BlockIndex(100)
    ix.add(9, 1)
    ix.add(9, 2)
    ix.add(9, 4)
    expect(ix.prefixRun(Uint32Array.of(9, 1, 9, 2, 9, 3, 9, 4))).toBe(2)
    expect(ix.prefixRun(Uint32Array.of(9, 3, 9, 1))).toBe(0)
    expect(ix.prefixRun(Uint32Array.of(9, 1, 9, 2))).toBe(2)
  })

  it('costs at most 64 bytes per resident block with 100k blocks (measured: table bytes and heap)', () => {
    const r = rnd(42)
    const n = 100_000
    const keys = new Uint32Array(n * 2)
    for (let i = 0; i < keys.length; i++) keys[i] = r()
    const gc = (globalThis as { gc?: () => void }).gc
    gc?.()
    const before = process.memoryUsage()
    const ix = new BlockIndex(1_000_000)
    for (let i = 0; i < n; i++) ix.add(keys[2 * i] as number, keys[2 * i + 1] as number)
    gc?.()
    const after = process.memoryUsage()
    expect(ix.size).toBe(n)
    const perBlock = ix.bytes / n
    // Table at load ≤ 1/2 after growth to a power of two: between 16 and 32 bytes per block.
    expect(perBlock).toBeLessThanOrEqual(32)
    expect(perBlock).toBeGreaterThanOrEqual(16)
    // Typed-array memory is counted in arrayBuffers; nothing else grows per block.
    const grown = after.arrayBuffers - before.arrayBuffers
    expect(grown / n).toBeLessThanOrEqual(64)
    console.log(
      `kv index: ${n} blocks, table ${perBlock.toFixed(1)} B/block, arrayBuffers +${(grown / n).toFixed(1)} B/block`,
    )
    for (let i = 0; i < n; i += 997)
      expect(ix.has(keys[2 * i] as number, keys[2 * i + 1] as number)).toBe(true)
  })
})
