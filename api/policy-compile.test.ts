import { describe, expect, it } from 'vitest'
import { compileSnapshot, type Diagnostic, validateSnapshot } from './compile.js'
import { parseManifests } from './manifest.js'
import { snapshotHash } from './snapshot-validate.js'

type Obj = Record<string, unknown>

const server = {
  apiVersion: 'networking.matrixinfer.ai/v1alpha1',
  kind: 'ModelServer',
  metadata: { name: 's' },
  spec: {
    inferenceEngine: 'vLLM',
    workloadSelector: { matchLabels: { app: 's' } },
    workloadPort: { port: 8000 },
  },
}
function route(spec: Obj = {}, name = 'r'): Obj {
  return {
    apiVersion: 'networking.matrixinfer.ai/v1alpha1',
    kind: 'ModelRoute',
    metadata: { name },
    spec: { modelName: 'm', rules: [{ targetModels: [{ modelServerName: 's' }] }], ...spec },
  }
}
function policy(spec: Obj, name = 'gw', created?: string): Obj {
  return {
    apiVersion: 'networking.matrixinfer.ai/v1alpha1',
    kind: 'GatewayPolicy',
    metadata: { name, ...(created ? { creationTimestamp: created } : {}) },
    spec,
  }
}
const tiers = [
  {
    name: 'gold',
    rate: [
      { tokens: 100, per: 'minute' },
      { requests: 10, per: 'second' },
    ],
    budget: [{ tokens: 5000, per: 'month' }],
  },
  { name: 'free', key: 'tenant', rate: [{ requests: 1, per: 'minute' }] },
]
const apiKeys = [
  { name: 'k2', secretKey: 'k2', tenant: 't', models: ['b', 'a', 'a'] },
  { name: 'k1', secretKey: 'k1', tenant: 't', tier: 'gold', roles: ['z', 'y'] },
  { name: 'old', secretKey: 'old', tenant: 't', disabled: true },
]

function compile(policies: Obj[], routes: Obj[] = [route()]) {
  return compileSnapshot({ servers: [server], routes, endpoints: {}, version: 1, policies })
}
const reasons = (d: Diagnostic[]) => d.map((x) => `${x.kind} ${x.key}: ${x.reason}`)

describe('compile GatewayPolicy', () => {
  it('fills defaults, converts units, sorts what has no order and drops disabled keys', () => {
    const { snapshot, diagnostics } = compile([policy({ tiers, authentication: { apiKeys } })])
    expect(diagnostics).toEqual([])
    const p = snapshot.policy
    expect(p?.key).toBe('default/gw')
    expect(p?.tiers.map((t) => t.name)).toEqual(['free', 'gold'])
    expect(p?.tiers[1]).toEqual({
      name: 'gold',
      key: 'subject',
      limits: [
        { metric: 'requests', amount: 10, periodMs: 1000 },
        { metric: 'tokens', amount: 100, periodMs: 60_000 },
        { metric: 'tokens', amount: 5000, calendar: 'month' },
      ],
    })
    expect(p?.authentication.apiKeys).toEqual([
      { name: 'k1', secretKey: 'k1', tenant: 't', tier: 'gold', roles: ['y', 'z'] },
      { name: 'k2', secretKey: 'k2', tenant: 't', models: ['a', 'b'], roles: [] },
    ])
    expect(p?.anonymous).toEqual({ tenant: 'anonymous' })
    expect(p?.rateLimit).toEqual({
      backend: 'local',
      failureMode: 'open',
      outputReservation: { default: 1024, max: 32768 },
      streamUsage: true,
      tokenizers: [],
    })
    expect(() => validateSnapshot(snapshot)).not.toThrow()
  })

  it('compiles identity sources with durations in ms and lower-cased header names', () => {
    const { snapshot } = compile([
      policy({
        authentication: {
          jwt: [
            {
              name: 'idp',
              issuer: 'https://idp',
              audiences: ['gw'],
              discovery: true,
              clockSkew: '5s',
              claims: { tier: 'plan' },
            },
          ],
          oauth2: [
            {
              name: 'as',
              introspectionUrl: 'https://as/introspect',
              clientId: 'gw',
              clientSecretKey: 'as-secret',
              cacheDuration: '1m',
            },
          ],
          trustedHeaders: {
            sharedSecret: { header: 'X-Proxy-Secret', secretKey: 'proxy' },
            headers: { subject: 'X-Auth-User' },
          },
        },
      }),
    ])
    const a = snapshot.policy?.authentication
    expect(a?.jwt[0]).toEqual({
      name: 'idp',
      issuer: 'https://idp',
      audiences: ['gw'],
      discovery: true,
      algorithms: ['ES256', 'RS256'],
      clockSkewMs: 5000,
      claims: { subject: 'sub', tier: 'plan' },
      jwksCacheMs: 600_000,
      jwksCooldownMs: 30_000,
      timeoutMs: 5000,
    })
    expect(a?.oauth2[0]).toMatchObject({
      cacheMs: 60_000,
      negativeCacheMs: 10_000,
      timeoutMs: 2000,
    })
    expect(a?.trustedHeaders).toEqual({
      sourceAddresses: [],
      sharedSecret: { header: 'x-proxy-secret', secretKey: 'proxy' },
      headers: {
        subject: 'x-auth-user',
        tenant: 'x-tenant-id',
        tier: 'x-tier',
        roles: 'x-user-roles',
      },
    })
    expect(() => validateSnapshot(snapshot)).not.toThrow()
  })

  it('is deterministic: order of tiers and keys does not change the bytes', () => {
    const a = compile([policy({ tiers, authentication: { apiKeys } })]).snapshot
    const b = compile([
      policy({ tiers: [...tiers].reverse(), authentication: { apiKeys: [...apiKeys].reverse() } }),
    ]).snapshot
    expect(JSON.stringify(b)).toBe(JSON.stringify(a))
  })

  it('covers the policy with the hash, and leaves policy-less hashes as they were', () => {
    const without = compile([]).snapshot
    expect(without.policy).toBeUndefined()
    expect(without.hash).toBe(
      snapshotHash({
        schemaVersion: without.schemaVersion,
        routes: without.routes,
        servers: without.servers,
      }),
    )
    const withPolicy = compile([policy({ tiers })]).snapshot
    expect(withPolicy.hash).not.toBe(without.hash)
    const tampered = JSON.parse(JSON.stringify(withPolicy))
    tampered.policy.tiers[0].limits[0].amount = 1_000_000
    expect(() => validateSnapshot(tampered)).toThrow(/hash: does not match/)
  })

  it('applies one policy: the oldest; the others are errors', () => {
    const { snapshot, diagnostics } = compile([
      policy({}, 'young', '2025-02-01T00:00:00Z'),
      policy({}, 'old', '2025-01-01T00:00:00Z'),
    ])
    expect(snapshot.policy?.key).toBe('default/old')
    expect(reasons(diagnostics)).toEqual(['GatewayPolicy default/young: PolicyConflict'])
  })

  it('leaves out an invalid policy with a diagnostic naming the field', () => {
    const { snapshot, diagnostics } = compile([policy({ defaultTier: 'x' })])
    expect(snapshot.policy).toBeUndefined()
    expect(diagnostics[0]).toMatchObject({
      kind: 'GatewayPolicy',
      reason: 'Invalid',
      path: 'spec.defaultTier',
    })
  })
})

