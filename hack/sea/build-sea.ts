// The data plane as one executable file (Node's single executable applications, "SEA"): a copy of
// a Node binary with the data plane injected, so a host without Node or node_modules runs
// `./infer-gateway-dataplane --config dir/`. Part of `npm run build` (hack/build.ts).
//
// Why the steps look like this (Node 20–24 SEA rules):
// - The injected main script must be CommonJS and can require() only Node's built-in modules, so
//   the data plane is bundled again as one CJS file, and the build fails if that bundle still
//   needs anything outside Node (a native addon, an unbundled package).
// - `import.meta` does not exist in CommonJS: `import.meta.url` is defined as the executable's
//   file URL (in the injected script `__filename` is the executable); any other `import.meta`
//   use makes esbuild warn, and a warning fails the build rather than shipping `undefined`.
// - The blob must be produced by the same Node binary it is injected into, so one `node` path is
//   used for both (default: the Node running the build).
// - Linux only: macOS needs the signature removed and re-added, Windows a PE binary.
import { spawnSync } from 'node:child_process'
import { chmod, copyFile, mkdtemp, readFile, rename, rm, stat, writeFile } from 'node:fs/promises'
import { createRequire, isBuiltin } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { build } from 'esbuild'
import { tracingWorkerPlugin } from '../tracing-worker-plugin.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
/** The sentinel every official Node binary since 18.16 carries for SEA injection. */
export const SEA_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2'
export const SEA_ENTRY = 'dataplane/main.ts'

export type SeaErrorCode =
  | 'SEA_UNSUPPORTED_PLATFORM'
  | 'SEA_NO_FUSE'
  | 'SEA_BUNDLE'
  | 'SEA_BLOB'
  | 'SEA_INJECT'
  | 'SEA_SMOKE'

export class SeaBuildError extends Error {
  override readonly name = 'SeaBuildError'
  readonly code: SeaErrorCode

  constructor(code: SeaErrorCode, message: string) {
    super(message)
    this.code = code
  }
}

export interface SeaOptions {
  /** Where the executable goes (replaced atomically, so a running copy is not disturbed). */
  readonly outFile: string
  /** The Node binary to embed, and to produce the blob with. Default: the running Node. */
  readonly node?: string
}

export interface SeaResult {
  readonly file: string
  readonly bytes: number
  /** `process.version` of the embedded Node. */
  readonly nodeVersion: string
  /** Source files in the bundle (repo-relative), for the same checks as the ESM bundle. */
  readonly inputs: readonly string[]
}

function run(
  cmd: string,
  args: readonly string[],
  cwd: string,
): { status: number | null; out: string } {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', timeout: 120_000 })
  const out = `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? String(r.error) : ''}`.trim()
  return { status: r.status, out }
}

export async function buildSea(opts: SeaOptions): Promise<SeaResult> {
  if (process.platform !== 'linux')
    throw new SeaBuildError(
      'SEA_UNSUPPORTED_PLATFORM',
      `single executable is built on Linux only (this is ${process.platform}); use --no-sea`,
    )
  const node = opts.node ?? process.execPath
  const version = run(node, ['--version'], ROOT)
  if (version.status !== 0)
    throw new SeaBuildError('SEA_BLOB', `${node} --version failed: ${version.out}`)
  // Checked first (a ~100 MB read, well under a second): postject would find out only after the
  // bundle and the blob, and its message does not say what to do.
  if (!(await readFile(node)).includes(`${SEA_FUSE}:0`))
    throw new SeaBuildError(
      'SEA_NO_FUSE',
      `${node} (${version.out}) has no single-executable fuse (${SEA_FUSE}): it is not an official Node build (some distribution packages are not); pass an official binary with --sea-node, e.g. "$(npm run -s node:fetch)"`,
    )
  const tmp = await mkdtemp(join(tmpdir(), 'igw-sea-'))
  try {
    const main = join(tmp, 'dataplane.cjs')
    const res = await build({
      entryPoints: [SEA_ENTRY],
      absWorkingDir: ROOT,
      outfile: main,
      bundle: true,
      platform: 'node',
      target: 'node20',
      format: 'cjs',
      metafile: true,
      legalComments: 'eof',
      logLevel: 'silent',
      define: { 'import.meta.url': '__igwImportMetaUrl' },
      // The tracing worker runs from a string in the executable (hack/tracing-worker-plugin.ts).
      plugins: [tracingWorkerPlugin(ROOT)],
      banner: { js: "var __igwImportMetaUrl=require('node:url').pathToFileURL(__filename).href;" },
    })
    if (res.warnings.length > 0)
      throw new SeaBuildError(
        'SEA_BUNDLE',
        `the CommonJS bundle for the single executable has warnings: ${res.warnings
          .map((w) => `${w.location?.file ?? ''}:${w.location?.line ?? ''} ${w.text}`)
          .join('; ')}`,
      )
    const outputs = Object.values(res.metafile?.outputs ?? {})
    const external = outputs
      .flatMap((o) => o.imports)
      // `node:` ids count as built-in even when this Node lacks one (undici loads node:sqlite
      // lazily, only on Node versions that have it).
      .filter((i) => i.external && !i.path.startsWith('node:') && !isBuiltin(i.path))
      .map((i) => i.path)
    if (external.length > 0)
      throw new SeaBuildError(
        'SEA_BUNDLE',
        `the single executable can load only Node built-ins, but the bundle needs ${[...new Set(external)].join(', ')}`,
      )

    const blob = join(tmp, 'sea-prep.blob')
    const config = join(tmp, 'sea-config.json')
    await writeFile(
      config,
      JSON.stringify({ main, output: blob, disableExperimentalSEAWarning: true }, null, 2),
    )
    const made = run(node, ['--experimental-sea-config', config], tmp)
    if (made.status !== 0)
      throw new SeaBuildError('SEA_BLOB', `${node} --experimental-sea-config failed: ${made.out}`)

    const partial = `${opts.outFile}.partial`
    await copyFile(node, partial)
    await chmod(partial, 0o755)
    const postject = createRequire(import.meta.url).resolve('postject/dist/cli.js')
    const injected = run(
      process.execPath,
      [postject, partial, 'NODE_SEA_BLOB', blob, '--sentinel-fuse', SEA_FUSE],
      tmp,
    )
    if (injected.status !== 0) {
      await rm(partial, { force: true })
      throw new SeaBuildError(
        'SEA_INJECT',
        `postject could not inject the data plane into a copy of ${node}: ${injected.out}`,
      )
    }
    // An injected binary that does not start is worse than none: check it before it replaces one.
    const smoke = run(partial, ['--help'], tmp)
    if (smoke.status !== 0 || !smoke.out.includes('Usage: infer-gateway dataplane')) {
      await rm(partial, { force: true })
      throw new SeaBuildError('SEA_SMOKE', `the single executable does not start: ${smoke.out}`)
    }
    await rename(partial, opts.outFile)
    return {
      file: opts.outFile,
      bytes: (await stat(opts.outFile)).size,
      nodeVersion: version.out,
      inputs: Object.keys(res.metafile?.inputs ?? {}),
    }
  } finally {
    await rm(tmp, { recursive: true, force: true })
  }
}
