// CustomResourceDefinitions generated from api/: the zod schemas are the one source for the TS
// types, our own validation and the `openAPIV3Schema` the API server enforces. zod's JSON Schema is
// close to, but not quite, what kube-apiserver accepts as a *structural* schema, so this module
// (1) rewrites what a structural schema cannot say, (2) adds what zod keeps in refinements (CEL
// rules that span several fields, the bounds of a refined map, integer formats), and (3) refuses
// to emit anything that is still not structural, so a bad schema fails `npm run manifests`, not
// `kubectl apply` on a user's cluster. Every rule here is within the API server's CEL cost budget
// because every list it iterates has maxItems (rules 16, targetModels 16); the real-API-server
// test (test/crd.test.ts) would fail the apply otherwise.
//
// Plain objects only (no cdk8s import): tests and the operator can use them without cdk8s.
import type { JsonValue } from '../api/canonical-json.js'
import { CRD_CATEGORY, CRD_NAMES, CRD_VERSION, type CrdKey, crdName } from '../api/crd.js'
import { gatewayPolicyJsonSchema } from '../api/policy.js'
import {
  externalModelProviderJsonSchema,
  externalModelProviderStatusJsonSchema,
  PROVIDER_PRINTER_COLUMNS,
} from '../api/provider.js'
import { API_GROUP, modelRouteJsonSchema, modelServerJsonSchema } from '../api/schema.js'
import {
  modelRouteStatusJsonSchema,
  modelServerStatusJsonSchema,
  PRINTER_COLUMNS,
} from '../api/status.js'

export type Schema = { [k: string]: JsonValue }

export const COMMON_LABELS = {
  'app.kubernetes.io/name': 'infer-gateway',
  'app.kubernetes.io/part-of': 'infer-gateway',
} as const

const INT32_MIN = -2_147_483_648
const INT32_MAX = 2_147_483_647

export class StructuralSchemaError extends Error {
  override readonly name = 'StructuralSchemaError'
}

