import { describe, expect, it } from 'vitest'
import { compileSnapshot } from './compile.js'
import { parseManifests } from './manifest.js'

const SERVER = `apiVersion: networking.matrixinfer.ai/v1alpha1
kind: ModelServer
metadata:
  name: llama-8b
spec:
  model: meta-llama/Llama-3.1-8B-Instruct
  inferenceEngine: vLLM
  workloadSelector:
    matchLabels: { app: llama }
  workloadPort:
    port: 8000
`

const ROUTE = `apiVersion: networking.matrixinfer.ai/v1alpha1
kind: ModelRoute
metadata:
  name: llama
spec:
  modelName: llama-3.1-8b
  rules:
    - name: default
      targetModels:
        - modelServerName: llama-8b
`

const ENDPOINTS = `apiVersion: standalone.infer-gateway.io/v1alpha1
kind: StaticEndpoints
metadata: { name: llama-8b, namespace: default }
endpoints:
  - { name: sim-1, address: 127.0.0.3, labels: { gpu: H100 } }
  - { name: sim-0, address: 127.0.0.2, port: 8001, ready: false }
`

describe('parseManifests', () => {
  it('reads a multi-document file, ignores empty documents and feeds the compiler', () => {
    const text = `---\n${SERVER}---\n# just a comment\n---\n${ROUTE}---\n${ENDPOINTS}`
    const parsed = parseManifests([{ name: 'gw.yaml', text }])
    expect(parsed.issues).toEqual([])
    expect(parsed.routes).toHaveLength(1)
    expect(parsed.servers).toHaveLength(1)
    expect(parsed.endpoints).toEqual({
      'default/llama-8b': [
        { name: 'sim-1', address: '127.0.0.3', ready: true, labels: { gpu: 'H100' } },
        { name: 'sim-0', address: '127.0.0.2', ready: false, port: 8001 },
      ],
    })
    const { snapshot, diagnostics } = compileSnapshot({ ...parsed, version: 1 })
    expect(diagnostics).toEqual([])
    expect(snapshot.routes[0]?.rules[0]?.targets).toEqual([
      { server: 'default/llama-8b', weight: 100 },
    ])
    expect(snapshot.servers['default/llama-8b']?.endpoints.map((e) => [e.name, e.port])).toEqual([
      ['sim-0', 8001],
      ['sim-1', 8000],
    ])
  })

  it('points at the line and column of the offending field', () => {
    const bad = ROUTE.replace(
      '        - modelServerName: llama-8b\n',
      '        - modelServerName: llama-8b\n          weight: 150\n',
    )
    const parsed = parseManifests([{ name: 'a.yaml', text: `${SERVER}---\n${bad}` }])
    expect(parsed.issues).toEqual([
      {
        file: 'a.yaml',
        line: 11 + 1 + 11, // 11 server lines, the separator, then line 11 of the route
        column: 11,
        path: 'spec.rules[0].targetModels[0].weight',
        message: 'must be 0..100',
        code: 'OUT_OF_RANGE',
      },
    ])
    expect(parsed.routes).toEqual([])
  })

  it('locates semantic issues, unknown fields and missing fields', () => {
    const text = `apiVersion: networking.matrixinfer.ai/v1alpha1
kind: ModelRoute
metadata: { name: r }
spec:
  modelName: m
  rules:
    - modelMatch:
        headers:
          x-user: { regex: "(" }
      targetModels: [{ modelServerName: s }]
---
apiVersion: networking.matrixinfer.ai/v1alpha1
kind: ModelServer
metadata: { name: s }
spec:
  inferenceEngine: vLLM
  workloadSelector: { matchLabels: { a: b } }
  workloadPort: { prot: 1 }
`
    const issues = parseManifests([{ name: 'b.yaml', text }]).issues
    expect(issues.map((i) => [i.line, i.column, i.path, i.code])).toEqual([
      [9, 21, 'spec.rules[0].modelMatch.headers["x-user"].regex', 'INVALID_REGEX'],
      // A missing field is reported at its parent; an unknown field at its key.
      [18, 3, 'spec.workloadPort.port', 'REQUIRED'],
      [18, 19, 'spec.workloadPort.prot', 'UNKNOWN_FIELD'],
    ])
  })

  it('reports YAML syntax errors, unknown kinds and apiVersions with line numbers', () => {
    const text = `kind: ModelRoute
apiVersion: networking.matrixinfer.ai/v1alpha1
metadata: { name: r
---
apiVersion: v1
kind: ConfigMap
metadata: { name: c }
---
apiVersion: networking.example.com/v1alpha1
kind: ModelServer
metadata: { name: s }
---
- just
- a list
`
    const issues = parseManifests([{ name: 'c.yaml', text }]).issues
    expect(issues.filter((i) => i.code !== 'YAML_SYNTAX').map((i) => [i.line, i.code])).toEqual([
      [6, 'UNKNOWN_KIND'],
      [9, 'UNKNOWN_API_VERSION'],
      [13, 'NOT_A_MAPPING'],
    ])
    const syntax = issues.filter((i) => i.code === 'YAML_SYNTAX')
    expect(syntax.length).toBeGreaterThan(0)
    expect(
      syntax.every(
        (i) => i.line >= 3 && i.line <= 4 && i.message.startsWith('yaml syntax error: '),
      ),
    ).toBe(true)
    expect(issues.find((i) => i.code === 'UNKNOWN_KIND')?.message).toBe(
      'unknown kind "ConfigMap" (expected ModelRoute, ModelServer, ExternalModelProvider, StaticEndpoints, GatewayPolicy, InferencePool, InferenceObjective or HTTPRoute)',
    )
  })

  it('flags duplicate names across files and keeps the first', () => {
    const second = SERVER.replace('port: 8000', 'port: 9000')
    const parsed = parseManifests([
      { name: 'one.yaml', text: SERVER },
      { name: 'two.yaml', text: `# leading comment\n${second}` },
    ])
    expect(parsed.issues).toEqual([
      {
        file: 'two.yaml',
        line: 5,
        column: 3,
        path: 'metadata.name',
        message: 'duplicate ModelServer "default/llama-8b" (first defined at one.yaml:4); ignored',
        code: 'DUPLICATE_NAME',
      },
    ])
    expect(parsed.servers).toHaveLength(1)
    expect(
      (parsed.servers[0] as { spec: { workloadPort: { port: number } } }).spec.workloadPort.port,
    ).toBe(8000)
  })

  it('accepts kind: List and locates issues inside its items', () => {
    const text = `apiVersion: v1
kind: List
items:
  - apiVersion: networking.matrixinfer.ai/v1alpha1
    kind: ModelServer
    metadata: { name: s }
    spec: { inferenceEngine: vLLM, workloadSelector: { matchLabels: { a: b } }, workloadPort: { port: 80 } }
  - apiVersion: networking.matrixinfer.ai/v1alpha1
    kind: ModelServer
    metadata: { name: t }
    spec: { inferenceEngine: Ollama, workloadSelector: { matchLabels: { a: b } }, workloadPort: { port: 80 } }
`
    const parsed = parseManifests([{ name: 'list.yaml', text }])
    expect(parsed.servers).toHaveLength(1)
    expect(parsed.issues.map((i) => [i.line, i.column, i.path])).toEqual([
      [11, 13, 'spec.inferenceEngine'],
    ])
  })

  it('checks static endpoints: unknown server, duplicate endpoint names, bad port', () => {
    const text = `apiVersion: standalone.infer-gateway.io/v1alpha1
kind: StaticEndpoints
metadata: { name: nope }
endpoints:
  - { name: a, address: 127.0.0.2 }
---
apiVersion: standalone.infer-gateway.io/v1alpha1
kind: StaticEndpoints
metadata: { name: llama-8b }
endpoints:
  - { name: a, address: 127.0.0.2 }
  - { name: a, address: 127.0.0.3, port: 0 }
`
    const parsed = parseManifests([
      { name: 'eps.yaml', text },
      { name: 'srv.yaml', text: SERVER },
    ])
    expect(parsed.issues.map((i) => [i.file, i.line, i.path, i.code])).toEqual([
      ['eps.yaml', 12, 'endpoints[1].port', 'OUT_OF_RANGE'],
      ['eps.yaml', 3, 'metadata.name', 'SERVER_NOT_FOUND'],
    ])
    expect(parsed.endpoints).toEqual({})
  })

  it('ignores files with no documents', () => {
    expect(
      parseManifests([
        { name: 'e.yaml', text: '' },
        { name: 'f.yaml', text: '# nothing\n' },
      ]),
    ).toEqual({
      routes: [],
      servers: [],
      endpoints: {},
      policies: [],
      providers: [],
      inferencePools: [],
      objectives: [],
      httpRoutes: [],
      issues: [],
    })
  })
})
