import { describe, expect, it } from 'vitest'
import { calendarWindow } from './backend.js'

describe('calendarWindow', () => {
  it('names UTC days and months and knows when they end', () => {
    const t = Date.UTC(2026, 0, 31, 23, 59, 59)
    expect(calendarWindow('day', t)).toEqual({ id: 'd20260131', endMs: Date.UTC(2026, 1, 1) })
    expect(calendarWindow('month', t)).toEqual({ id: 'm202601', endMs: Date.UTC(2026, 1, 1) })
    expect(calendarWindow('month', Date.UTC(2026, 11, 15))).toEqual({
      id: 'm202612',
      endMs: Date.UTC(2027, 0, 1),
    })
    expect(calendarWindow('day', Date.UTC(2028, 1, 29, 12))).toEqual({
      id: 'd20280229',
      endMs: Date.UTC(2028, 2, 1),
    })
  })
})
