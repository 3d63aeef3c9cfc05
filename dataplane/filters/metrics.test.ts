import { Registry } from 'prom-client'
import { describe, expect, it } from 'vitest'
import { FilterMetrics } from './metrics.js'

describe('FilterMetrics', () => {
  it('registers on the given registry with bounded label sets', async () => {
    const r = new Registry()
    const m = new FilterMetrics(r)
    m.decisions.inc({ tier: 'gold', scope: 'tier', result: 'limited' })
    const text = await r.metrics()
    expect(text).toContain(
      'infer_gateway_ratelimit_decisions_total{tier="gold",scope="tier",result="limited"} 1',
    )
    // No label names a caller.
    expect(text).not.toMatch(/(subject|tenant|user|key)="/)
  })
})
