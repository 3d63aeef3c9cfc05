import { describe, expect, it } from 'vitest'
import { compileSnapshot } from './compile.js'
import { parseManifests } from './manifest.js'
import {
  externalModelProviderJsonSchema,
  PROVIDER_CONDITION_TYPES,
  privateAddressProblem,
  secretFileName,
  validateExternalModelProvider,
} from './provider.js'
import { validateSnapshot } from './snapshot-validate.js'

type Obj = Record<string, unknown>

function provider(spec: Obj, name = 'p'): Obj {
  return {
    apiVersion: 'networking.matrixinfer.ai/v1alpha1',
    kind: 'ExternalModelProvider',
    metadata: { name },
    spec,
  }
}

function issues(spec: Obj): string[] {
  const r = validateExternalModelProvider(provider(spec))
  return r.ok ? [] : r.issues.map((i) => `${i.path}: ${i.message}`)
}

describe('ExternalModelProvider validation', () => {
  it("accepts Kthena's fields and defaults the type to OpenAI", () => {
    const r = validateExternalModelProvider(
      provider({
        baseURL: 'https://api.deepseek.com',
        model: 'deepseek-chat',
        auth: { scheme: 'Bearer', secretRef: { name: 's', key: 'k' } },
        headers: { 'X-Team': 'a' },
      }),
    )
    expect(r.ok && r.value.spec.providerType).toBe('OpenAI')
  })

  it('requires https unless allowInsecureHTTP, and rejects userinfo, query and fragment', () => {
    expect(issues({ baseURL: 'http://10.0.0.1/v1' })).toEqual([
      'spec.baseURL: must be https:// (set allowInsecureHTTP: true to allow http:// for local testing)',
    ])
    expect(issues({ baseURL: 'http://10.0.0.1/v1', allowInsecureHTTP: true })).toEqual([])
    expect(
      issues({ baseURL: 'http://10.0.0.1/v1', allowInsecureHTTP: true, insecureSkipVerify: true }),
    ).toEqual(['spec.insecureSkipVerify: only applies to https:// base URLs'])
    expect(issues({ baseURL: 'https://u:p@h/v1?x=1#f' })).toEqual([
      'spec.baseURL: must not contain user:password@',
      'spec.baseURL: must not contain a query string',
      'spec.baseURL: must not contain a fragment',
    ])
    expect(issues({ baseURL: 'ftp://h' })).toEqual(['spec.baseURL: must be an https:// URL'])
  })

  it('rejects reserved and malformed static headers, case-insensitively', () => {
    expect(
      issues({
        headers: {
          Authorization: 'x',
          'X-API-Key': 'y',
          Host: 'h',
          'anthropic-version': '2023-06-01',
          'x-ok': 'a\r\nb: c',
        },
      }),
    ).toEqual([
      'spec.headers.Authorization: "Authorization" is reserved: credentials come from auth.secretRef, framing and request id from the gateway',
      'spec.headers["X-API-Key"]: "X-API-Key" is reserved: credentials come from auth.secretRef, framing and request id from the gateway',
      'spec.headers.Host: "Host" is reserved: credentials come from auth.secretRef, framing and request id from the gateway',
      'spec.headers["x-ok"]: must not contain control characters (CR, LF, NUL, …)',
    ])
  })

  it('checks per-type settings and the secret reference', () => {
    expect(issues({ providerType: 'AzureOpenAI', baseURL: 'https://r.openai.azure.com' })).toEqual([
      'spec.azure: is required for providerType AzureOpenAI (deployment)',
    ])
    expect(issues({ providerType: 'OpenAICompatible' })).toEqual([
      'spec.baseURL: is required for providerType OpenAICompatible',
    ])
    expect(issues({ providerType: 'HuggingFace', huggingFace: { api: 'TGI' } })).toEqual([
      'spec.baseURL: is required for providerType HuggingFace with huggingFace.api TGI',
    ])
    expect(issues({ providerType: 'Gemini', anthropic: { defaultMaxTokens: 5 } })).toEqual([
      'spec.anthropic: is only valid with providerType Anthropic',
    ])
    expect(issues({ auth: { secretRef: { name: 's', key: 'k', optional: true } } })).toEqual([
      'spec.auth.secretRef.optional: must be false or unset: a missing credential must not silently send no key',
    ])
    expect(issues({ auth: { header: 'x-key', secretRef: { name: 's', key: 'k' } } })).toEqual([
      'spec.auth.header: is only valid with scheme APIKey (Bearer always uses Authorization)',
    ])
    expect(issues({ pricing: { inputPerMillion: 0.15, outputPerMillion: '1' } })).toEqual([
      'spec.pricing.inputPerMillion: must be a string, not a number',
    ])
    expect(issues({ trafficPolicy: { timeouts: { connect: '5 s' } } })[0]).toContain(
      'spec.trafficPolicy.timeouts.connect',
    )
  })

  it('has a structural CRD schema with the CEL rules, and the status condition types', () => {
    const s = JSON.stringify(externalModelProviderJsonSchema())
    expect(s).not.toContain('"additionalProperties":false')
    expect(s).toContain('allowInsecureHTTP')
    expect(s).toContain('x-kubernetes-validations')
    expect(PROVIDER_CONDITION_TYPES).toEqual({
      ready: 'Ready',
      credentialsResolved: 'CredentialsResolved',
    })
  })

  it('names secret files unambiguously and within Secret key limits', () => {
    expect(secretFileName('ns', 'openai-key', 'api-key')).toBe('provider_ns_openai-key_api-key')
    const long = secretFileName('ns', 'a'.repeat(253), 'k'.repeat(100))
    expect(long).toMatch(/^provider_[0-9a-f]{48}$/)
  })
})

