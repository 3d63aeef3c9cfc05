import { describe, expect, it } from 'vitest'
import type { PeerDispatch } from '../scheduler/index.js'
import {
  type DispatchGroup,
  MAX_PENDING,
  type PacerClock,
  PeerRelay,
  packDispatches,
  ReportBuilder,
  ReportPacer,
  unpackDispatches,
} from './relay.js'

const dispatch = (id: string, ...hashes: number[]): PeerDispatch => ({
  server: 'default/s',
  entry: 0,
  plugin: 'predicted-latency',
  id,
  hashes: Int32Array.from(hashes),
})

/** One dispatch as the group it travels in. */
const group = (id: string, ...hashes: number[]): DispatchGroup =>
  packDispatches([dispatch(id, ...hashes)])[0] as DispatchGroup

describe('packDispatches', () => {
  it('groups by server, entry, plugin and endpoint, keeping the order within a group', () => {
    const list: PeerDispatch[] = [
      dispatch('a:1', 1, 2, 3),
      dispatch('b:1', 9),
      dispatch('a:1', 4),
      { ...dispatch('a:1', 5), entry: 1, plugin: 'prefix-cache' },
      { ...dispatch('a:1', 6), server: 'default/t' },
      dispatch('a:1'),
      dispatch('a:1', 7, 8),
    ]
    const groups = packDispatches(list)
    expect(groups.map((g) => [g.server, g.entry, g.id, g.lens, [...g.hashes]])).toEqual([
      ['default/s', 0, 'a:1', [3, 1, 0, 2], [1, 2, 3, 4, 7, 8]],
      ['default/s', 0, 'b:1', [1], [9]],
      ['default/s', 1, 'a:1', [1], [5]],
      ['default/t', 0, 'a:1', [1], [6]],
    ])
    // Unpacked: every dispatch again, each group's in order (groups one after the other).
    const back = unpackDispatches(groups).map((d) => [
      d.server,
      d.entry,
      d.plugin,
      d.id,
      [...d.hashes],
    ])
    expect(back).toEqual([
      ['default/s', 0, 'predicted-latency', 'a:1', [1, 2, 3]],
      ['default/s', 0, 'predicted-latency', 'a:1', [4]],
      ['default/s', 0, 'predicted-latency', 'a:1', []],
      ['default/s', 0, 'predicted-latency', 'a:1', [7, 8]],
      ['default/s', 0, 'predicted-latency', 'b:1', [9]],
      ['default/s', 1, 'prefix-cache', 'a:1', [5]],
      ['default/t', 0, 'predicted-latency', 'a:1', [6]],
    ])
  })

  it('nothing in, nothing out', () => {
    expect(packDispatches([])).toEqual([])
    expect(unpackDispatches([])).toEqual([])
  })

  it('survives the structured clone of IPC (advanced serialization)', () => {
    const groups = packDispatches([dispatch('a:1', 1, 2), dispatch('a:1', 3)])
    const copy = structuredClone(groups)
    expect(unpackDispatches(copy).map((d) => [...d.hashes])).toEqual([[1, 2], [3]])
  })
})

describe('ReportBuilder', () => {
  it('sends the load only when it changed, dispatches whenever there are some, both in one', () => {
    const b = new ReportBuilder()
    const d = [group('a:1', 1, 2)]
    expect(b.build([['a:1', 1, 10]], d)).toEqual({ load: [['a:1', 1, 10]], d })
    expect(b.build([['a:1', 1, 10]], [])).toBeUndefined()
    expect(b.build([['a:1', 1, 10]], d)).toEqual({ d })
    expect(b.build([], [])).toEqual({ load: [] })
    expect(b.build([], [])).toBeUndefined()
  })

  it('the first report of an idle worker says nothing (the primary starts from none)', () => {
    expect(new ReportBuilder().build([], [])).toBeUndefined()
  })
})

