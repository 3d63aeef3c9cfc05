import { describe, expect, it } from 'vitest'
import type { DispatchOutcome } from '../picker.js'
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
    // The NaN-for-unknown form least-kv-cache reads: the same numbers.
    expect(s.kvCacheUsageOrNaN(2)).toBe(0.5)
    expect(t.kvCacheUsageOrNaN(2)).toBe(0.25)
    expect(Number.isNaN(t.kvCacheUsageOrNaN(1e9))).toBe(true) // stale
    expect(t.kvCacheUsage(1e9)).toBeUndefined()
    const u = state('c', 4)
    scraped(u, 0, { running: 1 })
    expect(Number.isNaN(u.kvCacheUsageOrNaN(1))).toBe(true) // not reported
    expect(u.kvCacheUsage(1)).toBeUndefined()
  })

  it('falls back to local signals when the engine exports no request counts', () => {
    const s = state('a', 2)
    s.dispatchStarted(ticket, 0)
    scraped(s, 0, { missing: ['waiting', 'running'] })
    expect(s.pending(1)).toBe(1)
    // The next scrape reports them again: counted from then on.
    scraped(s, 2, { waiting: 3, running: 4 })
    expect(s.pending(3)).toBe(7)
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
    // Older than latencyMaxAgeMs: the engine's means again.
    const later = 2 + DEFAULT_STATE_OPTIONS.latencyMaxAgeMs + 1
    scraped(s, later, { ttftMeanSec: 0.5, tpotMeanSec: 0.02 })
    expect(s.ttft(later)).toBe(500)
    expect(s.tpot(later)).toBe(20)
    // Non-stream bodies say nothing about TTFT.
    const s2 = state('b', 3)
    s2.dispatchStarted({ ...ticket, stream: false }, 0)
    s2.dispatchEnded({ ...ticket, stream: false }, ok, 1)
    expect(s2.ttft(1)).toBeUndefined()
  })
})

describe('EndpointState: the scrape numbers kept on the state', () => {
  it('reads each new scrape, not the first one seen, and none once stale', () => {
    const s = state('a', 2)
    s.dispatchStarted(ticket, 0)
    scraped(s, 0, {
      running: 4,
      waiting: 2,
      ttftMeanSec: 0.25,
      tpotMeanSec: 0.02,
      prefixCacheHitRate: 0.5,
      lora: { maxLora: 1, running: ['x'], waiting: ['y'] },
    })
    expect([s.isFresh(10), s.scrapedRunning, s.scrapedWaiting]).toEqual([true, 4, 2])
    expect([s.scrapedTtftSec, s.scrapedHitRate, s.scrapedAdapterBound]).toEqual([0.25, 0.5, true])
    expect([s.pending(10), s.ttft(10), s.tpot(10)]).toEqual([6, 250, 20])
    // The next scrape reports no load and no latency: nothing of the first one stays.
    scraped(s, 100, { missing: ['waiting', 'running'] })
    expect([s.scrapedRunning, s.scrapedWaiting, s.scrapedAdapterBound]).toEqual([0, 0, false])
    expect([s.scrapedTtftSec, s.scrapedHitRate]).toEqual([undefined, undefined])
    expect([s.pending(110), s.waiting(110), s.ttft(110), s.tpot(110)]).toEqual([
      1,
      0,
      undefined,
      undefined,
    ])
    scraped(s, 200, { running: 3, waiting: 1, ttftMeanSec: 0.5 })
    expect([s.pending(210), s.waiting(210), s.ttft(210)]).toEqual([4, 1, 500])
    const stale = 200 + DEFAULT_STATE_OPTIONS.staleAfterMs + 1
    expect([s.isFresh(stale), s.pending(stale), s.waiting(stale), s.ttft(stale)]).toEqual([
      false,
      1,
      0,
      undefined,
    ])
  })
})

