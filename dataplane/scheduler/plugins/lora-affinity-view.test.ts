// adapterOn keeps its answers per endpoint while nothing about its adapters changes (viewOf).
// Checked against the per-call walk it replaced, under random dispatches, completions, scrapes
// and staleness, asked many times at one clock reading (as one decision does).
import { describe, expect, it } from 'vitest'
import { EndpointState } from '../state.js'
import { endpoint, scraped, seeded, state } from '../testkit.js'
import { type AdapterPlace, adapterOn, loraViewsMade } from './lora-affinity.js'

/** The walk adapterOn did on every call before. */
function walk(ep: EndpointState, adapter: string, now: number): AdapterPlace {
  const info = ep.fresh(now)?.lora
  const slots = info?.maxLora ?? ep.metrics?.lora?.maxLora ?? 1
  const running = info?.running ?? []
  let busy = running.length
  let resident = running.includes(adapter)
  for (const name of ep.loraInFlight.keys()) {
    if (running.includes(name)) continue
    busy++
    if (name === adapter) resident = true
  }
  const room = Math.max(0, slots - busy)
  let idle = 0
  for (const name of ep.loraSeen.keys()) {
    if (!running.includes(name) && !ep.loraInFlight.has(name)) idle++
  }
  if (!resident && room > 0) {
    let k = 0
    for (const name of ep.loraSeen.keys()) {
      if (running.includes(name) || ep.loraInFlight.has(name)) continue
      k++
      if (name === adapter && idle - k < room) resident = true
    }
  }
  return { resident, used: Math.min(slots, busy + Math.min(room, idle)), busy, slots }
}

const ticket = (lora: string) => ({ promptTokens: 1, outputTokens: 1, stream: false, lora })
const names = ['a', 'b', 'c', 'd', 'e', 'f']

describe('adapterOn', () => {
  it('answers as the walk over the endpoint’s adapters does, through every kind of change', () => {
    const rnd = seeded(11)
    const eps = [state('l1', 70), state('l2', 71), state('l3', 72)]
    const inFlight: [EndpointState, string][] = []
    let now = 0
    let checked = 0
    let resident = 0
    for (let step = 0; step < 4000; step++) {
      const ep = eps[Math.floor(rnd() * eps.length)] as EndpointState
      const name = names[Math.floor(rnd() * names.length)] as string
      const r = rnd()
      if (r < 0.3) {
        ep.dispatchStarted(ticket(name), now)
        inFlight.push([ep, name])
      } else if (r < 0.55 && inFlight.length > 0) {
        const [e, n] = inFlight.splice(Math.floor(rnd() * inFlight.length), 1)[0] as [
          EndpointState,
          string,
        ]
        e.dispatchEnded(ticket(n), { status: 200, durationMs: 1 }, now)
      } else if (r < 0.65) {
        const running = names.filter(() => rnd() < 0.3)
        scraped(ep, now, { lora: { maxLora: 1 + Math.floor(rnd() * 3), running, waiting: [] } })
      } else if (r < 0.75) {
        now += 600 * rnd() // sometimes past the 1 s staleness bound
      }
      for (const e of eps) {
        for (const n of names) {
          const got = adapterOn(e, n, now)
          expect(got).toEqual(walk(e, n, now))
          if (got.resident) resident++
          checked++
        }
      }
    }
    expect(checked).toBe(4000 * eps.length * names.length)
    // Both answers occur often: the check can tell a stale view from a fresh one.
    expect(resident).toBeGreaterThan(1000)
    expect(checked - resident).toBeGreaterThan(1000)
  })
})

