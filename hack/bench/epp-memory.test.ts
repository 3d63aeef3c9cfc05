import { describe, expect, it } from 'vitest'
import { statusKb, windowOf } from './epp-memory.js'

describe('epp-memory', () => {
  it('reads kB fields of /proc/<pid>/status', () => {
    const status = 'Name:\tnode\nVmRSS:\t  151234 kB\nRssAnon:\t  100000 kB\n'
    expect(statusKb(status, 'VmRSS')).toBe(151234)
    expect(statusKb(status, 'RssAnon')).toBe(100000)
    expect(statusKb(status, 'VmSwap')).toBeUndefined()
  })

  it("sums a window of one isolate's collections: lowest heap after GC, last live set", () => {
    const at = { isolate: '0x1', atMs: 0, pauseMs: 1 }
    const w = windowOf([
      { ...at, kind: 'scavenge', afterMb: 12, committedMb: 20 },
      { ...at, kind: 'mark-compact', afterMb: 9.5, committedMb: 21 },
      { ...at, kind: 'scavenge', afterMb: 10, committedMb: 22 },
    ])
    expect(w).toEqual({
      gcs: 3,
      markCompacts: 1,
      minAfterMb: 9.5,
      lastMarkCompactMb: 9.5,
      committedMb: 22,
    })
    expect(windowOf([]).minAfterMb).toBeUndefined()
  })
})
