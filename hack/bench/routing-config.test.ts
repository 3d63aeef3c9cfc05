// The benches' gateway config goes through the project's own parser and compiler, as the data
// plane reads it: every option lands in the snapshot where the data plane looks for it, and a bad
// value is refused by the validator with the field's path (the documents really are checked).
import { describe, expect, it } from 'vitest'
import { compileSnapshot, type ManifestIssue, parseManifests } from '../../api/index.js'
import { fleetEndpoints, type RoutingConfig, routingManifests } from './routing-config.js'

function compile(c: RoutingConfig) {
  const parsed = parseManifests([{ name: 'gateway.yaml', text: routingManifests(c) }])
  // The spill bench's provider simulator is on loopback: its gateway runs with
  // --allow-private-provider-addresses.
  const { snapshot, diagnostics } = compileSnapshot({
    ...parsed,
    version: 1,
    allowPrivateProviderAddresses: true,
  })
  return { issues: parsed.issues, snapshot, diagnostics }
}

// As routing-pd labels its fleet: the role is the member name's first part.
const endpoints = fleetEndpoints(
  ['prefill-0', 'prefill-1', 'decode-2', 'decode-3'].map((name, i) => ({
    name,
    host: `127.0.0.${121 + i}`,
    port: 8000 + i,
  })),
  (name) => ({ app: 'pool', role: name.split('-')[0] ?? '', group: 'g0' }),
)

describe('routingManifests', () => {
  it('plain: one server over the endpoints, the base route, adapters 10 to a route', () => {
    const loras = Array.from({ length: 12 }, (_, i) => `adapter-${i}`)
    const { issues, snapshot, diagnostics } = compile({
      model: 'm',
      endpoints,
      loras,
      retries: 3,
      plugins: [{ name: 'least-pending' }],
    })
    expect(issues).toEqual([])
    expect(diagnostics).toEqual([])
    const server = snapshot.servers['default/pool']
    expect(server?.endpoints.map((e) => `${e.name}@${e.address}:${e.port}`).sort()).toEqual([
      'decode-2@127.0.0.123:8002',
      'decode-3@127.0.0.124:8003',
      'prefill-0@127.0.0.121:8000',
      'prefill-1@127.0.0.122:8001',
    ])
    expect(server?.pd).toBeUndefined()
    expect(server?.trafficPolicy.retry.attempts).toBe(4)
    expect(server?.scheduler?.plugins.map((p) => p.name)).toEqual(['least-pending'])
    expect(snapshot.routes.map((r) => [r.name, r.modelName, r.loraAdapters.length])).toEqual([
      ['base', 'm', 0],
      ['loras-0', undefined, 10],
      ['loras-1', undefined, 2],
    ])
    expect(snapshot.providers ?? {}).toEqual({})
    expect(snapshot.policy).toBeUndefined()
  })

  it('pd: pdGroup and the kv connector on the server, roles from the endpoint labels', () => {
    const pd = {
      groupKey: 'group',
      prefillLabels: { role: 'prefill' },
      decodeLabels: { role: 'decode' },
    }
    const nixl = compile({ model: 'm', endpoints, pd: { ...pd, connector: 'nixl' } })
    expect(nixl.issues).toEqual([])
    expect(nixl.diagnostics).toEqual([])
    const server = nixl.snapshot.servers['default/pool']
    expect(server?.pd).toEqual({ ...pd, connector: 'nixl' })
    expect(server?.endpoints.find((e) => e.name === 'decode-3')?.labels).toEqual({
      app: 'pool',
      role: 'decode',
      group: 'g0',
    })
    // No connector given: the one the engine implies (Kthena's rule), not none.
    const implied = (engine: 'vLLM' | 'SGLang') =>
      compile({ model: 'm', endpoints, engine, pd }).snapshot.servers['default/pool']?.pd?.connector
    expect([implied('vLLM'), implied('SGLang')]).toEqual(['http', 'sglang'])
  })

  it('spill-over: provider, the base rule fallback and the gateway policy compile together', () => {
    const { issues, snapshot, diagnostics } = compile({
      model: 'm',
      endpoints: endpoints.slice(0, 2),
      retries: 0,
      providers: [
        {
          name: 'overflow',
          spec: {
            providerType: 'OpenAI',
            model: 'gpt-overflow',
            baseURL: 'http://127.0.0.145:4000/v1',
            allowInsecureHTTP: true,
            auth: { secretRef: { name: 'overflow', key: 'api-key' } },
          },
        },
      ],
      fallback: {
        targets: [{ externalModelProviderName: 'overflow' }],
        on: ['saturated'],
        saturation: { ttftSLO: '800ms', maxQueuePerEndpoint: 0, tiers: ['gold'] },
      },
      policy: {
        authentication: {
          apiKeys: [{ name: 'gold', secretKey: 'key.gold', tenant: 'tenant-gold', tier: 'gold' }],
        },
        tiers: [{ name: 'gold' }, { name: 'free' }],
      },
    })
    expect(issues).toEqual([])
    expect(diagnostics).toEqual([])
    expect(snapshot.servers['default/pool']?.trafficPolicy.retry.attempts).toBe(1)
    expect(snapshot.routes[0]?.rules[0]?.fallback).toEqual({
      targets: [{ provider: 'default/overflow' }],
      on: ['saturated'],
      saturation: { ttftMs: 800, maxQueuePerEndpoint: 0, tiers: ['gold'] },
    })
    const provider = snapshot.providers?.['default/overflow']
    expect([provider?.type, provider?.model, provider?.baseURL]).toEqual([
      'OpenAI',
      'gpt-overflow',
      'http://127.0.0.145:4000/v1',
    ])
    expect(snapshot.policy?.key).toBe('default/gateway')
    expect(snapshot.policy?.tiers.map((t) => t.name)).toEqual(['free', 'gold'])
    expect(snapshot.policy?.authentication.apiKeys.map((k) => [k.name, k.tier])).toEqual([
      ['gold', 'gold'],
    ])
  })

  it('a bad value is refused with the path of the field', () => {
    const at = (i: ManifestIssue) => `${i.path}: ${i.code}`
    const pd = compile({
      model: 'm',
      endpoints,
      pd: { groupKey: '', prefillLabels: { role: 'prefill' }, decodeLabels: { role: 'decode' } },
    })
    // The refused server's endpoints then feed nothing: said too.
    expect(pd.issues.map(at)).toEqual([
      'spec.workloadSelector.pdGroup.groupKey: OUT_OF_RANGE',
      'metadata.name: SERVER_NOT_FOUND',
    ])
    const spill = compile({
      model: 'm',
      endpoints,
      fallback: { targets: [{ externalModelProviderName: 'overflow' }], on: ['saturated'] },
    })
    expect(spill.issues.map(at)).toEqual([
      expect.stringMatching(/^spec\.rules\[0\]\.fallback\.saturation: /),
    ])
  })
})
