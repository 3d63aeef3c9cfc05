import { describe, expect, it } from 'vitest'
import { pickContext, request, scores, server, state } from '../testkit.js'
import { cookieValue, SessionAffinityPlugin } from './session-affinity.js'

function plugin(args: Record<string, string | number> = {}) {
  let now = 0
  const p = new SessionAffinityPlugin(args, { random: Math.random, now: () => now })
  return { p, at: (t: number) => (now = t) }
}
const req = (headers: Record<string, string>, now = 0) =>
  request(pickContext(server([]), {}, headers), now)

describe('session-affinity', () => {
  it('abstains without a session key or binding, binds at dispatch, then sticks', () => {
    const { p } = plugin()
    const [a, b] = [state('a', 2), state('b', 3)]
    expect(scores(p, req({}), [a, b])).toBeUndefined()
    expect(scores(p, req({ 'x-session-id': 's1' }), [a, b])).toBeUndefined()
    p.onDispatch(req({ 'x-session-id': 's1' }), b)
    expect(scores(p, req({ 'x-session-id': 's1' }), [a, b])).toEqual([0, 1])
    expect(scores(p, req({ 'x-session-id': 's2' }), [a, b])).toBeUndefined()
  })

  it('reads a cookie when configured', () => {
    const { p } = plugin({ cookie: 'sid' })
    const [a, b] = [state('a', 2), state('b', 3)]
    p.onDispatch(req({ cookie: 'theme=dark; sid=abc' }), a)
    expect(scores(p, req({ cookie: 'sid=abc' }), [a, b])).toEqual([1, 0])
    expect(cookieValue('a=1; b = 2 ;c=', 'b')).toBe('2')
    expect(cookieValue('a=1', 'c')).toBeUndefined()
  })

  it('fails over when the bound endpoint is no longer a candidate, re-binding at dispatch', () => {
    const { p } = plugin()
    const [a, b] = [state('a', 2), state('b', 3)]
    p.onDispatch(req({ 'x-session-id': 's' }), a)
    expect(scores(p, req({ 'x-session-id': 's' }), [b])).toBeUndefined()
    p.onDispatch(req({ 'x-session-id': 's' }), b)
    expect(p.boundTo('s')).toBe('b')
    p.forget(b)
    expect(p.boundTo('s')).toBeUndefined()
  })

  it('expires bindings after the TTL and caps their number', () => {
    const { p, at } = plugin({ ttlMs: 1000, maxSessions: 2 })
    const a = state('a', 2)
    p.onDispatch(req({ 'x-session-id': 'old' }), a)
    expect(scores(p, req({ 'x-session-id': 'old' }, 999), [a])).toEqual([1])
    expect(scores(p, req({ 'x-session-id': 'old' }, 1000), [a])).toBeUndefined()
    at(2000)
    p.onDispatch(req({ 'x-session-id': 'x' }), a)
    p.onDispatch(req({ 'x-session-id': 'y' }), a)
    p.onDispatch(req({ 'x-session-id': 'z' }), a)
    expect(p.boundTo('x')).toBeUndefined()
    expect(p.boundTo('z')).toBe('a')
  })
})
