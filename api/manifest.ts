// The standalone configuration format: multi-document YAML files holding the same ModelRoute /
// ModelServer documents one would `kubectl apply`, plus our StaticEndpoints documents that stand
// in for pods. Every problem is reported with file, line and column of the offending field, so a
// user editing a file by hand sees where to look, not just what is wrong.

import {
  type Document,
  isMap,
  isScalar,
  isSeq,
  LineCounter,
  type Node,
  parseAllDocuments,
} from 'yaml'
import { z } from 'zod'
import type { EndpointInput } from './compile.js'
import {
  HTTPROUTE_API_VERSION,
  INFERENCE_POOL_API_VERSION,
  OBJECTIVE_API_VERSIONS,
  validateHTTPRoute,
  validateInferenceObjective,
  validateInferencePool,
} from './gaie.js'
import { validateGatewayPolicy } from './policy.js'
import { validateExternalModelProvider } from './provider.js'
import { API_VERSION, objectMetaSchema, ROUTING_API_VERSIONS } from './schema.js'
import { inferencePoolKey } from './snapshot.js'
import {
  formatPath,
  type PathSegment,
  parsePath,
  type ValidationIssue,
  validateModelRoute,
  validateModelServer,
  validateWith,
} from './validate.js'

export interface ManifestFile {
  name: string
  text: string
}

export interface ManifestIssue {
  file: string
  /** 1-based. */
  line: number
  /** 1-based. */
  column: number
  /** Field path inside the object, e.g. `spec.rules[0].targetModels[0].weight` ('' = document). */
  path: string
  message: string
  code: string
}

export interface ParsedManifests {
  routes: unknown[]
  servers: unknown[]
  /** Keyed by "namespace/name" of the ModelServer the endpoints feed. */
  endpoints: Record<string, EndpointInput[]>
  /** GatewayPolicy documents (ours); the compiler applies at most one. */
  policies: unknown[]
  /** ExternalModelProvider documents. */
  providers: unknown[]
  /** Gateway API Inference Extension InferencePool documents (their endpoints: `endpoints`). */
  inferencePools: unknown[]
  /** InferenceObjective documents (llm-d.ai and inference.networking.x-k8s.io). */
  objectives: unknown[]
  /** Gateway API HTTPRoute documents. */
  httpRoutes: unknown[]
  issues: ManifestIssue[]
}

export const STANDALONE_API_VERSION = 'standalone.infer-gateway.io/v1alpha1'

const staticEndpointsSchema = z.looseObject({
  apiVersion: z.literal(STANDALONE_API_VERSION),
  kind: z.literal('StaticEndpoints'),
  metadata: objectMetaSchema,
  /** What `metadata.name` names: a ModelServer (default) or an InferencePool. */
  targetKind: z.enum(['ModelServer', 'InferencePool']).optional(),
  endpoints: z.array(
    z.strictObject({
      name: z.string().min(1, { error: 'must not be empty' }),
      address: z.string().min(1, { error: 'must not be empty' }),
      port: z
        .number()
        .int({ error: 'must be 1..65535' })
        .min(1, { error: 'must be 1..65535' })
        .max(65535, { error: 'must be 1..65535' })
        .optional(),
      ready: z.boolean().default(true),
      labels: z.record(z.string(), z.string()).optional(),
    }),
  ),
})

type Kind =
  | 'ModelRoute'
  | 'ModelServer'
  | 'StaticEndpoints'
  | 'GatewayPolicy'
  | 'ExternalModelProvider'
  | 'InferencePool'
  | 'InferenceObjective'
  | 'HTTPRoute'

/** Kthena's kinds in both its groups; GatewayPolicy and StaticEndpoints are ours only. */
const API_VERSIONS_OF: Readonly<Record<Kind, readonly string[]>> = {
  ModelRoute: ROUTING_API_VERSIONS,
  ModelServer: ROUTING_API_VERSIONS,
  StaticEndpoints: [STANDALONE_API_VERSION],
  GatewayPolicy: [API_VERSION],
  ExternalModelProvider: ROUTING_API_VERSIONS,
  InferencePool: [INFERENCE_POOL_API_VERSION],
  InferenceObjective: OBJECTIVE_API_VERSIONS,
  HTTPRoute: [HTTPROUTE_API_VERSION],
}

function isKind(k: unknown): k is Kind {
  return (
    k === 'ModelRoute' ||
    k === 'ModelServer' ||
    k === 'StaticEndpoints' ||
    k === 'GatewayPolicy' ||
    k === 'ExternalModelProvider' ||
    k === 'InferencePool' ||
    k === 'InferenceObjective' ||
    k === 'HTTPRoute'
  )
}

