import { describe, expect, it } from 'vitest'
import { EndpointModel, LatencyModel } from './latency-model.js'

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
