import { describe, expect, it } from 'vitest'
import { LoadAggregator, loadKey } from './load.js'

describe('LoadAggregator', () => {
  it("gives each worker the sum of the others' in-flight, never its own", () => {
    const a = new LoadAggregator()
    a.report(1, [
      ['10.0.0.1:8000', 3, 300],
      ['10.0.0.2:8000', 1, 50],
    ])
    a.report(2, [['10.0.0.1:8000', 2, 20]])
    a.report(3, [['10.0.0.2:8000', 4, 40]])
    expect(a.othersOf(1)).toEqual([
      ['10.0.0.1:8000', 2, 20],
      ['10.0.0.2:8000', 4, 40],
    ])
    expect(a.othersOf(2)).toEqual([
      ['10.0.0.1:8000', 3, 300],
      ['10.0.0.2:8000', 5, 90],
    ])
    expect(a.othersOf(3)).toEqual([
      ['10.0.0.1:8000', 5, 320],
      ['10.0.0.2:8000', 1, 50],
    ])
  })

  it('a new report replaces the previous one; a removed worker counts no more', () => {
    const a = new LoadAggregator()
    a.report(1, [['x:1', 5, 5]])
    a.report(2, [['y:1', 1, 1]])
    a.report(1, [['x:1', 2, 2]])
    expect(a.othersOf(2)).toEqual([['x:1', 2, 2]])
    a.report(1, [])
    expect(a.othersOf(2)).toEqual([])
    a.report(1, [['x:1', 7, 70]])
    a.remove(1)
    expect(a.othersOf(2)).toEqual([])
    expect(a.othersOf(1)).toEqual([['y:1', 1, 1]])
  })

  it('keys equal views equally regardless of report order', () => {
    const a = new LoadAggregator()
    a.report(1, [
      ['b:1', 1, 1],
      ['a:1', 2, 2],
    ])
    const b = new LoadAggregator()
    b.report(1, [
      ['a:1', 2, 2],
      ['b:1', 1, 1],
    ])
    expect(loadKey(a.othersOf(9))).toBe(loadKey(b.othersOf(9)))
    expect(loadKey(a.othersOf(9))).not.toBe(loadKey(a.othersOf(1)))
  })
})
