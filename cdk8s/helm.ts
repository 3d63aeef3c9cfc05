// The Helm chart (charts/infer-gateway/), generated from the same InstallChart as install.yaml so
// there is one source. Every on/off option is synthesized both ways; an object that differs
// between them is emitted once per variant under the `if` of the values that select it (objects
// two options both change get every combination of the two), and
// scalar values (image, namespace, replica bounds) are sentinels in the synthesized objects,
// replaced by template expressions. `helm template` with some values therefore renders exactly
// what installObjects() gives for the same options (cdk8s/helm.test.ts checks that with helm).
// The Namespace is not in the chart (Helm needs the release namespace before it installs
// anything: `helm install --create-namespace`); the CRDs are in crds/, as Helm expects.
import { mkdir, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { stringify } from 'yaml'
import type { EndpointPickerPool, EndpointPickerPoolSpec } from './epp.js'
import { type InstallOptions, installObjects, packageVersion } from './install.js'

/** The chart's values and their defaults (values.yaml). */
export interface ChartValues {
  readonly image: string
  readonly autoscaling: {
    readonly enabled: boolean
    readonly minReplicas: number
    readonly maxReplicas: number
    readonly targetCPUUtilizationPercentage: number
  }
  readonly serviceMonitor: { readonly enabled: boolean }
  readonly grafanaDashboard: { readonly enabled: boolean }
  readonly networkPolicy: { readonly enabled: boolean }
  readonly secretsNamespace: string
  /** An EPP Deployment + Service per InferencePool (cdk8s/epp.ts), as install's `endpointPickers`. */
  readonly endpointPickers: readonly EndpointPickerPool[]
}

export const DEFAULT_AUTOSCALING = {
  minReplicas: 2,
  maxReplicas: 10,
  targetCPUUtilizationPercentage: 70,
} as const

/** Plain alphanumeric (never quoted by the YAML writer) and valid wherever a name is. */
const S = {
  image: 'igwsentinelimage',
  namespace: 'igwsentinelns',
  secretsNamespace: 'igwsentinelsecretsns',
  minReplicas: 7001,
  maxReplicas: 7002,
  cpu: 7003,
} as const

interface Toggle {
  readonly cond: string
  readonly set: (o: InstallOptions) => InstallOptions
}

const TOGGLES: readonly Toggle[] = [
  {
    cond: '.Values.autoscaling.enabled',
    set: (o) => ({
      ...o,
      autoscaling: {
        minReplicas: S.minReplicas,
        maxReplicas: S.maxReplicas,
        targetCPUUtilizationPercentage: S.cpu,
      },
    }),
  },
  { cond: '.Values.serviceMonitor.enabled', set: (o) => ({ ...o, serviceMonitor: true }) },
  { cond: '.Values.grafanaDashboard.enabled', set: (o) => ({ ...o, grafanaDashboard: true }) },
  {
    cond: '.Values.secretsNamespace',
    set: (o) => ({ ...o, secretsNamespace: S.secretsNamespace }),
  },
  // Off is the variant: the option defaults to on.
  { cond: '(not .Values.networkPolicy.enabled)', set: (o) => ({ ...o, networkPolicy: false }) },
]

const REPLACE: readonly [RegExp, string][] = [
  [new RegExp(S.image, 'g'), '{{ .Values.image }}'],
  [new RegExp(S.secretsNamespace, 'g'), '{{ .Values.secretsNamespace }}'],
  [new RegExp(S.namespace, 'g'), '{{ .Release.Namespace }}'],
  [new RegExp(`: ${S.minReplicas}$`, 'gm'), ': {{ .Values.autoscaling.minReplicas }}'],
  [new RegExp(`: ${S.maxReplicas}$`, 'gm'), ': {{ .Values.autoscaling.maxReplicas }}'],
  [new RegExp(`: ${S.cpu}$`, 'gm'), ': {{ .Values.autoscaling.targetCPUUtilizationPercentage }}'],
]

type Obj = Record<string, unknown> & { kind?: string; metadata?: { name?: string } }

function key(o: Obj): string {
  return `${String(o.kind)}/${o.metadata?.name ?? ''}`
}

function template(o: Obj): string {
  // Text that is not ours to template (the dashboard's `{{label}}` legends) is escaped first.
  let text = stringify(o, { lineWidth: 0 }).replace(/\{\{|\}\}/g, (m) => `{{ "${m}" }}`)
  for (const [re, to] of REPLACE) text = text.replace(re, to)
  return text
}

function condition(bits: number, relevant: readonly number[]): string {
  const parts = relevant.map((i) => {
    const c = TOGGLES[i]?.cond ?? ''
    return bits & (1 << i) ? c : `(not ${c})`
  })
  return parts.length === 1 ? (parts[0] ?? '') : `and ${parts.join(' ')}`
}

/**
 * Sentinels of the Endpoint Picker templates: one pool is synthesized with them and its objects
 * become the body of a `range` over `.Values.endpointPickers` (a list, not an on/off option).
 */
const E = {
  pool: 'igwsentineleppool',
  namespace: 'igwsentineleppns',
  replicas: 7004,
  port: 7005,
  selector: 'igwsentinelselkey: igwsentinelselval',
  engine: 'igwsentinelengine',
  failureMode: 'igwsentinelfailure',
} as const

/** Inside a `range`, the chart's root is `$`. */
const REPLACE_IN_RANGE: readonly [RegExp, string][] = [
  [new RegExp(S.image, 'g'), '{{ $.Values.image }}'],
  [new RegExp(S.namespace, 'g'), '{{ $.Release.Namespace }}'],
  [new RegExp(E.pool, 'g'), '{{ $p.pool }}'],
  [new RegExp(`: ${E.replicas}$`, 'gm'), ': {{ $p.replicas | default 2 }}'],
  [new RegExp(E.engine, 'g'), '{{ $p.spec.engine }}'],
  [new RegExp(E.failureMode, 'g'), '{{ $p.spec.failureMode | default "FailClose" }}'],
  // The pool's selector map and its port list, written out from the values.
  [new RegExp(`\n( *)${E.selector}`, 'g'), '\n{{- toYaml $p.spec.selector | nindent $1 }}'],
  [
    new RegExp(`\n( *)- number: ${E.port}`, 'g'),
    '\n{{- range $p.spec.targetPorts }}\n$1- number: {{ . }}\n{{- end }}',
  ],
]

function eppTemplate(o: Obj, ns: string): string {
  let text = stringify(o, { lineWidth: 0 })
  for (const [re, to] of REPLACE_IN_RANGE) text = text.replace(re, to)
  // nindent takes a number: the captured indent's length.
  text = text.replace(/nindent ( *) \}\}/g, (_, sp: string) => `nindent ${sp.length} }}`)
  return text.replace(new RegExp(E.namespace, 'g'), ns)
}

