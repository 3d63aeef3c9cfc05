import { describe, expect, it } from 'vitest'
import { gatewayPolicyJsonSchema, isCidr, validateGatewayPolicy } from './policy.js'
import { validateModelRoute } from './validate.js'

type Obj = Record<string, unknown>

function policy(spec: Obj): Obj {
  return {
    apiVersion: 'networking.matrixinfer.ai/v1alpha1',
    kind: 'GatewayPolicy',
    metadata: { name: 'gw' },
    spec,
  }
}

const full: Obj = {
  credentialsSecretName: 'gw-credentials',
  authentication: {
    apiKeys: [
      { name: 'team-a', secretKey: 'key.team-a', tenant: 'a', tier: 'gold', models: ['m'] },
      { name: 'team-b', secretKey: 'key.team-b', tenant: 'b' },
    ],
    jwt: [
      {
        name: 'idp',
        issuer: 'https://idp.example',
        audiences: ['gw'],
        jwksUri: 'https://idp.example/jwks',
        algorithms: ['RS256', 'ES256'],
        clockSkew: '10s',
        claims: { tenant: 'org.id', tier: 'tier', roles: 'roles' },
      },
    ],
    oauth2: [
      {
        name: 'as',
        introspectionUrl: 'http://127.0.0.1:9000/introspect',
        clientId: 'gw',
        clientSecretKey: 'oauth.client-secret',
      },
    ],
    trustedHeaders: {
      sourceAddresses: ['10.0.0.0/8', '::1'],
      sharedSecret: { header: 'x-proxy-secret', secretKey: 'proxy' },
    },
  },
  anonymous: { tier: 'free' },
  defaults: { authorization: { allowAnonymous: false } },
  defaultTier: 'free',
  tiers: [
    {
      name: 'free',
      rate: [{ requests: 10, per: 'minute' }],
      budget: [{ tokens: 1000, per: 'day' }],
    },
    { name: 'gold', key: 'tenant', rate: [{ inputTokens: 100000, per: 'minute' }] },
  ],
  rateLimit: {
    backend: 'redis',
    redis: { address: '127.0.0.1:6379', timeout: '50ms' },
    failureMode: 'closed',
    tokenizers: [{ models: { prefix: 'llama' }, file: '/models/llama/tokenizer.json' }],
  },
}

function issues(spec: Obj): string[] {
  const r = validateGatewayPolicy(policy(spec))
  return r.ok ? [] : r.issues.map((i) => `${i.path}: ${i.message}`)
}