function isObject(v: unknown): v is Schema {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/** Keywords the API server rejects in a CRD schema or that mean nothing to it. */
const DROPPED = new Set(['$schema', '$id', 'id', 'definitions', '$defs', 'examples', 'title'])

/**
 * Rewrites a JSON Schema node (and its children) into the structural form:
 * - `additionalProperties: false` goes (unknown fields are pruned instead; the API server
 *   rejects it outright) and so does `additionalProperties` beside `properties`;
 * - "any value" (`{}`, e.g. `z.unknown()`) becomes `x-kubernetes-preserve-unknown-fields`, and a
 *   map of anything becomes an open object;
 * - `const` becomes a one-value `enum`;
 * - integers get `format: int32` or `int64` from their bounds, so clients and the CEL cost
 *   estimator know their size.
 */
export function toStructural(node: unknown, path = '<root>'): Schema {
  if (!isObject(node)) throw new StructuralSchemaError(`${path}: schema must be an object`)
  if (Object.keys(node).length === 0) return { 'x-kubernetes-preserve-unknown-fields': true }
  const out: Schema = {}
  for (const [k, v] of Object.entries(node)) {
    if (DROPPED.has(k)) continue
    if (k === 'properties') {
      if (!isObject(v)) throw new StructuralSchemaError(`${path}: properties must be an object`)
      const props: Schema = {}
      for (const [name, child] of Object.entries(v)) {
        props[name] = toStructural(child, `${path}.${name}`)
      }
      out[k] = props
    } else if (k === 'items') {
      out[k] = toStructural(v, `${path}[]`)
    } else if (k === 'additionalProperties') {
      if (v === false || v === true || node['properties'] !== undefined) continue
      const value = toStructural(v, `${path}{}`)
      if (value['x-kubernetes-preserve-unknown-fields'] === true && value['type'] === undefined) {
        out['x-kubernetes-preserve-unknown-fields'] = true
        continue
      }
      out[k] = value
    } else if (k === 'const') {
      out['enum'] = [v]
    } else {
      out[k] = v
    }
  }
  if (out['type'] === 'integer' && out['format'] === undefined) {
    const min = typeof out['minimum'] === 'number' ? out['minimum'] : Number.NEGATIVE_INFINITY
    const max = typeof out['maximum'] === 'number' ? out['maximum'] : Number.POSITIVE_INFINITY
    out['format'] = min >= INT32_MIN && max <= INT32_MAX ? 'int32' : 'int64'
  }
  return out
}

const FORBIDDEN = ['oneOf', 'anyOf', 'allOf', 'not', '$ref', 'nullable', 'patternProperties']

/**
 * What makes a schema non-structural in the API server's eyes (empty = fine). We do not use the
 * value-validation forms of oneOf/anyOf/allOf/not at all, so any of them means zod emitted a union
 * that needs a structural stand-in in api/.
 */
export function structuralProblems(node: unknown, path = '<root>'): string[] {
  if (!isObject(node)) return [`${path}: not an object`]
  const problems: string[] = []
  const preserve = node['x-kubernetes-preserve-unknown-fields'] === true
  if (node['type'] === undefined && !preserve && node['x-kubernetes-int-or-string'] !== true)
    problems.push(`${path}: no type`)
  for (const k of FORBIDDEN) if (k in node) problems.push(`${path}: ${k} is not allowed`)
  for (const k of DROPPED) if (k in node) problems.push(`${path}: ${k} is not allowed`)
  const ap = node['additionalProperties']
  if (ap === false) problems.push(`${path}: additionalProperties: false is not allowed`)
  if (ap !== undefined && node['properties'] !== undefined)
    problems.push(`${path}: additionalProperties and properties are mutually exclusive`)
  if (node['type'] === 'integer' && node['format'] !== 'int32' && node['format'] !== 'int64')
    problems.push(`${path}: integer without int32/int64 format`)
  const props = node['properties']
  if (props !== undefined) {
    if (!isObject(props)) problems.push(`${path}: properties must be an object`)
    else
      for (const [n, c] of Object.entries(props))
        problems.push(...structuralProblems(c, `${path}.${n}`))
  }
  if (node['items'] !== undefined) problems.push(...structuralProblems(node['items'], `${path}[]`))
  if (isObject(ap)) problems.push(...structuralProblems(ap, `${path}{}`))
  return problems
}

/**
 * The node at a dotted path: `a.b` walks `properties`, `[]` walks `items`, `{}` walks a map's
 * `additionalProperties`. Throws if it is missing, so a renamed field in api/ fails loudly here
 * instead of silently dropping a rule.
 */
export function schemaAt(schema: Schema, path: string): Schema {
  let cur: Schema = schema
  for (const seg of path.match(/[^.[\]{}]+|\[\]|\{\}/g) ?? []) {
    const props = cur['properties']
    const next: unknown =
      seg === '[]'
        ? cur['items']
        : seg === '{}'
          ? cur['additionalProperties']
          : isObject(props)
            ? props[seg]
            : undefined
    if (!isObject(next)) throw new StructuralSchemaError(`schema has no ${seg} in ${path}`)
    cur = next
  }
  return cur
}

export interface CelRule {
  readonly rule: string
  readonly message: string
}

/** Adds a CEL rule unless api/ already carries the same one. */
function addRule(node: Schema, r: CelRule): void {
  const existing = node['x-kubernetes-validations']
  const list: JsonValue[] = Array.isArray(existing) ? existing : []
  if (list.some((x) => isObject(x) && x['rule'] === r.rule)) return
  node['x-kubernetes-validations'] = [...list, { rule: r.rule, message: r.message }]
}

export const EXACTLY_ONE_MATCH: CelRule = {
  rule: '(has(self.exact) ? 1 : 0) + (has(self.prefix) ? 1 : 0) + (has(self.regex) ? 1 : 0) == 1',
  message: 'exactly one of exact, prefix or regex must be set',
}
export const EXACTLY_ONE_TARGET: CelRule = {
  rule: "(has(self.modelServerName) && self.modelServerName != '' ? 1 : 0) + (has(self.externalModelProviderName) && self.externalModelProviderName != '' ? 1 : 0) + (has(self.inferencePoolName) && self.inferencePoolName != '' ? 1 : 0) == 1",
  message:
    'exactly one of modelServerName or externalModelProviderName (or inferencePoolName) must be set',
}
export const MODEL_OR_LORA: CelRule = {
  rule: "(has(self.modelName) && self.modelName != '') || (has(self.loraAdapters) && size(self.loraAdapters) > 0)",
  message: 'modelName or loraAdapters must be set',
}

/** ModelRoute.spec with the cross-field rules zod keeps in validate.ts. */
export function modelRouteSpecSchema(): Schema {
  const s = toStructural(modelRouteJsonSchema(), 'spec')
  addRule(s, MODEL_OR_LORA)
  addRule(schemaAt(s, 'rules[].targetModels[]'), EXACTLY_ONE_TARGET)
  addRule(schemaAt(s, 'rules[].modelMatch.uri'), EXACTLY_ONE_MATCH)
  addRule(schemaAt(s, 'rules[].modelMatch.headers{}'), EXACTLY_ONE_MATCH)
  return s
}

/** ModelServer.spec, plus the "at least one label" bound zod expresses as a refinement. */
export function modelServerSpecSchema(): Schema {
  const s = toStructural(modelServerJsonSchema(), 'spec')
  schemaAt(s, 'workloadSelector.matchLabels')['minProperties'] = 1
  return s
}

export function gatewayPolicySpecSchema(): Schema {
  const s = toStructural(gatewayPolicyJsonSchema(), 'spec')
  // zod checks this one-of with a refinement; give the API server the same rule.
  addRule(schemaAt(s, 'rateLimit.tokenizers[].models'), EXACTLY_ONE_MATCH)
  return s
}

/** metav1.Condition semantics: one entry per type, timestamps as date-time. */
function statusSchema(raw: unknown): Schema {
  const s = toStructural(raw, 'status')
  const conditions = schemaAt(s, 'conditions')
  conditions['x-kubernetes-list-type'] = 'map'
  conditions['x-kubernetes-list-map-keys'] = ['type']
  schemaAt(s, 'conditions[].lastTransitionTime')['format'] = 'date-time'
  return s
}

function rootSchema(description: string, spec: Schema, status: Schema): Schema {
  return {
    type: 'object',
    description,
    required: ['spec'],
    properties: {
      apiVersion: { type: 'string' },
      kind: { type: 'string' },
      metadata: { type: 'object' },
      spec,
      status,
    },
  }
}

interface CrdInput {
  readonly key: CrdKey
  readonly description: string
  readonly spec: Schema
  readonly status: Schema
  readonly columns: readonly { name: string; type: string; jsonPath: string }[]
}

/** A CRD as plain data (a type alias, so it is also a `Record<string, unknown>`). */
export type CrdObject = {
  apiVersion: 'apiextensions.k8s.io/v1'
  kind: 'CustomResourceDefinition'
  metadata: { name: string; labels: Record<string, string> }
  spec: Schema
}

function crd(input: CrdInput): CrdObject {
  const names = CRD_NAMES[input.key]
  const schema = rootSchema(input.description, input.spec, input.status)
  const problems = structuralProblems(schema)
  if (problems.length > 0) {
    throw new StructuralSchemaError(
      `${crdName(input.key)}: not a structural schema:\n  ${problems.join('\n  ')}`,
    )
  }
  const version: Schema = {
    name: CRD_VERSION,
    served: true,
    storage: true,
    subresources: { status: {} },
    schema: { openAPIV3Schema: schema },
  }
  if (input.columns.length > 0)
    version['additionalPrinterColumns'] = input.columns.map((c) => ({ ...c }))
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: crdName(input.key), labels: { ...COMMON_LABELS } },
    spec: {
      group: API_GROUP,
      scope: 'Namespaced',
      names: {
        kind: names.kind,
        listKind: names.listKind,
        plural: names.plural,
        singular: names.singular,
        shortNames: [...names.shortNames],
        categories: [CRD_CATEGORY],
      },
      versions: [version],
    },
  }
}

