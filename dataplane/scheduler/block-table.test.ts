import { describe, expect, it } from 'vitest'
import { BlockTable } from './block-table.js'
import { seeded } from './testkit.js'

describe('BlockTable', () => {
  it('holds up to its capacity and evicts, with CLOCK, what was not touched since', () => {
    const t = new BlockTable(4)
    for (const h of [1, 2, 3, 4]) t.touch(h)
    expect(t.size).toBe(4)
    t.touch(1) // referenced: survives the next eviction
    t.touch(5) // evicts 2 (1 gets its second chance)
    expect([1, 3, 4, 5].every((h) => t.has(h))).toBe(true)
    expect(t.has(2)).toBe(false)
    t.touch(6)
    t.touch(7)
    expect(t.has(3)).toBe(false)
    expect(t.has(4)).toBe(false)
    expect([...t.hashes()].sort((a, b) => a - b)).toEqual([1, 5, 6, 7])
  })

  it('evicts blocks inserted together in insertion order (a prompt tail before its head)', () => {
    const t = new BlockTable(6)
    for (const h of [16, 15, 14, 13, 12, 11]) t.touch(h) // tail (16) first, head (11) last
    t.touch(21)
    t.touch(22)
    expect(t.has(16)).toBe(false)
    expect(t.has(15)).toBe(false)
    expect([11, 12, 13, 14].every((h) => t.has(h))).toBe(true)
  })

  it('agrees with a reference model under random churn (index stays consistent after deletions)', () => {
    const rnd = seeded(3)
    const cap = 97
    const t = new BlockTable(cap)
    // Reference CLOCK over the same operations.
    const keys: number[] = []
    const ref: number[] = []
    let hand = 0
    for (let op = 0; op < 50_000; op++) {
      const h = (Math.floor(rnd() * 400) * 2_654_435) & 0x3fffffff
      const at = keys.indexOf(h)
      if (at >= 0) ref[at] = 1
      else if (keys.length < cap) {
        keys.push(h)
        ref.push(0)
      } else {
        while (ref[hand] === 1) {
          ref[hand] = 0
          hand = (hand + 1) % cap
        }
        keys[hand] = h
        ref[hand] = 0
        hand = (hand + 1) % cap
      }
      t.touch(h)
      if (op % 997 === 0) {
        for (let q = 0; q < 400; q++) {
          const x = (q * 2_654_435) & 0x3fffffff
          expect(t.has(x)).toBe(keys.includes(x))
        }
      }
    }
    expect(t.size).toBe(cap)
  })
  it('takes a slot hint as a shortcut only: same slots and contents as without hints', () => {
    const rnd = seeded(9)
    const plain = new BlockTable(300)
    const hinted = new BlockTable(300)
    let slot = -2
    for (let op = 0; op < 20_000; op++) {
      // Chains recorded tail first, often again (hint right), with stray wrong hints too.
      const chain = Math.floor(rnd() * 40)
      const len = 1 + Math.floor(rnd() * 12)
      slot = -2
      for (let i = len - 1; i >= 0; i--) {
        const h = (chain * 1_000 + i) & 0x3fffffff
        const hint = rnd() < 0.1 ? Math.floor(rnd() * 400) - 50 : slot + 1
        const a = plain.touch(h)
        slot = hinted.touch(h, hint)
        expect(slot).toBe(a)
      }
    }
    expect([...hinted.hashes()]).toEqual([...plain.hashes()])
  })

  it('returns the slot a hash is held in', () => {
    const t = new BlockTable(8)
    const s = [10, 11, 12].map((h) => t.touch(h))
    expect(s).toEqual([0, 1, 2])
    expect(t.touch(11, 1)).toBe(1)
    expect(t.touch(12, 0)).toBe(2)
  })

  it('marks first blocks: tells their eviction only, and lists the marked ones', () => {
    const t = new BlockTable(4)
    const evicted: number[] = []
    t.onEvictFirst = (h) => evicted.push(h)
    for (const h of [1, 2, 3, 4]) t.touch(h)
    expect(t.markFirst(t.slotOf(1))).toBe(true)
    expect(t.markFirst(t.slotOf(1))).toBe(false)
    expect(t.markFirst(t.slotOf(3))).toBe(true)
    expect(t.slotOf(9)).toBe(-1)
    expect([...t.firstHashes()]).toEqual([1, 3])
    t.touch(5) // evicts 1 (marked)
    t.touch(6) // evicts 2 (not marked)
    expect(evicted).toEqual([1])
    // The slot 1 held is reused unmarked.
    expect([...t.firstHashes()]).toEqual([3])
    expect(t.markFirst(t.slotOf(5))).toBe(true)
    t.touch(7) // evicts 3
    t.touch(8) // evicts 4
    t.touch(9) // evicts 5
    expect(evicted).toEqual([1, 3, 5])
    expect([...t.firstHashes()]).toEqual([])
  })
})
