// The image's base: a few Debian packages (glibc, libstdc++, libgcc, base-files, netbase — what
// the official Node binary links, and the files every Debian system has), pinned by version and
// SHA-256 in debian-packages.json, downloaded with apt (`apt-get download`, so the Debian mirror
// and its signed indexes are what vouches for them) and unpacked with `dpkg-deb -x`. No
// maintainer scripts run and no package manager lands in the image: it is as small as a
// distroless base and built from the same packages.
//
//   npx tsx hack/image/debian.ts --update   pins the mirror's current versions (after apt-get update)
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { mkdir, mkdtemp, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { nodeCacheDir } from '../sea/node-dist.js'

export interface DebianPackage {
  readonly name: string
  readonly version: string
  readonly sha256: string
}

export interface DebianLock {
  readonly suite: string
  readonly architecture: string
  readonly packages: readonly DebianPackage[]
}

export const LOCK_FILE = new URL('./debian-packages.json', import.meta.url)

export class DebianError extends Error {
  readonly code = 'DEBIAN_PACKAGE'
}

export function readLock(): DebianLock {
  return JSON.parse(readFileSync(LOCK_FILE, 'utf8')) as DebianLock
}

function run(cmd: string, args: string[], cwd?: string): string {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', timeout: 300_000 })
  if (r.error) throw new DebianError(`${cmd}: ${r.error.message}`)
  if (r.status !== 0)
    throw new DebianError(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr.trim()}`)
  return r.stdout
}

async function sha256File(file: string): Promise<string> {
  return createHash('sha256')
    .update(await readFile(file))
    .digest('hex')
}

/**
 * The .deb files of the lock, in lock order, from the cache or downloaded once
 * (`<cache>/debs/<name>_<sha256>.deb`). A download whose hash differs from the lock fails.
 */
export async function fetchDebs(lock: DebianLock = readLock()): Promise<string[]> {
  // Beside the cached Node binaries: ${INFER_GATEWAY_CACHE:-~/.cache/infer-gateway}/debs.
  const dir = join(nodeCacheDir(), '..', 'debs')
  await mkdir(dir, { recursive: true })
  const out: string[] = []
  for (const p of lock.packages) {
    const file = join(dir, `${p.name}_${p.sha256}.deb`)
    if (!existsSync(file)) {
      const tmp = await mkdtemp(join(dir, '.download-'))
      try {
        try {
          run('apt-get', ['download', '-qq', `${p.name}:${lock.architecture}=${p.version}`], tmp)
        } catch (e) {
          throw new DebianError(
            `${p.name} ${p.version} could not be downloaded (${(e as Error).message}); ` +
              `run apt-get update, or pin the mirror's versions with: npx tsx hack/image/debian.ts --update`,
          )
        }
        const [deb] = (await readdir(tmp)).filter((f) => f.endsWith('.deb'))
        if (!deb) throw new DebianError(`apt-get download ${p.name} wrote no .deb`)
        const got = await sha256File(join(tmp, deb))
        if (got !== p.sha256)
          throw new DebianError(`${p.name} ${p.version}: sha256 ${got}, lock says ${p.sha256}`)
        await rename(join(tmp, deb), file)
      } finally {
        await rm(tmp, { recursive: true, force: true })
      }
    }
    out.push(file)
  }
  return out
}

/** Kept from /usr/share/doc: the licence files. Manuals and changelogs only add size. */
const PRUNE = ['usr/share/man', 'usr/share/info', 'usr/share/lintian', 'usr/share/locale']

/** Unpacks the packages into `root` (dpkg-deb -x: files only, no maintainer scripts). */
export async function unpackDebs(debs: readonly string[], root: string): Promise<void> {
  await mkdir(root, { recursive: true })
  for (const deb of debs) run('dpkg-deb', ['-x', deb, root])
  for (const p of PRUNE) await rm(join(root, p), { recursive: true, force: true })
  const docs = join(root, 'usr/share/doc')
  if (existsSync(docs)) {
    for (const pkg of await readdir(docs)) {
      for (const f of await readdir(join(docs, pkg)))
        if (f !== 'copyright') await rm(join(docs, pkg, f), { recursive: true, force: true })
    }
  }
}

/** The lock with every package at the mirror's current candidate version. */
function candidates(lock: DebianLock): DebianLock {
  const packages = lock.packages.map((p) => {
    const show = run('apt-cache', ['show', '--no-all-versions', `${p.name}:${lock.architecture}`])
    const field = (k: string) => new RegExp(`^${k}: (.+)$`, 'm').exec(show)?.[1]?.trim()
    const version = field('Version')
    const sha256 = field('SHA256')
    if (!version || !sha256) throw new DebianError(`apt-cache show ${p.name}: no Version/SHA256`)
    return { name: p.name, version, sha256 }
  })
  return { ...lock, packages }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: { update: { type: 'boolean', default: false } },
    strict: true,
  })
  Promise.resolve()
    .then(async () => {
      if (values.update)
        await writeFile(LOCK_FILE, `${JSON.stringify(candidates(readLock()), null, 2)}\n`)
      for (const f of await fetchDebs()) process.stdout.write(`${f}\n`)
    })
    .catch((e: unknown) => {
      process.stderr.write(`debian: ${e instanceof Error ? e.message : String(e)}\n`)
      process.exitCode = 1
    })
}
