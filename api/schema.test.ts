import { describe, expect, it } from 'vitest'
import type { JsonSchema } from './schema.js'
import {
  API_VERSION,
  modelRouteJsonSchema,
  modelRouteSchema,
  modelServerJsonSchema,
  modelServerSchema,
} from './schema.js'

/** Walk `properties`/`items` of a JSON Schema by a dotted path (`[]` = array items). */
function at(schema: JsonSchema, path: string): JsonSchema {
  let cur: unknown = schema
  for (const seg of path.split('.')) {
    const node = cur as JsonSchema
    cur = seg === '[]' ? node.items : node.properties?.[seg]
    if (typeof cur !== 'object' || cur === null) throw new Error(`no ${seg} in ${path}`)
  }
  return cur as JsonSchema
}

describe('ModelRoute / ModelServer schemas', () => {
  it('accept a Kthena-shaped ModelRoute and default rateLimit.unit', () => {
    const r = modelRouteSchema.parse({
      apiVersion: API_VERSION,
      kind: 'ModelRoute',
      metadata: { name: 'llama', namespace: 'team-a', managedFields: [{ x: 1 }] },
      spec: {
        modelName: 'llama-8b',
        parentRefs: [{ name: 'gw', sectionName: 'http', port: 80 }],
        rules: [
          {
            name: 'canary',
            modelMatch: { headers: { 'x-user': { exact: 'a' } }, uri: { prefix: '/v1' } },
            targetModels: [
              { modelServerName: 'a', weight: 90 },
              { modelServerName: 'b', weight: 10 },
            ],
          },
        ],
        rateLimit: { inputTokensPerUnit: 100 },
      },
    })
    expect(r.spec.rateLimit?.unit).toBe('second')
    // Unknown metadata fields pass through (managedFields etc.).
    expect(r.metadata['managedFields']).toEqual([{ x: 1 }])
  })

  it('normalises Date timestamps from typed clients to strings', () => {
    const r = modelServerSchema.parse({
      metadata: { name: 'ms', creationTimestamp: new Date('2024-01-02T03:04:05Z') },
      spec: {
        inferenceEngine: 'vLLM',
        workloadSelector: { matchLabels: { a: 'b' } },
        workloadPort: { port: 8000 },
      },
    })
    expect(r.metadata.creationTimestamp).toBe('2024-01-02T03:04:05.000Z')
    expect(r.spec.workloadPort.protocol).toBe('http')
  })

  it('rejects unknown spec fields (typos) but not unknown metadata fields', () => {
    const bad = modelServerSchema.safeParse({
      metadata: { name: 'ms' },
      spec: {
        inferenceEngine: 'vLLM',
        workloadSelector: { matchLabels: { a: 'b' } },
        workloadPort: { port: 8000, protcol: 'http' },
      },
    })
    expect(bad.success).toBe(false)
  })
})

