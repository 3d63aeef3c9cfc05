import { describe, expect, it } from 'vitest'
import { pickContext, request, scores, seeded, server, state } from '../testkit.js'
import { randomPlugin } from './random.js'

describe('random', () => {
  it('draws an independent score per endpoint from the injected source', () => {
    const rnd = seeded(1)
    const p = randomPlugin({}, { random: rnd, now: () => 0 })
    const eps = [state('a', 2), state('b', 3), state('c', 4)]
    const wins = [0, 0, 0]
    for (let i = 0; i < 3000; i++) {
      const s = scores(p, request(pickContext(server([]))), eps) as number[]
      for (const v of s) expect(v >= 0 && v < 1).toBe(true)
      const w = s.indexOf(Math.max(...s))
      wins[w] = (wins[w] ?? 0) + 1
    }
    for (const w of wins) expect(w).toBeGreaterThan(850)
  })
})
