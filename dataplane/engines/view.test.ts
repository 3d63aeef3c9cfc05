import { describe, expect, it } from 'vitest'
import { assembleMetrics, IntervalWindow, intervalRatio, type MetricParts } from './view.js'

const NONE: MetricParts = {
  waiting: undefined,
  running: undefined,
  kvCacheUsage: undefined,
  blockSize: undefined,
  numGpuBlocks: undefined,
  ttftMeanSec: undefined,
  tpotMeanSec: undefined,
  prefixCacheHitRate: undefined,
  lora: undefined,
}

describe('intervalRatio', () => {
  it('first scrape: cumulative ratio; nothing observed yet: undefined', () => {
    expect(intervalRatio({ numerator: 6, denominator: 4 }, undefined)).toBe(1.5)
    expect(intervalRatio({ numerator: 0, denominator: 0 }, undefined)).toBeUndefined()
  })

  it('later scrapes: ratio of the deltas only', () => {
    const prev = { numerator: 6, denominator: 4, last: 1.5 }
    // 4 new observations summing to 2 s: 0.5 s each, whatever came before.
    expect(intervalRatio({ numerator: 8, denominator: 8 }, prev)).toBe(0.5)
  })

  it('no new observations: the previous value is carried', () => {
    expect(
      intervalRatio({ numerator: 6, denominator: 4 }, { numerator: 6, denominator: 4, last: 0.7 }),
    ).toBe(0.7)
    expect(
      intervalRatio({ numerator: 6, denominator: 4 }, { numerator: 6, denominator: 4 }),
    ).toBeUndefined()
  })

  it('a counter reset (either series went down) starts over from the new cumulative ratio', () => {
    const prev = { numerator: 600, denominator: 400, last: 1.5 }
    expect(intervalRatio({ numerator: 3, denominator: 10 }, prev)).toBe(0.3)
    // The sum dropped while the count grew: still a restart, not a negative mean.
    expect(intervalRatio({ numerator: 5, denominator: 500 }, prev)).toBe(0.01)
  })
})

describe('IntervalWindow', () => {
  it('carries pairs from one scrape to the next and drops absent ones', () => {
    const w1 = new IntervalWindow('vLLM', undefined)
    expect(w1.ratio('ttft', { numerator: 10, denominator: 20 })).toBe(0.5)
    expect(w1.ratio('tpot', undefined)).toBeUndefined()
    const s1 = w1.state()
    expect(s1.engine).toBe('vLLM')
    expect([...s1.pairs.entries()]).toEqual([
      ['ttft', { numerator: 10, denominator: 20, last: 0.5 }],
    ])

    const w2 = new IntervalWindow('vLLM', s1)
    expect(w2.ratio('ttft', { numerator: 13, denominator: 30 })).toBeCloseTo(0.3, 12)
    expect(w2.state().pairs.get('ttft')?.numerator).toBe(13)

    // ttft missing on the third scrape: its pair is gone, so its return is a first scrape.
    const w3 = new IntervalWindow('vLLM', w2.state())
    w3.ratio('ttft', undefined)
    const w4 = new IntervalWindow('vLLM', w3.state())
    expect(w4.ratio('ttft', { numerator: 40, denominator: 50 })).toBe(0.8)
  })

  it('ignores state written by another engine adapter', () => {
    const w1 = new IntervalWindow('vLLM', undefined)
    w1.ratio('ttft', { numerator: 10, denominator: 20 })
    const w2 = new IntervalWindow('SGLang', w1.state())
    expect(w2.ratio('ttft', { numerator: 12, denominator: 21 })).toBeCloseTo(12 / 21, 12)
  })

  it('rejects non-finite totals instead of producing NaN means', () => {
    const w = new IntervalWindow('TGI', undefined)
    expect(w.ratio('ttft', { numerator: Number.NaN, denominator: 3 })).toBeUndefined()
    expect(w.ratio('tpot', { numerator: 1, denominator: Infinity })).toBeUndefined()
    expect(w.state().pairs.size).toBe(0)
  })
})

describe('assembleMetrics', () => {
  it('zero-fills missing waiting/running and lists them as missing', () => {
    expect(assembleMetrics('Generic', NONE)).toEqual({
      waiting: 0,
      running: 0,
      missing: ['waiting', 'running'],
      engineType: 'Generic',
    })
  })

  it('keeps finite values, clamps fractions, drops nonsense', () => {
    const m = assembleMetrics('vLLM', {
      ...NONE,
      waiting: 4,
      running: Number.NaN,
      kvCacheUsage: 1.0000001,
      blockSize: 0,
      numGpuBlocks: 100,
      ttftMeanSec: -1,
      tpotMeanSec: 0.02,
      prefixCacheHitRate: -0.1,
      lora: { running: ['a'], waiting: [] },
    })
    expect(m).toEqual({
      waiting: 4,
      running: 0,
      missing: ['running'],
      kvCacheUsage: 1,
      numGpuBlocks: 100,
      tpotMeanSec: 0.02,
      prefixCacheHitRate: 0,
      lora: { running: ['a'], waiting: [] },
      engineType: 'vLLM',
    })
  })
})
