// predicted-latency keeps each candidate's rendezvous draw (its log) per prefix key and endpoint
// slot across decisions (#drawsWith). These check that the kept draws never change a score: in any
// order of keys, past the bound on keys kept, and when a slot is taken over by another pod.
import { describe, expect, it } from 'vitest'
import { EndpointState } from '../state.js'
import { endpoint, pickContext, request, scores, scraped, server, state } from '../testkit.js'
import { PredictedLatencyPlugin } from './predicted-latency.js'

const FILLER =
  'Shared instructions for this group of requests, long enough to be a prefix. '.repeat(30)
/** More prefix keys than the plugin keeps draws for (512). */
const GROUPS = 600

function req(group: number) {
  const messages = [
    { role: 'system', content: `group ${group}: ${FILLER}` },
    { role: 'user', content: `question ${group}` },
  ]
  return request(pickContext(server([]), { messages, max_tokens: 16 }), 0)
}

function fleet(): EndpointState[] {
  const eps = ['a', 'b', 'c', 'd', 'e', 'f'].map((n, i) => state(n, 10 + i))
  for (const [i, e] of eps.entries()) scraped(e, 0, { running: i % 3, waiting: 0 })
  return eps
}

describe('predicted-latency rendezvous draws', () => {
  it('scores the same with draws kept from earlier decisions, in any order, past the bound', () => {
    const eps = fleet()
    const warm = new PredictedLatencyPlugin({})
    for (let g = 0; g < GROUPS; g++) scores(warm, req(g), eps)
    const fresh = new PredictedLatencyPlugin({})
    const seen = new Map<number, number[] | undefined>()
    for (let g = GROUPS - 1; g >= 0; g--) seen.set(g, scores(fresh, req(g), eps))
    let spread = 0
    for (let g = 0; g < GROUPS; g++) {
      const s = scores(warm, req(g), eps)
      expect(s).toEqual(seen.get(g))
      if (s !== undefined && new Set(s).size > 1) spread++
    }
    // The draws decide something: groups' scores differ between pods.
    expect(spread).toBeGreaterThan(GROUPS / 2)
  })

  it('draws again for a pod that took over a slot (checked by its name hash)', () => {
    const eps = fleet()
    const p = new PredictedLatencyPlugin({})
    const before = scores(p, req(7), eps) as number[]
    // A new pod in the slot of the third one, as after a snapshot swap.
    const old = eps[2] as EndpointState
    const pod = new EndpointState(endpoint('z-new-pod', 40), old.slot)
    scraped(pod, 0, { running: 2, waiting: 0 })
    const swapped = [...eps.slice(0, 2), pod, ...eps.slice(3)]
    const kept = scores(p, req(7), swapped)
    const drawnFresh = scores(new PredictedLatencyPlugin({}), req(7), swapped)
    expect(kept).toEqual(drawnFresh)
    // Its draw is not the old pod's: the scores of the slot differ.
    expect(kept?.[2]).not.toBe(before[2])
  })
})
