import { describe, expect, it } from 'vitest'
import { compileSnapshot, validateSnapshot } from './compile.js'
import { parseManifests } from './manifest.js'
import { httpRouteKey, inferencePoolKey, objectivePriority } from './snapshot.js'

const pool = (over: Record<string, unknown> = {}, meta: Record<string, unknown> = {}) => ({
  apiVersion: 'inference.networking.k8s.io/v1',
  kind: 'InferencePool',
  metadata: { name: 'vllm-llama3-8b-instruct', namespace: 'default', ...meta },
  spec: {
    selector: { matchLabels: { app: 'vllm-llama3-8b-instruct' } },
    targetPorts: [{ number: 8000 }],
    endpointPickerRef: { name: 'vllm-llama3-8b-instruct-epp', port: { number: 9002 } },
    ...over,
  },
})

const httpRoute = (spec: Record<string, unknown>, name = 'llm-route', ts?: string) => ({
  apiVersion: 'gateway.networking.k8s.io/v1',
  kind: 'HTTPRoute',
  metadata: { name, namespace: 'default', ...(ts ? { creationTimestamp: ts } : {}) },
  spec,
})

const poolBackend = (name: string, weight?: number) => ({
  group: 'inference.networking.k8s.io',
  kind: 'InferencePool',
  name,
  ...(weight !== undefined ? { weight } : {}),
})

const POOL_KEY = inferencePoolKey('default', 'vllm-llama3-8b-instruct')
const PODS = {
  [POOL_KEY]: [
    { name: 'pod-b', address: '127.0.0.12', ready: true, labels: { app: 'x' } },
    { name: 'pod-a', address: '127.0.0.11', ready: true },
  ],
}

