import { describe, expect, it } from 'vitest'
import { CRD_CATEGORY, crdName } from '../api/crd.js'
import { API_GROUP, inferenceEngines, rateLimitUnits } from '../api/schema.js'
import { PRINTER_COLUMNS } from '../api/status.js'
import {
  crdObjects,
  EXACTLY_ONE_MATCH,
  EXACTLY_ONE_TARGET,
  MODEL_OR_LORA,
  modelRouteSpecSchema,
  modelServerSpecSchema,
  type Schema,
  StructuralSchemaError,
  schemaAt,
  structuralProblems,
  toStructural,
} from './crds.js'

interface Crd {
  metadata: { name: string }
  spec: {
    group: string
    scope: string
    names: { kind: string; plural: string; shortNames: string[]; categories: string[] }
    versions: {
      name: string
      served: boolean
      storage: boolean
      subresources: { status: Record<string, never> }
      additionalPrinterColumns?: { name: string; jsonPath: string }[]
      schema: { openAPIV3Schema: Schema }
    }[]
  }
}

const crds = crdObjects() as unknown as Crd[]

function byName(name: string): Crd {
  const c = crds.find((x) => x.metadata.name === name)
  if (!c) throw new Error(`no CRD ${name}`)
  return c
}

function rules(node: Schema): string[] {
  const v = node['x-kubernetes-validations']
  return Array.isArray(v) ? v.map((r) => String((r as { rule: string }).rule)) : []
}

describe('toStructural', () => {
  it('drops additionalProperties: false and meta keywords, keeps everything else', () => {
    expect(
      toStructural({
        $schema: 'x',
        title: 't',
        type: 'object',
        properties: { a: { type: 'string', minLength: 1 } },
        required: ['a'],
        additionalProperties: false,
      }),
    ).toEqual({
      type: 'object',
      properties: { a: { type: 'string', minLength: 1 } },
      required: ['a'],
    })
  })

  it('turns "any value" into preserve-unknown-fields, also as a map of anything', () => {
    expect(toStructural({})).toEqual({ 'x-kubernetes-preserve-unknown-fields': true })
    expect(toStructural({ type: 'object', additionalProperties: {} })).toEqual({
      type: 'object',
      'x-kubernetes-preserve-unknown-fields': true,
    })
    // A typed map stays a map.
    expect(toStructural({ type: 'object', additionalProperties: { type: 'string' } })).toEqual({
      type: 'object',
      additionalProperties: { type: 'string' },
    })
  })

  it('gives integers an int32/int64 format from their bounds', () => {
    const s = toStructural({
      type: 'object',
      properties: {
        port: { type: 'integer', minimum: 1, maximum: 65535 },
        big: { type: 'integer', minimum: 0, maximum: 9007199254740991 },
        open: { type: 'integer' },
        given: { type: 'integer', format: 'int32' },
      },
    })
    expect(schemaAt(s, 'port')['format']).toBe('int32')
    expect(schemaAt(s, 'big')['format']).toBe('int64')
    expect(schemaAt(s, 'open')['format']).toBe('int64')
    expect(schemaAt(s, 'given')['format']).toBe('int32')
  })

  it('turns const into a one-value enum and does not mutate its input', () => {
    const input = { type: 'string', const: 'x' }
    expect(toStructural(input)).toEqual({ type: 'string', enum: ['x'] })
    expect(input).toEqual({ type: 'string', const: 'x' })
  })
})

describe('structuralProblems', () => {
  it('finds what the API server would reject', () => {
    expect(
      structuralProblems({
        type: 'object',
        properties: {
          u: { oneOf: [{ type: 'string' }, { type: 'integer' }] },
          m: { type: 'object', properties: { a: { type: 'string' } }, additionalProperties: false },
          i: { type: 'integer' },
        },
      }),
    ).toEqual([
      '<root>.u: no type',
      '<root>.u: oneOf is not allowed',
      '<root>.m: additionalProperties: false is not allowed',
      '<root>.m: additionalProperties and properties are mutually exclusive',
      '<root>.i: integer without int32/int64 format',
    ])
    expect(structuralProblems({ 'x-kubernetes-preserve-unknown-fields': true })).toEqual([])
  })
})

describe('schemaAt', () => {
  it('walks properties, items and map values, and throws on a missing field', () => {
    const s = modelRouteSpecSchema()
    expect(schemaAt(s, 'rules[].targetModels[].weight')['type']).toBe('integer')
    expect(schemaAt(s, 'rules[].modelMatch.headers{}.exact')['type']).toBe('string')
    expect(() => schemaAt(s, 'rules[].targetModel')).toThrow(StructuralSchemaError)
  })
})