describe('adapterOn across scrapes that report the same adapters', () => {
  it('keeps the view through them, rebuilds it when the adapters or own traffic change', () => {
    const ep = state('l4', 73)
    const lora = (running: string[], maxLora = 2) => ({ lora: { maxLora, running, waiting: [] } })
    scraped(ep, 0, lora(['a']))
    const first = adapterOn(ep, 'a', 0)
    expect(first).toEqual(walk(ep, 'a', 0))
    const made = loraViewsMade()
    // A new scrape, a new metrics object, the same adapters: the same view (not made again).
    scraped(ep, 200, lora(['a']))
    expect(adapterOn(ep, 'a', 200)).toEqual(first)
    expect(adapterOn(ep, 'b', 200)).toEqual(walk(ep, 'b', 200))
    expect(loraViewsMade()).toBe(made)
    // Another running adapter, another slot count, own traffic: each rebuilds it.
    scraped(ep, 400, lora(['a', 'b']))
    const two = adapterOn(ep, 'b', 400)
    expect(loraViewsMade()).toBe(made + 1)
    expect(two).toEqual(walk(ep, 'b', 400))
    scraped(ep, 600, lora(['a', 'b'], 3))
    expect(adapterOn(ep, 'c', 600)).toEqual(walk(ep, 'c', 600))
    expect(adapterOn(ep, 'c', 600).used).toBe(2)
    ep.dispatchStarted(ticket('c'), 600)
    expect(adapterOn(ep, 'c', 600)).toEqual(walk(ep, 'c', 600))
    expect(adapterOn(ep, 'c', 600).resident).toBe(true)
    // Stale, then fresh again with the same adapters: rebuilt from the new scrape.
    expect(adapterOn(ep, 'a', 2000)).toEqual(walk(ep, 'a', 2000))
    scraped(ep, 2100, lora(['a', 'b'], 3))
    expect(adapterOn(ep, 'a', 2100)).toEqual(walk(ep, 'a', 2100))
  })

  it('tells slots apart past the first 32 and forgets an adapter that left', () => {
    const lora = (running: string[]) => ({ lora: { maxLora: 1, running, waiting: [] } })
    const [low, high] = [5, 70].map((slot) => new EndpointState(endpoint(`s${slot}`, slot), slot))
    scraped(low as EndpointState, 0, lora(['a']))
    scraped(high as EndpointState, 0, lora(['b']))
    for (const ep of [low, high] as EndpointState[]) {
      for (const name of ['a', 'b']) expect(adapterOn(ep, name, 0)).toEqual(walk(ep, name, 0))
    }
    expect(adapterOn(high as EndpointState, 'b', 0).resident).toBe(true)
    expect(adapterOn(low as EndpointState, 'b', 0).resident).toBe(false)
    // 'b' leaves the high slot for the low one.
    scraped(high as EndpointState, 200, lora(['c']))
    scraped(low as EndpointState, 200, lora(['b']))
    for (const ep of [low, high] as EndpointState[]) {
      for (const name of ['a', 'b', 'c'])
        expect(adapterOn(ep, name, 200)).toEqual(walk(ep, name, 200))
    }
    expect(adapterOn(high as EndpointState, 'b', 200).resident).toBe(false)
    expect(adapterOn(low as EndpointState, 'b', 200).resident).toBe(true)
  })

  it('answers as the walk does when most scrapes repeat the adapters', () => {
    const rnd = seeded(12)
    const eps = [state('l5', 74), state('l6', 75)]
    const inFlight: [EndpointState, string][] = []
    const last = new Map<EndpointState, { maxLora: number; running: string[] }>()
    let now = 0
    let checked = 0
    for (let step = 0; step < 3000; step++) {
      const ep = eps[Math.floor(rnd() * eps.length)] as EndpointState
      const name = names[Math.floor(rnd() * names.length)] as string
      const r = rnd()
      if (r < 0.25) {
        ep.dispatchStarted(ticket(name), now)
        inFlight.push([ep, name])
      } else if (r < 0.45 && inFlight.length > 0) {
        const [e, n] = inFlight.splice(Math.floor(rnd() * inFlight.length), 1)[0] as [
          EndpointState,
          string,
        ]
        e.dispatchEnded(ticket(n), { status: 200, durationMs: 1 }, now)
      } else if (r < 0.75) {
        // Nine in ten scrapes repeat the last adapters (new arrays, equal content).
        const prev = last.get(ep)
        const same = prev !== undefined && rnd() < 0.9
        const l = same
          ? { maxLora: prev.maxLora, running: [...prev.running] }
          : { maxLora: 1 + Math.floor(rnd() * 3), running: names.filter(() => rnd() < 0.3) }
        last.set(ep, l)
        scraped(ep, now, { lora: { ...l, waiting: [] } })
      } else if (r < 0.85) {
        now += 600 * rnd()
      }
      for (const e of eps) {
        for (const n of names) {
          expect(adapterOn(e, n, now)).toEqual(walk(e, n, now))
          checked++
        }
      }
    }
    expect(checked).toBe(3000 * eps.length * names.length)
  })
})

