// The generated chart (cdk8s/helm.ts): its structure always, and — with a real helm (built from
// the Go module proxy by hack/helm/ensure.sh, cached) — that `helm lint` passes and that
// `helm template` renders exactly installObjects() for the same options (minus the Namespace,
// which Helm creates, and the CRDs, which it installs from crds/).
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { homedir, tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parse, parseAllDocuments } from 'yaml'
import { SYSTEM_NAMESPACE } from '../api/crd.js'
import type { EndpointPickerPool } from './epp.js'
import { chartFiles, writeChart } from './helm.js'
import { type InstallOptions, installObjects } from './install.js'

const IMAGE = `ghcr.io/infer-gateway/infer-gateway@sha256:${'0'.repeat(64)}`
const HELM_VERSION = 'v3.19.0'
const helm = join(
  process.env['INFER_GATEWAY_CACHE'] ?? join(homedir(), '.cache', 'infer-gateway'),
  'tools',
  `helm-${HELM_VERSION}`,
  'helm',
)
const hasHelm = existsSync(helm)
if (!hasHelm)
  process.stdout.write(
    `cdk8s/helm.test.ts: skipping helm lint/template: no helm at ${helm} (bash hack/helm/ensure.sh builds it)\n`,
  )

let dir: string
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'igw-chart-'))
  await writeChart(join(dir, 'infer-gateway'), IMAGE)
}, 120_000)
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true })
})

type Obj = Record<string, unknown> & { kind: string; metadata: { name: string } }

describe('the generated chart', () => {
  it('has Chart.yaml, values with every option, the CRDs in crds/ and one template per object', async () => {
    const root = join(dir, 'infer-gateway')
    const chart = parse(await readFile(join(root, 'Chart.yaml'), 'utf8')) as Record<string, string>
    expect(chart['apiVersion']).toBe('v2')
    expect(chart['name']).toBe('infer-gateway')
    const values = parse(await readFile(join(root, 'values.yaml'), 'utf8')) as Record<
      string,
      unknown
    >
    expect(values).toEqual({
      image: IMAGE,
      autoscaling: {
        enabled: false,
        minReplicas: 2,
        maxReplicas: 10,
        targetCPUUtilizationPercentage: 70,
      },
      serviceMonitor: { enabled: false },
      grafanaDashboard: { enabled: false },
      networkPolicy: { enabled: true },
      secretsNamespace: '',
      endpointPickers: [],
    })
    const crds = installObjects().filter((o) => o['kind'] === 'CustomResourceDefinition') as Obj[]
    expect((await readdir(join(root, 'crds'))).sort()).toEqual(
      crds.map((c) => `${c.metadata.name}.yaml`).sort(),
    )
    const templates = await readdir(join(root, 'templates'))
    // Every object any option combination can produce, and no Namespace.
    for (const o of installObjects({
      autoscaling: { minReplicas: 1, maxReplicas: 2, targetCPUUtilizationPercentage: 50 },
      serviceMonitor: true,
      grafanaDashboard: true,
      secretsNamespace: 'keys',
    }) as Obj[]) {
      if (o.kind === 'Namespace' || o.kind === 'CustomResourceDefinition') continue
      expect(templates).toContain(`${o.kind.toLowerCase()}-${o.metadata.name}.yaml`)
    }
    expect(templates.some((t) => t.startsWith('namespace-'))).toBe(false)
  }, 60_000)

  it('puts optional objects under their value and scalars as template expressions', () => {
    const { files } = chartFiles(IMAGE)
    expect(files['templates/horizontalpodautoscaler-infer-gateway-dataplane.yaml']).toMatch(
      /^\{\{- if \.Values\.autoscaling\.enabled \}\}\n[\s\S]*minReplicas: \{\{ \.Values\.autoscaling\.minReplicas \}\}/,
    )
    expect(files['templates/servicemonitor-infer-gateway.yaml']).toMatch(
      /^\{\{- if \.Values\.serviceMonitor\.enabled \}\}/,
    )
    const dp = files['templates/deployment-infer-gateway-dataplane.yaml'] ?? ''
    expect(dp).toContain('image: {{ .Values.image }}')
    expect(dp).toContain('infer-gateway-operator.{{ .Release.Namespace }}.svc')
    expect(dp).not.toMatch(/igwsentinel|700[123]/)
  }, 120_000)
})

/** `helm template` → objects, with the chart's values set by --set (and `args`, e.g. --values). */
function helmTemplate(namespace: string, sets: string[], args: string[] = []): Obj[] {
  const r = helmRun(namespace, sets, args)
  if (r.status !== 0) throw new Error(`helm template failed: ${r.stderr}`)
  return parseAllDocuments(r.stdout)
    .map((d) => d.toJS() as Obj | null)
    .filter((o): o is Obj => o !== null)
}

function helmRun(namespace: string, sets: string[], args: string[]) {
  const r = spawnSync(
    helm,
    [
      'template',
      'rel',
      join(dir, 'infer-gateway'),
      '--namespace',
      namespace,
      // A helm built with `go install` assumes Kubernetes 1.20; the chart needs 1.29+.
      '--kube-version',
      '1.34.0',
      ...sets.flatMap((s) => ['--set', s]),
      ...args,
    ],
    { encoding: 'utf8', env: { ...process.env, HELM_CACHE_HOME: join(dir, '.helm') } },
  )
  return r
}

