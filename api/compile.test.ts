import { describe, expect, it } from 'vitest'
import { type CompileInput, compileSnapshot, type Diagnostic, validateSnapshot } from './compile.js'
import { DEFAULT_RETRY, DEFAULT_TIMEOUTS } from './snapshot.js'

type Obj = Record<string, unknown>

interface RouteOpts {
  ns?: string
  created?: string
  modelName?: string
  loras?: string[]
  rules?: Obj[]
}
function route(name: string, o: RouteOpts = {}): Obj {
  return {
    apiVersion: 'networking.matrixinfer.ai/v1alpha1',
    kind: 'ModelRoute',
    metadata: {
      name,
      ...(o.ns !== undefined ? { namespace: o.ns } : {}),
      ...(o.created !== undefined ? { creationTimestamp: o.created } : {}),
    },
    spec: {
      ...(o.loras === undefined ? { modelName: o.modelName ?? 'm' } : { loraAdapters: o.loras }),
      ...(o.loras !== undefined && o.modelName !== undefined ? { modelName: o.modelName } : {}),
      rules: o.rules ?? [{ targetModels: [{ modelServerName: 's' }] }],
    },
  }
}
function server(name: string, spec: Obj = {}, ns?: string): Obj {
  return {
    apiVersion: 'networking.matrixinfer.ai/v1alpha1',
    kind: 'ModelServer',
    metadata: { name, ...(ns !== undefined ? { namespace: ns } : {}) },
    spec: {
      inferenceEngine: 'vLLM',
      workloadSelector: { matchLabels: { app: name } },
      workloadPort: { port: 8000 },
      ...spec,
    },
  }
}
function compile(partial: Partial<CompileInput>) {
  return compileSnapshot({ routes: [], servers: [], endpoints: {}, version: 1, ...partial })
}
const reasons = (d: Diagnostic[]) => d.map((x) => `${x.key}:${x.reason}`)