/** The CRDs of `networking.matrixinfer.ai/v1alpha1`, as plain objects (`kubectl apply`-ready). */
export function crdObjects(): Record<string, unknown>[] {
  return crdManifests()
}

/** Same as crdObjects(), typed. */
export function crdManifests(): CrdObject[] {
  return [
    crd({
      key: 'modelRoute',
      description: 'Routes requests for a model name to ModelServers, by headers, URI or weight.',
      spec: modelRouteSpecSchema(),
      status: statusSchema(modelRouteStatusJsonSchema()),
      columns: PRINTER_COLUMNS.modelRoute,
    }),
    crd({
      key: 'modelServer',
      description: 'A set of inference-engine pods (selected by labels) that serve one model.',
      spec: modelServerSpecSchema(),
      status: statusSchema(modelServerStatusJsonSchema()),
      columns: PRINTER_COLUMNS.modelServer,
    }),
    crd({
      key: 'gatewayPolicy',
      description: 'Gateway-wide authentication, tiers and rate-limit settings.',
      spec: gatewayPolicySpecSchema(),
      // The operator has no status contract for policies yet; keep whatever it writes.
      status: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true },
      columns: [{ name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' }],
    }),
    crd({
      key: 'externalModelProvider',
      description: 'A hosted model API (OpenAI, Anthropic, Gemini, ...) usable as a route target.',
      spec: toStructural(externalModelProviderJsonSchema(), 'spec'),
      status: statusSchema(externalModelProviderStatusJsonSchema()),
      columns: PROVIDER_PRINTER_COLUMNS.map((c) => ({ ...c })),
    }),
  ]
}