describe('compile route authorization and tier limits', () => {
  it('carries them into the snapshot and warns about unknown tiers', () => {
    const { snapshot, diagnostics } = compile(
      [policy({ tiers })],
      [
        route({
          authorization: { tiers: ['gold', 'silver'], tenants: ['b', 'a'] },
          tierLimits: [
            { tier: 'gold', budget: [{ outputTokens: 10, per: 'day' }] },
            { tier: 'free', key: 'tier', rate: [{ requests: 2, per: 'hour' }] },
          ],
          rateLimit: { inputTokensPerUnit: 5, unit: 'minute' },
        }),
      ],
    )
    const r = snapshot.routes[0]
    expect(r?.authorization).toEqual({
      allowAnonymous: false,
      tiers: ['gold', 'silver'],
      tenants: ['a', 'b'],
    })
    expect(r?.tierLimits).toEqual([
      {
        tier: 'free',
        key: 'tier',
        limits: [{ metric: 'requests', amount: 2, periodMs: 3_600_000 }],
      },
      {
        tier: 'gold',
        key: 'subject',
        limits: [{ metric: 'outputTokens', amount: 10, calendar: 'day' }],
      },
    ])
    expect(r?.rateLimit).toEqual({ inputTokensPerUnit: 5, unit: 'minute' })
    expect(reasons(diagnostics)).toEqual(['ModelRoute default/r: UnknownTier'])
    expect(diagnostics[0]?.message).toContain('"silver"')
    expect(() => validateSnapshot(snapshot)).not.toThrow()
  })

  it('warns when a route restricts access but there is no policy', () => {
    const { diagnostics } = compile([], [route({ authorization: { allowAnonymous: false } })])
    expect(reasons(diagnostics)).toEqual(['ModelRoute default/r: NoGatewayPolicy'])
  })
})

describe('standalone files', () => {
  it('parse GatewayPolicy documents and report problems at their line', () => {
    const text = `apiVersion: networking.matrixinfer.ai/v1alpha1
kind: GatewayPolicy
metadata: { name: gw }
spec:
  tiers:
    - name: free
      rate:
        - { requests: 5, tokens: 3, per: minute }
`
    const parsed = parseManifests([{ name: 'p.yaml', text }])
    expect(parsed.issues.map((i) => `${i.file}:${i.line}: ${i.path}: ${i.message}`)).toEqual([
      'p.yaml:8: spec.tiers[0].rate[0]: exactly one of requests, inputTokens, outputTokens or tokens must be set',
    ])
    const ok = parseManifests([{ name: 'p.yaml', text: text.replace(', tokens: 3', '') }])
    expect(ok.issues).toEqual([])
    expect(ok.policies).toHaveLength(1)
  })
})
