import { describe, expect, it } from 'vitest'
import { EndpointState } from '../state.js'
import { endpoint, pickContext, request, scores, scraped, server, state } from '../testkit.js'
import {
  adapterNeed,
  adapterNeeds,
  LORA_SCORES,
  loraAffinity,
  residentAdapters,
} from './lora-affinity.js'

const loraReq = (adapter: string, now = 1) =>
  request(pickContext(server([]), {}, {}, { model: adapter, isLora: true }), now)
const ticket = (lora: string) => ({ promptTokens: 1, outputTokens: 1, stream: false, lora })

describe('lora-affinity', () => {
  it('abstains for base-model requests', () => {
    expect(
      scores(loraAffinity({}), request(pickContext(server([]))), [state('a', 2)]),
    ).toBeUndefined()
  })

  it('prefers loaded > queued there > free slot > must evict, honouring max_lora', () => {
    const [loaded, queued, free, full] = [
      state('a', 2),
      state('b', 3),
      state('c', 4),
      state('d', 5),
    ]
    scraped(loaded, 0, { lora: { maxLora: 2, running: ['sql', 'chat'], waiting: [] } })
    scraped(queued, 0, { lora: { maxLora: 2, running: ['x', 'y'], waiting: ['sql'] } })
    scraped(free, 0, { lora: { maxLora: 2, running: ['x'], waiting: [] } })
    scraped(full, 0, { lora: { maxLora: 2, running: ['x', 'y'], waiting: [] } })
    expect(scores(loraAffinity({}), loraReq('sql'), [loaded, queued, free, full])).toEqual([
      LORA_SCORES.loaded,
      LORA_SCORES.queuedThere,
      LORA_SCORES.freeSlot,
      LORA_SCORES.mustEvict,
    ])
  })

  it('adapterNeeds: adapterNeed per candidate, worked out once per candidates and time', () => {
    const [loaded, free, full] = [state('a', 2), state('b', 3), state('c', 4)]
    scraped(loaded, 0, { lora: { maxLora: 2, running: ['sql'], waiting: [] } })
    scraped(free, 0, { lora: { maxLora: 2, running: ['x'], waiting: [] } })
    scraped(full, 0, { lora: { maxLora: 1, running: ['x'], waiting: [] } })
    const eps = [loaded, free, full]
    const r = loraReq('sql')
    const needs = adapterNeeds(r, eps)
    expect(needs).toEqual(['resident', 'freeSlot', 'blocked'])
    expect(needs).toEqual(eps.map((e) => adapterNeed(e, 'sql', r.now)))
    expect(adapterNeeds(r, eps)).toBe(needs)
    // Another candidate list, or another time: worked out again, the earlier answer untouched.
    expect(adapterNeeds(r, [full, loaded])).toEqual(['blocked', 'resident'])
    r.now = 2
    free.dispatchStarted(ticket('sql'), 2)
    const later = adapterNeeds(r, eps)
    expect(later).not.toBe(needs)
    expect(later).toEqual(['resident', 'resident', 'blocked'])
    expect(needs).toEqual(['resident', 'freeSlot', 'blocked'])
    expect(adapterNeeds(request(pickContext(server([]))), eps)).toBeUndefined()
  })

  it("adapterNeeds: a throwaway state sharing a live one's slot gets its own answer", () => {
    const live = state('a', 2)
    const twin = new EndpointState(endpoint('a-old', 9), live.slot)
    scraped(live, 0, { lora: { maxLora: 1, running: ['sql'], waiting: [] } })
    scraped(twin, 0, { lora: { maxLora: 1, running: ['x'], waiting: [] } })
    expect(adapterNeeds(loraReq('sql'), [live, twin])).toEqual(['resident', 'blocked'])
    expect(adapterNeeds(loraReq('sql'), [twin, live])).toEqual(['blocked', 'resident'])
  })

  it('keeps the engine slot count (max_lora) when its scrape goes stale', () => {
    const [a, b] = [state('a', 2), state('b', 3)]
    for (const e of [a, b]) scraped(e, 0, { lora: { maxLora: 2, running: [], waiting: [] } })
    for (const name of ['sql', 'chat']) {
      a.dispatchStarted(ticket(name), 0)
      a.dispatchEnded(ticket(name), { status: 200, durationMs: 1 }, 0)
    }
    // Long after the last scrape (the engine answers /metrics late): both adapters sent to `a`
    // are still in its two slots.
    const late = 60_000
    expect(a.fresh(late)).toBeUndefined()
    expect(residentAdapters(a, late)).toEqual(new Set(['sql', 'chat']))
    expect(scores(loraAffinity({}), loraReq('sql', late), [a, b])).toEqual([
      LORA_SCORES.loaded,
      LORA_SCORES.freeSlot,
    ])
  })

  it('remembers adapters it sent recently (idle adapters vanish from the metric but stay loaded)', () => {
    const [a, b] = [state('a', 2), state('b', 3)]
    scraped(a, 0, { lora: { maxLora: 1, running: [], waiting: [] } })
    scraped(b, 0, { lora: { maxLora: 1, running: [], waiting: [] } })
    a.dispatchStarted(ticket('sql'), 0)
    a.dispatchEnded(ticket('sql'), { status: 200, durationMs: 1 }, 0)
    expect([...residentAdapters(a, 1)]).toEqual(['sql'])
    expect(scores(loraAffinity({}), loraReq('sql'), [a, b])).toEqual([1, LORA_SCORES.freeSlot])
    // With one slot, a newer adapter displaces the belief about the older one.
    a.dispatchStarted(ticket('chat'), 2)
    expect([...residentAdapters(a, 3)]).toEqual(['chat'])
    expect(scores(loraAffinity({}), loraReq('sql'), [a, b])).toEqual([
      LORA_SCORES.mustEvict,
      LORA_SCORES.freeSlot,
    ])
  })

  it('counts the newest idle adapters as loaded, as the engine evicts the least recently used', () => {
    const a = state('a', 2)
    // `hot` runs (another replica's traffic); this replica sent `old`, then `new` (which made the
    // engine evict `old`, idle and least recently used): the one free slot holds `new`.
    scraped(a, 0, { lora: { maxLora: 2, running: ['hot'], waiting: [] } })
    for (const name of ['old', 'new']) {
      a.dispatchStarted(ticket(name), 0)
      a.dispatchEnded(ticket(name), { status: 200, durationMs: 1 }, 0)
    }
    expect(residentAdapters(a, 1)).toEqual(new Set(['hot', 'new']))
    expect(adapterNeed(a, 'new', 1)).toBe('resident')
    expect(adapterNeed(a, 'old', 1)).toBe('evictIdle')
  })

  it("counts this replica's requests in flight there as holding their adapters, before any scrape shows them", () => {
    const [a, b] = [state('a', 2), state('b', 3)]
    for (const e of [a, b])
      scraped(e, 0, { lora: { maxLora: 2, running: ['x', 'y'], waiting: [] } })
    // Sent to `a` after the scrape (x and y running there then): in its batch or queue now.
    a.dispatchStarted(ticket('sql'), 1)
    expect(adapterNeed(a, 'sql', 2)).toBe('resident')
    expect(scores(loraAffinity({}), loraReq('sql', 2), [a, b])).toEqual([
      LORA_SCORES.loaded,
      LORA_SCORES.mustEvict,
    ])
    // Every slot of `b` runs an adapter: a request for another one waits for a drain there.
    expect(adapterNeed(b, 'sql', 2)).toBe('blocked')
    // Ended and idle: still loaded (the newest one sent), until something displaces it.
    a.dispatchEnded(ticket('sql'), { status: 200, durationMs: 1 }, 3)
    expect(a.loraInFlight.size).toBe(0)
    scraped(a, 4, { lora: { maxLora: 2, running: ['x'], waiting: [] } })
    expect(adapterNeed(a, 'sql', 5)).toBe('resident')
  })

  it('is soft: drops the preference for an endpoint loaded beyond the margin', () => {
    const [a, b] = [state('a', 2), state('b', 3)]
    scraped(a, 0, { running: 12, lora: { maxLora: 2, running: ['sql'], waiting: [] } })
    scraped(b, 0, { running: 1, lora: { maxLora: 2, running: [], waiting: [] } })
    expect(scores(loraAffinity({ loadMargin: 20 }), loraReq('sql'), [a, b])).toEqual([
      1,
      LORA_SCORES.freeSlot,
    ])
    expect(scores(loraAffinity({ loadMargin: 5 }), loraReq('sql'), [a, b])).toEqual([
      0,
      LORA_SCORES.freeSlot,
    ])
  })
})
