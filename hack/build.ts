// `npm run build`: esbuild bundles for the container image. dist/infer-gateway.mjs is the full CLI
// (every role); dist/dataplane.mjs is the data plane alone, which must never contain
// @kubernetes/client-node (the data plane has no API-server access by design, and the client is
// ~57 MB installed): the build fails if it does.
import { mkdir, writeFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { type BuildOptions, build } from 'esbuild'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const FORBIDDEN_IN_DATAPLANE = ['node_modules/@kubernetes/client-node/']

const common: BuildOptions = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'esm',
  sourcemap: true,
  metafile: true,
  legalComments: 'eof',
  absWorkingDir: ROOT,
  logLevel: 'warning',
  // CommonJS dependencies (prom-client, …) call require(); give the ESM bundle one.
  banner: { js: "import{createRequire as __cr}from'module';const require=__cr(import.meta.url);" },
}

export interface BuildResult {
  readonly outputs: Record<string, number>
  readonly dataplaneInputs: readonly string[]
}

export async function buildAll(outdir = `${ROOT}dist`): Promise<BuildResult> {
  await mkdir(outdir, { recursive: true })
  const cli = await build({
    ...common,
    entryPoints: { 'infer-gateway': 'hack/cli.ts' },
    outdir,
    outExtension: { '.js': '.mjs' },
  })
  const dp = await build({
    ...common,
    entryPoints: { dataplane: 'dataplane/main.ts' },
    outdir,
    outExtension: { '.js': '.mjs' },
  })
  const dataplaneInputs = Object.keys(dp.metafile?.inputs ?? {})
  const leaked = dataplaneInputs.filter((i) => FORBIDDEN_IN_DATAPLANE.some((f) => i.includes(f)))
  if (leaked.length > 0)
    throw new Error(`data-plane bundle must not include ${leaked.slice(0, 3).join(', ')}`)
  const outputs: Record<string, number> = {}
  for (const m of [cli.metafile, dp.metafile]) {
    for (const [file, o] of Object.entries(m?.outputs ?? {}))
      if (file.endsWith('.mjs')) outputs[file] = o.bytes
  }
  await writeFile(`${outdir}/meta.json`, JSON.stringify({ outputs, dataplaneInputs }, null, 2))
  return { outputs, dataplaneInputs }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  buildAll().then(
    (r) => {
      for (const [f, b] of Object.entries(r.outputs))
        process.stdout.write(`${f}  ${(b / 1024).toFixed(0)} KiB\n`)
    },
    (e: unknown) => {
      process.stderr.write(`build failed: ${e instanceof Error ? e.message : String(e)}\n`)
      process.exitCode = 1
    },
  )
}
