// GAIE: a request to an InferencePool that names an InferenceObjective (llm-d's header or GAIE's
// deprecated alias) gets the objective's priority in the fairness queue; the plain priority header
// still applies elsewhere.
import { describe, expect, it } from 'vitest'
import type { SnapshotServer } from '../../../api/snapshot.js'
import { chat, pickContext, request, server } from '../testkit.js'
import { FairnessPlugin } from './fairness.js'

const pool: SnapshotServer = {
  ...server([]),
  key: 'InferencePool:default/pool',
  inferencePool: {
    targetPorts: [8000],
    selector: { app: 'x' },
    objectives: { critical: 10, sheddable: -5, huge: 5000 },
  },
}

describe('fairness priority from InferenceObjectives', () => {
  const p = new FairnessPlugin({}, { random: Math.random, now: () => 0 })
  const prio = (srv: SnapshotServer, headers: Record<string, string>) =>
    p.priorityOf(request(pickContext(srv, chat('hi'), headers)))

  it('takes the objective named by either header, clamped like the priority header', () => {
    expect(prio(pool, { 'x-llm-d-inference-objective': 'critical' })).toBe(10)
    expect(prio(pool, { 'x-gateway-inference-objective': 'sheddable' })).toBe(-5)
    expect(prio(pool, { 'x-llm-d-inference-objective': 'huge' })).toBe(1000)
  })

  it('falls back to the priority header for unknown objectives and ModelServers', () => {
    expect(prio(pool, { 'x-llm-d-inference-objective': 'nope', 'x-priority': '3' })).toBe(3)
    expect(prio(server([]), { 'x-llm-d-inference-objective': 'critical', 'x-priority': '2' })).toBe(
      2,
    )
    expect(prio(pool, {})).toBe(0)
  })
})
