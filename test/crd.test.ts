// The CRDs and RBAC of dist/install.yaml on a REAL kube-apiserver (hack/cluster, built by
// build.sh; without the binaries this suite fails and says so). It proves what a mock cannot:
// that the generated schemas are structural, their CEL compiles within the cost limits, bad
// objects are refused by `kubectl apply` with the field named, the printer columns work, and the
// RBAC rules grant exactly what docs/install.md claims. One control plane for the whole file.
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parseAllDocuments } from 'yaml'
import { CREDENTIALS_SECRET, SNAPSHOT_CONFIGMAP, SYSTEM_NAMESPACE } from '../api/crd.js'
import { API_VERSION } from '../api/schema.js'
import { synthInstall } from '../cdk8s/main.js'
import {
  type ControlPlane,
  type KubectlResult,
  startControlPlane,
} from '../hack/cluster/control-plane.js'

const NS = 'crd-test'
const RBAC_KINDS = new Set([
  'Namespace',
  'CustomResourceDefinition',
  'ServiceAccount',
  'ClusterRole',
  'ClusterRoleBinding',
  'Role',
  'RoleBinding',
])

let cp: ControlPlane
let tmp: string
let installDocs: Record<string, unknown>[]

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'crd-test-'))
  // Synthesize exactly what `npm run manifests` writes while the control plane boots.
  const [plane, file] = await Promise.all([
    startControlPlane(),
    synthInstall(join(tmp, 'install.yaml')),
  ])
  cp = plane
  installDocs = parseAllDocuments(await readFile(file, 'utf8')).map(
    (d) => d.toJS() as Record<string, unknown>,
  )
}, 120_000)

afterAll(async () => {
  await cp?.stop()
  if (tmp) await rm(tmp, { recursive: true, force: true })
})

function kubectl(args: readonly string[], input?: string): Promise<KubectlResult> {
  return cp.kubectl(args, input === undefined ? {} : { input })
}

async function ok(args: readonly string[], input?: string): Promise<string> {
  const r = await kubectl(args, input)
  if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')} failed (${r.code}): ${r.stderr}`)
  return r.stdout
}

/** `kubectl apply` as a user would (server-side, strict field validation is kubectl's default). */
function apply(objects: readonly unknown[]): Promise<KubectlResult> {
  const list = { apiVersion: 'v1', kind: 'List', items: objects }
  return kubectl(
    ['apply', '--server-side', '--field-manager=crd-test', '-f', '-'],
    JSON.stringify(list),
  )
}

function kindOf(o: Record<string, unknown>): string {
  return String(o['kind'])
}

describe('install.yaml on a real API server', () => {
  it('applies the namespace, CRDs and RBAC (server-side) and the CRDs become Established', async () => {
    const part = installDocs.filter((o) => RBAC_KINDS.has(kindOf(o)))
    expect(part.map(kindOf)).toEqual([
      'Namespace',
      'CustomResourceDefinition',
      'CustomResourceDefinition',
      'CustomResourceDefinition',
      'CustomResourceDefinition',
      'ServiceAccount',
      'ServiceAccount',
      'ClusterRole',
      'ClusterRoleBinding',
      'Role',
      'RoleBinding',
    ])
    const r = await apply(part)
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(r.stdout.match(/serverside-applied/g)).toHaveLength(part.length)
    await ok(['wait', '--for=condition=Established', 'crd', '--all', '--timeout=30s'])
    // A CEL rule that does not compile or exceeds the cost budget fails the apply above; a
    // non-structural schema is accepted but flagged with a NonStructuralSchema condition.
    const list = JSON.parse(await ok(['get', 'crd', '-o', 'json'])) as {
      items: { status: { conditions: { type: string; status: string }[] } }[]
    }
    expect(list.items).toHaveLength(4)
    for (const c of list.items.flatMap((i) => i.status.conditions)) {
      expect(c.type).not.toBe('NonStructuralSchema')
      expect(c.status).toBe('True')
    }
  })

  it('accepts the workloads too, and they meet the restricted Pod Security Standard', async () => {
    const rest = installDocs.filter((o) => !RBAC_KINDS.has(kindOf(o)))
    expect(rest.map(kindOf).sort()).toEqual([
      'Deployment',
      'Deployment',
      'NetworkPolicy',
      'PodDisruptionBudget',
      'PodDisruptionBudget',
      'Service',
      'Service',
    ])
    const r = await apply(rest)
    expect(r.code).toBe(0)
    // The namespace has pod-security warn=restricted, so every violation is a kubectl warning.
    expect(r.stderr).not.toMatch(/PodSecurity|violate/)
    expect(r.stderr).toBe('')
  })

  it('re-applying the whole file is a no-op (no field conflicts)', async () => {
    const r = await apply(installDocs)
    expect(r.code).toBe(0)
    expect(r.stderr).toBe('')
  })
})