describe('PeerRelay', () => {
  it("gives each worker the others' load and dispatches in one update, never its own", () => {
    const r = new PeerRelay()
    const d1 = group('a:1', 7)
    expect(r.report(1, { load: [['a:1', 2, 20]], d: [d1] }, [1, 2, 3])).toBe(true)
    expect(r.report(2, { load: [['a:1', 1, 5]] }, [1, 2, 3])).toBe(true)
    expect(r.take(1)).toEqual({ load: [['a:1', 1, 5]] })
    expect(r.take(2)).toEqual({ load: [['a:1', 2, 20]], d: [d1] })
    expect(r.take(3)).toEqual({ load: [['a:1', 3, 25]], d: [d1] })
    // Nothing changed since: nothing to send.
    expect(r.take(1)).toBeUndefined()
    expect(r.take(2)).toBeUndefined()
    expect(r.take(3)).toBeUndefined()
  })

  it('sends dispatches alone when the load view did not change', () => {
    const r = new PeerRelay()
    r.report(1, { load: [['a:1', 1, 1]] }, [1, 2])
    r.take(2)
    const d = [group('a:1', 1), group('b:1', 2)]
    expect(r.report(1, { d }, [1, 2])).toBe(true)
    expect(r.take(2)).toEqual({ d })
    // A report with neither part owes nothing.
    expect(r.report(1, {}, [1, 2])).toBe(false)
    expect(r.take(2)).toBeUndefined()
  })

  it('dispatches from several reports between two broadcasts arrive together, in order', () => {
    const r = new PeerRelay()
    const a = group('a:1', 1)
    const b = group('a:1', 2)
    const c = group('b:1', 3)
    r.report(1, { d: [a] }, [1, 2])
    r.report(3, { d: [b] }, [1, 2, 3])
    r.report(1, { d: [c] }, [1, 2])
    expect(r.take(2)).toEqual({ load: [], d: [a, b, c] })
  })

  it('holds at most MAX_PENDING groups for a worker, dropping the oldest', () => {
    const r = new PeerRelay()
    const many = Array.from({ length: MAX_PENDING + 10 }, (_, i) => group('a:1', i))
    r.report(1, { d: many }, [1, 2])
    const got = r.take(2)?.d ?? []
    expect(got.length).toBe(MAX_PENDING)
    expect(got[0]?.hashes[0]).toBe(10)
    expect(got[got.length - 1]?.hashes[0]).toBe(MAX_PENDING + 9)
  })

  it('a removed worker counts no more and is owed nothing; a reset one gets the full view again', () => {
    const r = new PeerRelay()
    r.report(1, { load: [['a:1', 4, 4]] }, [1, 2])
    r.report(2, { load: [['b:1', 1, 1]], d: [group('b:1', 1)] }, [1, 2])
    expect(r.take(2)).toEqual({ load: [['a:1', 4, 4]] })
    r.remove(1)
    expect(r.take(2)).toEqual({ load: [] })
    // Worker 1 restarts: what was owed to its previous process is gone, the view is sent whole.
    r.reset(1)
    expect(r.take(1)).toEqual({ load: [['b:1', 1, 1]] })
    r.reset(1)
    expect(r.take(1)).toEqual({ load: [['b:1', 1, 1]] })
  })
})

/** A clock driven by hand: `run(ms)` advances time and fires what is due, then the `soon` queue. */
function manualClock(): PacerClock & { t: number; run(ms: number): void; timers: number } {
  let timers: { at: number; fn: () => void; id: number }[] = []
  let soon: (() => void)[] = []
  let next = 0
  const c = {
    t: 0,
    get timers() {
      return timers.length
    },
    now: () => c.t,
    after: (ms: number, fn: () => void) => {
      const id = next++
      timers.push({ at: c.t + ms, fn, id })
      return id
    },
    cancel: (h: unknown) => {
      timers = timers.filter((x) => x.id !== h)
    },
    soon: (fn: () => void) => {
      soon.push(fn)
    },
    run(ms: number) {
      const end = c.t + ms
      for (;;) {
        const q = soon
        soon = []
        for (const fn of q) fn()
        const due = timers.filter((x) => x.at <= end).sort((a, b) => a.at - b.at)[0]
        if (due === undefined) break
        timers = timers.filter((x) => x !== due)
        c.t = due.at
        due.fn()
      }
      c.t = end
    },
  }
  return c
}

describe('ReportPacer', () => {
  it('reports from the event turn once the interval has passed, at most once per turn', () => {
    const clock = manualClock()
    const at: number[] = []
    const p = new ReportPacer(() => at.push(clock.t), 25, clock)
    p.kick()
    p.kick()
    clock.run(0)
    expect(at).toEqual([0])
    // Events within the interval: no report yet, one fallback timer.
    clock.t = 10
    p.kick()
    clock.t = 20
    p.kick()
    expect(clock.timers).toBe(1)
    // The next event past the interval reports and drops the timer: no wake-up of its own.
    clock.t = 27
    p.kick()
    clock.run(0)
    expect(at).toEqual([0, 27])
    expect(clock.timers).toBe(0)
  })

  it('without further events, the timer reports 2 intervals after the last report', () => {
    const clock = manualClock()
    const at: number[] = []
    const p = new ReportPacer(() => at.push(clock.t), 25, clock)
    p.kick()
    clock.run(0)
    clock.t = 5
    p.kick()
    clock.run(100)
    expect(at).toEqual([0, 50])
    expect(clock.timers).toBe(0)
    // Nothing happens: no timer, no report.
    clock.run(1000)
    expect(at).toEqual([0, 50])
  })

  it('stop() cancels the pending timer', () => {
    const clock = manualClock()
    const at: number[] = []
    const p = new ReportPacer(() => at.push(clock.t), 25, clock)
    p.kick()
    clock.run(0)
    clock.t = 1
    p.kick()
    p.stop()
    clock.run(100)
    expect(at).toEqual([0])
  })
})
