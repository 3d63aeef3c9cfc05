import { describe, expect, it } from 'vitest'
import { DEFAULT_HEALTH, DEFAULT_STATE_OPTIONS, fmix32, hashString } from './state.js'
import { metrics, scraped, state } from './testkit.js'

const ticket = { promptTokens: 100, outputTokens: 20, stream: true }
const ok = { status: 200, durationMs: 100, firstByteMs: 40, completionTokens: 7 }

describe('EndpointState: blended load', () => {
  it('uses only its own in-flight count until a scrape arrives', () => {
    const s = state('a', 2)
    s.dispatchStarted(ticket, 0)
    s.dispatchStarted(ticket, 0)
    expect(s.pending(0)).toBe(2)
    expect(s.inFlightTokens).toBe(240)
    expect(s.waiting(0)).toBe(0)
  })

  it('adds dispatches since the scrape to the engine numbers, and ages them out when stale', () => {
    const s = state('a', 2)
    s.dispatchStarted(ticket, 0) // in flight before the scrape: the engine counts it
    scraped(s, 0, { running: 5, waiting: 1 }) // other replicas' load too
    expect(s.pending(10)).toBe(6)
    s.dispatchStarted(ticket, 10)
    s.dispatchStarted(ticket, 10)
    expect(s.pending(20)).toBe(8)
    s.dispatchEnded(ticket, ok, 30)
    expect(s.pending(30)).toBe(7)
    // Past staleAfterMs only our own 2 in flight are known.
    expect(s.pending(DEFAULT_STATE_OPTIONS.staleAfterMs + 1)).toBe(2)
  })

  it('never reports fewer outstanding requests than it has in flight itself', () => {
    const s = state('a', 2)
    for (let i = 0; i < 4; i++) s.dispatchStarted(ticket, 0)
    scraped(s, 0, { running: 1 }) // the engine has not seen three of them yet
    expect(s.pending(1)).toBe(4)
  })

  it('learns the engine batch limit from running-while-queueing and estimates the queue with it', () => {
    const s = state('a', 2)
    scraped(s, 0, { running: 3, waiting: 0 })
    expect(s.learnedCapacity).toBe(0)
    scraped(s, 1, { running: 8, waiting: 2 })
    expect(s.learnedCapacity).toBe(8)
    for (let i = 0; i < 3; i++) s.dispatchStarted(ticket, 2)
    expect(s.pending(2)).toBe(13)
    expect(s.waiting(2)).toBe(5)
  })

  it('moves the scraped KV usage by the tokens sent since, when the cache size is known', () => {
    const s = state('a', 2)
    scraped(s, 0, { kvCacheUsage: 0.25, numGpuBlocks: 100, blockSize: 16 }) // 1600 tokens
    expect(s.kvCacheUsage(1)).toBe(0.25)
    s.dispatchStarted({ promptTokens: 300, outputTokens: 100, stream: false }, 1)
    expect(s.kvCacheUsage(2)).toBe(0.5)
    const t = state('b', 3)
    scraped(t, 0, { kvCacheUsage: 0.25 })
    t.dispatchStarted({ promptTokens: 300, outputTokens: 100, stream: false }, 1)
    expect(t.kvCacheUsage(2)).toBe(0.25) // size unknown: the engine's number as is
  })

  it('falls back to local signals when the engine exports no request counts', () => {
    const s = state('a', 2)
    s.dispatchStarted(ticket, 0)
    scraped(s, 0, { missing: ['waiting', 'running'] })
    expect(s.pending(1)).toBe(1)
  })

  it('measures TTFT and TPOT on proxied streams, preferring them over the engine means', () => {
    const s = state('a', 2)
    scraped(s, 0, { ttftMeanSec: 0.5, tpotMeanSec: 0.02 })
    expect(s.ttft(1)).toBe(500)
    expect(s.tpot(1)).toBe(20)
    s.dispatchStarted(ticket, 1)
    s.dispatchEnded(ticket, ok, 2)
    expect(s.ttft(2)).toBe(40)
    expect(s.tpot(2)).toBe(10) // (100 − 40) / (7 − 1)
    // Non-stream bodies say nothing about TTFT.
    const s2 = state('b', 3)
    s2.dispatchStarted({ ...ticket, stream: false }, 0)
    s2.dispatchEnded({ ...ticket, stream: false }, ok, 1)
    expect(s2.ttft(1)).toBeUndefined()
  })
})

