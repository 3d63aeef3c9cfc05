import { describe, expect, it } from 'vitest'
import {
  type ClientRecord,
  type CpuProfile,
  parseProcStatCpu,
  parseVegetaCsv,
  place,
  profileSamples,
  samplesWithin,
  stealShare,
  summarise,
  TailAnalysisError,
  toProbeClock,
} from './proxy-tail-analysis.js'
import type { TailWindow } from './proxy-tail-probe.js'

describe('parseVegetaCsv', () => {
  it('reads start (ns → ms, fraction kept), code and latency; refuses other lines by number', () => {
    const csv =
      '1764694800123456789,200,1500000,120,400,,eyJ9,,0,POST,http://x/v1,\n' +
      '1764694800125456789,502,"2500000",0,0,"bad, gateway",,,1,POST,http://x/v1,\n'
    expect(() => parseVegetaCsv(csv)).toThrow(/line 2: not a result/)
    const ok = parseVegetaCsv(csv.split('\n')[0] as string)
    expect(ok).toHaveLength(1)
    expect(ok[0]?.startMs).toBeCloseTo(1764694800123.4568, 3)
    expect(ok[0]?.code).toBe(200)
    expect(ok[0]?.latencyMs).toBe(1.5)
    expect(() => parseVegetaCsv('x')).toThrow(TailAnalysisError)
  })
})

describe('toProbeClock', () => {
  it('maps wall or hr time onto the monotonic clock along the line through both pairs', () => {
    const a = { perfMs: 100, wallMs: 1_000_000, hrMs: 5000 }
    // The wall clock ran 1 ms fast over 10 s (slewing): the line absorbs it.
    const b = { perfMs: 10_100, wallMs: 1_010_001, hrMs: 15_000 }
    const wall = toProbeClock(a, b, 'wall')
    expect(wall(1_000_000)).toBe(100)
    expect(wall(1_010_001)).toBe(10_100)
    const hr = toProbeClock(a, b, 'hr')
    expect(hr(10_000)).toBe(5100)
  })
})

const windowOf = (w: Partial<TailWindow>): TailWindow => ({
  anchor: { perfMs: 0, wallMs: 1000, hrMs: 0 },
  anchorEnd: { perfMs: 1000, wallMs: 2000, hrMs: 1000 },
  openMs: 0,
  closeMs: 1000,
  stallThresholdMs: 3,
  gc: [],
  stalls: [],
  requests: [],
  upstream: [],
  eventLoopDelay: { p50Ms: 1, p99Ms: 2, maxMs: 3 },
  utilisation: 0.3,
  ...w,
})

describe('place and summarise', () => {
  it('names what overlapped each request and splits it by the server request it matches', () => {
    const w = windowOf({
      gc: [
        { startMs: 101, durationMs: 2, kind: 'minor' },
        { startMs: 301, durationMs: 6, kind: 'major' },
        { startMs: 602, durationMs: 6, kind: 'minor' },
      ],
      stalls: [
        { endMs: 206, gapMs: 5, cpuMs: 4.8 },
        { endMs: 406, gapMs: 5, cpuMs: 0.4 },
        // A stall that holds a GC pause: 6 of its 8 ms are GC, 2 busy.
        { endMs: 609, gapMs: 8, cpuMs: 8 },
      ],
      requests: [
        { startMs: 100.2, endMs: 103.5 },
        { startMs: 500.3, endMs: 500.8 },
        // Another client's request in the same span: not the closest end, so not matched.
        { startMs: 500.4, endMs: 500.5 },
      ],
      upstream: [{ startMs: 500.4, headersMs: 500.7 }],
    })
    // Wall 1100 = perf 100.
    const recs: ClientRecord[] = [
      { startMs: 1100, latencyMs: 4, code: 200 },
      { startMs: 1200, latencyMs: 7, code: 200 },
      { startMs: 1300, latencyMs: 8, code: 200 },
      { startMs: 1400, latencyMs: 7, code: 200 },
      { startMs: 1500, latencyMs: 1, code: 200 },
      { startMs: 1600, latencyMs: 10, code: 200 },
    ]
    const placed = place(recs, w, 'wall')
    expect(placed.map((p) => p.cause)).toEqual([
      'gc-minor',
      'stall-busy',
      'gc-major',
      'stall-preempted',
      'none',
      'gc-minor',
    ])
    expect(placed[5]?.during['gc-minor']).toBeCloseTo(6, 6)
    expect(placed[5]?.during['stall-busy']).toBeCloseTo(2, 6)
    const last = placed[4]?.split
    expect(last?.beforeMs).toBeCloseTo(0.3, 6)
    expect(last?.handlerMs).toBeCloseTo(0.5, 6)
    expect(last?.afterMs).toBeCloseTo(0.2, 6)
    expect(last?.upstreamMs).toBeCloseTo(0.3, 6)
    expect(placed[1]?.split).toBeUndefined()

    const s = summarise(placed)
    expect(s.requests).toBe(6)
    expect(s.p99Ms).toBe(10)
    expect(s.slow).toBe(1)
    expect(s.slowByCause['gc-minor']).toBe(1)
    expect(s.slowDuring['gc-minor']).toBeCloseTo(6, 6)
    expect(s.slowDuring['stall-busy']).toBeCloseTo(2, 6)
    expect(s.allByCause.none).toBeCloseTo(1 / 6, 6)
    // Mean over all six: 2 + 6 ms of minor GC.
    expect(s.allDuring['gc-minor']).toBeCloseTo(8 / 6, 6)
    expect(s.allSplit.matched).toBe(2)
  })
})

