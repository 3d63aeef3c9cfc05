// `npm run image [-- --out-dir DIR] [--repository REPO] [--tag TAG]`: the container image, built
// here without Docker or a registry, reproducibly. Three layers:
//  1. base: Debian bookworm packages (debian-packages.json: glibc, libstdc++, libgcc, base-files,
//     netbase) unpacked as files, plus /etc/passwd with the `nonroot` user 65532, /tmp;
//  2. node: the official Node 24 binary from the npm registry (hack/sea/node-dist.ts) as
//     /nodejs/bin/node (the path distroless images use);
//  3. app: the bundles of `npm run build -- --no-sea` in /app, and in /app/node_modules every
//     package the bundles import at run time instead of inlining (native addons) with its
//     dependencies.
// Written as an OCI layout in dist/image/ (oci.ts); dist/image-build.json says what was built
// (digest, reference, layers): the manifest generator pins install.yaml to that digest and the
// release workflow pushes it by digest. The mtime of every file is SOURCE_DATE_EPOCH (default:
// the HEAD commit's time), so two builds of the same tree give the same digest.
import { spawnSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { chmod, copyFile, cp, mkdir, readdir, rm, stat, writeFile } from 'node:fs/promises'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { buildAll } from '../build.js'
import { fetchNode, IMAGE_NODE_MAJOR } from '../sea/node-dist.js'
import { fetchDebs, readLock, unpackDebs } from './debian.js'
import { addLayer, initLayout, type Layer, type WrittenImage, writeImage } from './oci.js'
import { IMAGE_PATHS, IMAGE_REPOSITORY, IMAGE_UID, type ImageRecord } from './record.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))

const BUNDLES = ['infer-gateway.mjs', 'dataplane.mjs']

export class ImageBuildError extends Error {
  readonly code = 'IMAGE_BUILD'
}

export interface ImageBuildOptions {
  /** OCI layout directory (replaced). Default dist/image. */
  readonly layout?: string
  /** Build record. Default dist/image-build.json. */
  readonly recordFile?: string
  /** Scratch space; inside the repository so bundle source maps hold the same relative paths. */
  readonly stageDir?: string
  /** Already built bundles (`npm run build -- --no-sea` output) instead of building them. */
  readonly bundlesDir?: string
  readonly repository?: string
  readonly tag?: string
  /** Seconds since 1970: every mtime and the `created` fields. Default SOURCE_DATE_EPOCH or HEAD's time. */
  readonly epoch?: number
  /** The source revision label (org.opencontainers.image.revision). Default: git HEAD. */
  readonly revision?: string
  /** Node binary for layer 2. Default: the cached/fetched Node 24. */
  readonly node?: string
}

function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version?: unknown }
  if (typeof pkg.version !== 'string') throw new ImageBuildError('package.json has no version')
  return pkg.version
}

function git(args: string[]): string | undefined {
  const r = spawnSync('git', args, { cwd: ROOT, encoding: 'utf8' })
  return r.status === 0 ? r.stdout.trim() : undefined
}

export function sourceDateEpoch(): number {
  const env = process.env['SOURCE_DATE_EPOCH']
  const v = env ?? git(['log', '-1', '--format=%ct'])
  const n = Number(v)
  if (!Number.isInteger(n) || n < 0)
    throw new ImageBuildError(`SOURCE_DATE_EPOCH: not a number of seconds: ${v ?? '(no git)'}`)
  return n
}

/** Owner rwX, everyone else rX: independent of the builder's umask. */
async function normalizeModes(dir: string): Promise<void> {
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name)
    if (e.isSymbolicLink()) continue
    if (e.isDirectory()) {
      await chmod(p, 0o755)
      await normalizeModes(p)
    } else {
      await chmod(p, (await stat(p)).mode & 0o111 ? 0o755 : 0o644)
    }
  }
}

async function writeAt(root: string, path: string, text: string, mode = 0o644): Promise<void> {
  await mkdir(dirname(join(root, path)), { recursive: true })
  await writeFile(join(root, path), text)
  await chmod(join(root, path), mode)
}