describe('JSON Schema for the CRDs', () => {
  it('ModelRoute spec carries bounds, enums, defaults and CEL one-of rules', () => {
    const js = modelRouteJsonSchema()
    expect(js.required).toEqual(['rules'])
    expect(at(js, 'loraAdapters').maxItems).toBe(10)
    expect(at(js, 'rules')).toMatchObject({ minItems: 1, maxItems: 16 })
    expect(at(js, 'rules.[].targetModels')).toMatchObject({ minItems: 1, maxItems: 16 })
    expect(at(js, 'rules.[].targetModels.[].weight')).toMatchObject({
      type: 'integer',
      minimum: 0,
      maximum: 100,
    })
    expect(at(js, 'rateLimit.unit')).toMatchObject({
      enum: ['second', 'minute', 'hour', 'day', 'month'],
      default: 'second',
    })
    const rules = at(js, 'rules.[].targetModels.[]')['x-kubernetes-validations'] as {
      message?: string
    }[]
    expect(rules[0]?.message).toMatch(/exactly one of modelServerName or externalModelProviderName/)
    expect(JSON.stringify(at(js, 'rules.[].modelMatch.uri'))).toContain(
      'exactly one of exact, prefix or regex',
    )
    // Structural CRD schemas must not use additionalProperties: false.
    expect(JSON.stringify(js)).not.toContain('"additionalProperties":false')
  })

  it('ModelServer spec carries the engine enum, port bounds and duration patterns', () => {
    const js = modelServerJsonSchema()
    expect(js.required).toEqual(['inferenceEngine', 'workloadSelector', 'workloadPort'])
    expect(at(js, 'inferenceEngine').enum).toEqual([
      'vLLM',
      'SGLang',
      'TGI',
      'TensorRT-LLM',
      'Generic',
    ])
    expect(at(js, 'workloadPort.port')).toMatchObject({ minimum: 1, maximum: 65535 })
    expect(at(js, 'workloadPort.protocol')).toMatchObject({
      enum: ['http', 'https'],
      default: 'http',
    })
    expect(at(js, 'model').maxLength).toBe(256)
    const pattern = String(at(js, 'trafficPolicy.retry.retryInterval').pattern)
    expect(new RegExp(pattern).test('1m30s')).toBe(true)
    expect(new RegExp(pattern).test('soon')).toBe(false)
    expect(at(js, 'kvConnector.type').enum).toEqual([
      'http',
      'lmcache',
      'nixl',
      'mooncake',
      'sglang',
    ])
    // The plugin union is served to the API server in structural form (no oneOf).
    const plugin = at(js, 'scheduler.plugins.[]')
    expect(plugin.oneOf).toBeUndefined()
    expect(plugin.required).toEqual(['name'])
    expect(at(js, 'scheduler.plugins.[].name').enum).toContain('prefix-cache')
    expect(at(js, 'scheduler.plugins.[].args')['x-kubernetes-preserve-unknown-fields']).toBe(true)
    expect(at(js, 'scheduler.plugins')['x-kubernetes-list-map-keys']).toEqual(['name'])
    expect(JSON.stringify(js)).not.toContain('x-infer-gateway')
  })

  it('checks scheduler plugin names, weights and per-plugin arguments with field paths', () => {
    const spec = (scheduler: unknown) => ({
      metadata: { name: 'ms' },
      spec: {
        inferenceEngine: 'vLLM',
        workloadSelector: { matchLabels: { a: 'b' } },
        workloadPort: { port: 8000 },
        scheduler,
      },
    })
    const ok = modelServerSchema.safeParse(
      spec({
        plugins: [
          { name: 'prefix-cache', weight: 3, args: { blockSizeTokens: 16, loadMargin: 4 } },
          { name: 'session-affinity', args: { header: 'x-session-id', ttl: '10m' } },
          { name: 'fairness', args: { tenantHeader: 'x-tenant', queueTimeout: '5s' } },
        ],
      }),
    )
    expect(ok.success).toBe(true)
    const bad = modelServerSchema.safeParse(
      spec({
        plugins: [
          { name: 'prefix-cache', args: { blockSizeTokens: 0, typo: 1 } },
          { name: 'fairness', weight: 2 },
          { name: 'no-such-plugin' },
        ],
      }),
    )
    expect(bad.success).toBe(false)
    const paths = bad.error?.issues.map((i) => i.path.join('.'))
    expect(paths).toEqual([
      'spec.scheduler.plugins.0.args.blockSizeTokens',
      'spec.scheduler.plugins.0.args',
      'spec.scheduler.plugins.1',
      'spec.scheduler.plugins.2.name',
    ])
    const dup = modelServerSchema.safeParse(
      spec({ plugins: [{ name: 'random' }, { name: 'random' }] }),
    )
    expect(dup.error?.issues[0]?.message).toBe('duplicate plugin "random"')
  })

  it('checks predicted-latency arguments with field paths', () => {
    const spec = (args: unknown) => ({
      metadata: { name: 'ms' },
      spec: {
        inferenceEngine: 'vLLM',
        workloadSelector: { matchLabels: { a: 'b' } },
        workloadPort: { port: 8000 },
        scheduler: { plugins: [{ name: 'predicted-latency', weight: 6, args }] },
      },
    })
    const good = {
      maxNumSeqs: 256,
      tolerance: 0.1,
      prefillMsPerToken: 0.2,
      overheadMs: 15,
      decodeMsPerToken: 12,
      loraLoadMs: 250,
      hotCopyTheta: 2,
      blockSizeTokens: 16,
      affinityBlocks: 4,
    }
    expect(modelServerSchema.safeParse(spec(good)).success).toBe(true)
    const bad = modelServerSchema.safeParse(
      spec({ maxNumSeqs: 0, tolerance: 2, loraLoadMs: -1, loadMargin: 8 }),
    )
    expect(bad.error?.issues.map((i) => `${i.path.join('.')}: ${i.message}`)).toEqual([
      'spec.scheduler.plugins.0.args.maxNumSeqs: must be 1..1000000',
      'spec.scheduler.plugins.0.args.tolerance: must be 0..1',
      'spec.scheduler.plugins.0.args.loraLoadMs: must be 0..60000',
      expect.stringMatching(/^spec\.scheduler\.plugins\.0\.args: .*loadMargin/),
    ])
  })
})