/** A values file holding `endpointPickers` (a list of objects: --set is awkward for that). */
async function pickersValues(pools: readonly EndpointPickerPool[]): Promise<string[]> {
  const file = join(dir, `pickers-${pools.length}-${Math.random().toString(36).slice(2)}.yaml`)
  await writeFile(file, JSON.stringify({ endpointPickers: pools }))
  return ['--values', file]
}

/** Two pools in one namespace (one NetworkPolicy for both), one elsewhere; each spec shape. */
const PICKERS: readonly EndpointPickerPool[] = [
  {
    namespace: 'models',
    pool: 'llama',
    spec: {
      selector: { app: 'llama', 'serving.kserve.io/tier': 'gpu' },
      targetPorts: [8000, 8001],
      engine: 'vLLM',
    },
  },
  {
    namespace: 'models',
    pool: 'qwen',
    replicas: 3,
    spec: { selector: { app: 'qwen' }, targetPorts: [8000], failureMode: 'FailOpen' },
  },
  // Its InferencePool is applied by its owner.
  { namespace: 'team-b', pool: 'mistral', replicas: 1 },
]

const sortKey = (o: Obj) => `${o.kind}/${o.metadata.name}`
const sorted = (objs: Obj[]) => [...objs].sort((a, b) => sortKey(a).localeCompare(sortKey(b)))
function expected(opts: InstallOptions): Obj[] {
  return sorted(
    (installObjects(opts) as Obj[]).filter(
      (o) => o.kind !== 'Namespace' && o.kind !== 'CustomResourceDefinition',
    ),
  )
}

describe.skipIf(!hasHelm)('helm', () => {
  it('lints the chart', () => {
    const r = spawnSync(helm, ['lint', join(dir, 'infer-gateway')], { encoding: 'utf8' })
    expect(r.stdout + r.stderr).toContain('0 chart(s) failed')
    expect(r.status).toBe(0)
  }, 60_000)

  it('renders with default values exactly what install.yaml holds', () => {
    expect(sorted(helmTemplate(SYSTEM_NAMESPACE, []))).toEqual(expected({ image: IMAGE }))
  }, 60_000)

  it('renders every option as the manifest generator does, in another namespace', () => {
    const got = helmTemplate('gw', [
      'image=registry.local/ig:dev',
      'autoscaling.enabled=true',
      'autoscaling.minReplicas=3',
      'autoscaling.maxReplicas=9',
      'autoscaling.targetCPUUtilizationPercentage=60',
      'serviceMonitor.enabled=true',
      'grafanaDashboard.enabled=true',
      'networkPolicy.enabled=false',
      'secretsNamespace=team-keys',
    ])
    expect(sorted(got)).toEqual(
      expected({
        image: 'registry.local/ig:dev',
        namespace: 'gw',
        autoscaling: { minReplicas: 3, maxReplicas: 9, targetCPUUtilizationPercentage: 60 },
        serviceMonitor: true,
        grafanaDashboard: true,
        networkPolicy: false,
        secretsNamespace: 'team-keys',
      }),
    )
  }, 60_000)

  it('renders endpointPickers as the manifest generator does (EPP per pool, pools, policies)', async () => {
    const got = helmTemplate('gw', [], await pickersValues(PICKERS))
    const want = expected({ image: IMAGE, namespace: 'gw', endpointPickers: PICKERS })
    expect(sorted(got)).toEqual(want)
    // What the option adds: a Deployment + Service per pool, the two pools given with a spec,
    // one NetworkPolicy per namespace.
    const base = new Set(expected({ image: IMAGE, namespace: 'gw' }).map(sortKey))
    expect(want.filter((o) => !base.has(sortKey(o))).map(sortKey)).toEqual([
      'Deployment/llama-epp',
      'Deployment/mistral-epp',
      'Deployment/qwen-epp',
      'InferencePool/llama',
      'InferencePool/qwen',
      'NetworkPolicy/infer-gateway-operator-epp-models',
      'NetworkPolicy/infer-gateway-operator-epp-team-b',
      'Service/llama-epp',
      'Service/mistral-epp',
      'Service/qwen-epp',
    ])
    const off = helmTemplate('gw', ['networkPolicy.enabled=false'], await pickersValues(PICKERS))
    expect(sorted(off)).toEqual(
      expected({ image: IMAGE, namespace: 'gw', networkPolicy: false, endpointPickers: PICKERS }),
    )
  }, 60_000)

  it('refuses a pool listed twice, as the manifest generator does', async () => {
    const first = PICKERS[2] as EndpointPickerPool
    const r = helmRun('gw', [], await pickersValues([first, { ...first, replicas: 2 }]))
    expect(r.status).not.toBe(0)
    expect(r.stderr).toContain('endpointPickers: team-b/mistral is listed twice')
    expect(() => expected({ endpointPickers: [first, first] })).toThrow(/listed twice/)
  }, 60_000)
})
