import { describe, expect, it } from 'vitest'
import type { GcPause } from './gc-trace.js'
import { segmentGc } from './gc-trace-young.js'

const at = { isolate: '0x1', atMs: 0, afterMb: 1, committedMb: 2 }
const scavenge = (pauseMs: number): GcPause => ({ kind: 'scavenge', pauseMs, ...at })

describe('segmentGc', () => {
  it('counts scavenges per 1,000 requests with their pause quantiles, other collections apart', () => {
    // 100 scavenges of 1..100 ms (shuffled) and a mark-compact whose pause must not count.
    const pauses = Array.from({ length: 100 }, (_, i) => scavenge(((i * 37) % 100) + 1))
    pauses.push({ kind: 'mark-compact', pauseMs: 500, ...at })
    expect(segmentGc(pauses, 40_000)).toEqual({
      scavenges: 100,
      perThousand: 2.5,
      p50Ms: 50,
      p99Ms: 99,
      maxMs: 100,
      others: 1,
    })
  })

  it('says nothing of pauses that did not happen', () => {
    const s = segmentGc([], 2500)
    expect(s.scavenges).toBe(0)
    expect(s.perThousand).toBe(0)
    expect(s.p50Ms).toBeNaN()
    expect(s.maxMs).toBeNaN()
    expect(segmentGc([scavenge(2)], 0).perThousand).toBeNaN()
  })
})