describe('profileSamples', () => {
  // root → main (bundle) → { igwTailMarker (probe), scrapeOnce (bundle) → parse (dependency) }, GC.
  const profile: CpuProfile = {
    nodes: [
      { id: 1, callFrame: { functionName: '(root)', url: '', lineNumber: -1 }, children: [2, 6] },
      {
        id: 2,
        callFrame: { functionName: 'main', url: 'file:///d/dataplane.mjs', lineNumber: 9 },
        children: [3, 4],
      },
      {
        id: 3,
        callFrame: { functionName: 'igwTailMarker', url: 'file:///t/probe.mjs', lineNumber: 0 },
      },
      {
        id: 4,
        callFrame: { functionName: 'scrapeOnce', url: 'file:///d/dataplane.mjs', lineNumber: 99 },
        children: [5],
      },
      { id: 5, callFrame: { functionName: 'parse', url: 'file:///n/prom.js', lineNumber: 4 } },
      { id: 6, callFrame: { functionName: '(garbage collector)', url: '', lineNumber: -1 } },
    ],
    // Profile clock in µs: 10 ms ahead of the monotonic clock.
    startTime: 60_000,
    samples: [2, 3, 3, 5, 5, 6, 2],
    timeDeltas: [0, 1000, 1000, 1000, 1000, 1000, 1000],
  }
  const ours = (url: string) => url.endsWith('dataplane.mjs')

  it('aligns the clock on the marker and names each sample by leaf and outermost bundle frame', () => {
    const s = profileSamples(profile, 51, ours)
    expect(s.offsetMs).toBe(10)
    expect([...s.timesMs]).toEqual([50, 51, 52, 53, 54, 55, 56])
    expect(s.leaf[3]).toBe('parse prom.js:5')
    expect(s.task[3]).toBe('main dataplane.mjs:10')
    expect(s.task[5]).toBe('(garbage collector)')
    const inStall = samplesWithin(s, [{ startMs: 52.5, endMs: 55 }], 'leaf')
    expect(Object.fromEntries(inStall)).toEqual({ 'parse prom.js:5': 2, '(garbage collector)': 1 })
  })

  it('without a marker sample, aligns by the clock offset given, or refuses', () => {
    const noMarker = { ...profile, samples: [2, 5] }
    expect(() => profileSamples(noMarker, 0, ours)).toThrow(/igwTailMarker/)
    expect([...profileSamples(noMarker, 0, ours, 10).timesMs]).toEqual([50, 51])
  })
})

describe('parseProcStatCpu / stealShare', () => {
  const stat = (steal: number, idle: number) =>
    `cpu  1376006 230649 272940 ${idle} 4370 0 26455 ${steal} 500 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n`
  it('takes steal (8th number) and the total of the first eight, not the guest columns', () => {
    expect(parseProcStatCpu(stat(22969, 1677311))).toEqual({
      steal: 22969,
      total: 1376006 + 230649 + 272940 + 1677311 + 4370 + 0 + 26455 + 22969,
    })
  })
  it('gives the stolen share of the ticks between two readings', () => {
    const a = parseProcStatCpu(stat(100, 1000))
    const b = parseProcStatCpu(stat(130, 1270))
    expect(stealShare(a, b)).toBeCloseTo(30 / 300, 9)
    expect(stealShare(a, a)).toBeNaN()
  })
  it('refuses a line that is not the cpu line', () => {
    expect(() => parseProcStatCpu('intr 1 2 3 4 5 6 7 8 9\n')).toThrow(TailAnalysisError)
    expect(() => parseProcStatCpu('cpu 1 2 3\n')).toThrow(/not a \/proc\/stat cpu line/)
  })
})