describe('adapterOn and own traffic', () => {
  const done = { status: 200, durationMs: 1 }

  it('is not made again for another request of an adapter already in flight, nor for its end while one is left', () => {
    const ep = state('l7', 76)
    scraped(ep, 0, { lora: { maxLora: 2, running: [], waiting: [] } })
    const check = (now: number) => {
      for (const n of ['a', 'b', 'c']) expect(adapterOn(ep, n, now)).toEqual(walk(ep, n, now))
    }
    ep.dispatchStarted(ticket('a'), 10)
    check(10)
    const made = loraViewsMade()
    // A second and third request for 'a': the adapters in flight are the same.
    ep.dispatchStarted(ticket('a'), 20)
    ep.dispatchStarted(ticket('a'), 30)
    check(30)
    expect(loraViewsMade()).toBe(made)
    // 'b' starts: made again once.
    ep.dispatchStarted(ticket('b'), 40)
    check(40)
    expect(loraViewsMade()).toBe(made + 1)
    expect(adapterOn(ep, 'c', 40).used).toBe(2)
    // Two of the three 'a' end: one is left in flight, the view holds.
    ep.dispatchEnded(ticket('a'), done, 50)
    ep.dispatchEnded(ticket('a'), done, 60)
    check(60)
    expect(loraViewsMade()).toBe(made + 1)
    // The last 'a' ends: 'a' is idle now (still resident, one slot each), made again.
    ep.dispatchEnded(ticket('a'), done, 70)
    check(70)
    expect(loraViewsMade()).toBe(made + 2)
    expect(adapterOn(ep, 'a', 70)).toEqual({ resident: true, used: 2, busy: 1, slots: 2 })
  })

  it('is made again when a request of an adapter in flight but no longer remembered evicts another', () => {
    // 'x' in flight, then 64 other adapters sent and done here: 'x' falls out of loraSeen (it
    // keeps 64). Another 'x' is remembered again and pushes out the oldest idle one, 'a0'.
    const ep = state('l8', 77)
    const others = Array.from({ length: 64 }, (_, i) => `a${i}`)
    scraped(ep, 0, { lora: { maxLora: 100, running: [], waiting: [] } })
    ep.dispatchStarted(ticket('x'), 1)
    for (const [i, n] of others.entries()) {
      ep.dispatchStarted(ticket(n), 2 + i)
      ep.dispatchEnded(ticket(n), done, 2 + i)
    }
    expect(ep.loraSeen.has('x')).toBe(false)
    expect(adapterOn(ep, 'a0', 100).resident).toBe(true)
    ep.dispatchStarted(ticket('x'), 101)
    expect(adapterOn(ep, 'a0', 101)).toEqual(walk(ep, 'a0', 101))
    expect(adapterOn(ep, 'a0', 101).resident).toBe(false)
    for (const n of ['x', 'a1', 'a63']) expect(adapterOn(ep, n, 101)).toEqual(walk(ep, n, 101))
  })
})