describe('compileSnapshot: routes', () => {
  it('orders routes oldest first, missing timestamps last, ties by key; warns younger duplicates', () => {
    const { snapshot, diagnostics } = compile({
      servers: [server('s')],
      routes: [
        route('young', { created: '2024-03-01T00:00:00Z' }),
        route('none'),
        route('old', { created: '2024-01-01T00:00:00Z' }),
        route('b-tie', { created: '2024-02-01T00:00:00Z' }),
        route('a-tie', { created: '2024-02-01T00:00:00+00:00' }),
      ],
    })
    expect(snapshot.routes.map((r) => r.name)).toEqual(['old', 'a-tie', 'b-tie', 'young', 'none'])
    expect(snapshot.routes.at(-1)?.creationTimestamp).toBe('')
    const dups = diagnostics.filter((d) => d.reason === 'DuplicateModelName')
    expect(dups.map((d) => d.key).sort()).toEqual([
      'default/a-tie',
      'default/b-tie',
      'default/none',
      'default/young',
    ])
    expect(dups.every((d) => d.severity === 'warning' && d.message.includes('"default/old"'))).toBe(
      true,
    )
  })

  it('keeps rule order and names unnamed rules by index', () => {
    const { snapshot } = compile({
      servers: [server('s'), server('t')],
      routes: [
        route('r', {
          rules: [
            {
              name: 'premium',
              modelMatch: { headers: { 'X-Tier': { exact: 'gold' } } },
              targetModels: [{ modelServerName: 't' }],
            },
            { targetModels: [{ modelServerName: 's' }] },
          ],
        }),
      ],
    })
    const rules = snapshot.routes[0]?.rules ?? []
    expect(rules.map((r) => r.name)).toEqual(['premium', 'rule-1'])
    expect(rules[0]?.match?.headers).toEqual([
      { name: 'x-tier', match: { kind: 'exact', value: 'gold' } },
    ])
    expect(rules[1]?.match).toBeUndefined()
    expect(rules[0]?.targets).toEqual([{ server: 'default/t', weight: 100 }])
  })

  it('carries LoRA names and flags a LoRA name claimed twice', () => {
    const { snapshot, diagnostics } = compile({
      servers: [server('s')],
      routes: [
        route('base', { modelName: 'llama', created: '2024-01-01T00:00:00Z' }),
        route('lora', { loras: ['sql-lora', 'chat-lora'], created: '2024-01-02T00:00:00Z' }),
        route('lora2', { loras: ['sql-lora'], created: '2024-01-03T00:00:00Z' }),
      ],
    })
    expect(snapshot.routes[1]?.loraAdapters).toEqual(['sql-lora', 'chat-lora'])
    expect(snapshot.routes[1]?.modelName).toBeUndefined()
    expect(reasons(diagnostics)).toEqual(['default/lora2:DuplicateModelName'])
    expect(diagnostics[0]?.message).toContain('"sql-lora"')
  })

  it('weights: as given when set, 100 when unset (Kthena), also beside set ones', () => {
    const { snapshot, diagnostics } = compile({
      servers: [server('a'), server('b')],
      routes: [
        route('set', {
          modelName: 'x',
          rules: [
            {
              targetModels: [
                { modelServerName: 'a', weight: 80 },
                { modelServerName: 'b', weight: 20 },
              ],
            },
          ],
        }),
        route('unset', {
          modelName: 'y',
          rules: [{ targetModels: [{ modelServerName: 'a' }, { modelServerName: 'b' }] }],
        }),
        route('mixed', {
          modelName: 'z',
          rules: [
            { targetModels: [{ modelServerName: 'a', weight: 80 }, { modelServerName: 'b' }] },
          ],
        }),
      ],
    })
    const byName = new Map(snapshot.routes.map((r) => [r.name, r]))
    expect(byName.get('set')?.rules[0]?.targets.map((t) => t.weight)).toEqual([80, 20])
    expect(byName.get('unset')?.rules[0]?.targets.map((t) => t.weight)).toEqual([100, 100])
    // Kthena's default: the unset weight beside a set one is 100.
    expect(byName.get('mixed')?.rules[0]?.targets.map((t) => t.weight)).toEqual([80, 100])
    expect(diagnostics.filter((d) => d.key === 'default/mixed')).toEqual([])
  })

  it('excludes a route with an invalid regex but compiles the rest', () => {
    const { snapshot, diagnostics } = compile({
      servers: [server('s')],
      routes: [
        route('bad', {
          modelName: 'b',
          rules: [
            { modelMatch: { uri: { regex: '(' } }, targetModels: [{ modelServerName: 's' }] },
          ],
        }),
        route('good', {
          modelName: 'g',
          rules: [
            { modelMatch: { uri: { regex: '^/v1/.*' } }, targetModels: [{ modelServerName: 's' }] },
          ],
        }),
      ],
    })
    expect(snapshot.routes.map((r) => r.name)).toEqual(['good'])
    expect(snapshot.routes[0]?.rules[0]?.match?.uri).toEqual({ kind: 'regex', value: '^/v1/.*' })
    expect(reasons(diagnostics)).toEqual(['default/bad:Invalid'])
    expect(diagnostics[0]?.message).toMatch(
      /^spec\.rules\[0\]\.modelMatch\.uri\.regex: invalid regex/,
    )
  })

  it('drops dangling targets, then empty rules, then empty routes, each with a diagnostic', () => {
    const { snapshot, diagnostics } = compile({
      servers: [server('s'), server('other-ns', {}, 'team-b')],
      routes: [
        route('partial', {
          modelName: 'p',
          rules: [
            { name: 'gone', targetModels: [{ modelServerName: 'x' }] },
            {
              name: 'kept',
              targetModels: [{ modelServerName: 'missing' }, { modelServerName: 's' }],
            },
          ],
        }),
        // Targets resolve in the route's own namespace only.
        route('cross', {
          modelName: 'c',
          rules: [{ targetModels: [{ modelServerName: 'other-ns' }] }],
        }),
        route('provider', {
          modelName: 'o',
          rules: [{ targetModels: [{ externalModelProviderName: 'openai' }] }],
        }),
      ],
    })
    expect(snapshot.routes.map((r) => r.name)).toEqual(['partial'])
    expect(snapshot.routes[0]?.rules.map((r) => r.name)).toEqual(['kept'])
    expect(snapshot.routes[0]?.rules[0]?.targets).toEqual([{ server: 'default/s', weight: 100 }])
    const notFound = diagnostics.filter((d) => d.reason === 'ModelServerNotFound')
    expect(notFound.map((d) => d.message)).toEqual([
      'spec.rules[0].targetModels[0] refers to modelserver "other-ns" which does not exist',
      'spec.rules[0].targetModels[0] refers to modelserver "x" which does not exist',
      'spec.rules[1].targetModels[0] refers to modelserver "missing" which does not exist',
    ])
    expect(diagnostics.find((d) => d.reason === 'ExternalModelProviderNotFound')).toMatchObject({
      key: 'default/provider',
      severity: 'error',
      path: 'spec.rules[0].targetModels[0]',
      message:
        'spec.rules[0].targetModels[0] refers to externalmodelprovider "openai" which does not exist',
    })
    expect(reasons(diagnostics.filter((d) => d.reason === 'NoUsableRules'))).toEqual([
      'default/cross:NoUsableRules',
      'default/provider:NoUsableRules',
    ])
  })

  it('drops objects that share a key instead of picking one by input order', () => {
    const { snapshot, diagnostics } = compile({
      servers: [server('s'), server('s', { model: 'x' })],
    })
    expect(snapshot.servers).toEqual({})
    expect(reasons(diagnostics)).toEqual(['default/s:DuplicateName'])
  })
})

