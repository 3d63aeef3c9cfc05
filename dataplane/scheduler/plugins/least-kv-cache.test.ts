import { describe, expect, it } from 'vitest'
import { DEFAULT_STATE_OPTIONS } from '../state.js'
import { pickContext, request, scores, scraped, server, state } from '../testkit.js'
import { leastKvCache } from './least-kv-cache.js'

describe('least-kv-cache', () => {
  it('scores free KV space, neutral 0.5 for endpoints without fresh metrics', () => {
    const [a, b, c] = [state('a', 2), state('b', 3), state('c', 4)]
    scraped(a, 0, { kvCacheUsage: 0.9 })
    scraped(b, 0, { kvCacheUsage: 0.25 })
    const s = scores(leastKvCache(), request(pickContext(server([])), 10), [a, b, c]) as number[]
    expect(s[0]).toBeCloseTo(0.1, 12)
    expect(s[1]).toBe(0.75)
    expect(s[2]).toBe(0.5)
  })

  it('abstains when no endpoint has fresh KV metrics', () => {
    const a = state('a', 2)
    scraped(a, 0, { kvCacheUsage: 0.5 })
    const late = request(pickContext(server([])), DEFAULT_STATE_OPTIONS.staleAfterMs + 1)
    expect(scores(leastKvCache(), late, [a, state('b', 3)])).toBeUndefined()
  })
})