describe('RBAC is least privilege (checked by the API server authorizer)', () => {
  const operator = `--as=system:serviceaccount:${SYSTEM_NAMESPACE}:infer-gateway-operator`
  const dataplane = `--as=system:serviceaccount:${SYSTEM_NAMESPACE}:infer-gateway-dataplane`

  async function can(as: string, ...args: string[]): Promise<boolean> {
    const r = await kubectl(['auth', 'can-i', as, ...args])
    // can-i exits 1 with "no" when denied; anything else is a broken check.
    if (r.stdout.trim() !== 'yes' && r.stdout.trim() !== 'no') throw new Error(r.stderr)
    return r.stdout.trim() === 'yes'
  }

  it.each([
    ['list', 'modelroutes.networking.matrixinfer.ai', '--all-namespaces'],
    ['watch', 'modelservers.networking.matrixinfer.ai', '--all-namespaces'],
    ['list', 'gatewaypolicies.networking.matrixinfer.ai', '--all-namespaces'],
    ['list', 'externalmodelproviders.networking.matrixinfer.ai', '--all-namespaces'],
    [
      'patch',
      'externalmodelproviders.networking.matrixinfer.ai/x',
      '--subresource=status',
      '-n',
      NS,
    ],
    // Credentials sources: RBAC cannot scope list/watch to a label; the operator only ever asks
    // for Secrets labelled networking.matrixinfer.ai/credential=true (docs/operator.md).
    ['list', 'secrets', '--all-namespaces'],
    ['watch', 'secrets', '--all-namespaces'],
    ['list', 'pods', '--all-namespaces'],
    ['patch', 'modelroutes.networking.matrixinfer.ai/x', '--subresource=status', '-n', NS],
    ['update', 'modelservers.networking.matrixinfer.ai/x', '--subresource=status', '-n', NS],
    ['create', 'events', '-n', NS],
    ['create', 'events.events.k8s.io', '-n', NS],
    ['patch', `configmap/${SNAPSHOT_CONFIGMAP}`, '-n', SYSTEM_NAMESPACE],
    ['create', 'configmaps', '-n', SYSTEM_NAMESPACE],
    ['get', `secret/${CREDENTIALS_SECRET}`, '-n', SYSTEM_NAMESPACE],
    ['update', 'leases.coordination.k8s.io/infer-gateway-operator', '-n', SYSTEM_NAMESPACE],
  ])('operator may %s %s', async (...args) => {
    expect(await can(operator, ...args)).toBe(true)
  })

  it.each([
    ['update', 'modelroutes.networking.matrixinfer.ai', '-n', NS],
    ['delete', 'modelservers.networking.matrixinfer.ai', '-n', NS],
    ['delete', 'pods', '-n', NS],
    ['get', 'secrets', '-n', NS],
    ['get', 'secret/other', '-n', SYSTEM_NAMESPACE],
    ['update', 'secret/other', '-n', NS],
    ['get', `configmap/${SNAPSHOT_CONFIGMAP}`, '-n', NS],
    ['update', 'configmap/other', '-n', SYSTEM_NAMESPACE],
    ['update', 'leases.coordination.k8s.io/other', '-n', SYSTEM_NAMESPACE],
    ['create', 'leases.coordination.k8s.io', '-n', NS],
  ])('operator may not %s %s', async (...args) => {
    expect(await can(operator, ...args)).toBe(false)
  })

  it.each([
    ['get', `configmap/${SNAPSHOT_CONFIGMAP}`, '-n', SYSTEM_NAMESPACE],
    ['get', `secret/${CREDENTIALS_SECRET}`, '-n', SYSTEM_NAMESPACE],
    ['list', 'modelroutes.networking.matrixinfer.ai', '--all-namespaces'],
    ['list', 'pods', '-n', SYSTEM_NAMESPACE],
    ['create', 'events', '-n', SYSTEM_NAMESPACE],
  ])('data plane may not %s %s', async (...args) => {
    expect(await can(dataplane, ...args)).toBe(false)
  })
})

// ---------------------------------------------------------------------------------------------
// objects

