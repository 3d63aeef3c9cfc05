import { describe, expect, it } from 'vitest'
import {
  modelRouteStatusJsonSchema,
  modelRouteStatusSchema,
  modelServerStatusJsonSchema,
} from './status.js'

describe('status contract', () => {
  it('accepts a metav1-shaped status and rejects a bad condition status', () => {
    const ok = modelRouteStatusSchema.safeParse({
      observedGeneration: 2,
      conditions: [
        {
          type: 'Ready',
          status: 'True',
          lastTransitionTime: '2026-01-01T00:00:00Z',
          reason: 'EndpointsReady',
          message: '3 of 4 endpoints ready',
        },
      ],
      targets: '3/4',
    })
    expect(ok.success).toBe(true)
    expect(
      modelRouteStatusSchema.safeParse({
        conditions: [
          { type: 'Ready', status: 'Yes', lastTransitionTime: 'x', reason: 'R', message: '' },
        ],
      }).success,
    ).toBe(false)
  })

  it('emits JSON Schemas with the printer-column fields', () => {
    const r = modelRouteStatusJsonSchema() as { properties: Record<string, unknown> }
    expect(Object.keys(r.properties)).toEqual(
      expect.arrayContaining(['observedGeneration', 'conditions', 'targets']),
    )
    const s = modelServerStatusJsonSchema() as { properties: Record<string, unknown> }
    expect(Object.keys(s.properties)).toEqual(
      expect.arrayContaining(['endpoints', 'readyEndpoints']),
    )
  })
})
