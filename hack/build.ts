// `npm run build [-- --no-sea] [--sea-node PATH]`: esbuild bundles for the container image, and
// the data plane as a single executable.
//  - dist/infer-gateway.mjs: the full CLI (every role; the operator runs this one).
//  - dist/dataplane.mjs: the data plane alone (the data-plane Deployment runs this one). It must
//    never contain @kubernetes/client-node (the data plane has no API-server access by design,
//    and the client is ~57 MB installed): the build fails if it does.
//  - dist/infer-gateway-dataplane: the same data plane inside a copy of Node (hack/sea/), which
//    runs with no Node and no node_modules on the host. Linux only; `--no-sea` skips it (the
//    image build does: the image has Node already).
import { mkdir, writeFile } from 'node:fs/promises'
import { isBuiltin } from 'node:module'
import { relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { type BuildOptions, build } from 'esbuild'
import { buildSea } from './sea/build-sea.js'
import { tracingWorkerPlugin } from './tracing-worker-plugin.js'

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
  // Native addons stay out of the bundles: they find their compiled .node file relative to their
  // package directory. The code imports them lazily (`await import('zeromq')`), and the image
  // carries them in /app/node_modules (hack/image, from `externals` below).
  external: ['zeromq'],
  // CommonJS dependencies (prom-client, …) call require(); give the ESM bundle one.
  banner: { js: "import{createRequire as __cr}from'module';const require=__cr(import.meta.url);" },
  // The tracing worker's code goes in as a string (no worker file to ship beside the bundle).
  plugins: [tracingWorkerPlugin(ROOT)],
}

export const SEA_FILE = 'infer-gateway-dataplane'

export interface BuildResult {
  /** Output file → bytes. */
  readonly outputs: Record<string, number>
  readonly dataplaneInputs: readonly string[]
  /**
   * Packages the bundles import at run time instead of inlining (native addons such as zeromq,
   * marked external and loaded lazily): the image carries them in node_modules beside the bundles.
   */
  readonly externals: readonly string[]
  /** The single executable, when built. */
  readonly sea?: { readonly file: string; readonly nodeVersion: string }
}

export interface BuildAllOptions {
  /** Build the single executable (default true). */
  readonly sea?: boolean
  /** Node binary to embed in it (default: the running Node). */
  readonly seaNode?: string
}

/** `@scope/pkg/sub` → `@scope/pkg`, `pkg/sub` → `pkg`. */
function packageOf(specifier: string): string {
  const parts = specifier.split('/')
  return (specifier.startsWith('@') ? parts.slice(0, 2) : parts.slice(0, 1)).join('/')
}

function checkDataplaneInputs(inputs: readonly string[], what: string): void {
  const leaked = inputs.filter((i) => FORBIDDEN_IN_DATAPLANE.some((f) => i.includes(f)))
  if (leaked.length > 0)
    throw new Error(`${what} must not include ${leaked.slice(0, 3).join(', ')}`)
}

export async function buildAll(
  outdir = `${ROOT}dist`,
  opts: BuildAllOptions = {},
): Promise<BuildResult> {
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
  checkDataplaneInputs(dataplaneInputs, 'data-plane bundle')
  const outputs: Record<string, number> = {}
  const externals = new Set<string>()
  for (const m of [cli.metafile, dp.metafile]) {
    for (const [file, o] of Object.entries(m?.outputs ?? {})) {
      if (file.endsWith('.mjs')) outputs[file] = o.bytes
      for (const i of o.imports)
        if (i.external && !isBuiltin(i.path) && !i.path.startsWith('node:'))
          externals.add(packageOf(i.path))
    }
  }
  let sea: BuildResult['sea']
  if (opts.sea ?? true) {
    const s = await buildSea({
      outFile: `${outdir}/${SEA_FILE}`,
      ...(opts.seaNode !== undefined ? { node: opts.seaNode } : {}),
    })
    checkDataplaneInputs(s.inputs, 'single executable')
    // Keys as esbuild writes them: relative to the repository root.
    outputs[relative(ROOT, s.file)] = s.bytes
    sea = { file: s.file, nodeVersion: s.nodeVersion }
  }
  const ext = [...externals].sort()
  await writeFile(
    `${outdir}/meta.json`,
    JSON.stringify({ outputs, dataplaneInputs, externals: ext }, null, 2),
  )
  return { outputs, dataplaneInputs, externals: ext, ...(sea ? { sea } : {}) }
}

function cliOptions(argv: string[]): BuildAllOptions {
  const { values } = parseArgs({
    args: argv,
    options: { 'no-sea': { type: 'boolean', default: false }, 'sea-node': { type: 'string' } },
    strict: true,
  })
  return {
    sea: !values['no-sea'],
    ...(values['sea-node'] !== undefined ? { seaNode: values['sea-node'] } : {}),
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  Promise.resolve()
    .then(() => buildAll(undefined, cliOptions(process.argv.slice(2))))
    .then(
      (r) => {
        for (const [f, b] of Object.entries(r.outputs))
          process.stdout.write(`${f}  ${(b / 1024).toFixed(0)} KiB\n`)
        if (r.sea) process.stdout.write(`single executable embeds Node ${r.sea.nodeVersion}\n`)
      },
      (e: unknown) => {
        process.stderr.write(`build failed: ${e instanceof Error ? e.message : String(e)}\n`)
        process.exitCode = 1
      },
    )
}