type Spec = Record<string, unknown>

function route(name: string, spec: Spec): Record<string, unknown> {
  return { apiVersion: API_VERSION, kind: 'ModelRoute', metadata: { name, namespace: NS }, spec }
}
function server(name: string, spec: Spec): Record<string, unknown> {
  return { apiVersion: API_VERSION, kind: 'ModelServer', metadata: { name, namespace: NS }, spec }
}
function policy(name: string, spec: Spec): Record<string, unknown> {
  return { apiVersion: API_VERSION, kind: 'GatewayPolicy', metadata: { name, namespace: NS }, spec }
}

const serverSpec = (over: Spec = {}): Spec => ({
  model: 'llama-3-8b',
  inferenceEngine: 'vLLM',
  workloadSelector: { matchLabels: { app: 'llama' } },
  workloadPort: { port: 8000 },
  ...over,
})
const routeSpec = (over: Spec = {}): Spec => ({
  modelName: 'llama-3-8b',
  rules: [{ targetModels: [{ modelServerName: 'llama' }] }],
  ...over,
})
const targets = (...t: Spec[]): Spec => routeSpec({ rules: [{ targetModels: t }] })

describe('valid objects are accepted, defaulted and shown with printer columns', () => {
  beforeAll(async () => {
    await ok(['create', 'namespace', NS])
  })

  it('accepts Kthena-shaped and extended objects of every kind', async () => {
    const r = await apply([
      server('llama', serverSpec()),
      server(
        'llama-tgi',
        serverSpec({
          inferenceEngine: 'TGI',
          workloadPort: { port: 8080, protocol: 'https' },
          trafficPolicy: { timeout: '30s', retry: { attempts: 2, retryOn: ['5xx', '429'] } },
          scheduler: {
            plugins: [
              { name: 'prefix-cache', weight: 2, args: { blockSizeTokens: 16 } },
              { name: 'least-pending', weight: 1 },
            ],
          },
        }),
      ),
      route('llama', routeSpec()),
      route(
        'canary',
        routeSpec({
          loraAdapters: ['sql-lora'],
          parentRefs: [{ name: 'gw', port: 80 }],
          rules: [
            {
              name: 'header',
              modelMatch: { headers: { 'x-tenant': { exact: 'a' } }, uri: { prefix: '/v1' } },
              targetModels: [
                { modelServerName: 'llama', weight: 90 },
                { modelServerName: 'llama-tgi', weight: 10 },
              ],
            },
            { targetModels: [{ externalModelProviderName: 'openai' }] },
          ],
          rateLimit: { inputTokensPerUnit: 1000 },
        }),
      ),
      route('lora-only', { loraAdapters: ['a'], rules: routeSpec()['rules'] }),
      policy('default', {
        tiers: [{ name: 'free', rate: [{ requests: 60, per: 'minute' }] }],
        rateLimit: { tokenizers: [{ models: { prefix: 'llama' }, tiktoken: 'cl100k_base' }] },
      }),
    ])
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
  })

  it('fills in schema defaults (workloadPort.protocol, rateLimit.unit, weight 100 as in Kthena)', async () => {
    expect(
      await ok([
        'get',
        'mr',
        'canary',
        '-n',
        NS,
        '-o',
        'jsonpath={.spec.rules[1].targetModels[0].weight}',
      ]),
    ).toBe('100')
    expect(
      await ok(['get', 'ms', 'llama', '-n', NS, '-o', 'jsonpath={.spec.workloadPort.protocol}']),
    ).toBe('http')
    expect(
      await ok(['get', 'mr', 'canary', '-n', NS, '-o', 'jsonpath={.spec.rateLimit.unit}']),
    ).toBe('second')
  })

  it('`kubectl get mr` shows MODEL, READY, TARGETS, AGE from spec and status', async () => {
    await ok([
      'patch',
      'mr',
      'llama',
      '-n',
      NS,
      '--subresource=status',
      '--type=merge',
      '-p',
      JSON.stringify({
        status: {
          observedGeneration: 1,
          conditions: [
            {
              type: 'Ready',
              status: 'True',
              reason: 'EndpointsReady',
              message: '3 of 4',
              lastTransitionTime: '2026-01-01T00:00:00Z',
            },
          ],
          readyEndpoints: 3,
          totalEndpoints: 4,
          targets: '3/4',
        },
      }),
    ])
    const out = await ok(['get', 'mr', '-n', NS])
    const [header, ...rows] = out.trim().split('\n')
    expect(header?.split(/\s+/)).toEqual(['NAME', 'MODEL', 'READY', 'TARGETS', 'AGE'])
    const llama = rows.find((l) => l.startsWith('llama '))?.split(/\s+/)
    expect(llama?.slice(0, 4)).toEqual(['llama', 'llama-3-8b', 'True', '3/4'])
  })

  it('`kubectl get ms` shows ENGINE, READY, ENDPOINTS, AGE', async () => {
    await ok([
      'patch',
      'ms',
      'llama',
      '-n',
      NS,
      '--subresource=status',
      '--type=merge',
      '-p',
      JSON.stringify({
        status: {
          conditions: [
            {
              type: 'Ready',
              status: 'False',
              reason: 'NoReadyEndpoints',
              message: '0 of 2',
              lastTransitionTime: '2026-01-01T00:00:00Z',
            },
          ],
          readyEndpoints: 0,
          totalEndpoints: 2,
          endpoints: '0/2',
        },
      }),
    ])
    const out = await ok(['get', 'ms', '-n', NS])
    const [header, ...rows] = out.trim().split('\n')
    expect(header?.split(/\s+/)).toEqual(['NAME', 'ENGINE', 'READY', 'ENDPOINTS', 'AGE'])
    expect(
      rows
        .find((l) => l.startsWith('llama '))
        ?.split(/\s+/)
        .slice(0, 4),
    ).toEqual(['llama', 'vLLM', 'False', '0/2'])
    expect(
      rows
        .find((l) => l.startsWith('llama-tgi '))
        ?.split(/\s+/)
        .slice(0, 2),
    ).toEqual(['llama-tgi', 'TGI'])
  })

  it('the status subresource rejects a malformed condition', async () => {
    const r = await kubectl([
      'patch',
      'mr',
      'llama',
      '-n',
      NS,
      '--subresource=status',
      '--type=merge',
      '-p',
      JSON.stringify({
        status: {
          conditions: [
            {
              type: 'Ready',
              status: 'Yes',
              reason: 'R',
              message: '',
              lastTransitionTime: '2026-01-01T00:00:00Z',
            },
          ],
        },
      }),
    ])
    expect(r.code).not.toBe(0)
    expect(r.stderr).toContain('status.conditions[0].status')
  })

  it('short names and the `infer` category work', async () => {
    const out = await ok(['get', 'infer', '-n', NS, '-o', 'name'])
    expect(out.split('\n').filter(Boolean).sort()).toEqual([
      'gatewaypolicy.networking.matrixinfer.ai/default',
      'modelroute.networking.matrixinfer.ai/canary',
      'modelroute.networking.matrixinfer.ai/llama',
      'modelroute.networking.matrixinfer.ai/lora-only',
      'modelserver.networking.matrixinfer.ai/llama',
      'modelserver.networking.matrixinfer.ai/llama-tgi',
    ])
  })
})