describe('GatewayPolicy validation', () => {
  it('accepts a complete policy', () => {
    expect(issues(full)).toEqual([])
  })

  it('rejects symmetric and "none" algorithms: only asymmetric keys can come from a JWKS', () => {
    for (const alg of ['HS256', 'none']) {
      const jwt = [
        { name: 'x', issuer: 'i', audiences: ['a'], jwksUri: 'https://x/j', algorithms: [alg] },
      ]
      expect(issues({ authentication: { jwt } })[0]).toMatch(
        /^spec\.authentication\.jwt\[0\]\.algorithms\[0\]: must be one of RS256/,
      )
    }
  })

  it('rejects inline JWKs that carry private key material', () => {
    const jwt = [
      {
        name: 'x',
        issuer: 'i',
        audiences: ['a'],
        jwks: { keys: [{ kty: 'RSA', n: 'abc', e: 'AQAB', d: 'secret' }] },
      },
    ]
    expect(issues({ authentication: { jwt } })).toEqual([
      'spec.authentication.jwt[0].jwks.keys[0]: must be a public key (has private member d)',
    ])
  })

  it('needs exactly one key source per JWT provider and unique issuers', () => {
    const base = { issuer: 'https://i', audiences: ['a'] }
    expect(
      issues({
        authentication: {
          jwt: [
            { name: 'x', ...base },
            { name: 'y', ...base, jwksUri: 'https://i/j', discovery: true },
          ],
        },
      }),
    ).toEqual([
      'spec.authentication.jwt[0]: exactly one of jwksUri, jwks or discovery must be set',
      'spec.authentication.jwt[1].issuer: another provider has issuer "https://i"',
      'spec.authentication.jwt[1]: exactly one of jwksUri, jwks or discovery must be set',
    ])
  })

  it('checks tier references, names and secret entries', () => {
    expect(
      issues({
        defaultTier: 'nope',
        tiers: [{ name: 't' }, { name: 't' }],
        authentication: {
          apiKeys: [
            { name: 'k', secretKey: 'e', tenant: 'x', tier: 'gold' },
            { name: 'k', secretKey: 'e', tenant: 'x' },
            { name: 'z', secretKey: '../etc/passwd', tenant: 'x' },
          ],
        },
      }),
    ).toEqual([
      'spec.authentication.apiKeys[2].secretKey: must be a Secret key (letters, digits, "-", "_", ".")',
    ])
    expect(
      issues({
        defaultTier: 'nope',
        tiers: [{ name: 't' }, { name: 't' }],
        authentication: {
          apiKeys: [
            { name: 'k', secretKey: 'e', tenant: 'x', tier: 'gold' },
            { name: 'k', secretKey: 'e', tenant: 'x' },
          ],
        },
      }),
    ).toEqual([
      'spec.tiers[1].name: duplicate tier "t"',
      'spec.defaultTier: tier "nope" is not defined in spec.tiers',
      'spec.authentication.apiKeys[0].tier: tier "gold" is not defined in spec.tiers',
      'spec.authentication.apiKeys[1].name: duplicate key "k"',
      'spec.authentication.apiKeys[1].secretKey: entry "e" is already used by key "k"',
    ])
  })

  it('trusted headers need a trusted source and valid CIDRs', () => {
    expect(issues({ authentication: { trustedHeaders: {} } })).toEqual([
      'spec.authentication.trustedHeaders: sourceAddresses or sharedSecret must be set: identity headers need a trusted source',
    ])
    expect(
      issues({ authentication: { trustedHeaders: { sourceAddresses: ['10.0.0.0/33', 'x'] } } }),
    ).toEqual([
      'spec.authentication.trustedHeaders.sourceAddresses[0]: must be an IP address or CIDR',
      'spec.authentication.trustedHeaders.sourceAddresses[1]: must be an IP address or CIDR',
    ])
  })

  it('limit entries name exactly one metric', () => {
    expect(
      issues({ tiers: [{ name: 't', rate: [{ requests: 1, tokens: 2, per: 'minute' }] }] }),
    ).toEqual([
      'spec.tiers[0].rate[0]: exactly one of requests, inputTokens, outputTokens or tokens must be set',
    ])
    expect(issues({ tiers: [{ name: 't', budget: [{ tokens: 5, per: 'week' }] }] })).toEqual([
      'spec.tiers[0].budget[0].per: must be one of day, month',
    ])
  })

  it('checks the rate-limit backend', () => {
    expect(issues({ rateLimit: { backend: 'redis' } })).toEqual([
      'spec.rateLimit.redis: is required when backend is redis',
    ])
    expect(issues({ rateLimit: { redis: { address: 'nope' } } })).toEqual([
      'spec.rateLimit.redis.address: must be host:port',
    ])
    expect(
      issues({
        rateLimit: {
          tokenizers: [{ models: { exact: 'm' }, tiktoken: 'cl100k_base', charsPerToken: 4 }],
        },
      }),
    ).toEqual([
      'spec.rateLimit.tokenizers[0]: exactly one of tiktoken, file or charsPerToken must be set',
    ])
    expect(
      issues({ rateLimit: { outputTokens: { defaultReservation: 10, maxReservation: 5 } } }),
    ).toEqual(['spec.rateLimit.outputTokens.defaultReservation: must not exceed maxReservation'])
  })

  it('bounds the clock skew', () => {
    const jwt = [
      { name: 'x', issuer: 'i', audiences: ['a'], jwksUri: 'https://i/j', clockSkew: '10m' },
    ]
    expect(issues({ authentication: { jwt } })).toEqual([
      'spec.authentication.jwt[0].clockSkew: must be at most 300s',
    ])
  })

  it('isCidr', () => {
    expect(['10.0.0.0/8', '127.0.0.1', '::1/128', 'fe80::/10'].every(isCidr)).toBe(true)
    expect(['10.0.0.0/33', '1.2.3', '::1/129', '10.0.0.0/8/1', ''].some(isCidr)).toBe(false)
  })

  it('has a structural CRD schema with CEL one-of rules', () => {
    const text = JSON.stringify(gatewayPolicyJsonSchema())
    expect(text).not.toContain('"additionalProperties":false')
    expect(text).toContain('x-kubernetes-validations')
  })
})

describe('ModelRoute additions', () => {
  const route = (spec: Obj) => ({
    metadata: { name: 'r' },
    spec: { modelName: 'm', rules: [{ targetModels: [{ modelServerName: 's' }] }], ...spec },
  })
  it('accepts authorization and tierLimits', () => {
    const r = validateModelRoute(
      route({
        authorization: { allowAnonymous: true, tiers: ['gold'], tenants: ['a'] },
        tierLimits: [{ tier: 'free', rate: [{ requests: 5, per: 'minute' }] }],
      }),
    )
    expect(r.ok).toBe(true)
  })
  it('rejects a tier named twice and duplicate list entries', () => {
    const r = validateModelRoute(
      route({
        authorization: { tiers: ['a', 'a'] },
        tierLimits: [{ tier: 'free' }, { tier: 'free' }],
      }),
    )
    expect(r.ok ? [] : r.issues.map((i) => `${i.path}: ${i.message}`)).toEqual([
      'spec.authorization.tiers: must not contain duplicates',
      'spec.tierLimits: must not name a tier twice',
    ])
  })
})
