import { describe, expect, it } from 'vitest'
import { state } from '../testkit.js'
import { EndpointModel, LatencyModel, type Prefill } from './latency-model.js'

const priors = { prefillMsPerToken: 0.1, overheadMs: 10, decodeMsPerToken: 15 }

describe('LatencyModel.wait with admission times', () => {
  // The shape of a real bench run (issue 9, decode-bound): a pod with 4 slots, its 4th running
  // request had itself queued ~600 ms before its slot. Timed from dispatch, its slot looked
  // about to free and the next request was predicted ~300 ms of wait; it waited ~900.
  it('times a slot from when its request was admitted, not sent', () => {
    const own = new EndpointModel()
    for (const at of [0, 100, 200, 300]) own.started(at, 4)
    own.started(400, 4) // batch full: queued
    expect(own.admits.map(Number.isNaN)).toEqual([false, false, false, false, true])
    own.ended(0, 1000, 4) // its slot goes to the oldest queued request, at that moment
    expect(own.admits).toEqual([100, 200, 300, 1000])
    for (const at of [1050, 1080, 1090]) own.started(at, 4)
    const m = new LatencyModel(priors)
    // 7 pending, 4 slots: this request is 4th in the queue, so it takes the 4th slot to free,
    // held by the request admitted at 1000 (1000 ms slot → 900 ms left at 1100).
    expect(m.wait(7, 4, 1000, own, 1100)).toBe(900)
    // Queue position 0: the oldest running (admitted at 100) has 0 ms left at 1100.
    expect(m.wait(4, 4, 1000, own, 1100)).toBe(0)
    // A position past a whole batch adds one slot time per round.
    own.started(1095, 4)
    expect(m.wait(8, 4, 1000, own, 1100)).toBe(0 + 1000)
  })

  it('counts free slots first when fewer than the capacity run', () => {
    const own = new EndpointModel()
    for (const at of [0, 100]) own.started(at, 4)
    // The batch limit learned smaller than the running view: 2 running in a batch of 3.
    expect(own.slotLeft(0, 3, 1000, 500)).toBe(0)
    expect(own.slotLeft(1, 3, 1000, 500)).toBe(500)
    expect(own.slotLeft(2, 3, 1000, 500)).toBe(600)
  })

  it('an answer that ends a queued request admits nobody in its place', () => {
    const own = new EndpointModel()
    for (const at of [0, 10]) own.started(at, 1)
    own.started(20, 1)
    own.ended(20, 50, 1) // cut while queued: the running one keeps its slot
    expect(own.starts).toEqual([0, 10])
    expect(own.admits[0]).toBe(0)
    expect(Number.isNaN(own.admits[1] as number)).toBe(true)
  })
})

describe('LatencyModel prefill lines kept between observations', () => {
  const priors = { prefillMsPerToken: 0.1, overheadMs: 10, decodeMsPerToken: 20 }
  const a = state('a', 1)
  const b = state('b', 2)

  /** The line as `prefill` computed it before lines were kept: pooled fit, shrunk own fit. */
  /** A handed-out line's two numbers (an endpoint's line is its model, with its other fields). */
  const line = (p: Prefill): { perToken: number; overhead: number } => ({
    perToken: p.perToken,
    overhead: p.overhead,
  })
  function fresh(m: LatencyModel, ep: typeof a): { perToken: number; overhead: number } {
    const ps = m.pool.slope(priors.prefillMsPerToken)
    const po =
      m.pool.n > 0
        ? m.pool.intercept(ps)
        : m.engineTtftMs !== undefined
          ? Math.max(0, m.engineTtftMs - ps * (m.meanUncachedTokens ?? 0))
          : priors.overheadMs
    const own = m.peek(ep)?.fit
    if (own === undefined || own.n < 0.5) return { perToken: ps, overhead: po }
    const s = own.slope(ps)
    const w = own.n / (own.n + 4)
    return { perToken: w * s + (1 - w) * ps, overhead: w * own.intercept(s) + (1 - w) * po }
  }

  it('hands out the same line until a TTFT, an engine mean or the mean prompt changes it', () => {
    const m = new LatencyModel(priors)
    const first = m.prefill(a)
    expect(m.prefill(a)).toBe(first)
    expect(line(first)).toEqual(fresh(m, a))
    // Before any sample the engines' TTFT stands in for the overhead, less the mean prefill.
    m.engineTtftMs = 60
    m.dispatched(200)
    expect(line(m.prefill(a))).toEqual({ perToken: 0.1, overhead: 40 })
    expect(line(m.prefill(a))).toEqual(fresh(m, a))
    // Samples on a (slope 0.2 over a spread of prompts) make its own line and the pool's.
    const ys: [number, number][] = [
      [100, 30],
      [600, 130],
      [1100, 230],
      [50, 20],
    ]
    for (const [u, y] of ys) m.observed(a, { uncached: u, waitMs: 0 }, { ttftMs: y })
    const la = line(m.prefill(a))
    expect(la).toEqual(fresh(m, a))
    expect(line(m.prefill(b))).toEqual(fresh(m, b))
    expect(m.prefill(a)).toBe(m.prefillOf(m.peek(a)))
    // A sample on b moves the pool, and with it a's shrunk line (the same object, new values).
    m.observed(b, { uncached: 400, waitMs: 0 }, { ttftMs: 300 })
    const la2 = line(m.prefill(a))
    expect(la2).not.toEqual(la)
    expect(la2).toEqual(fresh(m, a))
    expect(line(m.prefill(b))).toEqual(fresh(m, b))
    // a's line is computed from its own fit and the pool's: b's sample changed only the latter.
    expect(la2.perToken).not.toBe(la.perToken)
  })
})

describe('PrefillFit.shrunkInto', () => {
  // The line prefillOf computed before shrunkInto: slope and intercept, then the shrinking.
  const oldLine = (f: EndpointModel, pool: Prefill) => {
    const slope = f.slope(pool.perToken)
    const w = f.n / (f.n + 4)
    return {
      perToken: w * slope + (1 - w) * pool.perToken,
      overhead: w * f.intercept(slope) + (1 - w) * pool.overhead,
    }
  }

  it('gives exactly the line of slope() and intercept() shrunk towards the pool', () => {
    const pool = { perToken: 0.173, overhead: 11.3 }
    let x = 7
    const next = () => {
      x = (x * 1103515245 + 12345) % 2147483648
      return x / 2147483648
    }
    const fits = [new EndpointModel(), new EndpointModel(), new EndpointModel()]
    for (let k = 0; k < 60; k++) {
      // One fit of spread-out prompts, one of alike ones (variance below the bound: the prior
      // slope), one of a steep line (slope clamped at 100).
      fits[0]?.add(200 + next() * 4000, 20 + next() * 400)
      fits[1]?.add(1000 + next() * 10, 50 + next() * 5)
      fits[2]?.add(next() * 400, next() * 400 * 150)
      for (const f of fits) {
        const got = { perToken: Number.NaN, overhead: Number.NaN }
        f.shrunkInto(pool, got)
        expect(got).toEqual(oldLine(f, pool))
      }
    }
    const one = new EndpointModel()
    one.add(100, 30) // n < 2: the prior slope
    const got = { perToken: 0, overhead: 0 }
    one.shrunkInto(pool, got)
    expect(got).toEqual(oldLine(one, pool))
  })
})
