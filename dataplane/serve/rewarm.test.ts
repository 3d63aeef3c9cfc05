// The store of kept prompts for re-warms (rewarm.ts): bounded in groups, bytes and age, one entry
// per group, and nothing left behind once the groups cool. Times are given, not read.
import { describe, expect, it } from 'vitest'
import type { SnapshotServer } from '../../api/snapshot.js'
import type { EndpointPicker, PickContext } from '../picker.js'
import { nextRewarm, RewarmStore } from './rewarm.js'

describe('RewarmStore', () => {
  it('keeps the most recent request per group, its bytes counted once', () => {
    const s = new RewarmStore<string>(8, 1_000, 10_000)
    s.keep('pool', 1, 'first', 100, 0)
    s.keep('pool', 1, 'second', 150, 10)
    s.keep('other', 1, 'another server', 50, 20)
    expect(s.get('pool', 1, 30)).toBe('second')
    expect(s.get('other', 1, 30)).toBe('another server')
    expect(s.get('pool', 2, 30)).toBeUndefined()
    expect(s.size).toBe(2)
    expect(s.bytes).toBe(200)
  })

  it('evicts the least recently kept past its group bound', () => {
    const s = new RewarmStore<string>(3, 1_000_000, 10_000)
    for (let g = 0; g < 5; g++) s.keep('pool', g, `g${g}`, 10, g)
    expect(s.size).toBe(3)
    expect(s.get('pool', 0, 5)).toBeUndefined()
    expect(s.get('pool', 1, 5)).toBeUndefined()
    expect(s.get('pool', 4, 5)).toBe('g4')
    // Refreshing a group makes it the most recent: the next one evicts another.
    s.keep('pool', 2, 'g2 again', 10, 6)
    s.keep('pool', 5, 'g5', 10, 7)
    expect(s.get('pool', 2, 8)).toBe('g2 again')
    expect(s.get('pool', 3, 8)).toBeUndefined()
    expect(s.bytes).toBe(30)
  })

  it('evicts past its byte bound, and keeps nothing larger than the bound', () => {
    const s = new RewarmStore<string>(100, 1_000, 10_000)
    s.keep('pool', 1, 'a', 400, 0)
    s.keep('pool', 2, 'b', 400, 1)
    s.keep('pool', 3, 'c', 400, 2)
    expect(s.get('pool', 1, 3)).toBeUndefined()
    expect(s.bytes).toBe(800)
    s.keep('pool', 4, 'too large', 1_001, 3)
    expect(s.get('pool', 4, 3)).toBeUndefined()
    expect(s.bytes).toBe(800)
    expect(s.size).toBe(2)
  })

  it('drops a group not refreshed within its age bound (it cooled): nothing leaks', () => {
    const s = new RewarmStore<string>(100, 1_000_000, 10_000)
    s.keep('pool', 1, 'a', 100, 0)
    s.keep('pool', 2, 'b', 100, 5_000)
    expect(s.get('pool', 1, 10_000)).toBe('a')
    expect(s.get('pool', 1, 10_001)).toBeUndefined()
    expect(s.size).toBe(1)
    // Keeping another group sweeps the expired ones too.
    s.keep('pool', 3, 'c', 100, 20_000)
    expect(s.size).toBe(1)
    expect(s.bytes).toBe(100)
    s.expire(40_000)
    expect(s.size).toBe(0)
    expect(s.bytes).toBe(0)
  })
})

describe('nextRewarm (after a pick)', () => {
  const srv = { key: 'ns/pool' } as SnapshotServer
  const ctx = {} as PickContext
  const ep = { name: 'pod-b', address: '127.0.0.2', port: 8000, ready: true, labels: {} }

  /** A picker that calls every request of group `warm` worth keeping and plans `planned` once. */
  function picker(warm: number | undefined, planned: number | undefined): EndpointPicker {
    let asked: ((g: number) => boolean) | undefined
    return {
      pick: () => [],
      rewarmGroup: () => warm,
      rewarm: (_s, has) => {
        asked = has
        if (planned === undefined || !asked(planned)) return undefined
        return { endpoint: ep, group: planned, start: () => () => {} }
      },
    }
  }

  it('keeps the request of a warm group, then returns the planned re-warm with its kept request', () => {
    const store = new RewarmStore<string>()
    expect(nextRewarm(picker(7, undefined), store, ctx, srv, 'req-a', 10, 0)).toBeUndefined()
    expect(store.get(srv.key, 7, 1)).toBe('req-a')
    // Another request (group 9, not warm) picked; the scheduler plans group 7's re-warm.
    const re = nextRewarm(picker(undefined, 7), store, ctx, srv, 'req-b', 10, 2)
    expect(re?.plan.group).toBe(7)
    expect(re?.plan.endpoint.name).toBe('pod-b')
    expect(re?.kept).toBe('req-a')
    expect(store.size).toBe(1)
  })

  it('no re-warm for a group whose request the store does not hold, nor from a picker without re-warms', () => {
    const store = new RewarmStore<string>()
    expect(nextRewarm(picker(undefined, 7), store, ctx, srv, 'req', 10, 0)).toBeUndefined()
    const plain: EndpointPicker = { pick: () => [] }
    expect(nextRewarm(plain, store, ctx, srv, 'req', 10, 0)).toBeUndefined()
    expect(store.size).toBe(0)
  })
})