describe('InferencePool → server', () => {
  it('becomes a server keyed InferencePool:ns/name with one endpoint per pod and port', () => {
    const { snapshot, diagnostics } = compileSnapshot({
      routes: [],
      servers: [],
      endpoints: PODS,
      version: 1,
      inferencePools: [pool({ targetPorts: [{ number: 8000 }, { number: 8001 }] })],
    })
    expect(diagnostics).toEqual([])
    const s = snapshot.servers[POOL_KEY]
    expect(s?.engine).toBe('vLLM')
    expect(s?.endpoints.map((e) => `${e.name}@${e.address}:${e.port}`)).toEqual([
      'pod-a:8000@127.0.0.11:8000',
      'pod-a:8001@127.0.0.11:8001',
      'pod-b:8000@127.0.0.12:8000',
      'pod-b:8001@127.0.0.12:8001',
    ])
    expect(s?.inferencePool).toEqual({
      targetPorts: [8000, 8001],
      selector: { app: 'vllm-llama3-8b-instruct' },
      endpointPicker: {
        group: '',
        kind: 'Service',
        name: 'vllm-llama3-8b-instruct-epp',
        port: 9002,
        failureMode: 'FailClose',
      },
      objectives: {},
      // No engine label: the data plane reads it from the pods' /metrics.
      engineDetect: true,
    })
    // The data plane accepts what the compiler made.
    expect(() => validateSnapshot(JSON.parse(JSON.stringify(snapshot)))).not.toThrow()
  })

  it('reads the engine and a scheduler profile from annotations; h2c is refused', () => {
    const { snapshot, diagnostics } = compileSnapshot({
      routes: [],
      servers: [],
      endpoints: {},
      version: 1,
      inferencePools: [
        pool(
          {},
          {
            annotations: {
              'infer-gateway.io/engine': 'sglang',
              'infer-gateway.io/scheduler': '{"plugins":[{"name":"least-pending"}]}',
            },
          },
        ),
        pool({ appProtocol: 'kubernetes.io/h2c' }, { name: 'h2c-pool' }),
      ],
    })
    expect(snapshot.servers[POOL_KEY]?.engine).toBe('SGLang')
    expect(snapshot.servers[POOL_KEY]?.inferencePool?.engineDetect).toBeUndefined()
    expect(snapshot.servers[POOL_KEY]?.scheduler?.plugins.map((p) => p.name)).toEqual([
      'least-pending',
    ])
    expect(snapshot.servers[inferencePoolKey('default', 'h2c-pool')]).toBeUndefined()
    expect(diagnostics.map((d) => [d.kind, d.key, d.reason, d.path])).toEqual([
      ['InferencePool', 'default/h2c-pool', 'Unsupported', 'spec.appProtocol'],
    ])
  })

  it('rejects duplicate target ports and a Service ref without a port, naming the field', () => {
    const { diagnostics } = compileSnapshot({
      routes: [],
      servers: [],
      endpoints: {},
      version: 1,
      inferencePools: [
        pool({ targetPorts: [{ number: 8000 }, { number: 8000 }] }),
        pool({ endpointPickerRef: { name: 'epp' } }, { name: 'no-port' }),
      ],
    })
    expect(diagnostics.map((d) => d.message)).toEqual([
      "spec.endpointPickerRef.port: port is required when kind is 'Service' or unspecified (defaults to 'Service')",
      'spec.targetPorts[1].number: port number must be unique',
    ])
  })

  it('InferenceObjective priorities from both groups land on the pool (llm-d.ai wins)', () => {
    const objective = (apiVersion: string, name: string, priority?: number) => ({
      apiVersion,
      kind: 'InferenceObjective',
      metadata: { name, namespace: 'default' },
      spec: {
        ...(priority !== undefined ? { priority } : {}),
        poolRef: { group: 'inference.networking.k8s.io', name: 'vllm-llama3-8b-instruct' },
      },
    })
    const { snapshot, diagnostics } = compileSnapshot({
      routes: [],
      servers: [],
      endpoints: {},
      version: 1,
      inferencePools: [pool()],
      objectives: [
        objective('inference.networking.x-k8s.io/v1alpha2', 'food-review', 1),
        objective('llm-d.ai/v1alpha2', 'food-review', 5),
        objective('inference.networking.x-k8s.io/v1alpha2', 'base-model', 2),
        objective('llm-d.ai/v1alpha2', 'batch', -1),
        objective('llm-d.ai/v1alpha2', 'default-prio'),
      ],
    })
    const s = snapshot.servers[POOL_KEY]
    expect(s?.inferencePool?.objectives).toEqual({
      'base-model': 2,
      batch: -1,
      'default-prio': 0,
      'food-review': 5,
    })
    expect(diagnostics.map((d) => d.reason)).toEqual(['Superseded'])
    if (s === undefined) throw new Error('no pool')
    const h = (m: Record<string, string>) => (n: string) => m[n]
    expect(objectivePriority(s, h({ 'x-llm-d-inference-objective': 'food-review' }))).toBe(5)
    expect(objectivePriority(s, h({ 'x-gateway-inference-objective': 'batch' }))).toBe(-1)
    expect(objectivePriority(s, h({ 'x-gateway-inference-objective': 'nope' }))).toBeUndefined()
    expect(objectivePriority(s, h({}))).toBeUndefined()
  })
})

