import { randomUUID } from 'node:crypto'
// The primary's counters and the workers' leases, wired as node:cluster wires them: messages
// structured-cloned and delivered on a later turn of the event loop. The end-to-end check with a
// real `--workers 2` data plane is in test/dataplane-workers-ratelimit.test.ts.
import { afterEach, describe, expect, it } from 'vitest'
import { BackendUnavailableError } from '../filters/ratelimit/backend.js'
import { backendContract, bucket, window } from '../filters/ratelimit/backend-contract.js'
import { LeasedBackend, LeaseServer, leaseChunk, type RateLimitToPrimary } from './ratelimit.js'

interface Wired {
  readonly server: LeaseServer
  readonly workers: LeasedBackend[]
  /** Reservations that reached the primary. */
  readonly asked: { n: number }
  /** Cut a worker off from the primary (its sends throw, like a closed IPC channel). */
  readonly cut: Set<number>
}

const made: LeasedBackend[] = []
afterEach(async () => {
  for (const b of made.splice(0)) await b.close()
})

function wire(workers: number, opts: { share?: number; idleMs?: number } = {}): Wired {
  const server = new LeaseServer({
    workers,
    ...(opts.share !== undefined ? { share: opts.share } : {}),
  })
  const asked = { n: 0 }
  const cut = new Set<number>()
  const list: LeasedBackend[] = []
  for (let i = 0; i < workers; i++) {
    const b: LeasedBackend = new LeasedBackend({
      send: (msg: RateLimitToPrimary) => {
        if (cut.has(i)) throw new Error('channel closed')
        const m = structuredClone(msg)
        setImmediate(() => {
          if (m.t === 'igw:rl-adjust') {
            server.adjust(m.ops)
            return
          }
          asked.n++
          const answer = structuredClone(server.reserve(m))
          setImmediate(() => b.onResult(answer))
        })
      },
      ...(opts.idleMs !== undefined ? { idleMs: opts.idleMs } : {}),
    })
    list.push(b)
    made.push(b)
  }
  return { server, workers: list, asked, cut }
}

describe('LeasedBackend without leases (share 0): the primary decides exactly as LocalBackend', () => {
  backendContract(() => {
    const w = wire(1, { share: 0 })
    const b = w.workers[0] as LeasedBackend
    return { backend: b, settled: () => b.sync() }
  })
})

describe('LeasedBackend with leases: one budget over all workers', () => {
  it('sizes a lease at 10 % of the limit split over the workers, none for small limits', () => {
    expect(leaseChunk(bucket('t', 'x', 100, 3_600_000, 1), 2)).toBe(5)
    expect(leaseChunk(bucket('t', 'x', 10, 3_600_000, 1), 2)).toBe(0)
    expect(leaseChunk(window('t', 'y', 1_000_000, 1), 4)).toBe(25_000)
  })

  it('two workers together admit exactly the limit, and leases spare most round trips', async () => {
    const w = wire(2)
    const t = `two-${randomUUID()}`
    const op = bucket(t, 'rq', 100, 3_600_000, 1)
    let admitted = 0
    for (let i = 0; i < 140; i++) {
      const b = w.workers[i % 2] as LeasedBackend
      if ((await b.reserve([op])).allowed) admitted++
    }
    expect(admitted).toBe(100)
    // Without leases every one of the 140 decisions is a round trip; with 5-token leases about
    // one in six of the admitted ones (plus each denial) is.
    expect(w.asked.n).toBeLessThan(70)
    expect(w.asked.n).toBeGreaterThan(40)
  })

  it('decides on a lease without the primary', async () => {
    const w = wire(1)
    const b = w.workers[0] as LeasedBackend
    const op = bucket(`alone-${randomUUID()}`, 'rq', 100, 3_600_000, 1)
    expect((await b.reserve([op])).allowed).toBe(true)
    expect(b.leaseOf(op.key)).toBe(10)
    w.cut.add(0)
    for (let i = 0; i < 10; i++) {
      const r = await b.reserve([op])
      expect(r.allowed).toBe(true)
      // The primary's 89 left at the grant, plus what is left of the lease.
      expect(r.states[0]?.remaining).toBe(89 + 9 - i)
    }
    // The lease is spent: the next decision needs the primary, which is unreachable.
    await expect(b.reserve([op])).rejects.toBeInstanceOf(BackendUnavailableError)
  })

  it('gives an unused lease back, so another worker can spend it', async () => {
    const w = wire(2, { idleMs: 20 })
    const [a, b] = w.workers as [LeasedBackend, LeasedBackend]
    const op = (cost: number) => bucket(`idle-${process.pid}`, 'rq', 100, 3_600_000, cost)
    const key = op(1).key
    expect(a.sweeping).toBe(false)
    expect((await a.reserve([op(1)])).allowed).toBe(true)
    expect(a.leaseOf(key)).toBe(5)
    expect(a.sweeping).toBe(true)
    // 94 free at the primary, 5 parked in a's lease.
    expect((await b.reserve([op(99)])).allowed).toBe(false)
    await new Promise((r) => setTimeout(r, 80))
    expect(a.leaseOf(key)).toBe(0)
    // No lease left: nothing to sweep, so no timer wakes the worker.
    expect(a.sweeping).toBe(false)
    await a.sync()
    expect((await b.reserve([op(99)])).allowed).toBe(true)
  })

  it('settles a charge from the lease first and a refund into it up to its size', async () => {
    const w = wire(1)
    const b = w.workers[0] as LeasedBackend
    const op = (cost: number) => bucket(`settle-${process.pid}`, 'tok', 1000, 3_600_000, cost)
    const key = op(1).key
    expect((await b.reserve([op(100)])).allowed).toBe(true)
    expect(b.leaseOf(key)).toBe(100)
    b.adjust([op(30)])
    expect(b.leaseOf(key)).toBe(70)
    // 30 of the refund fill the lease again; the other 20 go back to the primary (820 there).
    b.adjust([op(-50)])
    expect(b.leaseOf(key)).toBe(100)
    // Past the lease: 20 more are charged at the primary, which then has 800 again.
    b.adjust([op(120)])
    expect(b.leaseOf(key)).toBe(0)
    await b.sync()
    const r = await b.reserve([op(801)])
    expect(r.allowed).toBe(false)
    expect(r.states[0]?.remaining).toBe(800)
  })

  it('a reservation fails at once when the primary cannot be reached', async () => {
    const w = wire(1)
    w.cut.add(0)
    const b = w.workers[0] as LeasedBackend
    await expect(b.reserve([bucket(`cut-${process.pid}`, 'rq', 10, 60_000, 1)])).rejects.toThrow(
      /channel closed/,
    )
  })
})
