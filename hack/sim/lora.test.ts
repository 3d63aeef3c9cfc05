import { describe, expect, it } from 'vitest'
import { LoraSlots } from './lora.js'

describe('LoraSlots', () => {
  it('loads into a free slot, shares a loaded adapter and its pending load', () => {
    const s = new LoraSlots(['a', 'b'], 2)
    expect(s.acquire('a', 100, 50)).toEqual({ kind: 'ready', readyAt: 150 })
    expect(s.acquire('a', 120, 50)).toEqual({ kind: 'ready', readyAt: 150 })
    expect(s.counters().loads).toBe(1)
    expect(s.isKnown('zzz')).toBe(false)
  })

  it('evicts the least recently used idle adapter, and blocks when all slots are busy', () => {
    const s = new LoraSlots(['a', 'b', 'c'], 2)
    s.acquire('a', 0, 0)
    s.acquire('b', 0, 0)
    expect(s.canAcquire('c')).toBe(false)
    expect(s.acquire('c', 0, 0)).toEqual({ kind: 'blocked' })
    s.release('b')
    s.release('a') // a released last: b is the LRU idle adapter
    expect(s.canAcquire('c')).toBe(true)
    expect(s.acquire('c', 10, 5)).toEqual({ kind: 'ready', readyAt: 15 })
    expect(s.loaded().sort()).toEqual(['a', 'c'])
    expect(s.counters()).toEqual({ loads: 3, evictions: 1 })
  })
})