describe('HTTPRoute → route', () => {
  it('compiles parent-bound routes with path/header matches and weighted pool backends', () => {
    const { snapshot, diagnostics } = compileSnapshot({
      routes: [],
      servers: [],
      endpoints: PODS,
      version: 1,
      inferencePools: [pool(), pool({}, { name: 'canary' })],
      httpRoutes: [
        httpRoute({
          parentRefs: [
            { group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'inference-gateway' },
          ],
          rules: [
            {
              backendRefs: [poolBackend('vllm-llama3-8b-instruct', 90), poolBackend('canary', 10)],
              matches: [
                { path: { type: 'PathPrefix', value: '/v1' } },
                { path: { type: 'Exact', value: '/x' }, headers: [{ name: 'X-Team', value: 'a' }] },
              ],
            },
          ],
        }),
        httpRoute(
          {
            parentRefs: [{ name: 'someone-elses-gateway' }],
            rules: [{ backendRefs: [poolBackend('canary')] }],
          },
          'other',
        ),
      ],
      gateway: 'default/inference-gateway',
    })
    expect(diagnostics).toEqual([])
    expect(snapshot.routes).toHaveLength(1)
    const r = snapshot.routes[0]
    expect(r?.key).toBe(httpRouteKey('default', 'llm-route'))
    expect(r?.anyModel).toBe(true)
    expect(r?.gateways).toEqual(['default/inference-gateway'])
    expect(r?.rules).toEqual([
      {
        name: 'rule-0/match-0',
        match: { headers: [], uri: { kind: 'path-prefix', value: '/v1' } },
        targets: [
          { server: POOL_KEY, weight: 90 },
          { server: inferencePoolKey('default', 'canary'), weight: 10 },
        ],
      },
      {
        name: 'rule-0/match-1',
        match: {
          headers: [{ name: 'x-team', match: { kind: 'exact', value: 'a' } }],
          uri: { kind: 'exact', value: '/x' },
        },
        targets: [
          { server: POOL_KEY, weight: 90 },
          { server: inferencePoolKey('default', 'canary'), weight: 10 },
        ],
      },
    ])
    expect(() => validateSnapshot(JSON.parse(JSON.stringify(snapshot)))).not.toThrow()
  })

  it('says why a backend cannot be served (missing pool, Service, other namespace)', () => {
    const { snapshot, diagnostics } = compileSnapshot({
      routes: [],
      servers: [],
      endpoints: {},
      version: 1,
      inferencePools: [pool()],
      httpRoutes: [
        httpRoute({
          parentRefs: [{ name: 'gw' }],
          rules: [
            {
              backendRefs: [
                poolBackend('missing'),
                { name: 'svc', port: 80 },
                { ...poolBackend('vllm-llama3-8b-instruct'), namespace: 'other' },
              ],
            },
          ],
        }),
      ],
    })
    expect(snapshot.routes).toEqual([])
    expect(diagnostics.map((d) => [d.reason, d.path ?? ''])).toEqual([
      ['NoUsableRules', ''],
      ['BackendNotFound', 'spec.rules[0].backendRefs[0]'],
      ['InvalidKind', 'spec.rules[0].backendRefs[1]'],
      ['RefNotPermitted', 'spec.rules[0].backendRefs[2].namespace'],
    ])
  })

  it('a ModelRoute target may name an InferencePool', () => {
    const { snapshot, diagnostics } = compileSnapshot({
      routes: [
        {
          apiVersion: 'networking.matrixinfer.ai/v1alpha1',
          kind: 'ModelRoute',
          metadata: { name: 'llama', namespace: 'default' },
          spec: {
            modelName: 'llama',
            rules: [{ targetModels: [{ inferencePoolName: 'vllm-llama3-8b-instruct' }] }],
          },
        },
      ],
      servers: [],
      endpoints: PODS,
      version: 1,
      inferencePools: [pool()],
    })
    expect(diagnostics).toEqual([])
    expect(snapshot.routes[0]?.rules[0]?.targets).toEqual([{ server: POOL_KEY, weight: 100 }])
  })
})

describe('standalone manifests', () => {
  it('reads InferencePool, InferenceObjective, HTTPRoute and StaticEndpoints for a pool', () => {
    const text = `
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: pool}
spec:
  selector: {matchLabels: {app: x}}
  targetPorts: [{number: 8000}]
---
apiVersion: standalone.infer-gateway.io/v1alpha1
kind: StaticEndpoints
metadata: {name: pool}
targetKind: InferencePool
endpoints:
- {name: a, address: 127.0.0.2}
---
apiVersion: llm-d.ai/v1alpha2
kind: InferenceObjective
metadata: {name: critical}
spec: {priority: 10, poolRef: {name: pool}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{name: gw}]
  rules: [{backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: pool}]}]
---
apiVersion: standalone.infer-gateway.io/v1alpha1
kind: StaticEndpoints
metadata: {name: typo}
targetKind: InferencePool
endpoints: [{name: b, address: 127.0.0.3}]
`
    const parsed = parseManifests([{ name: 'g.yaml', text }])
    expect(parsed.issues.map((i) => `${i.line}: ${i.message}`)).toEqual([
      '30: static endpoints for inferencepool "default/typo" which does not exist',
    ])
    const { snapshot, diagnostics } = compileSnapshot({ ...parsed, version: 1 })
    expect(diagnostics).toEqual([])
    const s = snapshot.servers[inferencePoolKey('default', 'pool')]
    expect(s?.endpoints.map((e) => `${e.address}:${e.port}`)).toEqual(['127.0.0.2:8000'])
    expect(s?.inferencePool?.objectives).toEqual({ critical: 10 })
    expect(snapshot.routes.map((r) => [r.key, r.gateways])).toEqual([
      ['HTTPRoute:default/r', ['default/gw']],
    ])
  })
})
