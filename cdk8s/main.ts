// `npm run manifests` (tsx cdk8s/main.ts [options]): writes the install manifests as one YAML
// file (dist/install.yaml) and the Helm chart from the same code (charts/infer-gateway/).
// The image is pinned by digest from `npm run image`'s record (dist/image-build.json);
// `--image REF` names another one explicitly (e.g. an unpinned tag).
import { copyFile, mkdir, mkdtemp, rename, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { App, YamlOutputType } from 'cdk8s'
import { pinnedImage, readImageRecord } from '../hack/image/record.js'
import { DASHBOARD_FILE, writeDashboard } from './dashboard.js'
import { DEFAULT_AUTOSCALING, writeChart } from './helm.js'
import { InstallChart, type InstallOptions } from './install.js'

export { crdObjects } from './crds.js'
export { type InstallOptions, installObjects } from './install.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))

/**
 * Synthesizes into a private temp dir first: cdk8s names a FILE_PER_APP file `app<ext>`, and
 * dist/ also holds the build's bundles, which synth must not touch.
 */
export async function synthInstall(outFile: string, opts: InstallOptions = {}): Promise<string> {
  const tmp = await mkdtemp(join(tmpdir(), 'infer-gateway-manifests-'))
  try {
    const app = new App({
      outdir: tmp,
      yamlOutputType: YamlOutputType.FILE_PER_APP,
      outputFileExtension: '.yaml',
    })
    new InstallChart(app, 'infer-gateway', opts)
    app.synth()
    await mkdir(dirname(outFile), { recursive: true })
    // rename fails across file systems (tmpfs → disk); copy is what always works.
    await rename(join(tmp, 'app.yaml'), outFile).catch(() =>
      copyFile(join(tmp, 'app.yaml'), outFile),
    )
    return outFile
  } finally {
    await rm(tmp, { recursive: true, force: true })
  }
}

function intFlag(name: string, v: string | undefined, dflt: number): number {
  if (v === undefined) return dflt
  const n = Number(v)
  if (!Number.isInteger(n) || n < 1)
    throw new Error(`--${name}: expected a positive integer, got ${v}`)
  return n
}

function eppPoolFlag(v: string): { namespace: string; pool: string } {
  const m = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?)\/([a-z0-9]([-a-z0-9.]*[a-z0-9])?)$/.exec(v)
  if (m === null) throw new Error(`--epp-pool: expected <namespace>/<InferencePool>, got ${v}`)
  return { namespace: m[1] as string, pool: m[3] as string }
}

export async function main(argv: string[]): Promise<string[]> {
  const { values } = parseArgs({
    args: argv,
    options: {
      out: { type: 'string', default: join(ROOT, 'dist', 'install.yaml') },
      chart: { type: 'string', default: join(ROOT, 'charts', 'infer-gateway') },
      image: { type: 'string' },
      'image-record': { type: 'string', default: join(ROOT, 'dist', 'image-build.json') },
      repository: { type: 'string' },
      namespace: { type: 'string' },
      autoscaling: { type: 'boolean', default: false },
      'min-replicas': { type: 'string' },
      'max-replicas': { type: 'string' },
      'target-cpu': { type: 'string' },
      'service-monitor': { type: 'boolean', default: false },
      'grafana-dashboard': { type: 'boolean', default: false },
      'secrets-namespace': { type: 'string' },
      'no-network-policy': { type: 'boolean', default: false },
      /** `<namespace>/<InferencePool>`, repeatable: an EPP Deployment + Service for that pool. */
      'epp-pool': { type: 'string', multiple: true },
    },
    strict: true,
  })
  // Pinned by default; a tag only when asked for by name.
  const image =
    values.image ?? pinnedImage(readImageRecord(resolve(values['image-record'])), values.repository)
  const autoscaling = {
    minReplicas: intFlag('min-replicas', values['min-replicas'], DEFAULT_AUTOSCALING.minReplicas),
    maxReplicas: intFlag('max-replicas', values['max-replicas'], DEFAULT_AUTOSCALING.maxReplicas),
    targetCPUUtilizationPercentage: intFlag(
      'target-cpu',
      values['target-cpu'],
      DEFAULT_AUTOSCALING.targetCPUUtilizationPercentage,
    ),
  }
  const opts: InstallOptions = {
    image,
    ...(values.namespace !== undefined ? { namespace: values.namespace } : {}),
    ...(values.autoscaling ? { autoscaling } : {}),
    ...(values['service-monitor'] ? { serviceMonitor: true } : {}),
    ...(values['grafana-dashboard'] ? { grafanaDashboard: true } : {}),
    ...(values['secrets-namespace'] !== undefined
      ? { secretsNamespace: values['secrets-namespace'] }
      : {}),
    ...(values['no-network-policy'] ? { networkPolicy: false } : {}),
    ...(values['epp-pool'] !== undefined
      ? { endpointPickers: values['epp-pool'].map(eppPoolFlag) }
      : {}),
  }
  const out = await synthInstall(resolve(values.out), opts)
  // The Grafana dashboard JSON beside the manifests (import it, or install it with --grafana-dashboard).
  await writeDashboard(join(dirname(out), DASHBOARD_FILE))
  // The chart takes the options as values; its default image is the same one.
  await writeChart(resolve(values.chart), image)
  return [out, resolve(values.chart)]
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main(process.argv.slice(2)).then(
    (written) => {
      for (const w of written) process.stdout.write(`wrote ${w}\n`)
    },
    (e: unknown) => {
      process.stderr.write(`manifests: ${e instanceof Error ? e.message : String(e)}\n`)
      process.exitCode = 1
    },
  )
}
