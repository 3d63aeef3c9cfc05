// GAIE on a REAL control plane with upstream parts: the InferencePool / InferenceObjective CRDs
// from the gateway-api-inference-extension module and the Gateway API standard CRDs, applied
// unchanged; the upstream conformance objects (Namespaces, Gateways, InferencePools, HTTPRoutes)
// and sample manifests applied unchanged from the module cache. Our operator runs as the Gateway
// `inference-conformance-infra/conformance-primary` (its `--gateway`), a data plane follows its
// push channel, and engine simulators listen on the pools' target ports (3000, 3002, 3004, 8000)
// on 127.0.0.21x behind Pods whose status the test sets. Clients: the OpenAI SDK and kubectl.
import { execFile } from 'node:child_process'
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import OpenAI from 'openai'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { SNAPSHOT_CONFIGMAP } from '../api/crd.js'
import { inferencePoolKey, type RoutingSnapshot } from '../api/index.js'
import {
  type Cluster,
  createReadyPod,
  type DataplaneProc,
  dataplaneVersion,
  NS,
  type OperatorProc,
  SIM_MODEL,
  spawnDataplane,
  spawnOperator,
  startCluster,
  storedVersion,
  until,
  waitReady,
} from '../hack/bench/control-plane-kit.js'
import { type SimHandle, startSimulator } from '../hack/sim/index.js'
import { decodeSnapshotConfigMap } from '../operator/snapshot-configmap.js'
import {
  ensureGaieModules,
  GAIE_V120,
  GAIE_V160,
  GATEWAY_API,
  upstreamDocs,
} from './helpers/gaie-modules.js'

const GATEWAY = 'inference-conformance-infra/conformance-primary'
const APP_NS = 'inference-conformance-app-backend'
const CONTROLLER = 'infer-gateway.io/gateway-controller'
/** Pod IP and the target ports its simulators listen on (the pools' own port numbers). */
const PODS = {
  'primary-0': { ip: '127.0.0.211', app: 'primary-inference-model-server', ports: [3000] },
  'primary-1': { ip: '127.0.0.212', app: 'primary-inference-model-server', ports: [3000] },
  'secondary-0': { ip: '127.0.0.213', app: 'secondary-inference-model-server', ports: [3000] },
  'dp-0': { ip: '127.0.0.214', app: 'dp-inference-model-server', ports: [3000, 3002, 3004] },
} as const
/** Kinds of the conformance files we apply (their Deployments/Services need a kubelet). */
const APPLY_KINDS = new Set(['Namespace', 'Gateway', 'InferencePool', 'HTTPRoute'])

let c: Cluster
let op: OperatorProc
let dp: DataplaneProc
const sims = new Map<string, SimHandle>()

async function kubectl(args: string[], input?: string): Promise<string> {
  const r = await c.cp.kubectl(args, input === undefined ? {} : { input })
  if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')}: ${r.stderr}`)
  return r.stdout
}

const applyDocs = (docs: readonly unknown[]) =>
  kubectl(['apply', '--server-side', '-f', '-'], docs.map((d) => JSON.stringify(d)).join('\n'))

interface ParentStatus {
  parentRef: { name: string; namespace?: string }
  controllerName: string
  conditions: { type: string; status: string; reason: string; message: string }[]
}

async function parents(resource: string, ns: string, name: string): Promise<ParentStatus[]> {
  const o = JSON.parse(await kubectl(['get', resource, name, '-n', ns, '-o', 'json'])) as {
    status?: { parents?: ParentStatus[] }
  }
  return o.status?.parents ?? []
}

const ours = (ps: readonly ParentStatus[]) => ps.find((p) => p.controllerName === CONTROLLER)
const conds = (p: ParentStatus | undefined) =>
  Object.fromEntries((p?.conditions ?? []).map((x) => [x.type, `${x.status}/${x.reason}`]))

async function snapshot(): Promise<RoutingSnapshot> {
  const cm = await c.core.readNamespacedConfigMap({ name: SNAPSHOT_CONFIGMAP, namespace: NS })
  return decodeSnapshotConfigMap(cm).snapshot
}

/** Sums requests per pod (all of its ports). */
function served(): Record<string, number> {
  const out: Record<string, number> = {}
  for (const [key, s] of sims) {
    const pod = key.split('@')[0] ?? key
    out[pod] = (out[pod] ?? 0) + s.stats().requests
  }
  return out
}

function delta(a: Record<string, number>, b: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(b).map(([k, v]) => [k, v - (a[k] ?? 0)]))
}