/** templates/endpointpickers.yaml and templates/networkpolicy-endpointpickers.yaml. */
function endpointPickerFiles(): Record<string, string> {
  const synth = (spec: boolean, engine: boolean): Map<string, Obj> => {
    const bare: EndpointPickerPool = { namespace: E.namespace, pool: E.pool, replicas: E.replicas }
    // Sentinels in typed fields: replaced by the values' own strings.
    const poolSpec: EndpointPickerPoolSpec = {
      selector: { igwsentinelselkey: 'igwsentinelselval' },
      targetPorts: [E.port],
      failureMode: E.failureMode as 'FailClose',
    }
    const withEngine: EndpointPickerPoolSpec = {
      selector: poolSpec.selector,
      targetPorts: poolSpec.targetPorts,
      failureMode: E.failureMode as 'FailClose',
      engine: E.engine as 'vLLM',
    }
    const pool: EndpointPickerPool = spec
      ? {
          namespace: E.namespace,
          pool: E.pool,
          replicas: E.replicas,
          spec: engine ? withEngine : poolSpec,
        }
      : bare
    const base = new Set(
      (installObjects({ image: S.image, namespace: S.namespace }) as Obj[]).map(key),
    )
    const out = new Map<string, Obj>()
    for (const o of installObjects({
      image: S.image,
      namespace: S.namespace,
      endpointPickers: [pool],
    }) as Obj[])
      if (!base.has(key(o))) out.set(String(o.kind), o)
    return out
  }
  const bare = synth(false, false)
  const plain = synth(true, false).get('InferencePool')
  const engine = synth(true, true).get('InferencePool')
  const deployment = bare.get('Deployment')
  const service = bare.get('Service')
  const policy = bare.get('NetworkPolicy')
  if (!plain || !engine || !deployment || !service || !policy)
    throw new Error('helm: the EPP objects were not synthesized')
  const p = '{{ $p.namespace }}'
  return {
    'templates/endpointpickers.yaml': [
      // The same check as the manifest generator: one EPP per pool.
      '{{- $seen := dict }}',
      '{{- range $p := .Values.endpointPickers }}',
      '{{- $key := printf "%s/%s" $p.namespace $p.pool }}',
      '{{- if hasKey $seen $key }}{{ fail (printf "endpointPickers: %s is listed twice" $key) }}{{- end }}',
      '{{- $_ := set $seen $key true }}',
      '{{- if $p.spec }}',
      '---',
      '{{- if $p.spec.engine }}',
      `${eppTemplate(engine, p)}{{- else }}`,
      `${eppTemplate(plain, p)}{{- end }}`,
      '{{- end }}',
      '---',
      `${eppTemplate(deployment, p)}---`,
      `${eppTemplate(service, p)}{{- end }}`,
      '',
    ].join('\n'),
    'templates/networkpolicy-endpointpickers.yaml': [
      '{{- if .Values.networkPolicy.enabled }}',
      '{{- $namespaces := list }}',
      '{{- range .Values.endpointPickers }}{{- $namespaces = append $namespaces .namespace }}{{- end }}',
      '{{- range $ns := $namespaces | uniq | sortAlpha }}',
      '---',
      `${eppTemplate(policy, '{{ $ns }}')}{{- end }}`,
      '{{- end }}',
      '',
    ].join('\n'),
  }
}