describe('compileSnapshot: servers', () => {
  it('converts the Kthena traffic policy and our additions to milliseconds', () => {
    const { snapshot } = compile({
      servers: [
        server('kthena', { trafficPolicy: { timeout: '30s', retry: { attempts: 2 } } }),
        server('ours', {
          workloadPort: { port: 9000, protocol: 'https' },
          trafficPolicy: {
            timeout: '30s',
            timeouts: { connect: '1s', responseHeader: '10s', idle: '1m30s', request: '1h' },
            retry: {
              attempts: 0,
              retryInterval: '50ms',
              maxRetryInterval: '500ms',
              retryOn: ['5xx', '5xx', '429'],
            },
          },
        }),
        server('defaults'),
      ],
    })
    expect(snapshot.servers['default/kthena']?.trafficPolicy).toEqual({
      timeouts: { ...DEFAULT_TIMEOUTS, responseHeaderMs: 30_000 },
      retry: {
        attempts: 3,
        intervalMs: 100,
        maxIntervalMs: 2_000,
        retryOn: ['connect-failure', '5xx', '429'],
      },
    })
    expect(snapshot.servers['default/ours']).toMatchObject({
      protocol: 'https',
      port: 9000,
      trafficPolicy: {
        timeouts: {
          connectMs: 1_000,
          responseHeaderMs: 10_000,
          idleMs: 90_000,
          requestMs: 3_600_000,
        },
        retry: { attempts: 1, intervalMs: 50, maxIntervalMs: 500, retryOn: ['5xx', '429'] },
      },
    })
    expect(snapshot.servers['default/defaults']?.trafficPolicy).toEqual({
      timeouts: DEFAULT_TIMEOUTS,
      retry: DEFAULT_RETRY,
    })
  })

  it('sorts endpoints and labels, defaults the port, keeps the engine and model', () => {
    const { snapshot, diagnostics } = compile({
      servers: [server('s', { model: 'meta/llama', inferenceEngine: 'SGLang' })],
      endpoints: {
        'default/s': [
          { name: 'pod-b', address: '127.0.0.3', ready: false, labels: { zone: 'a', gpu: 'H100' } },
          { name: 'pod-a', address: '127.0.0.2', port: 8001, ready: true },
          { name: 'pod-a', address: '127.0.0.9', ready: true },
        ],
        'default/nobody': [{ name: 'x', address: '127.0.0.4', ready: true }],
      },
    })
    const s = snapshot.servers['default/s']
    expect(s).toMatchObject({
      key: 'default/s',
      namespace: 'default',
      name: 's',
      model: 'meta/llama',
      engine: 'SGLang',
      protocol: 'http',
      port: 8000,
    })
    expect(s?.endpoints).toEqual([
      { name: 'pod-a', address: '127.0.0.2', port: 8001, ready: true, labels: {} },
      {
        name: 'pod-b',
        address: '127.0.0.3',
        port: 8000,
        ready: false,
        labels: { gpu: 'H100', zone: 'a' },
      },
    ])
    expect(Object.keys(s?.endpoints[1]?.labels ?? {})).toEqual(['gpu', 'zone'])
    expect(reasons(diagnostics)).toEqual(['default/s:DuplicateEndpointName'])
    expect(Object.keys(snapshot.servers)).toEqual(['default/s'])
  })

  it('reports an invalid server with its key and first path and leaves it out', () => {
    const { snapshot, diagnostics } = compile({
      servers: [server('bad', { workloadPort: { port: 0 } }, 'ns1'), server('ok')],
    })
    expect(Object.keys(snapshot.servers)).toEqual(['default/ok'])
    expect(diagnostics).toEqual([
      {
        kind: 'ModelServer',
        key: 'ns1/bad',
        severity: 'error',
        reason: 'Invalid',
        message: 'spec.workloadPort.port: must be 1..65535',
        path: 'spec.workloadPort.port',
      },
    ])
  })

  it('compiles the scheduler profile: order kept, default weights, durations in ms', () => {
    const { snapshot, diagnostics } = compile({
      servers: [
        server('s', {
          scheduler: {
            plugins: [
              { name: 'session-affinity', weight: 5, args: { ttl: '1m30s', cookie: 'sid' } },
              { name: 'prefix-cache', args: { blockSizeTokens: 32 } },
              { name: 'fairness', args: { queueTimeout: '2s', tenantWeights: { a: 2 } } },
            ],
          },
        }),
        server('plain'),
      ],
    })
    expect(diagnostics).toEqual([])
    expect(snapshot.servers['default/s']?.scheduler).toEqual({
      plugins: [
        { name: 'session-affinity', weight: 5, args: { ttlMs: 90_000, cookie: 'sid' } },
        { name: 'prefix-cache', weight: 1, args: { blockSizeTokens: 32 } },
        { name: 'fairness', weight: 0, args: { queueTimeoutMs: 2000, tenantWeights: { a: 2 } } },
      ],
    })
    // No profile in the CR: none in the snapshot, so the data plane's default applies.
    expect(snapshot.servers['default/plain']).not.toHaveProperty('scheduler')
    expect(validateSnapshot(JSON.parse(JSON.stringify(snapshot)))).toEqual(snapshot)
  })

  it('rejects a server whose scheduler profile is invalid, naming the field', () => {
    const { diagnostics } = compile({
      servers: [
        server('s', {
          scheduler: { plugins: [{ name: 'least-latency', args: { ttftTpotWeightFactor: 2 } }] },
        }),
      ],
    })
    expect(diagnostics[0]?.path).toBe('spec.scheduler.plugins[0].args.ttftTpotWeightFactor')
    expect(diagnostics[0]?.message).toContain('must be 0..1')
  })
})

