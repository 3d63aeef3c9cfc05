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

  it("writes the request path's series as prom-client's own labelled calls do", async () => {
    const bound = new Registry()
    const b = new FilterMetrics(bound)
    const plain = new Registry()
    const p = new FilterMetrics(plain)
    for (let i = 0; i < 3; i++) {
      b.authCounted('api-key', 'success')
      p.auth.inc({ method: 'api-key', result: 'success' })
      b.decision('gold', '', 'allowed')
      p.decisions.inc({ tier: 'gold', scope: '', result: 'allowed' })
      b.tierRequest('gold', '2xx')
      p.tierRequests.inc({ tier: 'gold', status_class: '2xx' })
      b.authSeconds.observe(0.0002 * i)
      p.duration.observe({ filter: 'auth' }, 0.0002 * i)
      b.ratelimitSeconds.observe(0.003)
      p.duration.observe({ filter: 'ratelimit' }, 0.003)
    }
    b.authCounted('none', 'invalid')
    p.auth.inc({ method: 'none', result: 'invalid' })
    b.decision('gold', 'tier', 'limited')
    p.decisions.inc({ tier: 'gold', scope: 'tier', result: 'limited' })
    const text = await bound.metrics()
    expect(text).toBe(await plain.metrics())
    expect(text).toContain('infer_gateway_auth_total{method="api-key",result="success"} 3')
    expect(text).toContain('infer_gateway_filter_duration_seconds_count{filter="ratelimit"} 3')
    // A reset metric is written again by the next call (the bound series rebinds).
    b.auth.reset()
    b.authCounted('api-key', 'success')
    expect(await bound.metrics()).toContain(
      'infer_gateway_auth_total{method="api-key",result="success"} 1',
    )
  })
})
