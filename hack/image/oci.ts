// An OCI image layout (image-spec v1.1: oci-layout, index.json, blobs/sha256/…) written by our
// own code from directories, byte-for-byte reproducible: GNU tar with sorted entries, one fixed
// mtime (SOURCE_DATE_EPOCH), uid/gid 0 and no atime/ctime or PID in PAX headers; `gzip -n` (no
// name, no timestamp); JSON with a fixed key order. Same directories and epoch → same digest.
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { mkdir, rename, rm, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'

export const MEDIA_TYPES = {
  index: 'application/vnd.oci.image.index.v1+json',
  manifest: 'application/vnd.oci.image.manifest.v1+json',
  config: 'application/vnd.oci.image.config.v1+json',
  layerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
} as const

export class OciError extends Error {
  readonly code = 'OCI_LAYOUT'
}

export interface Descriptor {
  readonly mediaType: string
  readonly digest: string
  readonly size: number
  readonly annotations?: Record<string, string>
}

export interface Layer extends Descriptor {
  /** sha256 of the uncompressed tar (the config's rootfs.diff_ids entry). */
  readonly diffId: string
  /** What the layer holds (the config's history entry). */
  readonly createdBy: string
}

function sh(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 600_000, maxBuffer: 1 << 20 })
  if (r.error) throw new OciError(`${cmd}: ${r.error.message}`)
  if (r.status !== 0) throw new OciError(`${cmd} ${args.join(' ')} failed: ${r.stderr.trim()}`)
}

async function sha256File(file: string): Promise<string> {
  const h = createHash('sha256')
  for await (const chunk of createReadStream(file)) h.update(chunk as Buffer)
  return `sha256:${h.digest('hex')}`
}

function blobPath(layout: string, digest: string): string {
  return join(layout, 'blobs', 'sha256', digest.slice('sha256:'.length))
}

/** Writes `bytes` as a blob; returns its descriptor. */
async function writeBlob(layout: string, mediaType: string, bytes: Buffer): Promise<Descriptor> {
  const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`
  await writeFile(blobPath(layout, digest), bytes)
  return { mediaType, digest, size: bytes.length }
}

export async function initLayout(layout: string): Promise<void> {
  await rm(layout, { recursive: true, force: true })
  await mkdir(join(layout, 'blobs', 'sha256'), { recursive: true })
  await writeFile(join(layout, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}')
}

/**
 * `dir`'s contents as one gzipped layer blob. Paths in the tar are relative (`./usr/…`); file
 * modes are taken as they are on disk (the caller normalizes what it wrote itself).
 */
export async function addLayer(
  layout: string,
  dir: string,
  epoch: number,
  createdBy: string,
): Promise<Layer> {
  const tar = join(layout, '.layer.tar')
  sh('tar', [
    '--create',
    '--file',
    tar,
    '--directory',
    dir,
    '--sort=name',
    `--mtime=@${epoch}`,
    '--owner=0',
    '--group=0',
    '--numeric-owner',
    '--format=pax',
    // The default PAX header name holds the PID; atime/ctime differ between runs.
    '--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime',
    '.',
  ])
  const diffId = await sha256File(tar)
  // gzip -n: no file name or timestamp in the header. Debian's gzip, not Node's zlib, whose
  // output can depend on the CPU's vector instructions.
  sh('gzip', ['-n', '-6', '--force', tar])
  const gz = `${tar}.gz`
  const digest = await sha256File(gz)
  const { size } = await stat(gz)
  await rename(gz, blobPath(layout, digest))
  return { mediaType: MEDIA_TYPES.layerGzip, digest, size, diffId, createdBy }
}

export interface ImageConfig {
  readonly user: string
  readonly env: readonly string[]
  readonly entrypoint: readonly string[]
  readonly cmd: readonly string[]
  readonly workingDir: string
  readonly exposedPorts: readonly number[]
  readonly labels: Record<string, string>
}

export interface WrittenImage {
  /** The manifest's digest: what a registry stores it under and install.yaml pins. */
  readonly digest: string
  readonly manifest: Descriptor
  readonly config: Descriptor
  readonly layers: readonly Layer[]
}

/** Config, manifest and index for `layers`; `tag` names the manifest in index.json. */
export async function writeImage(
  layout: string,
  layers: readonly Layer[],
  cfg: ImageConfig,
  epoch: number,
  tag: string,
  annotations: Record<string, string>,
): Promise<WrittenImage> {
  const created = new Date(epoch * 1000).toISOString().replace('.000Z', 'Z')
  const config = {
    created,
    architecture: 'amd64',
    os: 'linux',
    config: {
      User: cfg.user,
      Env: cfg.env,
      Entrypoint: cfg.entrypoint,
      Cmd: cfg.cmd,
      WorkingDir: cfg.workingDir,
      ExposedPorts: Object.fromEntries(cfg.exposedPorts.map((p) => [`${p}/tcp`, {}])),
      Labels: cfg.labels,
    },
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
    history: layers.map((l) => ({ created, created_by: l.createdBy })),
  }
  const configDesc = await writeBlob(
    layout,
    MEDIA_TYPES.config,
    Buffer.from(JSON.stringify(config)),
  )
  const manifest = {
    schemaVersion: 2,
    mediaType: MEDIA_TYPES.manifest,
    config: configDesc,
    layers: layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
    annotations: { 'org.opencontainers.image.created': created, ...annotations },
  }
  const manifestDesc = await writeBlob(
    layout,
    MEDIA_TYPES.manifest,
    Buffer.from(JSON.stringify(manifest)),
  )
  const index = {
    schemaVersion: 2,
    mediaType: MEDIA_TYPES.index,
    manifests: [{ ...manifestDesc, annotations: { 'org.opencontainers.image.ref.name': tag } }],
  }
  await writeFile(join(layout, 'index.json'), JSON.stringify(index))
  return { digest: manifestDesc.digest, manifest: manifestDesc, config: configDesc, layers }
}