/** [what, object, the field (path) the message must name, a phrase it must contain] */
const INVALID: [string, Record<string, unknown>, string, RegExp][] = [
  [
    'weight 101',
    route('bad', targets({ modelServerName: 'a', weight: 101 })),
    'spec.rules[0].targetModels[0].weight',
    /less than or equal to 100/,
  ],
  [
    'port 0',
    server('bad', serverSpec({ workloadPort: { port: 0 } })),
    'spec.workloadPort.port',
    /greater than or equal to 1/,
  ],
  [
    'two of exact/prefix/regex (uri)',
    route(
      'bad',
      routeSpec({
        rules: [
          {
            modelMatch: { uri: { exact: '/a', prefix: '/b' } },
            targetModels: [{ modelServerName: 'a' }],
          },
        ],
      }),
    ),
    'spec.rules[0].modelMatch.uri',
    /exactly one of exact, prefix or regex/,
  ],
  [
    'none of exact/prefix/regex (header)',
    route(
      'bad',
      routeSpec({
        rules: [
          { modelMatch: { headers: { 'x-a': {} } }, targetModels: [{ modelServerName: 'a' }] },
        ],
      }),
    ),
    'spec.rules[0].modelMatch.headers[x-a]',
    /exactly one of exact, prefix or regex/,
  ],
  // kubectl's own schema check (from the CRD's published OpenAPI) answers before the server.
  [
    'missing rules',
    route('bad', { modelName: 'm' }),
    'ModelRoute.spec',
    /missing required field "rules"/,
  ],
  [
    'rules > 16',
    route(
      'bad',
      routeSpec({
        rules: Array.from({ length: 17 }, () => ({ targetModels: [{ modelServerName: 'a' }] })),
      }),
    ),
    'spec.rules',
    /must have at most 16 items/,
  ],
  ['empty targetModels', route('bad', targets()), 'spec.rules[0].targetModels', /at least 1 items/],
  [
    'both modelServerName and externalModelProviderName',
    route('bad', targets({ modelServerName: 'a', externalModelProviderName: 'b' })),
    'spec.rules[0].targetModels[0]',
    /exactly one of modelServerName or externalModelProviderName/,
  ],
  [
    'neither modelServerName nor externalModelProviderName',
    route('bad', targets({ weight: 1 })),
    'spec.rules[0].targetModels[0]',
    /exactly one of modelServerName or externalModelProviderName/,
  ],
  [
    'neither modelName nor loraAdapters',
    route('bad', { rules: routeSpec()['rules'] }),
    'spec',
    /modelName or loraAdapters must be set/,
  ],
  [
    'loraAdapters > 10',
    route('bad', routeSpec({ loraAdapters: Array.from({ length: 11 }, (_, i) => `l${i}`) })),
    'spec.loraAdapters',
    /must have at most 10 items/,
  ],
  [
    'bad rateLimit unit',
    route('bad', routeSpec({ rateLimit: { inputTokensPerUnit: 5, unit: 'week' } })),
    'spec.rateLimit.unit',
    /Unsupported value: "week"/,
  ],
  [
    'bad inferenceEngine',
    server('bad', serverSpec({ inferenceEngine: 'vllm' })),
    'spec.inferenceEngine',
    /Unsupported value: "vllm"/,
  ],
  [
    'bad protocol',
    server('bad', serverSpec({ workloadPort: { port: 80, protocol: 'grpc' } })),
    'spec.workloadPort.protocol',
    /Unsupported value: "grpc"/,
  ],
  [
    'empty matchLabels',
    server('bad', serverSpec({ workloadSelector: { matchLabels: {} } })),
    'spec.workloadSelector.matchLabels',
    /at least 1 properties/,
  ],
  [
    'bad duration',
    server('bad', serverSpec({ trafficPolicy: { timeout: '30 seconds' } })),
    'spec.trafficPolicy.timeout',
    /should match/,
  ],
  [
    'negative retry attempts',
    server('bad', serverSpec({ trafficPolicy: { retry: { attempts: -1 } } })),
    'spec.trafficPolicy.retry.attempts',
    /greater than or equal to 0/,
  ],
  [
    'maxRetryInterval below retryInterval (CEL)',
    server(
      'bad',
      serverSpec({
        trafficPolicy: { retry: { attempts: 2, retryInterval: '1s', maxRetryInterval: '500ms' } },
      }),
    ),
    'spec.trafficPolicy.retry',
    /maxRetryInterval must not be less than retryInterval/,
  ],
  [
    'unknown scheduler plugin',
    server('bad', serverSpec({ scheduler: { plugins: [{ name: 'fastest' }] } })),
    'spec.scheduler.plugins[0].name',
    /Unsupported value: "fastest"/,
  ],
  [
    'duplicate scheduler plugin',
    server('bad', serverSpec({ scheduler: { plugins: [{ name: 'random' }, { name: 'random' }] } })),
    '.spec.scheduler.plugins',
    /duplicate entries for key \[name="random"\]/,
  ],
  [
    'unknown field',
    server('bad', serverSpec({ engine: 'vLLM' })),
    'ModelServer.spec',
    /unknown field "engine"/,
  ],
  [
    'policy: rate entry with two metrics',
    policy('bad', { tiers: [{ name: 'free', rate: [{ requests: 1, tokens: 5, per: 'minute' }] }] }),
    'spec.tiers[0].rate[0]',
    /exactly one of requests, inputTokens, outputTokens or tokens/,
  ],
  [
    'policy: tokenizer model match with two of exact/prefix/regex',
    policy('bad', {
      rateLimit: { tokenizers: [{ models: { exact: 'a', regex: 'b' }, tiktoken: 'cl100k_base' }] },
    }),
    'spec.rateLimit.tokenizers[0].models',
    /exactly one of exact, prefix or regex/,
  ],
]

