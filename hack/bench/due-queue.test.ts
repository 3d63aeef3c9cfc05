// The virtual clock's queue: runs in time order (ties as added), each at its own time, then
// leaves the clock where it was asked to be; later entries wait.
import { describe, expect, it } from 'vitest'
import { DueQueue } from './due-queue.js'

describe('DueQueue', () => {
  it('runs what is due in time order, each with the clock at its time', () => {
    const q = new DueQueue()
    const clock = { now: 0 }
    const seen: string[] = []
    const at = (name: string) => () => seen.push(`${name}@${clock.now}`)
    q.later(30, at('c'))
    q.later(10, at('a'))
    q.later(30, at('d'))
    q.later(20, at('b'))
    q.later(50, at('e'))
    q.runUntil(clock, 40)
    expect(seen).toEqual(['a@10', 'b@20', 'c@30', 'd@30'])
    expect(clock.now).toBe(40)
    expect(q.size).toBe(1)
    q.runUntil(clock, 50)
    expect(seen.at(-1)).toBe('e@50')
    expect(q.size).toBe(0)
  })
})
