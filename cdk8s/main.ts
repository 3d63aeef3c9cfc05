// `npm run manifests` (tsx cdk8s/main.ts [--out FILE] [--image IMAGE] [--namespace NS]): writes
// the install manifests as one YAML file, dist/install.yaml by default.
import { copyFile, mkdir, mkdtemp, rename, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { App, YamlOutputType } from 'cdk8s'
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

async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      out: { type: 'string', default: join(ROOT, 'dist', 'install.yaml') },
      image: { type: 'string' },
      namespace: { type: 'string' },
    },
    strict: true,
  })
  const opts: InstallOptions = {
    ...(values.image !== undefined ? { image: values.image } : {}),
    ...(values.namespace !== undefined ? { namespace: values.namespace } : {}),
  }
  const out = await synthInstall(resolve(values.out), opts)
  process.stdout.write(`wrote ${out}\n`)
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main(process.argv.slice(2)).catch((e: unknown) => {
    process.stderr.write(`manifests: ${e instanceof Error ? e.message : String(e)}\n`)
    process.exitCode = 1
  })
}