describe('crdObjects', () => {
  it('has ModelRoute (mr), ModelServer (ms), GatewayPolicy and ExternalModelProvider, namespaced, v1alpha1 only', () => {
    expect(crds.map((c) => c.metadata.name)).toEqual([
      'modelroutes.networking.matrixinfer.ai',
      'modelservers.networking.matrixinfer.ai',
      'gatewaypolicies.networking.matrixinfer.ai',
      'externalmodelproviders.networking.matrixinfer.ai',
    ])
    expect(crdName('modelRoute')).toBe('modelroutes.networking.matrixinfer.ai')
    for (const c of crds) {
      expect(c.spec.group).toBe(API_GROUP)
      expect(c.spec.scope).toBe('Namespaced')
      expect(c.spec.names.categories).toEqual([CRD_CATEGORY])
      expect(c.spec.versions).toHaveLength(1)
      const [v] = c.spec.versions
      expect(v).toMatchObject({ name: 'v1alpha1', served: true, storage: true })
      expect(v?.subresources).toEqual({ status: {} })
      const root = v?.schema.openAPIV3Schema
      expect(root && structuralProblems(root)).toEqual([])
      expect(root?.['required']).toEqual(['spec'])
    }
    expect(byName('modelroutes.networking.matrixinfer.ai').spec.names.shortNames).toEqual(['mr'])
    expect(byName('modelservers.networking.matrixinfer.ai').spec.names.shortNames).toEqual(['ms'])
  })

  it('takes printer columns from api/status.ts', () => {
    const cols = (n: string) =>
      byName(n).spec.versions[0]?.additionalPrinterColumns?.map((c) => c.name.toUpperCase())
    // REASON and the rest have priority 1: shown by `kubectl get -o wide` only.
    expect(cols('modelroutes.networking.matrixinfer.ai')).toEqual([
      'MODEL',
      'READY',
      'TARGETS',
      'AGE',
      'REASON',
      'ACCEPTED',
    ])
    expect(cols('modelservers.networking.matrixinfer.ai')).toEqual([
      'ENGINE',
      'READY',
      'ENDPOINTS',
      'AGE',
      'REASON',
      'PORT',
    ])
    expect(
      byName('modelroutes.networking.matrixinfer.ai').spec.versions[0]?.additionalPrinterColumns,
    ).toEqual(PRINTER_COLUMNS.modelRoute)
  })

  it('carries the one-of CEL rules where they apply', () => {
    const route = modelRouteSpecSchema()
    expect(rules(route)).toEqual([MODEL_OR_LORA.rule])
    // Kthena's default instead of an all-or-none rule: an unset weight is 100.
    expect(schemaAt(route, 'rules[].targetModels[].weight')['default']).toBe(100)
    expect(rules(schemaAt(route, 'rules[].targetModels[]'))).toEqual([EXACTLY_ONE_TARGET.rule])
    expect(rules(schemaAt(route, 'rules[].modelMatch.uri'))).toEqual([EXACTLY_ONE_MATCH.rule])
    expect(rules(schemaAt(route, 'rules[].modelMatch.headers{}'))).toEqual([EXACTLY_ONE_MATCH.rule])
  })

  it('keeps the enums, bounds and defaults of the zod schemas', () => {
    const route = modelRouteSpecSchema()
    expect(schemaAt(route, 'rules[].targetModels[].weight')).toMatchObject({
      minimum: 0,
      maximum: 100,
      format: 'int32',
    })
    expect(schemaAt(route, 'rules')).toMatchObject({ minItems: 1, maxItems: 16 })
    expect(schemaAt(route, 'rules[].targetModels')).toMatchObject({ minItems: 1, maxItems: 16 })
    expect(schemaAt(route, 'loraAdapters')).toMatchObject({ maxItems: 10 })
    expect(schemaAt(route, 'rateLimit.unit')).toMatchObject({
      enum: [...rateLimitUnits],
      default: 'second',
    })
    const server = modelServerSpecSchema()
    expect(schemaAt(server, 'inferenceEngine')['enum']).toEqual([...inferenceEngines])
    expect(schemaAt(server, 'workloadPort.port')).toMatchObject({ minimum: 1, maximum: 65535 })
    expect(schemaAt(server, 'workloadPort.protocol')).toMatchObject({
      enum: ['http', 'https'],
      default: 'http',
    })
    expect(schemaAt(server, 'workloadSelector.matchLabels')['minProperties']).toBe(1)
    // Open per-plugin arguments: structural, kept as given (our validation checks them).
    expect(schemaAt(server, 'scheduler.plugins[].args')).toEqual({
      type: 'object',
      'x-kubernetes-preserve-unknown-fields': true,
    })
  })

  it('gives status metav1.Condition list semantics', () => {
    for (const n of ['modelroutes', 'modelservers']) {
      const root = byName(`${n}.${API_GROUP}`).spec.versions[0]?.schema.openAPIV3Schema
      if (!root) throw new Error('no schema')
      const conditions = schemaAt(root, 'status.conditions')
      expect(conditions['x-kubernetes-list-type']).toBe('map')
      expect(conditions['x-kubernetes-list-map-keys']).toEqual(['type'])
      expect(schemaAt(conditions, '[].lastTransitionTime')['format']).toBe('date-time')
    }
  })

  it('is deterministic (same bytes on every replica and every run)', () => {
    expect(JSON.stringify(crdObjects())).toBe(JSON.stringify(crds))
  })
})
