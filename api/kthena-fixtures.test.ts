// Kthena v1.0-shaped manifests (test/fixtures/kthena, every field of its three networking kinds)
// are accepted unchanged in both API groups, and nothing in them is silently ignored.
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { compileSnapshot, parseManifests } from './index.js'

const fixture = (group: string) => {
  const name = fileURLToPath(
    new URL(`../test/fixtures/kthena/${group}/kthena.yaml`, import.meta.url),
  )
  return { name, text: readFileSync(name, 'utf8') }
}

describe.each(['volcano', 'matrixinfer'])('Kthena-shaped manifests (%s group)', (group) => {
  const parsed = parseManifests([fixture(group)])
  const { snapshot, diagnostics } = compileSnapshot({
    routes: parsed.routes,
    servers: parsed.servers,
    endpoints: parsed.endpoints,
    providers: parsed.providers,
    version: 1,
  })
  const byReason = (reason: string, severity = 'error') =>
    diagnostics
      .filter((d) => d.reason === reason && d.severity === severity)
      .map((d) => `${d.kind} ${d.key} ${d.path ?? ''}`)

  it('parses every document without an issue', () => {
    expect(parsed.issues).toEqual([])
    expect([parsed.routes.length, parsed.servers.length, parsed.providers.length]).toEqual([
      4, 3, 1,
    ])
  })

  it('serves pdGroup + kvConnector as prefill/decode pairs (nothing ignored, nothing refused)', () => {
    expect(byReason('Unsupported')).toEqual([])
    expect(snapshot.servers['kthena/qwen-pd']?.pd).toEqual({
      groupKey: 'pd-group',
      prefillLabels: { role: 'prefill' },
      decodeLabels: { role: 'decode' },
      connector: 'nixl',
    })
  })

  it('serves every route and server, no error', () => {
    expect(diagnostics.filter((d) => d.severity === 'error')).toEqual([])
    expect(snapshot.routes.map((r) => r.key).sort()).toEqual([
      'kthena/gpt',
      'kthena/qwen',
      'kthena/qwen-internal',
      'kthena/qwen-pd',
    ])
    const qwen = snapshot.routes.find((r) => r.key === 'kthena/qwen')
    expect(qwen?.rules.map((r) => r.targets.map((t) => t.weight))).toEqual([[100], [80, 20], [100]])
    expect(qwen?.rateLimit).toEqual({
      inputTokensPerUnit: 1000,
      outputTokensPerUnit: 500,
      unit: 'minute',
      global: { redis: { address: 'redis.kthena.svc:6379' } },
    })
  })

  it('parentRefs: routes carry their Gateways; one model per Gateway is no duplicate', () => {
    const gw = Object.fromEntries(snapshot.routes.map((r) => [r.key, r.gateways]))
    expect(gw).toEqual({
      'kthena/gpt': undefined,
      'kthena/qwen': ['kthena/public'],
      'kthena/qwen-internal': ['kthena/internal'],
    })
    expect(byReason('DuplicateModelName', 'warning')).toEqual([])
    // sectionName and port cannot narrow a fleet that is one Gateway: said, not ignored.
    expect(byReason('Unsupported', 'warning')).toEqual([
      'ModelRoute kthena/qwen spec.parentRefs[0].port',
      'ModelRoute kthena/qwen spec.parentRefs[0].sectionName',
    ])
  })
})

describe('parentRefs and DuplicateModelName', () => {
  const server = {
    apiVersion: 'networking.serving.volcano.sh/v1alpha1',
    kind: 'ModelServer',
    metadata: { name: 's', namespace: 'ns' },
    spec: {
      inferenceEngine: 'vLLM',
      workloadSelector: { matchLabels: { app: 's' } },
      workloadPort: { port: 8000 },
    },
  }
  const route = (
    name: string,
    created: string,
    parentRefs?: { name: string; kind?: string }[],
  ) => ({
    metadata: { name, namespace: 'ns', creationTimestamp: created },
    spec: {
      modelName: 'm',
      ...(parentRefs !== undefined ? { parentRefs } : {}),
      rules: [{ targetModels: [{ modelServerName: 's' }] }],
    },
  })
  const compile = (routes: unknown[]) =>
    compileSnapshot({ routes, servers: [server], endpoints: {}, version: 1 }).diagnostics.map(
      (d) => `${d.key} ${d.reason}`,
    )

  it('clashes when both routes reach one data plane: a shared Gateway, or either unbound', () => {
    const T1 = '2026-01-01T00:00:00Z'
    const T2 = '2026-01-02T00:00:00Z'
    expect(compile([route('a', T1, [{ name: 'g1' }]), route('b', T2, [{ name: 'g2' }])])).toEqual(
      [],
    )
    expect(compile([route('a', T1, [{ name: 'g1' }]), route('b', T2, [{ name: 'g1' }])])).toEqual([
      'ns/b DuplicateModelName',
    ])
    expect(compile([route('a', T1), route('b', T2, [{ name: 'g2' }])])).toEqual([
      'ns/b DuplicateModelName',
    ])
  })

  it('a parent that is not a Gateway is refused (Unsupported), not silently served everywhere', () => {
    expect(compile([route('a', '2026-01-01T00:00:00Z', [{ name: 'x', kind: 'Service' }])])).toEqual(
      ['ns/a Unsupported'],
    )
  })
})