/** The installed `names` and their dependencies: node_modules-relative path → directory. */
export function dependencyClosure(names: readonly string[]): Map<string, string> {
  const found = new Map<string, string>()
  const visit = (name: string, from: string, required: boolean) => {
    for (let dir = from; ; dir = dirname(dir)) {
      const candidate = join(dir, 'node_modules', name)
      if (existsSync(join(candidate, 'package.json'))) {
        const rel = relative(join(ROOT, 'node_modules'), candidate)
        if (found.has(rel)) return
        found.set(rel, candidate)
        const pkg = JSON.parse(readFileSync(join(candidate, 'package.json'), 'utf8')) as {
          dependencies?: Record<string, string>
          optionalDependencies?: Record<string, string>
        }
        for (const d of Object.keys(pkg.dependencies ?? {})) visit(d, candidate, true)
        for (const d of Object.keys(pkg.optionalDependencies ?? {})) visit(d, candidate, false)
        return
      }
      if (dir === dirname(dir) || dir.length < ROOT.length - 1) break
    }
    if (required) throw new ImageBuildError(`${name}: not installed in node_modules (run npm ci)`)
  }
  // A bundle's external that is not installed is an optional one (esbuild leaves a `require` in a
  // try/catch external, e.g. ws's bufferutil): the bundles already run without it.
  for (const n of names) visit(n, ROOT, false)
  return found
}

