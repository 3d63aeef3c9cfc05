import { describe, expect, it } from 'vitest'
import { pickContext, request, scores, scraped, server, state } from '../testkit.js'
import { leastPending } from './least-pending.js'

const ticket = { promptTokens: 10, outputTokens: 10, stream: false }

describe('least-pending', () => {
  it('scores the endpoint with the fewest outstanding requests 1 and the most 0', () => {
    const [a, b, c] = [state('a', 2), state('b', 3), state('c', 4)]
    scraped(a, 0, { running: 4 })
    scraped(b, 0, { running: 2 })
    scraped(c, 0, { running: 6 })
    const req = request(pickContext(server([])), 1)
    expect(scores(leastPending({}), req, [a, b, c])).toEqual([0.5, 1, 0])
  })

  it('counts queued requests extra (queueWeight) and sees its own dispatches between scrapes', () => {
    const [a, b] = [state('a', 2), state('b', 3)]
    scraped(a, 0, { running: 3, waiting: 2 }) // 5 outstanding, 2 of them queued
    scraped(b, 0, { running: 6 }) // 6 outstanding, none queued
    const req = request(pickContext(server([])), 1)
    expect(scores(leastPending({}), req, [a, b])).toEqual([0, 1]) // 5+2 vs 6
    expect(scores(leastPending({ queueWeight: 0 }), req, [a, b])).toEqual([1, 0])
    // A burst this replica just sent to b flips the choice before the next scrape.
    for (let i = 0; i < 3; i++) b.dispatchStarted(ticket, 1)
    expect(scores(leastPending({}), req, [a, b])).toEqual([1, 0])
  })

  it('gives everyone 1 when loads are equal', () => {
    const req = request(pickContext(server([])), 1)
    expect(scores(leastPending({}), req, [state('a', 2), state('b', 3)])).toEqual([1, 1])
  })

  it('filters endpoints at maxWaitingRequests only when configured', () => {
    const [a, b] = [state('a', 2), state('b', 3)]
    scraped(a, 0, { running: 8, waiting: 12 })
    scraped(b, 0, { running: 8, waiting: 1 })
    const req = request(pickContext(server([])), 1)
    expect(leastPending({}).filter).toBeUndefined()
    const f = leastPending({ maxWaitingRequests: 10 }).filter
    expect(f?.(req, [a, b])).toEqual([b])
  })
})