describe('EndpointState: passive health, liveness track', () => {
  const connectFail = { status: 0, failure: 'connect' as const, durationMs: 1 }
  const base = DEFAULT_HEALTH.baseEjectionMs

  it('ejects after consecutive connect failures; unscraped, a failed probe doubles the period', () => {
    const s = state('a', 2)
    s.probed = false
    s.dispatchEnded(ticket, connectFail, 0)
    expect(s.isEjected(0)).toBe(false)
    s.dispatchEnded(ticket, connectFail, 0)
    expect(s.isEjected(0)).toBe(true)
    expect(s.lastEjection).toMatchObject({ reason: 'connect', periodMs: base, count: 1 })
    expect(s.isEjected(base - 1)).toBe(true)
    // Unprobed: after the period the next request is the probe, and one failure is enough.
    expect(s.isEjected(base)).toBe(false)
    s.dispatchEnded(ticket, connectFail, base)
    expect(s.lastEjection).toMatchObject({ periodMs: 2 * base, count: 2 })
    // Any answer after the period ends the ejection and its doubling.
    s.dispatchEnded(ticket, { status: 503, durationMs: 1 }, 3 * base + 5)
    expect(s.ejectionActive).toBe(false)
    s.dispatchEnded(ticket, connectFail, 4 * base)
    s.dispatchEnded(ticket, connectFail, 4 * base)
    expect(s.lastEjection).toMatchObject({ periodMs: base, count: 1 })
  })

  it('a scraped endpoint stays out after the period until it answers, then is back at once with its backoff reset', () => {
    const s = state('a', 2)
    s.probed = true
    s.scrapeFailed(0, false, 'ECONNREFUSED')
    expect(s.isEjected(0)).toBe(false)
    s.scrapeFailed(200, false, 'ECONNREFUSED')
    expect(s.isEjected(200)).toBe(true)
    expect(s.lastEjection?.reason).toBe('scrape')
    // Down for 20 s (a gateway that sat idle while the engine restarted slowly): the outage does
    // not lengthen the ejection, and the first answer readmits.
    for (let t = 400; t < 20_000; t += 200) s.scrapeFailed(t, false, 'ECONNREFUSED')
    expect(s.isEjected(20_000)).toBe(true)
    expect(s.lastEjection).toMatchObject({ periodMs: base, count: 1 })
    scraped(s, 20_100, { running: 0 })
    expect(s.isEjected(20_100)).toBe(false)
    expect(s.ejectionActive).toBe(false)
    // Restarted again: again the base period, not a doubled one.
    s.scrapeFailed(30_000, false, 'ECONNREFUSED')
    s.scrapeFailed(30_200, false, 'ECONNREFUSED')
    expect(s.lastEjection).toMatchObject({ reason: 'scrape', periodMs: base, count: 1 })
    // An HTTP answer that is not metrics is a sign of life too.
    s.scrapeFailed(31_300, true, 'HTTP 404')
    expect(s.isEjected(31_300)).toBe(false)
  })

  it('scrape timeouts of an engine that answers proxied requests do not eject it (busy, not dead)', () => {
    const s = state('a', 2)
    s.probed = true
    s.dispatchEnded(ticket, ok, 100) // answers its requests, but /metrics is late under load
    for (let t = 200; t <= 1000; t += 200) s.scrapeFailed(t, false, 'timeout')
    expect(s.isEjected(1000)).toBe(false)
    expect(s.lastEjection).toBeUndefined()
    // A whole ejection period without any answer: the timeouts count again.
    s.scrapeFailed(1100, false, 'timeout')
    s.scrapeFailed(1300, false, 'timeout')
    expect(s.isEjected(1300)).toBe(true)
    expect(s.lastEjection?.reason).toBe('scrape')
    // A refused connection is never excused by a recent answer.
    const r = state('b', 3)
    r.probed = true
    r.dispatchEnded(ticket, ok, 100)
    r.scrapeFailed(200, false, 'ECONNREFUSED')
    r.scrapeFailed(400, false, 'ECONNREFUSED')
    expect(r.isEjected(400)).toBe(true)
  })

  it('an engine that answers during the period is back when the period ends, not a scrape later', () => {
    const s = state('a', 2)
    s.probed = true
    s.scrapeFailed(0, false, 'ECONNREFUSED')
    s.scrapeFailed(200, false, 'ECONNREFUSED')
    scraped(s, 600, {})
    expect(s.isEjected(200 + base - 1)).toBe(true)
    expect(s.isEjected(200 + base)).toBe(false)
    // …unless it went away again in between.
    s.scrapeFailed(800, false, 'ECONNREFUSED')
    expect(s.isEjected(200 + base)).toBe(true)
  })

  it('scrape failures and proxied successes are separate counts', () => {
    const s = state('a', 2)
    s.probed = true
    s.scrapeFailed(0, false, 'ECONNREFUSED')
    s.dispatchEnded(ticket, ok, 100) // an answer from before the listener went away
    s.scrapeFailed(200, false, 'ECONNREFUSED')
    expect(s.lastEjection?.reason).toBe('scrape')
    const t = state('b', 3)
    t.dispatchEnded(ticket, connectFail, 0)
    scraped(t, 100, {}) // a scrape does not vouch for the proxy's connections
    t.dispatchEnded(ticket, connectFail, 200)
    expect(t.lastEjection?.reason).toBe('connect')
  })
})

