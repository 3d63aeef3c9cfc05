import { describe, expect, it, vi } from 'vitest'
import { backoffDelay, jittered, sleep, withTimeout } from './backoff.js'

describe('backoffDelay', () => {
  it('doubles per attempt within [half, full] of the capped exponential', () => {
    const o = { baseMs: 100, maxMs: 1000 }
    expect(backoffDelay(0, { ...o, random: () => 0 })).toBe(50)
    expect(backoffDelay(0, { ...o, random: () => 0.999999 })).toBe(100)
    expect(backoffDelay(3, { ...o, random: () => 0.999999 })).toBe(800)
    expect(backoffDelay(4, { ...o, random: () => 0.999999 })).toBe(1000)
    expect(backoffDelay(500, { ...o, random: () => 0 })).toBe(500)
  })
  it('jitters periodic timers upwards only', () => {
    expect(jittered(1000, 0.1, () => 0)).toBe(1000)
    expect(jittered(1000, 0.1, () => 0.5)).toBe(1050)
  })
})

describe('sleep and withTimeout', () => {
  it('sleep ends early on abort', async () => {
    // Fake timers that never advance: only the abort can end the sleep.
    vi.useFakeTimers()
    try {
      const ac = new AbortController()
      let ended = false
      const p = sleep(5000, ac.signal).then(() => {
        ended = true
      })
      await Promise.resolve()
      expect(ended).toBe(false)
      ac.abort()
      await p
      expect(ended).toBe(true)
      expect(vi.getTimerCount()).toBe(0) // its timer is cleared too
    } finally {
      vi.useRealTimers()
    }
  })
  it('withTimeout rejects a hung promise and passes a settled one through', async () => {
    await expect(withTimeout(new Promise(() => {}), 20, 'hung call')).rejects.toThrow(
      'hung call timed out after 20 ms',
    )
    await expect(withTimeout(Promise.resolve(7), 1000, 'x')).resolves.toBe(7)
    await expect(withTimeout(Promise.reject(new Error('no')), 1000, 'x')).rejects.toThrow('no')
  })
})
