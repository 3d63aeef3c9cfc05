import { describe, expect, it } from 'vitest'
import { Histogram, labelText, pyFloat, rustFloat, sortedLabels } from './prom-text.js'

describe('number formats', () => {
  it('matches Python prometheus_client floatToGoString (values taken from the vLLM/SGLang fixtures)', () => {
    expect(pyFloat(7)).toBe('7.0')
    expect(pyFloat(0.6312)).toBe('0.6312')
    expect(pyFloat(1843712)).toBe('1.843712e+06')
    expect(pyFloat(998400)).toBe('998400.0')
    expect(pyFloat(8754360)).toBe('8.75436e+06')
    expect(pyFloat(1755700912.4)).toBe('1.7557009124e+09')
    expect(pyFloat(Number.POSITIVE_INFINITY)).toBe('+Inf')
  })

  it('matches Rust Display as used by the TGI exporter', () => {
    expect(rustFloat(3)).toBe('3')
    expect(rustFloat(0.41)).toBe('0.41')
    expect(rustFloat(0.0000005)).toBe('0.0000005')
    // First TGI duration bucket, as printed in the fixture.
    expect(rustFloat(0.0001 * 1.5)).toBe('0.00015000000000000001')
  })
})

describe('labels and histograms', () => {
  it('sorts and escapes labels', () => {
    expect(
      labelText(
        sortedLabels([
          ['model_name', 'a"b'],
          ['engine', '0'],
        ]),
      ),
    ).toBe('{engine="0",model_name="a\\"b"}')
    expect(labelText([])).toBe('')
  })

  it('keeps cumulative bucket counts', () => {
    const h = new Histogram([0.1, 1])
    h.observe(0.05)
    h.observe(0.5)
    h.observe(5)
    expect(h.buckets()).toEqual([
      [0.1, 1],
      [1, 2],
      [Number.POSITIVE_INFINITY, 3],
    ])
    expect(h.sum).toBeCloseTo(5.55)
  })
})