describe('EndpointState: passive health, outlier track', () => {
  const base = DEFAULT_HEALTH.baseEjectionMs
  const n = DEFAULT_HEALTH.consecutiveFailures
  const fail = (failure: DispatchOutcome['failure'], status = 0): DispatchOutcome => ({
    status,
    ...(failure !== undefined ? { failure } : {}),
    durationMs: 1,
  })

  it('ejects after consecutive failed answers of every kind, named by the kind', () => {
    const cases: [DispatchOutcome, string][] = [
      [fail(undefined, 500), '5xx'],
      [fail('retry_status', 502), '5xx'],
      [fail('timeout'), 'timeout'],
      [fail('stream_cut', 200), 'stream_cut'],
    ]
    for (const [outcome, reason] of cases) {
      const s = state(`e-${reason}`, 2)
      for (let i = 0; i < n - 1; i++) s.dispatchEnded(ticket, outcome, 10)
      expect(s.isEjected(10)).toBe(false)
      s.dispatchEnded(ticket, outcome, 10)
      expect(s.isEjected(10)).toBe(true)
      expect(s.lastEjection?.reason).toBe(reason)
    }
  })

  it('malformed HTTP and an oversized body eject on the first one: a healthy engine sends neither', () => {
    const cases: [DispatchOutcome, string][] = [
      [fail('protocol'), 'protocol'],
      [fail('body_too_large', 200), 'body_too_large'],
    ]
    for (const [outcome, reason] of cases) {
      const s = state(`e-${reason}`, 2)
      for (let i = 0; i < 20; i++) s.dispatchEnded(ticket, ok, 5)
      s.dispatchEnded(ticket, outcome, 10)
      expect(s.isEjected(10)).toBe(true)
      expect(s.lastEjection?.reason).toBe(reason)
      // Trials readmit it as for any outlier: two good answers after the period.
      s.dispatchStarted(ticket, 10 + base)
      s.dispatchEnded(ticket, ok, 10 + base)
      s.dispatchStarted(ticket, 11 + base)
      s.dispatchEnded(ticket, ok, 11 + base)
      expect(s.ejectionActive).toBe(false)
    }
  })

  it('client aborts and resets never count, and aborts neither break a streak nor make one; 429 is an answer', () => {
    const s = state('a', 2)
    for (let i = 0; i < 100; i++) s.dispatchEnded(ticket, fail('aborted', 200), 10)
    expect(s.isEjected(10)).toBe(false)
    for (let i = 0; i < n - 1; i++) s.dispatchEnded(ticket, fail('timeout'), 10)
    for (let i = 0; i < 10; i++) s.dispatchEnded(ticket, fail('aborted'), 10)
    s.dispatchEnded(ticket, fail('timeout'), 10)
    expect(s.lastEjection?.reason).toBe('timeout')
    const t = state('b', 3)
    for (let i = 0; i < 20; i++) t.dispatchEnded(ticket, fail('retry_status', 429), 10)
    expect(t.isEjected(10)).toBe(false)
    // A reset mid-request may be the engine refusing a client's oversized body: not its fault.
    const u = state('c', 4)
    for (let i = 0; i < 20; i++) u.dispatchEnded(ticket, fail('other'), 10)
    expect(u.ejectionActive).toBe(false)
  })

  it('ejects on the failure rate when failures are interleaved with successes', () => {
    const s = state('a', 2)
    // One stream in three cut mid-way: never 5 in a row, a third of the answers lost.
    let i = 0
    for (; i < 60 && !s.isEjected(i); i++) {
      s.dispatchEnded(ticket, i % 3 === 2 ? fail('stream_cut', 200) : ok, i)
    }
    expect(s.lastEjection?.reason).toBe('failure_rate')
    expect(i).toBeLessThanOrEqual(DEFAULT_HEALTH.failureRateMinRequests + 3)
    // One in ten is below the default rate (0.25): never ejected.
    const t = state('b', 3)
    for (let j = 0; j < 500; j++)
      t.dispatchEnded(ticket, j % 10 === 9 ? fail('timeout') : ok, j * 5)
    expect(t.ejectionActive).toBe(false)
  })

  it('after the period: one trial at a time; two successes end it; a failed trial doubles it, bounded', () => {
    const s = state('a', 2)
    s.probed = true
    scraped(s, 0, {})
    for (let i = 0; i < n; i++) s.dispatchEnded(ticket, fail(undefined, 500), 0)
    expect(s.isEjected(base - 1)).toBe(true)
    // Metrics keep answering all along: that says nothing about the answers to requests.
    scraped(s, base, {})
    expect(s.isEjected(base)).toBe(false)
    s.dispatchStarted(ticket, base) // the trial
    expect(s.isEjected(base + 1)).toBe(true)
    // A trial that hangs does not block the next one for longer than the ejection period.
    expect(s.isEjected(2 * base - 1)).toBe(true)
    expect(s.isEjected(2 * base)).toBe(false)
    s.dispatchEnded(ticket, fail(undefined, 500), 2 * base)
    expect(s.isEjected(2 * base)).toBe(true)
    expect(s.lastEjection).toMatchObject({ reason: '5xx', periodMs: 2 * base, count: 2 })
    // Still failing: the period doubles up to the maximum.
    let t = 2 * base
    for (let k = 0; k < 8; k++) {
      t += s.lastEjection?.periodMs ?? 0
      s.dispatchStarted(ticket, t)
      s.dispatchEnded(ticket, fail('timeout'), t)
    }
    expect(s.lastEjection?.periodMs).toBe(DEFAULT_HEALTH.maxEjectionMs)
    // Recovered: two good trials and it is fully back.
    t += DEFAULT_HEALTH.maxEjectionMs
    s.dispatchStarted(ticket, t)
    s.dispatchEnded(ticket, ok, t + 1)
    expect(s.ejectionActive).toBe(true)
    s.dispatchStarted(ticket, t + 1)
    s.dispatchEnded(ticket, ok, t + 2)
    expect(s.ejectionActive).toBe(false)
    expect(s.isEjected(t + 2)).toBe(false)
  })

  it('an endpoint in rotation after the period that gets no trials is fully back after a quiet max period', () => {
    const s = state('a', 2)
    for (let i = 0; i < n; i++) s.dispatchEnded(ticket, fail(undefined, 500), 0)
    s.dispatchEnded(ticket, ok, base + 1) // one good trial, then the scorers send it nothing
    scraped(s, base + 100, {})
    expect(s.ejectionActive).toBe(true)
    expect(s.isEjected(base + 100)).toBe(false)
    // A trial still in flight (hung?) is no evidence: it keeps the ejection going.
    s.dispatchStarted(ticket, base + 200)
    scraped(s, base + DEFAULT_HEALTH.maxEjectionMs, {})
    expect(s.ejectionActive).toBe(true)
    s.dispatchEnded(ticket, { status: 0, failure: 'aborted', durationMs: 1 }, base + 300)
    scraped(s, base + DEFAULT_HEALTH.maxEjectionMs + 1, {})
    expect(s.ejectionActive).toBe(false)
  })

  it('failures of requests sent before the ejection (a hung backlog timing out) do not count', () => {
    const s = state('a', 2)
    for (let i = 0; i < n; i++)
      s.dispatchEnded(ticket, { ...fail('timeout'), durationMs: 3000 }, 3000)
    expect(s.lastEjection?.at).toBe(3000)
    // The rest of the backlog times out after the period: old news, no re-ejection.
    for (let i = 0; i < 20; i++) {
      s.dispatchEnded(ticket, { ...fail('timeout'), durationMs: 3000 }, 3000 + base + 500)
    }
    expect(s.lastEjection?.count).toBe(1)
    expect(s.isEjected(3000 + base + 500)).toBe(false)
  })

  it('a scrape success does not end an outlier streak or ejection; the backoff resets after a calm max period', () => {
    const s = state('a', 2)
    s.probed = true
    for (let i = 0; i < n - 1; i++) s.dispatchEnded(ticket, fail(undefined, 500), 0)
    scraped(s, 1, {})
    s.dispatchEnded(ticket, fail(undefined, 500), 2)
    expect(s.lastEjection?.reason).toBe('5xx')
    // Back after the trials, then a second ejection soon after doubles…
    const back = (t: number) => {
      s.dispatchEnded(ticket, ok, t)
      s.dispatchEnded(ticket, ok, t + 1)
    }
    back(base + 10)
    expect(s.ejectionActive).toBe(false)
    for (let i = 0; i < n; i++) s.dispatchEnded(ticket, fail(undefined, 500), base + 20)
    expect(s.lastEjection).toMatchObject({ count: 2, periodMs: 2 * base })
    // …but one after a whole calm max period starts from the base again.
    back(4 * base)
    const later = 4 * base + DEFAULT_HEALTH.maxEjectionMs + 10
    for (let i = 0; i < n; i++) s.dispatchEnded(ticket, fail(undefined, 500), later)
    expect(s.lastEjection).toMatchObject({ count: 1, periodMs: base })
  })
})

