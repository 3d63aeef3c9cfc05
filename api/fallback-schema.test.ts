import { describe, expect, it } from 'vitest'
import { compileSnapshot } from './compile.js'
import { ruleFallbackSchema } from './fallback-schema.js'
import { validateSnapshot } from './snapshot-validate.js'
import { validateModelRoute } from './validate.js'

describe('ruleFallbackSchema', () => {
  it('needs exactly one target kind per entry and known conditions', () => {
    expect(
      ruleFallbackSchema.safeParse({ targets: [{ modelServerName: 'a' }], on: ['5xx'] }).success,
    ).toBe(true)
    expect(
      ruleFallbackSchema.safeParse({
        targets: [{ modelServerName: 'a', externalModelProviderName: 'b' }],
      }).success,
    ).toBe(false)
    expect(ruleFallbackSchema.safeParse({ targets: [{}] }).success).toBe(false)
    expect(ruleFallbackSchema.safeParse({ targets: [] }).success).toBe(false)
    expect(
      ruleFallbackSchema.safeParse({ targets: [{ modelServerName: 'a' }], on: ['timeout'] })
        .success,
    ).toBe(false)
    expect(
      ruleFallbackSchema.safeParse({ targets: [{ modelServerName: 'a' }], on: [] }).success,
    ).toBe(false)
  })
})

describe('spill-over: fallback.on saturated with a saturation threshold', () => {
  type Obj = Record<string, unknown>
  const route = (fallback: Obj): Obj => ({
    apiVersion: 'networking.matrixinfer.ai/v1alpha1',
    kind: 'ModelRoute',
    metadata: { name: 'r' },
    spec: {
      modelName: 'm',
      rules: [{ targetModels: [{ modelServerName: 's' }], fallback }],
    },
  })
  const issues = (fallback: Obj): string[] => {
    const r = validateModelRoute(route(fallback))
    return r.ok ? [] : r.issues.map((i) => `${i.path}: ${i.message}`)
  }
  const target = [{ externalModelProviderName: 'p' }]

  it('validates the threshold, naming the field', () => {
    expect(
      issues({
        targets: target,
        on: ['saturated'],
        saturation: { ttftSLO: '800ms', tiers: ['gold'] },
      }),
    ).toEqual([])
    expect(issues({ targets: target, on: ['saturated'] })).toEqual([
      'spec.rules[0].fallback.saturation: on lists saturated: set saturation (ttftSLO and/or maxQueuePerEndpoint)',
    ])
    expect(
      issues({ targets: target, on: ['5xx'], saturation: { maxQueuePerEndpoint: 4 } }),
    ).toEqual(['spec.rules[0].fallback.on: saturation is set but on does not list saturated'])
    expect(issues({ targets: target, on: ['saturated'], saturation: {} })).toEqual([
      'spec.rules[0].fallback.saturation: must set ttftSLO, maxQueuePerEndpoint or both',
    ])
    expect(issues({ targets: target, on: ['saturated'], saturation: { ttftSLO: 'fast' } })).toEqual(
      ['spec.rules[0].fallback.saturation.ttftSLO: must be a duration like 500ms, 30s or 1m30s'],
    )
    expect(
      issues({ targets: target, on: ['saturated'], saturation: { maxQueuePerEndpoint: -1 } }),
    ).toEqual(['spec.rules[0].fallback.saturation.maxQueuePerEndpoint: must be >= 0'])
    expect(
      issues({ targets: target, on: ['saturated'], saturation: { ttftSLO: '1s', tiers: [] } }),
    ).toEqual(['spec.rules[0].fallback.saturation.tiers: must have at least one tier'])
  })

  it('compiles to milliseconds and sorted tiers; on absent includes saturated only with a threshold', () => {
    const server: Obj = {
      apiVersion: 'networking.matrixinfer.ai/v1alpha1',
      kind: 'ModelServer',
      metadata: { name: 's' },
      spec: {
        inferenceEngine: 'vLLM',
        workloadSelector: { matchLabels: { a: 'b' } },
        workloadPort: { port: 8000 },
      },
    }
    const provider: Obj = {
      apiVersion: 'networking.matrixinfer.ai/v1alpha1',
      kind: 'ExternalModelProvider',
      metadata: { name: 'p' },
      spec: { baseURL: 'https://x/v1' },
    }
    const compile = (fallback: Obj) =>
      compileSnapshot({
        routes: [route(fallback)],
        servers: [server],
        endpoints: {},
        providers: [provider],
        version: 1,
      })
    const a = compile({
      targets: target,
      saturation: { ttftSLO: '1.5s', maxQueuePerEndpoint: 3, tiers: ['silver', 'gold'] },
    })
    expect(a.diagnostics).toEqual([])
    expect(a.snapshot.routes[0]?.rules[0]?.fallback).toEqual({
      targets: [{ provider: 'default/p' }],
      on: ['429', '5xx', 'connect-failure', 'no-ready-endpoints', 'saturated'],
      saturation: { ttftMs: 1500, maxQueuePerEndpoint: 3, tiers: ['gold', 'silver'] },
    })
    // The data plane accepts it back.
    expect(
      validateSnapshot(JSON.parse(JSON.stringify(a.snapshot))).routes[0]?.rules[0]?.fallback,
    ).toEqual(a.snapshot.routes[0]?.rules[0]?.fallback)
    const b = compile({ targets: target })
    expect(b.snapshot.routes[0]?.rules[0]?.fallback?.on).not.toContain('saturated')
  })
})