beforeAll(async () => {
  ensureGaieModules()
  const simsUp = Promise.all(
    Object.entries(PODS).flatMap(([pod, p]) =>
      p.ports.map(async (port) => {
        const s = await startSimulator({
          name: `${pod}:${port}`,
          host: p.ip,
          port,
          model: SIM_MODEL,
          metricsFormat: 'vllm',
          zeroLatency: true,
        })
        sims.set(`${pod}@${port}`, s)
      }),
    ),
  )
  c = await startCluster()
  // The upstream CRDs, unchanged. llm-d's InferenceObjective CRD is not on the Go proxy (its
  // router module is refused there); llm-d.ai/v1alpha2 has the same schema under another group,
  // so that one CRD is the x-k8s one with the group renamed.
  const crds = [
    join(GAIE_V160, 'config/crd/bases/inference.networking.k8s.io_inferencepools.yaml'),
    join(GAIE_V120, 'config/crd/bases/inference.networking.x-k8s.io_inferenceobjectives.yaml'),
    ...['gatewayclasses', 'gateways', 'httproutes'].map((k) =>
      join(GATEWAY_API, `config/crd/standard/gateway.networking.k8s.io_${k}.yaml`),
    ),
  ]
  for (const f of crds) await kubectl(['apply', '--server-side', '-f', f])
  const [xk8s] = await upstreamDocs(crds[1] as string)
  const llmd = JSON.parse(
    JSON.stringify(xk8s).replaceAll('inference.networking.x-k8s.io', 'llm-d.ai'),
  ) as Record<string, unknown>
  await applyDocs([llmd])
  await kubectl([
    'wait',
    '--for=condition=Established',
    '--timeout=60s',
    'crd/inferencepools.inference.networking.k8s.io',
    'crd/inferenceobjectives.inference.networking.x-k8s.io',
    'crd/inferenceobjectives.llm-d.ai',
    'crd/httproutes.gateway.networking.k8s.io',
    'crd/gateways.gateway.networking.k8s.io',
  ])
  await simsUp
  // Discovery at start-up finds the GAIE groups: start the operator after the CRDs.
  op = await spawnOperator(c, { extra: ['--gateway', GATEWAY] })
  await waitReady(op.url)
  dp = await spawnDataplane('127.0.0.220', [
    '--push-url',
    op.pushUrl,
    '--gateway',
    GATEWAY,
    '--workers',
    '1',
  ])
}, 240_000)

afterAll(async () => {
  await dp?.stop()
  await op?.stop()
  await Promise.all([...sims.values()].map((s) => s.close()))
  await c?.stop()
}, 60_000)

