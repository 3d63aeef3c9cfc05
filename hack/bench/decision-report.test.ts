import { describe, expect, it } from 'vitest'
import { schedstatWait } from './decision-probe.js'
import { classifyProbe, explainUs, pct, underFunction } from './decision-report.js'

describe('explainUs', () => {
  it('reads the cost at the end of an explain line', () => {
    expect(
      explainUs('server=default/pool profile=default pick=pod-1 | pod-1 5.9 = x | 183.4us'),
    ).toBe(183.4)
    expect(explainUs('server=default/pool | 12us')).toBe(12)
    expect(explainUs('no cost here')).toBeUndefined()
    expect(explainUs(undefined)).toBeUndefined()
  })
})

describe('pct', () => {
  it('takes the nearest rank', () => {
    const xs = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    expect(pct(xs, 0.5)).toBe(5)
    expect(pct(xs, 0.99)).toBe(10)
    expect(pct(xs, 0)).toBe(1)
    expect(pct([], 0.5)).toBeNaN()
  })
})

describe('schedstatWait', () => {
  it('takes the run-queue wait and the switch count', () => {
    expect(schedstatWait('123456789 4567 89\n')).toEqual([4567, 89])
  })
})

describe('classifyProbe', () => {
  it('sorts the last decisions by GC overlap, then preemption', () => {
    const c = classifyProbe(
      {
        decisions: [
          // Not among the last four: left out.
          { t0: 0, wallUs: 9000, waitUs: 0, switches: 0, cpuUs: 0 },
          // A 0.5 ms collection from 10.1 ms overlaps 0.4 ms of this 0.5 ms decision.
          { t0: 10, wallUs: 500, waitUs: 0, switches: 0, cpuUs: 90 },
          { t0: 20, wallUs: 2500, waitUs: 2000, switches: 1, cpuUs: 480 },
          { t0: 30, wallUs: 1200, waitUs: 0, switches: 1, cpuUs: 1100 },
          { t0: 40, wallUs: 80, waitUs: 0, switches: 0, cpuUs: 70 },
        ],
        gc: [[10.1, 0.5]],
      },
      4,
    )
    expect(c.gc).toEqual([500])
    expect(c.preempted).toEqual([2500, 1200])
    expect(c.neither).toEqual([80])
    expect(c.own.map((x) => Math.round(x))).toEqual([100, 500, 1200, 80])
    expect(c.cpu).toEqual([90, 480, 1100, 70])
    expect(c.slow).toEqual({ n: 2, gc: 0, preempted: 2 })
  })
})

describe('underFunction', () => {
  const frame = (functionName: string, url = 'file:///x/dataplane/scheduler/plugins/p.ts') => ({
    functionName,
    url,
    lineNumber: 0,
    columnNumber: 0,
  })
  it('splits the samples under the scheduler pick by callee and by leaf, per decision', () => {
    // root -> serve -> pick -> score -> hash; pick's own samples; a pick elsewhere is not it.
    const prof = {
      startTime: 0,
      endTime: 1000,
      nodes: [
        { id: 1, callFrame: frame('(root)', ''), children: [2, 7] },
        { id: 2, callFrame: frame('serve'), children: [3] },
        {
          id: 3,
          callFrame: frame('pick', 'file:///x/dataplane/scheduler/scheduler.ts'),
          hitCount: 2,
          children: [4],
        },
        { id: 4, callFrame: frame('score'), hitCount: 3, children: [5] },
        { id: 5, callFrame: frame('hash'), hitCount: 4 },
        { id: 7, callFrame: frame('pick', 'file:///x/dataplane/picker.ts'), hitCount: 1 },
      ],
    }
    // 10 samples over 1000 us: 100 us each; 9 of them in the scheduler's pick, over 3 decisions.
    const u = underFunction(prof, 3)
    expect(u.totalUs).toBe(300)
    expect(u.children).toEqual([
      ['score p.ts', 700 / 3],
      ['(self)', 200 / 3],
    ])
    expect(u.leaves).toEqual([
      ['hash p.ts', 400 / 3],
      ['score p.ts', 100],
      ['pick scheduler.ts', 200 / 3],
    ])
  })
})
