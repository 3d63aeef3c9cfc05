import { describe, expect, it } from 'vitest'
import { pickContext, request, scores, server, state } from '../testkit.js'
import { roundRobin } from './round-robin.js'

describe('round-robin', () => {
  it('rotates the top score and orders the rest as a ring from it', () => {
    const p = roundRobin()
    const eps = [state('a', 2), state('b', 3), state('c', 4), state('d', 5)]
    const req = () => request(pickContext(server([])))
    expect(scores(p, req(), eps)).toEqual([1, 0.75, 0.5, 0.25])
    expect(scores(p, req(), eps)).toEqual([0.25, 1, 0.75, 0.5])
    expect(scores(p, req(), eps)).toEqual([0.5, 0.25, 1, 0.75])
    expect(scores(p, req(), eps)).toEqual([0.75, 0.5, 0.25, 1])
    expect(scores(p, req(), eps)).toEqual([1, 0.75, 0.5, 0.25])
  })
})