describe('EndpointState: passive health', () => {
  const connectFail = { status: 0, failure: 'connect' as const, durationMs: 1 }

  it('ejects after consecutive connect failures, for a backoff that doubles', () => {
    const s = state('a', 2)
    s.probed = false
    s.dispatchStarted(ticket, 0)
    s.dispatchEnded(ticket, connectFail, 0)
    expect(s.isEjected(0)).toBe(false)
    s.dispatchStarted(ticket, 0)
    s.dispatchEnded(ticket, connectFail, 0)
    expect(s.isEjected(0)).toBe(true)
    expect(s.ejectReason).toBe('connect')
    expect(s.isEjected(DEFAULT_HEALTH.baseEjectionMs - 1)).toBe(true)
    // Unprobed: after the backoff the next request is the probe.
    expect(s.isEjected(DEFAULT_HEALTH.baseEjectionMs)).toBe(false)
    const t = DEFAULT_HEALTH.baseEjectionMs
    s.dispatchEnded(ticket, connectFail, t)
    s.dispatchEnded(ticket, connectFail, t)
    expect(s.ejectedUntil - s.ejectedAt).toBe(2 * DEFAULT_HEALTH.baseEjectionMs)
    // A success resets the backoff.
    s.dispatchEnded(ticket, ok, t + 5000)
    expect(s.ejections).toBe(0)
  })

  it('a probed endpoint stays out after the backoff until it answers a scrape', () => {
    const s = state('a', 2)
    s.probed = true
    s.scrapeFailed(0, false, 'ECONNREFUSED')
    expect(s.isEjected(0)).toBe(false)
    s.scrapeFailed(200, false, 'ECONNREFUSED')
    expect(s.isEjected(200)).toBe(true)
    expect(s.ejectReason).toBe('scrape')
    expect(s.isEjected(5000)).toBe(true) // backoff over, but no sign of life
    s.scrapeFailed(5100, true, 'HTTP 404') // answered: alive, just no metrics
    expect(s.isEjected(5100)).toBe(false)
  })

  it('ejects after consecutive 5xx, but not for timeouts or cut streams', () => {
    const s = state('a', 2)
    for (let i = 0; i < 10; i++)
      s.dispatchEnded(ticket, { status: 0, failure: 'timeout', durationMs: 1 }, 0)
    expect(s.isEjected(0)).toBe(false)
    for (let i = 0; i < DEFAULT_HEALTH.consecutive5xx; i++)
      s.dispatchEnded(ticket, { status: 503, durationMs: 1 }, 0)
    expect(s.isEjected(0)).toBe(true)
    expect(s.ejectReason).toBe('5xx')
  })

  it('reports a debug view with engine, local and blended numbers', () => {
    const s = state('pod-a', 2, { labels: { gpu: 'H100' } })
    scraped(s, 0, metrics({ running: 2, waiting: 1, kvCacheUsage: 0.5 }))
    const v = s.view(100) as Record<string, Record<string, unknown>>
    expect(v['name']).toBe('pod-a')
    expect(v['engine']).toMatchObject({ running: 2, waiting: 1, kvCacheUsage: 0.5 })
    expect(v['blended']).toMatchObject({ pending: 3 })
    expect(v['scrape']).toMatchObject({ fresh: true, ageMs: 100 })
  })
})

describe('hashing helpers', () => {
  it('spreads short strings over 32 bits', () => {
    const seen = new Set<number>()
    for (let i = 0; i < 10_000; i++) seen.add(hashString(`pod-${i}`))
    expect(seen.size).toBe(10_000)
    expect(fmix32(0)).toBe(0)
    expect(fmix32(1)).not.toBe(fmix32(2))
  })
})