describe('GAIE on a real API server with the upstream CRDs and objects', () => {
  it('the upstream conformance objects apply unchanged and get our status.parents entries', async () => {
    const base = (await upstreamDocs(join(GAIE_V120, 'conformance/resources/base.yaml'))).filter(
      (d) => APPLY_KINDS.has(String(d['kind'])),
    )
    await applyDocs(base.filter((d) => d['kind'] === 'Namespace'))
    await applyDocs(base.filter((d) => d['kind'] !== 'Namespace'))
    const dir = join(GAIE_V120, 'conformance/tests')
    const routes: Record<string, unknown>[] = []
    for (const f of (await readdir(dir)).filter((n) => n.endsWith('.yaml')).sort())
      routes.push(
        ...(await upstreamDocs(join(dir, f))).filter((d) => APPLY_KINDS.has(String(d['kind']))),
      )
    // Every InferencePool and HTTPRoute of the conformance suite is accepted by the real CRDs.
    expect(routes.length).toBeGreaterThan(10)
    await applyDocs(routes)
    for (const [name, p] of Object.entries(PODS))
      await createReadyPod(c, APP_NS, name, { app: p.app }, p.ip)

    const pool = await until('primary pool accepted by us', async () => {
      const p = ours(await parents('inferencepool', APP_NS, 'primary-inference-pool'))
      return conds(p)['Accepted'] === 'True/Accepted' ? p : undefined
    })
    expect(pool?.parentRef).toMatchObject({
      kind: 'Gateway',
      name: 'conformance-primary',
      namespace: 'inference-conformance-infra',
    })
    expect(conds(pool)).toEqual({ Accepted: 'True/Accepted', ResolvedRefs: 'True/ResolvedRefs' })

    const accepted = await until('accepted route status', async () =>
      ours(await parents('httproute', APP_NS, 'httproute-for-inferencepool-accepted')),
    )
    // The parentRef is echoed as the route wrote it (sectionName included).
    expect(accepted.parentRef).toMatchObject({ name: 'conformance-primary', sectionName: 'http' })
    expect(conds(accepted)).toEqual({
      Accepted: 'True/Accepted',
      ResolvedRefs: 'True/ResolvedRefs',
    })

    const missing = await until('non-existent pool route status', async () =>
      ours(await parents('httproute', APP_NS, 'httproute-to-non-existent-pool')),
    )
    expect(conds(missing)).toEqual({
      Accepted: 'True/Accepted',
      ResolvedRefs: 'False/BackendNotFound',
    })
    expect(missing.conditions.find((x) => x.type === 'ResolvedRefs')?.message).toContain(
      'inferencepool "non-existent-inference-pool" which does not exist',
    )

    // Routes whose only parent is the other Gateway are not ours: no entry of ours.
    const all = JSON.parse(await kubectl(['get', 'httproute', '-n', APP_NS, '-o', 'json'])) as {
      items: {
        metadata: { name: string }
        spec: { parentRefs: { name: string }[] }
        status?: { parents?: ParentStatus[] }
      }[]
    }
    const secondaryOnly = all.items.filter((r) =>
      r.spec.parentRefs.every((p) => p.name !== 'conformance-primary'),
    )
    expect(secondaryOnly.length).toBeGreaterThan(0)
    for (const r of secondaryOnly) expect(ours(r.status?.parents ?? [])).toBeUndefined()

    // Every pool is compiled with its Ready pods × target ports (the DP pool: 3 ranks).
    const snap = await until('pools with endpoints in the snapshot', async () => {
      const s = await snapshot()
      return s.servers[inferencePoolKey(APP_NS, 'dp-inference-pool')]?.endpoints.length === 3
        ? s
        : undefined
    })
    expect(
      snap.servers[inferencePoolKey(APP_NS, 'dp-inference-pool')]?.endpoints.map(
        (e) => `${e.name} ${e.address}:${e.port}`,
      ),
    ).toEqual([
      'dp-0:3000 127.0.0.214:3000',
      'dp-0:3002 127.0.0.214:3002',
      'dp-0:3004 127.0.0.214:3004',
    ])
    expect(
      snap.servers[inferencePoolKey(APP_NS, 'primary-inference-pool')]?.endpoints.map(
        (e) => e.address,
      ),
    ).toEqual(['127.0.0.211', '127.0.0.212'])
  }, 90_000)

  it('an HTTPRoute to pools routes through our data plane by weight; ModelRoute may target a pool', async () => {
    const pool = (name: string, weight?: number) => ({
      group: 'inference.networking.k8s.io',
      kind: 'InferencePool',
      name,
      ...(weight !== undefined ? { weight } : {}),
    })
    await applyDocs([
      {
        apiVersion: 'gateway.networking.k8s.io/v1',
        kind: 'HTTPRoute',
        metadata: { name: 'inference', namespace: APP_NS },
        spec: {
          parentRefs: [{ name: 'conformance-primary', namespace: 'inference-conformance-infra' }],
          rules: [
            {
              matches: [{ path: { type: 'PathPrefix', value: '/v1' } }],
              backendRefs: [
                pool('primary-inference-pool', 80),
                pool('secondary-inference-pool', 20),
              ],
            },
          ],
        },
      },
      {
        apiVersion: 'networking.matrixinfer.ai/v1alpha1',
        kind: 'ModelRoute',
        metadata: { name: 'dp', namespace: APP_NS },
        // The simulators serve one model name: the ModelRoute claims it for requests with
        // `x-pool: dp` only; the others fall through to the HTTPRoute.
        spec: {
          modelName: SIM_MODEL,
          rules: [
            {
              modelMatch: { headers: { 'x-pool': { exact: 'dp' } } },
              targetModels: [{ inferencePoolName: 'dp-inference-pool' }],
            },
          ],
        },
      },
    ])
    await until('route accepted', async () => {
      const p = ours(await parents('httproute', APP_NS, 'inference'))
      return conds(p)['ResolvedRefs'] === 'True/ResolvedRefs' ? true : undefined
    })
    await until('data plane on the stored version', async () => {
      const { version } = await storedVersion(c)
      const s = await snapshot()
      return (await dataplaneVersion(dp.url)) === version && s.routes.some((r) => r.name === 'dp')
        ? true
        : undefined
    })
    const client = new OpenAI({ baseURL: `${dp.url}/v1`, apiKey: 'unused', maxRetries: 0 })
    const before = served()
    for (let i = 0; i < 100; i++) {
      const r = await client.chat.completions.create({
        model: SIM_MODEL,
        messages: [{ role: 'user', content: `hello ${i}` }],
        max_tokens: 2,
      })
      expect(r.choices).toHaveLength(1)
    }
    const d = delta(before, served())
    expect(d['dp-0']).toBe(0)
    const primary = (d['primary-0'] ?? 0) + (d['primary-1'] ?? 0)
    expect(primary + (d['secondary-0'] ?? 0)).toBe(100)
    // 100 draws at p=0.8: [0.65, 0.95] is beyond 3.5 standard deviations.
    expect(primary).toBeGreaterThan(65)
    expect(primary).toBeLessThan(95)
    expect(d['primary-0']).toBeGreaterThan(0)
    expect(d['primary-1']).toBeGreaterThan(0)

    // The ModelRoute's rule: the DP pool, over its three ranks.
    const dpBefore = served()
    await Promise.all(
      Array.from({ length: 24 }, (_, i) =>
        client.completions.create(
          { model: SIM_MODEL, prompt: `rank probe ${i} ${'x '.repeat(i * 9)}`, max_tokens: 2 },
          { headers: { 'x-pool': 'dp' } },
        ),
      ),
    )
    expect(delta(dpBefore, served())['dp-0']).toBe(24)
    const ranks = [...sims]
      .filter(([k]) => k.startsWith('dp-0@'))
      .map(([, s]) => s.stats().requests)
    expect(ranks.every((n) => n > 0)).toBe(true)
  }, 90_000)

  it('upstream sample manifests: InferenceObjective priorities (both groups) reach the pool; other Gateways are left alone', async () => {
    // The chart's InferencePool for the samples (config/charts/inferencepool renders this shape).
    await applyDocs([
      {
        apiVersion: 'inference.networking.k8s.io/v1',
        kind: 'InferencePool',
        metadata: { name: 'vllm-llama3-8b-instruct', namespace: 'default' },
        spec: {
          selector: { matchLabels: { app: 'vllm-llama3-8b-instruct' } },
          targetPorts: [{ number: 8000 }],
          endpointPickerRef: {
            name: 'vllm-llama3-8b-instruct-epp',
            port: { number: 9002 },
            failureMode: 'FailClose',
          },
        },
      },
    ])
    const manifests = join(GAIE_V120, 'config/manifests')
    await applyDocs(await upstreamDocs(join(manifests, 'inferenceobjective.yaml')))
    for (const gw of ['istio', 'kgateway', 'gke', 'nginxgatewayfabric', 'envoyaigateway'])
      await applyDocs(
        (await upstreamDocs(join(manifests, 'gateway', gw, 'httproute.yaml'))).filter(
          (d) => d['kind'] === 'HTTPRoute',
        ),
      )
    // llm-d's group wins over the legacy one for the same name.
    await applyDocs([
      {
        apiVersion: 'llm-d.ai/v1alpha2',
        kind: 'InferenceObjective',
        metadata: { name: 'food-review', namespace: 'default' },
        spec: { priority: 7, poolRef: { name: 'vllm-llama3-8b-instruct' } },
      },
    ])
    const key = inferencePoolKey('default', 'vllm-llama3-8b-instruct')
    const snap = await until('objectives in the snapshot', async () => {
      const s = await snapshot()
      return s.servers[key]?.inferencePool?.objectives['food-review'] === 7 ? s : undefined
    })
    expect(snap.servers[key]?.inferencePool?.objectives).toEqual({
      'base-model': 2,
      'base-model-cpu': 2,
      'food-review': 7,
    })
    // The samples' HTTPRoute names Gateway default/inference-gateway: not ours to serve or mark.
    expect(snap.routes.some((r) => r.name === 'llm-route')).toBe(false)
    expect(ours(await parents('httproute', 'default', 'llm-route'))).toBeUndefined()
    expect(
      ours(await parents('inferencepool', 'default', 'vllm-llama3-8b-instruct')),
    ).toBeUndefined()
  }, 60_000)

  it('the upstream test/cel InferencePool suite passes on this API server while our operator writes status', async () => {
    const run = promisify(execFile)
    // Built once into the cache (hack/ensure-test-deps.sh runs the same script).
    const built = await run('bash', [join(import.meta.dirname, '..', 'hack', 'gaie-cel.sh')], {
      maxBuffer: 1 << 24,
    })
    const bin = built.stdout.trim().split('\n').at(-1) ?? ''
    // KUBECONFIG: the upstream suite runs against an existing cluster instead of its own envtest.
    const r = await run(bin, ['-test.v', '-test.count=1'], {
      env: { ...process.env, KUBECONFIG: c.cp.kubeconfigPath },
      maxBuffer: 1 << 24,
    }).catch((e: { stdout?: string; stderr?: string; code?: number }) => e)
    expect(r.stdout).toMatch(/^--- PASS: TestValidateInferencePool /m)
    expect(r.stdout).not.toMatch(/--- FAIL/)
    // Our entries stayed valid and in place alongside the suite's objects.
    expect(conds(ours(await parents('inferencepool', APP_NS, 'primary-inference-pool')))).toEqual({
      Accepted: 'True/Accepted',
      ResolvedRefs: 'True/ResolvedRefs',
    })
  }, 600_000)
})