export interface ChartFiles {
  /** Path inside the chart directory → content. */
  readonly files: Record<string, string>
}

/** The chart's files; `image` is values.yaml's default image. */
export function chartFiles(image: string): ChartFiles {
  // Synthesized on demand per combination of toggles (bit i = TOGGLES[i] on): the base, each
  // toggle alone, and a combination only for an object that two toggles both change.
  const cache = new Map<number, Map<string, string>>()
  const order: string[] = []
  const crds: Obj[] = []
  const renderAt = (bits: number): Map<string, string> => {
    const hit = cache.get(bits)
    if (hit) return hit
    let opts: InstallOptions = { image: S.image, namespace: S.namespace }
    TOGGLES.forEach((t, i) => {
      if (bits & (1 << i)) opts = t.set(opts)
    })
    const m = new Map<string, string>()
    for (const o of installObjects(opts) as Obj[]) {
      if (o.kind === 'Namespace') continue
      if (o.kind === 'CustomResourceDefinition') {
        if (bits === 0) crds.push(o)
        continue
      }
      const k = key(o)
      if (!order.includes(k)) order.push(k)
      m.set(k, template(o))
    }
    cache.set(bits, m)
    return m
  }
  renderAt(0)
  for (let i = 0; i < TOGGLES.length; i++) renderAt(1 << i)
  const files: Record<string, string> = {}
  for (const k of [...order]) {
    const at = (bits: number) => renderAt(bits).get(k)
    const relevant = TOGGLES.map((_, i) => i).filter((i) => at(0) !== at(1 << i))
    const parts: string[] = []
    for (let n = 0; n < 1 << relevant.length; n++) {
      const bits = relevant.reduce((m, i, j) => (n & (1 << j) ? m | (1 << i) : m), 0)
      const text = at(bits)
      if (text === undefined) continue
      parts.push(
        relevant.length === 0
          ? text
          : `{{- if ${condition(bits, relevant)} }}\n${text}{{- end }}\n`,
      )
    }
    const [kind, name] = k.split('/')
    files[`templates/${kind?.toLowerCase()}-${name}.yaml`] = parts.join('---\n')
  }
  Object.assign(files, endpointPickerFiles())
  for (const c of crds) files[`crds/${c.metadata?.name}.yaml`] = stringify(c, { lineWidth: 0 })
  const version = packageVersion()
  files['Chart.yaml'] = stringify({
    apiVersion: 'v2',
    name: 'infer-gateway',
    description:
      'Kubernetes-native LLM inference gateway: operator, data plane, CRDs (generated from cdk8s/, like install.yaml)',
    type: 'application',
    version,
    appVersion: version,
    kubeVersion: '>=1.29.0-0',
  })
  const values: ChartValues = {
    image,
    autoscaling: { enabled: false, ...DEFAULT_AUTOSCALING },
    serviceMonitor: { enabled: false },
    grafanaDashboard: { enabled: false },
    networkPolicy: { enabled: true },
    secretsNamespace: '',
    endpointPickers: [],
  }
  files['values.yaml'] = `${[
    '# Generated by `npm run manifests` from cdk8s/ (the same source as install.yaml): do not edit.',
    '# Options (docs/install.md, "Options"):',
    '#   image             repository@sha256:<digest> (pinned, the default) or repository:tag',
    '#   autoscaling       a HorizontalPodAutoscaler for the data plane (replaces its fixed 2 replicas)',
    '#   serviceMonitor    a prometheus-operator ServiceMonitor (needs its CRD)',
    "#   grafanaDashboard  the Grafana dashboard as a ConfigMap for Grafana's dashboard sidecar",
    '#   networkPolicy     only data-plane pods reach the operator push port',
    '#   secretsNamespace  credential source Secrets in this one namespace: a Role there, not cluster-wide',
    '#   endpointPickers   an Endpoint Picker (`infer-gateway epp`) Deployment + Service per InferencePool:',
    '#                     - {namespace, pool, replicas?: 2, spec?: {selector, targetPorts: [port],',
    '#                        engine?, failureMode?: FailClose}} (spec: also write the InferencePool)',
  ].join('\n')}\n${stringify(values)}`
  return { files }
}

/** Writes the chart into `dir` (replacing it). */
export async function writeChart(dir: string, image: string): Promise<string[]> {
  const { files } = chartFiles(image)
  await rm(dir, { recursive: true, force: true })
  for (const [path, text] of Object.entries(files)) {
    await mkdir(join(dir, path, '..'), { recursive: true })
    await writeFile(join(dir, path), text)
  }
  return Object.keys(files).sort()
}