export async function buildImage(opts: ImageBuildOptions = {}): Promise<ImageRecord> {
  const layout = opts.layout ?? join(ROOT, 'dist', 'image')
  const recordFile = opts.recordFile ?? join(ROOT, 'dist', 'image-build.json')
  const stage = opts.stageDir ?? join(ROOT, 'dist', '.image-stage')
  const repository = opts.repository ?? IMAGE_REPOSITORY
  const tag = opts.tag ?? packageVersion()
  const epoch = opts.epoch ?? sourceDateEpoch()
  const lock = readLock()

  await rm(stage, { recursive: true, force: true })
  try {
    // Layer 1: Debian packages, the users, /tmp.
    const base = join(stage, 'base')
    await unpackDebs(await fetchDebs(lock), base)
    await writeAt(
      base,
      'etc/passwd',
      `root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:${IMAGE_UID}:${IMAGE_UID}:nonroot:/home/nonroot:/sbin/nologin\n`,
    )
    await writeAt(base, 'etc/group', `root:x:0:\nnonroot:x:${IMAGE_UID}:\n`)
    await writeAt(base, 'etc/nsswitch.conf', 'passwd: files\ngroup: files\nhosts: files dns\n')
    for (const d of ['home/nonroot', 'root']) await mkdir(join(base, d), { recursive: true })
    await mkdir(join(base, 'tmp'), { recursive: true })
    await chmod(join(base, 'tmp'), 0o1777)

    // Layer 2: Node.
    const nodeBin = opts.node ?? (await fetchNode(IMAGE_NODE_MAJOR))
    const nodeVersion = spawnSync(nodeBin, ['--version'], { encoding: 'utf8' }).stdout.trim()
    if (!nodeVersion.startsWith('v'))
      throw new ImageBuildError(`${nodeBin} does not run: cannot put it in the image`)
    const nodeLayer = join(stage, 'node')
    await mkdir(join(nodeLayer, 'nodejs', 'bin'), { recursive: true })
    await copyFile(nodeBin, join(nodeLayer, 'nodejs', 'bin', 'node'))
    const license = join(dirname(dirname(nodeBin)), 'LICENSE')
    if (existsSync(license)) await copyFile(license, join(nodeLayer, 'nodejs', 'LICENSE'))
    await normalizeModes(nodeLayer)

    // Layer 3: bundles and the packages they load at run time.
    const bundles = opts.bundlesDir ?? join(stage, 'bundles')
    let externals: readonly string[]
    if (opts.bundlesDir) {
      const meta = JSON.parse(readFileSync(join(bundles, 'meta.json'), 'utf8')) as {
        externals?: string[]
      }
      externals = meta.externals ?? []
    } else {
      externals = (await buildAll(bundles, { sea: false })).externals
    }
    const app = join(stage, 'app', 'app')
    await mkdir(app, { recursive: true })
    for (const b of BUNDLES) {
      for (const f of [b, `${b}.map`]) {
        if (!existsSync(join(bundles, f))) throw new ImageBuildError(`${bundles}: no ${f}`)
        await copyFile(join(bundles, f), join(app, f))
      }
    }
    const closure = dependencyClosure(externals)
    const carried = externals.filter((n) => closure.has(n))
    for (const [rel, src] of closure)
      await cp(src, join(app, 'node_modules', rel), { recursive: true, dereference: true })
    await normalizeModes(join(stage, 'app'))

    await initLayout(layout)
    const layers: Layer[] = [
      await addLayer(
        layout,
        base,
        epoch,
        `debian ${lock.suite}: ${lock.packages.map((p) => `${p.name}=${p.version}`).join(' ')}`,
      ),
      await addLayer(layout, nodeLayer, epoch, `node ${nodeVersion}: /nodejs/bin/node`),
      await addLayer(
        layout,
        join(stage, 'app'),
        epoch,
        `infer-gateway ${tag}: /app bundles${carried.length ? ` + ${carried.join(' ')}` : ''}`,
      ),
    ]
    const revision = opts.revision ?? git(['rev-parse', 'HEAD'])
    const labels = {
      'org.opencontainers.image.title': 'infer-gateway',
      'org.opencontainers.image.version': tag,
      'org.opencontainers.image.licenses': 'Apache-2.0',
      ...(revision ? { 'org.opencontainers.image.revision': revision } : {}),
    }
    const img: WrittenImage = await writeImage(
      layout,
      layers,
      {
        user: `${IMAGE_UID}:${IMAGE_UID}`,
        env: ['PATH=/nodejs/bin:/usr/local/bin:/usr/bin:/bin'],
        // Node is PID 1 and handles SIGTERM itself (graceful drain). args[0] picks the bundle:
        //   data plane: /app/dataplane.mjs --snapshot … (what install.yaml runs)
        //   operator:   /app/infer-gateway.mjs operator …
        entrypoint: [IMAGE_PATHS.node, '--enable-source-maps'],
        cmd: [IMAGE_PATHS.cli, '--help'],
        workingDir: IMAGE_PATHS.app,
        exposedPorts: [8080],
        labels,
      },
      epoch,
      tag,
      labels,
    )
    const record: ImageRecord = {
      repository,
      tag,
      digest: img.digest,
      reference: `${repository}@${img.digest}`,
      layout: relative(ROOT, layout) || layout,
      epoch,
      nodeVersion,
      debian: lock.packages.map((p) => `${p.name}=${p.version}`),
      externals: carried,
      layers: layers.map((l) => ({ digest: l.digest, size: l.size, createdBy: l.createdBy })),
    }
    await mkdir(dirname(recordFile), { recursive: true })
    await writeFile(recordFile, `${JSON.stringify(record, null, 2)}\n`)
    return record
  } finally {
    await rm(stage, { recursive: true, force: true })
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: {
      'out-dir': { type: 'string' },
      record: { type: 'string' },
      repository: { type: 'string' },
      tag: { type: 'string' },
      'bundles-dir': { type: 'string' },
    },
    strict: true,
  })
  buildImage({
    ...(values['out-dir'] !== undefined ? { layout: values['out-dir'] } : {}),
    ...(values.record !== undefined ? { recordFile: values.record } : {}),
    ...(values.repository !== undefined ? { repository: values.repository } : {}),
    ...(values.tag !== undefined ? { tag: values.tag } : {}),
    ...(values['bundles-dir'] !== undefined ? { bundlesDir: values['bundles-dir'] } : {}),
  }).then(
    (r) => {
      for (const l of r.layers)
        process.stdout.write(`${l.digest}  ${(l.size / 1048576).toFixed(1)} MiB  ${l.createdBy}\n`)
      process.stdout.write(`${r.reference}\nwrote ${r.layout} (tag ${r.tag})\n`)
    },
    (e: unknown) => {
      process.stderr.write(`image: ${e instanceof Error ? e.message : String(e)}\n`)
      process.exitCode = 1
    },
  )
}