/**
 * Source offset of the deepest node on `path` that exists. For a map entry we point at the key,
 * because that is the field name the user typed; for a missing field we stop at its parent.
 */
function locate(doc: Document, path: readonly PathSegment[]): number {
  let node: unknown = doc.contents
  let offset = (doc.contents as Node | null)?.range?.[0] ?? 0
  for (const seg of path) {
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(seg))
      if (pair === undefined) break
      const keyNode = pair.key as Node
      offset = keyNode.range?.[0] ?? offset
      node = pair.value
    } else if (isSeq(node) && typeof seg === 'number') {
      const item: unknown = node.items[seg]
      if (item === undefined || item === null) break
      offset = (item as Node).range?.[0] ?? offset
      node = item
    } else {
      break
    }
  }
  return offset
}

interface Seen {
  file: string
  line: number
}

interface PendingEndpoints {
  key: string
  file: string
  line: number
  column: number
  endpoints: EndpointInput[]
}

export function parseManifests(files: readonly ManifestFile[]): ParsedManifests {
  const out: ParsedManifests = {
    routes: [],
    servers: [],
    endpoints: {},
    policies: [],
    providers: [],
    inferencePools: [],
    objectives: [],
    httpRoutes: [],
    issues: [],
  }
  const seen = new Map<string, Seen>()
  const pending: PendingEndpoints[] = []
  const serverKeys = new Set<string>()

  for (const file of files) {
    const lc = new LineCounter()
    const docs = parseAllDocuments(file.text, { lineCounter: lc, prettyErrors: false })
    // An empty stream (no documents at all) is not an array.
    if (!Array.isArray(docs)) continue

    for (const doc of docs) {
      const at = (offset: number) => {
        const p = lc.linePos(offset)
        return { line: p.line, column: p.col }
      }
      const issue = (
        path: readonly PathSegment[],
        objPath: string,
        message: string,
        code: string,
      ) => {
        out.issues.push({ file: file.name, ...at(locate(doc, path)), path: objPath, message, code })
      }

      if (doc.errors.length > 0) {
        for (const e of doc.errors) {
          out.issues.push({
            file: file.name,
            ...at(e.pos[0]),
            path: '',
            // Without prettyErrors the message has no position or excerpt: we report those.
            message: `yaml syntax error: ${e.message.toLowerCase()}`,
            code: 'YAML_SYNTAX',
          })
        }
        continue
      }

      let value: unknown
      try {
        value = doc.toJS({ maxAliasCount: 100 })
      } catch (err) {
        issue(
          [],
          '',
          `cannot read document: ${err instanceof Error ? err.message : String(err)}`,
          'YAML_SYNTAX',
        )
        continue
      }
      if (value === null || value === undefined) continue // empty document

      const handle = (obj: unknown, prefix: PathSegment[]): void => {
        if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) {
          issue(prefix, '', 'document must be a mapping', 'NOT_A_MAPPING')
          return
        }
        const { kind, apiVersion, items } = obj as {
          kind?: unknown
          apiVersion?: unknown
          items?: unknown
        }
        if (kind === 'List') {
          if (!Array.isArray(items)) {
            issue([...prefix, 'items'], 'items', 'must be a list', 'INVALID_TYPE')
            return
          }
          items.forEach((item, i) => {
            handle(item, [...prefix, 'items', i])
          })
          return
        }
        if (!isKind(kind)) {
          const msg =
            kind === undefined
              ? 'kind is required'
              : `unknown kind ${JSON.stringify(kind)} (expected ModelRoute, ModelServer, ExternalModelProvider, StaticEndpoints, GatewayPolicy, InferencePool, InferenceObjective or HTTPRoute)`
          issue([...prefix, 'kind'], 'kind', msg, 'UNKNOWN_KIND')
          return
        }
        const wantVersions = API_VERSIONS_OF[kind]
        if (typeof apiVersion !== 'string' || !wantVersions.includes(apiVersion)) {
          issue(
            [...prefix, 'apiVersion'],
            'apiVersion',
            `unknown apiVersion ${JSON.stringify(apiVersion ?? null)} for ${kind} (expected ${wantVersions.join(' or ')})`,
            'UNKNOWN_API_VERSION',
          )
          return
        }

        const report = (issues: readonly ValidationIssue[]) => {
          for (const i of issues)
            issue([...prefix, ...parsePath(i.path)], i.path, i.message, i.code)
        }
        let key: string
        let accept: () => void
        if (kind === 'ModelRoute') {
          const r = validateModelRoute(obj)
          if (!r.ok) {
            report(r.issues)
            return
          }
          key = `${r.value.metadata.namespace ?? 'default'}/${r.value.metadata.name}`
          accept = () => {
            out.routes.push(obj)
          }
        } else if (kind === 'ModelServer') {
          const r = validateModelServer(obj)
          if (!r.ok) {
            report(r.issues)
            return
          }
          key = `${r.value.metadata.namespace ?? 'default'}/${r.value.metadata.name}`
          accept = () => {
            serverKeys.add(key)
            out.servers.push(obj)
          }
        } else if (kind === 'ExternalModelProvider') {
          const r = validateExternalModelProvider(obj)
          if (!r.ok) {
            report(r.issues)
            return
          }
          key = `${r.value.metadata.namespace ?? 'default'}/${r.value.metadata.name}`
          accept = () => {
            out.providers.push(obj)
          }
        } else if (kind === 'InferencePool') {
          const r = validateInferencePool(obj)
          if (!r.ok) {
            report(r.issues)
            return
          }
          key = `${r.value.metadata.namespace ?? 'default'}/${r.value.metadata.name}`
          accept = () => {
            serverKeys.add(
              inferencePoolKey(r.value.metadata.namespace ?? 'default', r.value.metadata.name),
            )
            out.inferencePools.push(obj)
          }
        } else if (kind === 'InferenceObjective') {
          const r = validateInferenceObjective(obj)
          if (!r.ok) {
            report(r.issues)
            return
          }
          // Both groups may hold an objective of one name (llm-d.ai's wins in the compiler).
          key = `${String(apiVersion)} ${r.value.metadata.namespace ?? 'default'}/${r.value.metadata.name}`
          accept = () => {
            out.objectives.push(obj)
          }
        } else if (kind === 'HTTPRoute') {
          const r = validateHTTPRoute(obj)
          if (!r.ok) {
            report(r.issues)
            return
          }
          key = `${r.value.metadata.namespace ?? 'default'}/${r.value.metadata.name}`
          accept = () => {
            out.httpRoutes.push(obj)
          }
        } else if (kind === 'GatewayPolicy') {
          const r = validateGatewayPolicy(obj)
          if (!r.ok) {
            report(r.issues)
            return
          }
          key = `${r.value.metadata.namespace ?? 'default'}/${r.value.metadata.name}`
          accept = () => {
            out.policies.push(obj)
          }
        } else {
          const r = validateWith(staticEndpointsSchema, obj)
          if (!r.ok) {
            report(r.issues)
            return
          }
          const se = r.value
          const ns = se.metadata.namespace ?? 'default'
          key =
            se.targetKind === 'InferencePool'
              ? inferencePoolKey(ns, se.metadata.name)
              : `${ns}/${se.metadata.name}`
          const names = new Set<string>()
          const endpoints: EndpointInput[] = []
          let bad = false
          se.endpoints.forEach((e, i) => {
            if (names.has(e.name)) {
              const p = ['endpoints', i, 'name']
              issue(
                [...prefix, ...p],
                formatPath(p),
                `duplicate endpoint name "${e.name}"`,
                'DUPLICATE_NAME',
              )
              bad = true
            }
            names.add(e.name)
            endpoints.push({
              name: e.name,
              address: e.address,
              ready: e.ready,
              ...(e.port !== undefined ? { port: e.port } : {}),
              ...(e.labels !== undefined ? { labels: e.labels } : {}),
            })
          })
          if (bad) return
          const pos = at(locate(doc, [...prefix, 'metadata', 'name']))
          accept = () => pending.push({ key, file: file.name, ...pos, endpoints })
        }

        const id = `${kind} ${key}`
        const first = seen.get(id)
        if (first !== undefined) {
          issue(
            [...prefix, 'metadata', 'name'],
            'metadata.name',
            `duplicate ${kind} "${key}" (first defined at ${first.file}:${first.line}); ignored`,
            'DUPLICATE_NAME',
          )
          return
        }
        seen.set(id, {
          file: file.name,
          line: at(locate(doc, [...prefix, 'metadata', 'name'])).line,
        })
        accept()
      }

      handle(value, [])
    }
  }

  for (const p of pending) {
    // Endpoints for a server that is not there would silently feed nothing: almost always a typo.
    if (!serverKeys.has(p.key)) {
      out.issues.push({
        file: p.file,
        line: p.line,
        column: p.column,
        path: 'metadata.name',
        message: p.key.startsWith('InferencePool:')
          ? `static endpoints for inferencepool "${p.key.slice('InferencePool:'.length)}" which does not exist`
          : `static endpoints for modelserver "${p.key}" which does not exist`,
        code: 'SERVER_NOT_FOUND',
      })
      continue
    }
    out.endpoints[p.key] = p.endpoints
  }
  return out
}