const route = (rules: Obj[], extra: Obj = {}): Obj => ({
  apiVersion: 'networking.matrixinfer.ai/v1alpha1',
  kind: 'ModelRoute',
  metadata: { name: 'r' },
  spec: { modelName: 'm', rules, ...extra },
})
const server: Obj = {
  apiVersion: 'networking.matrixinfer.ai/v1alpha1',
  kind: 'ModelServer',
  metadata: { name: 's' },
  spec: {
    inferenceEngine: 'vLLM',
    workloadSelector: { matchLabels: { a: 'b' } },
    workloadPort: { port: 8000 },
  },
}

describe('compiling providers and fallback', () => {
  it('puts providers in the snapshot with defaults and a secret file name, never a value', () => {
    const { snapshot, diagnostics } = compileSnapshot({
      routes: [
        route([
          {
            targetModels: [
              { modelServerName: 's', weight: 70 },
              { externalModelProviderName: 'claude', weight: 30 },
            ],
            fallback: {
              targets: [{ externalModelProviderName: 'claude' }, { modelServerName: 's' }],
              on: ['429', 'no-ready-endpoints'],
            },
          },
        ]),
      ],
      servers: [server],
      endpoints: {},
      providers: [
        provider(
          {
            providerType: 'Anthropic',
            auth: { secretRef: { name: 'anthropic', key: 'key' } },
            headers: { 'Anthropic-Beta': 'x' },
            pricing: { inputPerMillion: '3', outputPerMillion: '15.5' },
          },
          'claude',
        ),
      ],
      version: 3,
    })
    expect(diagnostics).toEqual([])
    expect(snapshot.providers?.['default/claude']).toEqual({
      key: 'default/claude',
      namespace: 'default',
      name: 'claude',
      type: 'Anthropic',
      baseURL: 'https://api.anthropic.com',
      insecureSkipVerify: false,
      credential: {
        scheme: 'APIKey',
        header: 'x-api-key',
        secretFile: 'provider_default_anthropic_key',
        secretRef: { name: 'anthropic', key: 'key' },
      },
      headers: { 'anthropic-beta': 'x' },
      anthropic: { version: '2023-06-01', defaultMaxTokens: 4096 },
      pricing: { inputPerMillion: 3, outputPerMillion: 15.5, currency: 'USD' },
      trafficPolicy: expect.objectContaining({ retry: expect.objectContaining({ attempts: 1 }) }),
    })
    expect(snapshot.routes[0]?.rules[0]).toMatchObject({
      targets: [
        { server: 'default/s', weight: 70 },
        { provider: 'default/claude', weight: 30 },
      ],
      fallback: {
        targets: [{ provider: 'default/claude' }, { server: 'default/s' }],
        on: ['429', 'no-ready-endpoints'],
      },
    })
    // Survives the data plane's validation (hash covers providers).
    expect(validateSnapshot(JSON.parse(JSON.stringify(snapshot))).providers).toEqual(
      snapshot.providers,
    )
    const tampered = JSON.parse(JSON.stringify(snapshot))
    tampered.providers['default/claude'].baseURL = 'https://evil.example'
    expect(() => validateSnapshot(tampered)).toThrow(/hash/)
  })

  it('reports unknown providers; a fallback defaults to every condition', () => {
    const { snapshot, diagnostics } = compileSnapshot({
      routes: [
        route([
          {
            targetModels: [{ modelServerName: 's' }],
            fallback: {
              targets: [{ externalModelProviderName: 'nope' }, { externalModelProviderName: 'ok' }],
            },
          },
        ]),
      ],
      servers: [server],
      endpoints: {},
      providers: [provider({ baseURL: 'https://x/v1' }, 'ok')],
      version: 1,
    })
    expect(diagnostics.map((d) => `${d.reason} ${d.path}`)).toEqual([
      'ExternalModelProviderNotFound spec.rules[0].fallback.targets[0]',
    ])
    expect(snapshot.routes[0]?.rules[0]?.fallback).toEqual({
      targets: [{ provider: 'default/ok' }],
      on: ['429', '5xx', 'connect-failure', 'no-ready-endpoints'],
    })
  })

  it('LoRA routes may not fall back to providers', () => {
    const { diagnostics } = compileSnapshot({
      routes: [
        route(
          [
            {
              targetModels: [{ modelServerName: 's' }],
              fallback: { targets: [{ externalModelProviderName: 'x' }] },
            },
          ],
          { modelName: undefined, loraAdapters: ['l'] },
        ),
      ],
      servers: [server],
      endpoints: {},
      version: 1,
    })
    expect(diagnostics[0]?.message).toContain('lora routes must fall back to a modelServerName')
  })

  it('standalone YAML: provider documents with line numbers for their problems', () => {
    const parsed = parseManifests([
      {
        name: 'p.yaml',
        text: [
          'apiVersion: networking.matrixinfer.ai/v1alpha1',
          'kind: ExternalModelProvider',
          'metadata:',
          '  name: bad',
          'spec:',
          '  baseURL: http://insecure/v1',
          '---',
          'apiVersion: networking.matrixinfer.ai/v1alpha1',
          'kind: ExternalModelProvider',
          'metadata: {name: good}',
          'spec: {providerType: Gemini}',
        ].join('\n'),
      },
    ])
    expect(parsed.issues.map((i) => `${i.line}:${i.column} ${i.path}`)).toEqual([
      '6:3 spec.baseURL',
    ])
    expect(parsed.providers).toHaveLength(1)
  })
})

