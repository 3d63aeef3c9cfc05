import { describe, expect, it } from 'vitest'
import { pickContext, request, scores, scraped, server, state } from '../testkit.js'
import { leastLatency } from './least-latency.js'

describe('least-latency', () => {
  const req = () => request(pickContext(server([])), 1)

  it('blends min-max normalised TTFT and TPOT with the weight factor; no data scores 0.5', () => {
    const [a, b, c] = [state('a', 2), state('b', 3), state('c', 4)]
    scraped(a, 0, { ttftMeanSec: 0.1, tpotMeanSec: 0.05 })
    scraped(b, 0, { ttftMeanSec: 0.3, tpotMeanSec: 0.01 })
    expect(scores(leastLatency({}), req(), [a, b, c])).toEqual([0.5, 0.5, 0.5])
    expect(scores(leastLatency({ ttftTpotWeightFactor: 1 }), req(), [a, b, c])).toEqual([1, 0, 0.5])
    expect(scores(leastLatency({ ttftTpotWeightFactor: 0 }), req(), [a, b, c])).toEqual([0, 1, 0.5])
  })

  it('uses the one signal that exists, and abstains without any', () => {
    const [a, b] = [state('a', 2), state('b', 3)]
    expect(scores(leastLatency({}), req(), [a, b])).toBeUndefined()
    scraped(a, 0, { ttftMeanSec: 0.2 })
    scraped(b, 0, { ttftMeanSec: 0.4 })
    expect(scores(leastLatency({ ttftTpotWeightFactor: 0.2 }), req(), [a, b])).toEqual([1, 0])
  })

  it("prefers the replica's own recent measurements over the engine's", () => {
    const [a, b] = [state('a', 2), state('b', 3)]
    scraped(a, 0, { ttftMeanSec: 0.1 })
    scraped(b, 0, { ttftMeanSec: 0.5 })
    const t = { promptTokens: 1, outputTokens: 1, stream: true }
    a.dispatchStarted(t, 0)
    a.dispatchEnded(t, { status: 200, durationMs: 900, firstByteMs: 800 }, 0)
    expect(scores(leastLatency({ ttftTpotWeightFactor: 1 }), req(), [a, b])).toEqual([0, 1])
  })
})
