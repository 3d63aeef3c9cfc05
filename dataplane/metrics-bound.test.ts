import { Counter, Histogram, Registry } from 'prom-client'
import { describe, expect, it } from 'vitest'
import { bindCounter, bindHistogram } from './metrics-bound.js'

function pair() {
  const make = () => {
    const registry = new Registry()
    const counter = new Counter({
      name: 'c_total',
      help: 'c',
      labelNames: ['model', 'code'] as const,
      registers: [registry],
    })
    const histogram = new Histogram({
      name: 'h_seconds',
      help: 'h',
      labelNames: ['model'] as const,
      buckets: [0.01, 0.1, 1],
      registers: [registry],
    })
    return { registry, counter, histogram }
  }
  return { bound: make(), plain: make() }
}

describe('bound series', () => {
  it('expose exactly what prom-client’s own path exposes, across reset and remove', async () => {
    const { bound, plain } = pair()
    const a = { model: 'm1', code: '' }
    const b = { model: 'm2', code: 'rate_limited' }
    const ca = bindCounter(bound.counter, a)
    const cb = bindCounter(bound.counter, b)
    const h1 = bindHistogram(bound.histogram, { model: 'm1' })
    const steps: [() => void, () => void][] = [
      [() => ca.inc(), () => plain.counter.inc(a)],
      [() => ca.inc(3), () => plain.counter.inc(a, 3)],
      [() => cb.inc(0.5), () => plain.counter.inc(b, 0.5)],
      [() => ca.inc(0), () => plain.counter.inc(a, 0)],
      // On a bucket bound, between bounds, above the last one (only +Inf, sum and count).
      [() => h1.observe(0.01), () => plain.histogram.observe({ model: 'm1' }, 0.01)],
      [() => h1.observe(0.05), () => plain.histogram.observe({ model: 'm1' }, 0.05)],
      [() => h1.observe(7), () => plain.histogram.observe({ model: 'm1' }, 7)],
      [() => h1.observe(0), () => plain.histogram.observe({ model: 'm1' }, 0)],
    ]
    const run = (): void => {
      for (const [x, y] of steps) {
        x()
        y()
      }
    }
    for (let round = 0; round < 3; round++) run()
    expect(await bound.registry.metrics()).toBe(await plain.registry.metrics())
    expect(await bound.registry.metrics()).toContain('c_total{model="m1",code=""} 12')

    // The series a binding held is gone: the next call recreates it, as prom-client does.
    bound.counter.remove(a)
    plain.counter.remove(a)
    bound.histogram.reset()
    plain.histogram.reset()
    run()
    expect(await bound.registry.metrics()).toBe(await plain.registry.metrics())
    expect(await bound.registry.metrics()).toContain('h_seconds_count{model="m1"} 4')
  })

  it('refuses what prom-client refuses', () => {
    const { bound } = pair()
    const c = bindCounter(bound.counter, { model: 'm', code: '' })
    c.inc()
    expect(() => c.inc(-1)).toThrow(/decrease/)
    const h = bindHistogram(bound.histogram, { model: 'm' })
    h.observe(1)
    expect(() => h.observe(Number.POSITIVE_INFINITY)).toThrow(/not a valid number/)
  })
})
