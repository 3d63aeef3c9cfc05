import { describe, expect, it } from 'vitest'
import { flattenPrompt } from '../../dataplane/scheduler/prompt.js'
import { server } from '../../dataplane/scheduler/testkit.js'
import {
  CostWorkload,
  FOLLOW_UP_AFTER,
  GROUPS,
  SCRAPE_MS,
  type WorkloadRequest,
} from './scheduler-cost-workload.js'

const make = () => new CostWorkload({ endpoints: 8, promptTokens: 512, rate: 200, groupEvery: 10 })

describe('CostWorkload', () => {
  it('keeps GROUPS groups live and opens a new one every groupEvery requests', () => {
    const w = make()
    const live = new Set<number>()
    for (let q = 1000; q < 1000 + GROUPS; q++) live.add(w.groupOf(q))
    expect(live.size).toBe(GROUPS)
    // Each slot renews once per GROUPS × groupEvery requests, and the slots one after another,
    // groupEvery requests apart: slot s is on its next group from q = span − s × groupEvery on
    // (slot 3: q = 290; its requests are q ≡ 3 mod 32, 259 and 291 either side).
    const span = GROUPS * 10
    for (let q = 1; q < 3 * span; q++) expect(w.groupOf(q + span)).toBe(w.groupOf(q) + GROUPS)
    expect(w.groupOf(259)).toBe(3)
    expect(w.groupOf(291)).toBe(3 + GROUPS)
    // Slot 4's turn comes groupEvery requests earlier (q = 280): 260 is before it, 292 after.
    expect(w.groupOf(260)).toBe(4)
    expect(w.groupOf(292)).toBe(4 + GROUPS)
  })

  it('moves its clock by 1/rate per request and scrapes every pod once per SCRAPE_MS', () => {
    const w = make()
    const srv = server(w.endpoints)
    const scrapes: number[] = []
    let rounds = 0
    for (let i = 0; i < 100; i++) {
      w.next(srv)
      rounds += w.scrapeDue((pod) => scrapes.push(pod))
    }
    expect(rounds).toBe(3)
    expect(w.now).toBe(500)
    // Scrapes at 0, 200 and 400 ms (every SCRAPE_MS up to 500), 8 pods each.
    expect(scrapes.length).toBe((Math.floor(500 / SCRAPE_MS) + 1) * 8)
  })

  it('reports pods below their batch limit, queueing only at it', () => {
    const w = make()
    let full = 0
    for (let i = 0; i < 8; i++) {
      for (let k = 0; k < 7; k++) {
        const m = w.metricsOf(i, k)
        const cap = 8 + (i % 9)
        expect(m.running).toBeLessThanOrEqual(cap)
        expect(m.running).toBeGreaterThan(cap - 7)
        if (m.waiting > 0) {
          expect(m.running).toBe(cap)
          full++
        }
      }
    }
    // One scrape in 7 per pod is at the limit.
    expect(full).toBe(8)
  })

  it("makes follow-ups whose prompt extends their opening's, and answers hits faster", () => {
    const w = make()
    const srv = server(w.endpoints)
    const byId = new Map<string, WorkloadRequest>()
    let followUp: WorkloadRequest | undefined
    while (followUp === undefined) {
      const r = w.next(srv)
      byId.set(r.ctx.requestId, r)
      if (r.kind === 'follow-up') followUp = r
    }
    const q = Number(followUp.ctx.requestId.slice(1))
    expect(q % 4).toBe(3)
    const opening = byId.get(`r${q - FOLLOW_UP_AFTER}`) as WorkloadRequest
    expect(opening.kind).toBe('opening')
    const a = flattenPrompt(opening.ctx.body)
    const b = flattenPrompt(followUp.ctx.body)
    expect(b.startsWith(a)).toBe(true)
    expect(followUp.ctx.body['stream']).toBe(true)
    // Pod 0 (the fastest GPU type) saw the opening; pod 4 (same type) nothing.
    const cold = w.answer(opening.ctx, 0).firstByteMs as number
    const warm = w.answer(followUp.ctx, 0).firstByteMs as number
    const elsewhere = w.answer(followUp.ctx, 4).firstByteMs as number
    // Cold: ~10 ms + 512 tokens × 0.1; the follow-up's hit leaves ~70 tokens (~17 ms).
    expect(cold).toBeGreaterThan(55)
    expect(warm).toBeLessThan(20)
    expect(elsewhere).toBeGreaterThan(cold)
  })

  it("marks a group's first opening only", () => {
    const w = make()
    const srv = server(w.endpoints)
    const opened = new Map<number, number>()
    for (let q = 1; q <= 400; q++) {
      const r = w.next(srv)
      if (!r.opensGroup) continue
      const g = w.groupOf(q)
      opened.set(g, (opened.get(g) ?? 0) + 1)
    }
    expect([...opened.values()].every((n) => n === 1)).toBe(true)
    // Base openings are the odd q with q % 4 === 1 (and 3 before follow-ups begin): every group
    // of the first 400 requests that one of them belongs to.
    const expected = new Set<number>()
    for (let q = 1; q <= 400; q++) if (q % 2 === 1) expected.add(w.groupOf(q))
    expect(opened.size).toBe(expected.size)
  })
})
