// The close queue spreads a burst of closes over event-loop turns; the listener uses it for the
// sockets Node's deadline sweep reports at once (idle-connection flood, issue 10). Turns are
// counted, never timed.
import { connect, type Socket } from 'node:net'
import { Hono } from 'hono'
import { afterEach, describe, expect, it } from 'vitest'
import { CLOSES_PER_TURN, CloseQueue } from './close-queue.js'
import { listen, type RunningServer } from './server.js'

const HOST = '127.0.0.171'
const nextTurn = (): Promise<void> => new Promise((r) => setImmediate(r))

describe('CloseQueue', () => {
  it('closes a burst at most perTurn per event-loop turn, in order, all of them', async () => {
    const closed: number[] = []
    const q = new CloseQueue<number>((i) => closed.push(i), 64)
    for (let i = 0; i < 1000; i++) q.push(i)
    // Nothing in the pushing turn: the caller (Node's sweep) returns first.
    expect(closed).toHaveLength(0)
    expect(q.pending()).toBe(1000)
    await nextTurn()
    expect(closed).toHaveLength(64)
    while (q.pending() > 0) await nextTurn()
    expect(closed).toEqual(Array.from({ length: 1000 }, (_, i) => i))
    expect(q.batches()).toBe(Math.ceil(1000 / 64))
    // Idle again, then a new push schedules a new batch.
    q.push(1000)
    await nextTurn()
    expect(closed.at(-1)).toBe(1000)
  })

  it('a close that throws does not keep the rest open', async () => {
    const closed: number[] = []
    const q = new CloseQueue<number>((i) => {
      if (i === 1) throw new Error('boom')
      closed.push(i)
    }, 2)
    for (let i = 0; i < 5; i++) q.push(i)
    while (q.pending() > 0) await nextTurn()
    expect(closed).toEqual([0, 2, 3, 4])
  })

  it('refuses a batch size below 1', () => {
    expect(() => new CloseQueue(() => {}, 0)).toThrow(RangeError)
  })
})

describe('listener: connections expired in one deadline sweep', () => {
  let srv: RunningServer | undefined
  afterEach(async () => {
    await srv?.shutdown({ deadlineMs: 200 })
    srv = undefined
  })

  it('are all answered 408, but at most CLOSES_PER_TURN per event-loop turn', async () => {
    const n = 300
    // A long sweep interval against a short deadline: the n connections, opened together, are
    // reported by the same sweep (before the fix they were all answered in that one turn).
    srv = await listen(new Hono(), {
      host: HOST,
      port: 0,
      lifecycle: { draining: false },
      headersTimeoutMs: 200,
      requestTimeoutMs: 0,
      timeoutCheckIntervalMs: 2000,
      maxConnections: n + 10,
    })
    let turn = 0
    let ticking = true
    const tick = (): void => {
      turn++
      if (ticking) setImmediate(tick)
    }
    setImmediate(tick)
    // Which turn each server-side socket was answered in (its end() call).
    const endsPerTurn = new Map<number, number>()
    srv.server.on('connection', (s: Socket) => {
      const end = s.end.bind(s) as (...a: unknown[]) => Socket
      ;(s as { end: (...a: unknown[]) => Socket }).end = (...a: unknown[]) => {
        endsPerTurn.set(turn, (endsPerTurn.get(turn) ?? 0) + 1)
        return end(...a)
      }
    })
    const answers = await Promise.all(
      Array.from(
        { length: n },
        () =>
          new Promise<string>((resolve) => {
            const c = connect(srv?.port ?? 0, HOST)
            let data = ''
            c.on('data', (d) => {
              data += d.toString()
            })
            c.on('error', () => {})
            c.on('close', () => resolve(data))
          }),
      ),
    )
    ticking = false
    expect(answers.filter((a) => a.startsWith('HTTP/1.1 408 '))).toHaveLength(n)
    expect(answers[0]).toContain('"code":"request_timeout"')
    const counts = [...endsPerTurn.values()]
    expect(counts.reduce((a, b) => a + b, 0)).toBe(n)
    expect(Math.max(...counts)).toBeLessThanOrEqual(CLOSES_PER_TURN)
    expect(counts.length).toBeGreaterThanOrEqual(Math.ceil(n / CLOSES_PER_TURN))
  })
})