describe('compileSnapshot: determinism and hash', () => {
  const servers = [server('a'), server('b', { model: 'x' }), server('c', {}, 'other')]
  const routes = [
    route('r1', {
      modelName: 'one',
      created: '2024-01-01T00:00:00Z',
      rules: [
        {
          targetModels: [
            { modelServerName: 'a', weight: 1 },
            { modelServerName: 'b', weight: 2 },
          ],
        },
      ],
    }),
    route('r2', {
      modelName: 'one',
      created: '2024-01-02T00:00:00Z',
      rules: [{ targetModels: [{ modelServerName: 'b' }] }],
    }),
    route('r3', {
      modelName: 'two',
      ns: 'other',
      rules: [
        {
          modelMatch: { headers: { B: { prefix: 'x' }, a: { exact: 'y' } } },
          targetModels: [{ modelServerName: 'c' }],
        },
      ],
    }),
    route('r4', { modelName: 'bad', rules: [{ targetModels: [{ modelServerName: 'zzz' }] }] }),
  ]
  const endpoints = {
    'default/a': [
      { name: 'a-1', address: '127.0.0.2', ready: true, labels: { b: '1', a: '2' } },
      { name: 'a-0', address: '127.0.0.3', ready: true },
    ],
  }

  /** Deterministic Fisher-Yates with a tiny LCG, so a failure reproduces. */
  function shuffle<T>(xs: readonly T[], seed: number): T[] {
    const out = [...xs]
    let s = seed
    for (let i = out.length - 1; i > 0; i--) {
      s = (s * 1103515245 + 12345) % 2 ** 31
      const j = s % (i + 1)
      const tmp = out[i] as T
      out[i] = out[j] as T
      out[j] = tmp
    }
    return out
  }

  it('gives byte-identical snapshots and diagnostics for shuffled inputs', () => {
    const base = compileSnapshot({ routes, servers, endpoints, version: 7 })
    const text = JSON.stringify(base.snapshot)
    for (let seed = 1; seed <= 20; seed++) {
      const eps = { 'default/a': shuffle(endpoints['default/a'], seed) }
      const r = compileSnapshot({
        routes: shuffle(routes, seed),
        servers: shuffle(servers, seed * 7),
        endpoints: eps,
        version: 7,
      })
      expect(JSON.stringify(r.snapshot)).toBe(text)
      expect(r.diagnostics).toEqual(base.diagnostics)
    }
  })

  it('hash covers content but not version, and the result validates', () => {
    const v1 = compileSnapshot({ routes, servers, endpoints, version: 1 }).snapshot
    const v2 = compileSnapshot({ routes, servers, endpoints, version: 2 }).snapshot
    expect(v1.hash).toMatch(/^[0-9a-f]{64}$/)
    expect(v2.hash).toBe(v1.hash)
    expect(v2.version).toBe(2)
    const changed = compileSnapshot({
      routes,
      servers: [...servers.slice(1), server('a', { model: 'new' })],
      endpoints,
      version: 1,
    }).snapshot
    expect(changed.hash).not.toBe(v1.hash)
    expect(validateSnapshot(JSON.parse(JSON.stringify(v1)))).toEqual(v1)
  })

  it('sorts header matchers by lower-cased name', () => {
    const { snapshot } = compileSnapshot({ routes, servers, endpoints, version: 1 })
    const r3 = snapshot.routes.find((r) => r.name === 'r3')
    expect(r3?.rules[0]?.match?.headers.map((h) => h.name)).toEqual(['a', 'b'])
  })
})
