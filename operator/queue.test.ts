import { describe, expect, it, vi } from 'vitest'
import { WorkQueue } from './queue.js'

const tick = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

describe('WorkQueue', () => {
  it('runs a key once however often it is added before it runs', async () => {
    const runs: string[] = []
    const q = new WorkQueue({
      concurrency: 1,
      handler: async (k) => {
        runs.push(k)
        await tick(5)
      },
    })
    q.add('a')
    q.add('b')
    q.add('b')
    q.add('a') // 'a' is running: marked to run again after
    q.add('a')
    await q.idle()
    expect(runs).toEqual(['a', 'b', 'a'])
  })

  it('never runs one key twice at once, even with spare workers', async () => {
    let concurrent = 0
    let max = 0
    const q = new WorkQueue({
      concurrency: 4,
      handler: async () => {
        concurrent++
        max = Math.max(max, concurrent)
        await tick(10)
        concurrent--
      },
    })
    q.add('k')
    await tick(1)
    q.add('k')
    q.add('k')
    await q.idle()
    expect(max).toBe(1)
  })

  it('retries failures with growing per-key backoff and resets it on success', async () => {
    const at: number[] = []
    let fails = 3
    const errors: number[] = []
    const q = new WorkQueue({
      backoff: { baseMs: 20, maxMs: 1000, random: () => 0.999999 },
      handler: async () => {
        at.push(Date.now())
        if (fails-- > 0) throw new Error('boom')
      },
      onError: (_k, _e, delay) => errors.push(delay),
    })
    q.add('x')
    await q.idle()
    expect(at).toHaveLength(4)
    expect(errors).toEqual([20, 40, 80])
    // Gaps follow the backoff (timers may fire a little late, never early).
    expect(at[3]! - at[2]!).toBeGreaterThanOrEqual(78)
    expect(q.retries('x')).toBe(0)
  })

  it('addAfter keeps the earliest time, batching a burst into one run', async () => {
    // Fake timers: the run times are exact, whatever the load on the machine.
    vi.useFakeTimers()
    try {
      const runs: number[] = []
      const q = new WorkQueue({ handler: async () => void runs.push(Date.now()) })
      const t0 = Date.now()
      q.addAfter('snap', 40)
      await vi.advanceTimersByTimeAsync(10)
      q.addAfter('snap', 40) // later than pending: ignored
      q.addAfter('snap', 40)
      await vi.advanceTimersByTimeAsync(29)
      expect(runs).toEqual([])
      await vi.advanceTimersByTimeAsync(1)
      await q.idle()
      expect(runs).toEqual([t0 + 40])
      q.addAfter('snap', 200)
      q.addAfter('snap', 10) // earlier: replaces
      await vi.advanceTimersByTimeAsync(10)
      await q.idle()
      expect(runs).toEqual([t0 + 40, t0 + 50])
      await vi.advanceTimersByTimeAsync(300) // the replaced 200 ms run never comes
      expect(runs).toHaveLength(2)
    } finally {
      vi.useRealTimers()
    }
  })

  it('stop drops queued work and waits for running handlers up to a deadline', async () => {
    const done: string[] = []
    const q = new WorkQueue({
      concurrency: 1,
      handler: async (k) => {
        await tick(k === 'slow' ? 200 : 20)
        done.push(k)
      },
    })
    q.add('a')
    q.add('b')
    q.addAfter('c', 5)
    await tick(1)
    expect(await q.stop(1000)).toEqual({ abandoned: 0 })
    expect(done).toEqual(['a'])
    q.add('d') // ignored after stop
    await tick(30)
    expect(done).toEqual(['a'])

    const q2 = new WorkQueue({ handler: () => tick(300) })
    q2.add('slow')
    await tick(1)
    expect(await q2.stop(20)).toEqual({ abandoned: 1 })
  })
})