describe('invalid objects are rejected by `kubectl apply`, naming the field', () => {
  it(`has at least 12 distinct cases (${INVALID.length})`, () => {
    expect(new Set(INVALID.map(([what]) => what)).size).toBe(INVALID.length)
    expect(INVALID.length).toBeGreaterThanOrEqual(12)
  })

  it.each(INVALID)('%s', async (_what, obj, field, phrase) => {
    const r = await apply([obj])
    expect(r.code, r.stdout).not.toBe(0)
    expect(r.stderr).toContain(field)
    expect(r.stderr).toMatch(phrase)
    // Nothing was stored.
    const kind = String(obj['kind']).toLowerCase()
    const get = await kubectl(['get', `${kind}.networking.matrixinfer.ai`, 'bad', '-n', NS])
    expect(get.stderr).toContain('NotFound')
  })
})

describe('Kthena parity on a real API server', () => {
  it('applies the Kthena-shaped fixtures (every v1.0 field) unchanged in the pre-release group', async () => {
    // The install's namespace-free fixtures name namespace kthena.
    await kubectl(['create', 'namespace', 'kthena'])
    const file = fileURLToPath(
      new URL('./fixtures/kthena/matrixinfer/kthena.yaml', import.meta.url),
    )
    const r = await kubectl(['apply', '--server-side', '--field-manager=crd-test', '-f', file])
    expect(r.stderr).toBe('')
    expect(r.stdout).toContain('modelroute.networking.matrixinfer.ai/qwen serverside-applied')
    // Kthena's default: a target without weight stays unset (the compiler reads it as 100).
    expect(
      await ok(['get', 'mr', 'qwen', '-n', 'kthena', '-o', 'jsonpath={.spec.parentRefs[0].name}']),
    ).toBe('public')
  })

  it('modelName is immutable (CEL transition rule), as in Kthena', async () => {
    const r = await kubectl([
      'patch',
      'mr',
      'llama',
      '-n',
      NS,
      '--type=merge',
      '-p',
      '{"spec":{"modelName":"other"}}',
    ])
    expect(r.code).not.toBe(0)
    expect(r.stderr).toContain('spec.modelName')
    expect(r.stderr).toMatch(/modelName is immutable/)
    // Other fields still change.
    await ok([
      'patch',
      'mr',
      'llama',
      '-n',
      NS,
      '--type=merge',
      '-p',
      '{"spec":{"loraAdapters":["x"]}}',
    ])
  })

  it('`kubectl explain` shows field descriptions from the zod schemas', async () => {
    const rules = await ok(['explain', 'modelroute.spec.rules'])
    expect(rules).toMatch(/first whose modelMatch holds serves the request/)
    expect(rules).not.toMatch(/<no description>/)
    const weight = await ok(['explain', 'modelroute.spec.rules.targetModels.weight'])
    expect(weight).toMatch(/Relative share/)
    const retry = await ok(['explain', 'modelserver.spec.trafficPolicy.retry'])
    expect(retry).toMatch(/retryInterval/)
    expect(retry).toMatch(/Wait before the first retry/)
    expect(await ok(['explain', 'modelserver.spec.workloadSelector.pdGroup'])).toMatch(
      /served\s+by\s+a\s+decode\s+Pod\s+and\s+a\s+prefill\s+Pod/,
    )
  })

  it('`kubectl get mr -o wide` adds the Ready reason and the Accepted reason', async () => {
    await ok([
      'patch',
      'mr',
      'canary',
      '-n',
      NS,
      '--subresource=status',
      '--type=merge',
      '-p',
      JSON.stringify({
        status: {
          conditions: [
            {
              type: 'Accepted',
              status: 'True',
              reason: 'Accepted',
              message: 'ok',
              lastTransitionTime: '2026-01-01T00:00:00Z',
            },
            {
              type: 'Ready',
              status: 'False',
              reason: 'TargetUnavailable',
              message: 'weighted target(s) ns/llama-tgi have no ready endpoint',
              lastTransitionTime: '2026-01-01T00:00:00Z',
            },
          ],
          targets: '1/2',
        },
      }),
    ])
    const out = await ok(['get', 'mr', 'canary', '-n', NS, '-o', 'wide'])
    const [header, row] = out.trim().split('\n')
    expect(header?.split(/\s+/)).toEqual([
      'NAME',
      'MODEL',
      'READY',
      'TARGETS',
      'AGE',
      'REASON',
      'ACCEPTED',
    ])
    const cols = row?.split(/\s+/) ?? []
    expect([cols[2], cols[3], cols[5], cols[6]]).toEqual([
      'False',
      '1/2',
      'TargetUnavailable',
      'Accepted',
    ])
  })
})
