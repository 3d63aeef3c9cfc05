import { describe, expect, it } from 'vitest'
import { parsePrometheusText } from '../prom-parser.js'
import {
  counterTotals,
  firstIntLabel,
  histogramTotals,
  intLabel,
  labelOf,
  maxOf,
  meanOf,
  ratioOf,
  samplesNamed,
  sumLabelOverRanks,
  sumOf,
} from './common.js'

const parsed = parsePrometheusText(
  [
    '# TYPE lat histogram',
    'lat_bucket{engine="0",le="+Inf"} 4',
    'lat_sum{engine="0"} 2',
    'lat_count{engine="0"} 4',
    'lat_sum{engine="1"} 3',
    'lat_count{engine="1"} 6',
    '# TYPE hits counter',
    'hits_total{engine="0"} 10',
    'hits_total{engine="1"} 5',
    'queries_total 30',
    'q{engine="0"} 3',
    'q{engine="1"} NaN',
    'q{engine="2"} 1',
    'u{engine="0"} 0.2',
    'u{engine="1"} 0.6',
    'info{engine="0",blocks="100",bs="16"} 1',
    'info{engine="1",blocks="120",bs="16"} 1',
    'info{engine="1",blocks="120",bs="16",stale="y"} 1',
    'info{engine="2",blocks="None"} 1',
  ].join('\n'),
)

describe('series aggregation', () => {
  it('finds samples under their own family or a typed base family', () => {
    expect(samplesNamed(parsed, 'lat_sum').map((s) => s.value)).toEqual([2, 3])
    expect(samplesNamed(parsed, 'hits_total').map((s) => s.value)).toEqual([10, 5])
    expect(samplesNamed(parsed, 'queries_total').map((s) => s.value)).toEqual([30])
    expect(samplesNamed(parsed, 'absent')).toEqual([])
    expect(
      samplesNamed(parsed, 'q', (l) => labelOf(l, 'engine') === '2').map((s) => s.value),
    ).toEqual([1])
  })

  it('sums counts, averages ratios, skipping non-finite series', () => {
    expect(sumOf(parsed, 'q')).toBe(4)
    expect(meanOf(parsed, 'u')).toBe(0.4)
    expect(maxOf(parsed, 'u')).toBe(0.6)
    expect(sumOf(parsed, 'absent')).toBeUndefined()
    expect(meanOf(parsePrometheusText('n NaN'), 'n')).toBeUndefined()
  })

  it('sums histogram _sum/_count over series and pairs counters', () => {
    expect(histogramTotals(parsed, 'lat')).toEqual({ numerator: 5, denominator: 10 })
    expect(histogramTotals(parsed, 'nope')).toBeUndefined()
    expect(counterTotals(parsed, 'hits_total', 'queries_total')).toEqual({
      numerator: 15,
      denominator: 30,
    })
    expect(counterTotals(parsed, 'hits_total', 'absent_total')).toBeUndefined()
    expect(ratioOf(1, 4)).toBe(0.25)
    expect(ratioOf(1, 0)).toBeUndefined()
    expect(ratioOf(undefined, 4)).toBeUndefined()
  })

  it('reads integer labels and sums per-rank capacity once per rank', () => {
    expect(intLabel({ a: '16' }, 'a')).toBe(16)
    expect(intLabel({ a: '16.0' }, 'a')).toBe(16)
    expect(intLabel({ a: 'None' }, 'a')).toBeUndefined()
    expect(intLabel({ a: '' }, 'a')).toBeUndefined()
    expect(intLabel({}, 'a')).toBeUndefined()
    const info = samplesNamed(parsed, 'info')
    expect(sumLabelOverRanks(info, 'blocks', ['engine'])).toBe(220)
    expect(firstIntLabel(info, 'bs')).toBe(16)
    expect(sumLabelOverRanks([], 'blocks', ['engine'])).toBeUndefined()
  })
})