describe('provider baseURLs on loopback / link-local addresses', () => {
  it('recognises loopback, link-local and this-host literals in every spelling', () => {
    for (const u of [
      'http://127.0.0.1:8080/v1',
      'http://127.9.9.9/v1',
      'http://2130706433/v1',
      'http://0x7f.1/v1',
      'http://169.254.169.254/latest',
      'http://0.0.0.0:80',
      'http://[::1]/v1',
      'http://[::ffff:127.0.0.1]/v1',
      'http://[::ffff:169.254.169.254]/',
      'http://[fe80::1]/v1',
      'http://localhost:8000/v1',
      'http://LOCALHOST./v1',
      'http://api.localhost/v1',
    ]) {
      expect(privateAddressProblem(u), u).toMatch(/loopback/)
    }
    for (const u of [
      'https://api.openai.com/v1',
      'http://10.0.0.1/v1',
      'http://[fd00::1]/v1',
      'http://my-sidecar.svc.cluster.local/v1',
      'http://169.255.0.1/',
    ]) {
      expect(privateAddressProblem(u), u).toBeUndefined()
    }
  })

  it('the compiler refuses them by field path unless allowed', () => {
    const input = {
      routes: [route([{ targetModels: [{ externalModelProviderName: 'meta' }] }])],
      servers: [server],
      endpoints: {},
      providers: [
        provider({ baseURL: 'http://169.254.169.254/v1', allowInsecureHTTP: true }, 'meta'),
        provider({ baseURL: 'https://api.openai.com/v1' }, 'public'),
      ],
      version: 1,
    }
    const refused = compileSnapshot(input)
    expect(refused.snapshot.providers?.['default/meta']).toBeUndefined()
    expect(refused.snapshot.providers?.['default/public']?.baseURL).toBe(
      'https://api.openai.com/v1',
    )
    expect(refused.diagnostics).toContainEqual({
      kind: 'ExternalModelProvider',
      key: 'default/meta',
      severity: 'error',
      reason: 'PrivateAddress',
      path: 'spec.baseURL',
      message:
        '169.254.169.254 is a loopback or link-local address; refused unless the data plane allows it (--allow-private-provider-addresses)',
    })
    const allowed = compileSnapshot({ ...input, allowPrivateProviderAddresses: true })
    expect(allowed.snapshot.providers?.['default/meta']?.baseURL).toBe('http://169.254.169.254/v1')
    expect(allowed.diagnostics.filter((d) => d.reason === 'PrivateAddress')).toEqual([])
  })
})
