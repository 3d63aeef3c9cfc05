// One behaviour, two stores: the suite every RateLimitBackend must pass (local.test.ts runs it
// in-process, redis.test.ts against a real redis-server), so "local" and "global" limits mean the
// same thing.
import { expect, it } from 'vitest'
import { calendarWindow, type LimitOp, type RateLimitBackend } from './backend.js'

export interface ContractSubject {
  readonly backend: RateLimitBackend
  /** Resolves when adjustments issued so far are applied. */
  settled(): Promise<void>
}

let seq = 0
function fresh(): string {
  return `t${process.pid}-${Date.now()}-${seq++}`
}

export function bucket(
  tag: string,
  name: string,
  limit: number,
  periodMs: number,
  cost: number,
): LimitOp {
  return { key: `c:{${tag}}:${name}`, tag, kind: 'bucket', limit, periodMs, windowEndMs: 0, cost }
}

export function window(tag: string, name: string, limit: number, cost: number): LimitOp {
  const w = calendarWindow('day', Date.now())
  return {
    key: `c:{${tag}}:${name}:${w.id}`,
    tag,
    kind: 'window',
    limit,
    periodMs: 0,
    windowEndMs: w.endMs,
    cost,
  }
}

const HOUR = 3_600_000

export function backendContract(make: () => ContractSubject): void {
  it('takes from a bucket until it is empty; a denied reservation takes nothing', async () => {
    const { backend } = make()
    const t = fresh()
    const r1 = await backend.reserve([bucket(t, 'rq', 10, HOUR, 6)])
    expect(r1.allowed).toBe(true)
    expect(r1.states[0]?.remaining).toBe(4)
    expect(r1.states[0]?.retryMs).toBe(0)
    const r2 = await backend.reserve([bucket(t, 'rq', 10, HOUR, 5)])
    expect(r2.allowed).toBe(false)
    expect(r2.states[0]?.remaining).toBe(4)
    // 1 token short at 10/hour: about 6 minutes.
    expect(r2.states[0]?.retryMs).toBeGreaterThan(HOUR / 10 - 2_000)
    expect(r2.states[0]?.retryMs).toBeLessThanOrEqual(HOUR / 10)
    const r3 = await backend.reserve([bucket(t, 'rq', 10, HOUR, 4)])
    expect(r3.allowed).toBe(true)
    expect(r3.states[0]?.remaining).toBe(0)
    expect(r3.states[0]?.resetMs).toBeGreaterThan(HOUR - 2_000)
  })

  it('is all or nothing across counters and scopes', async () => {
    const { backend } = make()
    const a = fresh()
    const b = fresh()
    const denied = await backend.reserve([bucket(a, 'x', 10, HOUR, 5), bucket(b, 'y', 3, HOUR, 5)])
    expect(denied.allowed).toBe(false)
    // Nothing was kept from the scope that had room.
    const r = await backend.reserve([bucket(a, 'x', 10, HOUR, 10), bucket(b, 'y', 3, HOUR, 3)])
    expect(r.allowed).toBe(true)
  })

  it('refills continuously', async () => {
    const { backend } = make()
    const t = fresh()
    expect((await backend.reserve([bucket(t, 'x', 10, 400, 10)])).allowed).toBe(true)
    await new Promise((r) => setTimeout(r, 220))
    const r = await backend.reserve([bucket(t, 'x', 10, 400, 0)])
    expect(r.states[0]?.remaining).toBeGreaterThanOrEqual(4)
    expect(r.states[0]?.remaining).toBeLessThanOrEqual(8)
  })

  it('never admits a cost above the limit, and says so (retry -1)', async () => {
    const { backend } = make()
    const r = await backend.reserve([bucket(fresh(), 'x', 10, HOUR, 11)])
    expect(r.allowed).toBe(false)
    expect(r.states[0]?.retryMs).toBe(-1)
  })

  it('settles: refunds up to the limit, charges into debt that later requests wait out', async () => {
    const s = make()
    const t = fresh()
    await s.backend.reserve([bucket(t, 'x', 100, HOUR, 50)])
    s.backend.adjust([bucket(t, 'x', 100, HOUR, -80)])
    await s.settled()
    expect((await s.backend.reserve([bucket(t, 'x', 100, HOUR, 0)])).states[0]?.remaining).toBe(100)
    s.backend.adjust([bucket(t, 'x', 100, HOUR, 150)])
    await s.settled()
    const r = await s.backend.reserve([bucket(t, 'x', 100, HOUR, 1)])
    expect(r.allowed).toBe(false)
    expect(r.states[0]?.remaining).toBe(-50)
    expect(r.states[0]?.retryMs).toBeGreaterThan((51 * HOUR) / 100 - 2_000)
  })

  it('caps debt at one period: a charge-back after an outage delays, never locks out', async () => {
    const s = make()
    const t = fresh()
    // 60 requests per minute; a fail-open outage admitted 600 that are now charged back at once.
    const rpm = (cost: number) => bucket(t, 'req', 60, 60_000, cost)
    for (let i = 0; i < 600; i++) s.backend.adjust([rpm(1)])
    await s.settled()
    const r = await s.backend.reserve([rpm(1)])
    expect(r.allowed).toBe(false)
    // At most one minute's worth of debt (-60), so the next request fits in ~61 s, not ~541 s.
    expect(r.states[0]?.remaining).toBe(-60)
    expect(r.states[0]?.retryMs).toBeGreaterThan(60_000)
    expect(r.states[0]?.retryMs).toBeLessThanOrEqual(61_000)
  })

  it('counts calendar budgets until the window ends', async () => {
    const s = make()
    const t = fresh()
    const r1 = await s.backend.reserve([window(t, 'tok', 1000, 700)])
    expect(r1.allowed).toBe(true)
    expect(r1.states[0]?.remaining).toBe(300)
    const r2 = await s.backend.reserve([window(t, 'tok', 1000, 400)])
    expect(r2.allowed).toBe(false)
    const untilMidnight = calendarWindow('day', Date.now()).endMs - Date.now()
    expect(Math.abs((r2.states[0]?.retryMs ?? 0) - untilMidnight)).toBeLessThan(5_000)
    s.backend.adjust([window(t, 'tok', 1000, -200)])
    await s.settled()
    expect((await s.backend.reserve([window(t, 'tok', 1000, 500)])).allowed).toBe(true)
    s.backend.adjust([window(t, 'tok', 1000, -5000)])
    await s.settled()
    // Never below zero: a big refund does not create extra budget.
    expect((await s.backend.reserve([window(t, 'tok', 1000, 0)])).states[0]?.remaining).toBe(1000)
  })
}