describe('EndpointState: engine restarts', () => {
  it('a restart bumps the generation, forgets the batch limit and loaded adapters, and ends an outlier ejection', () => {
    const s = state('a', 2)
    scraped(s, 0, { running: 8, waiting: 2 })
    s.dispatchStarted({ ...ticket, lora: 'ad-1' }, 0)
    expect(s.learnedCapacity).toBe(8)
    for (let i = 0; i < DEFAULT_HEALTH.consecutiveFailures; i++)
      s.dispatchEnded(ticket, { status: 500, durationMs: 1 }, 10)
    expect(s.isEjected(20)).toBe(true)
    s.scrapeStarted()
    expect(s.scrapeSucceeded(20, metrics({ running: 1 }))).toBe(false)
    expect(s.generation).toBe(0)
    s.scrapeStarted()
    expect(s.scrapeSucceeded(40, metrics({ running: 1 }), 'start_time')).toBe(true)
    expect(s.generation).toBe(1)
    expect(s.lastRestart).toBe('start_time')
    expect(s.learnedCapacity).toBe(0)
    expect(s.loraSeen.size).toBe(0)
    // A new process is back in full rotation (no one-trial-at-a-time probation): the old one's
    // failures say nothing about it.
    expect(s.isEjected(40)).toBe(false)
    expect(s.ejectionActive).toBe(false)
    s.dispatchStarted(ticket, 41)
    expect(s.isEjected(42)).toBe(false)
    // It fails again: ejected again, for twice the period.
    for (let i = 0; i < DEFAULT_HEALTH.consecutiveFailures; i++)
      s.dispatchEnded(ticket, { status: 500, durationMs: 1 }, 50)
    expect(s.lastEjection).toMatchObject({ count: 2, active: true })
    expect(s.view(40)).toMatchObject({ restarts: { count: 1, last: 'start_time' } })
  })
})

describe('EndpointState: debug view', () => {
  it('reports a debug view with engine, local and blended numbers', () => {
    const s = state('pod-a', 2, { labels: { gpu: 'H100' } })
    scraped(s, 0, metrics({ running: 2, waiting: 1, kvCacheUsage: 0.5 }))
    const v = s.view(100) as Record<string, Record<string, unknown>>
    expect(v['name']).toBe('pod-a')
    expect(v['engine']).toMatchObject({ running: 2, waiting: 1, kvCacheUsage: 0.5 })
    expect(v['blended']).toMatchObject({ pending: 3 })
    expect(v['scrape']).toMatchObject({ fresh: true, ageMs: 100 })
    expect(v['health']).toMatchObject({ consecutiveFailures: 0, connectFailures: 0 })
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
