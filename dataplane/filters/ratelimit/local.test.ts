import { describe, expect, it } from 'vitest'
import { backendContract, bucket } from './backend-contract.js'
import { LocalBackend } from './local.js'

describe('LocalBackend: the backend contract', () => {
  backendContract(() => ({ backend: new LocalBackend(), settled: async () => {} }))
})

describe('LocalBackend', () => {
  it('forgets full buckets, so memory follows active callers only', () => {
    let now = 0
    const b = new LocalBackend(() => now)
    for (let i = 0; i < 10_000; i++) b.reserveSync([bucket(`s${i}`, 'x', 10, 1000, 1)])
    expect(b.size).toBeGreaterThan(0)
    now = 10_000
    for (let i = 0; i < 10_000; i++) b.reserveSync([bucket('one', 'x', 10, 1000, 0)])
    expect(b.size).toBeLessThanOrEqual(1)
  })

  it('refills towards a changed limit after a reload', () => {
    let now = 0
    const b = new LocalBackend(() => now)
    b.reserveSync([bucket('t', 'x', 10, 1000, 10)])
    now = 1000
    expect(b.reserveSync([bucket('t', 'x', 100, 1000, 0)]).states[0]?.remaining).toBe(100)
  })
})
