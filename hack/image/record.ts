// dist/image-build.json: what `npm run image` built. The manifest generator reads the digest
// from it (install.yaml pins `repository@digest`), the release workflow pushes by it.
import { readFileSync } from 'node:fs'

/** Where the release workflow publishes the image (override with --repository). */
export const IMAGE_REPOSITORY = 'ghcr.io/infer-gateway/infer-gateway'

/** Paths inside the image (install.yaml's args start with a bundle; the entrypoint is node). */
export const IMAGE_PATHS = {
  node: '/nodejs/bin/node',
  app: '/app',
  cli: '/app/infer-gateway.mjs',
  dataplane: '/app/dataplane.mjs',
} as const
/** The `nonroot` user the image runs as (and install.yaml's securityContext). */
export const IMAGE_UID = 65532

export interface ImageRecord {
  readonly repository: string
  readonly tag: string
  /** The manifest's digest, `sha256:<64 hex>`. */
  readonly digest: string
  /** `repository@digest`: what install.yaml runs. */
  readonly reference: string
  /** The OCI layout directory, relative to the repository root. */
  readonly layout: string
  readonly epoch: number
  readonly nodeVersion: string
  readonly debian: readonly string[]
  readonly externals: readonly string[]
  readonly layers: readonly { digest: string; size: number; createdBy: string }[]
}

export class ImageRecordError extends Error {
  readonly code = 'IMAGE_RECORD'
}

const DIGEST = /^sha256:[0-9a-f]{64}$/

/** The record at `file`, checked: a pinned reference needs a well-formed digest. */
export function readImageRecord(file: string): ImageRecord {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch {
    throw new ImageRecordError(
      `no image build record at ${file}: run \`npm run image\` first, or pass --image REF (an unpinned tag)`,
    )
  }
  const r = JSON.parse(text) as Partial<ImageRecord>
  if (typeof r.repository !== 'string' || r.repository === '')
    throw new ImageRecordError(`${file}: repository: expected a non-empty string`)
  if (typeof r.digest !== 'string' || !DIGEST.test(r.digest))
    throw new ImageRecordError(`${file}: digest: expected sha256:<64 hex digits>`)
  return r as ImageRecord
}

/** `repository@digest` from the record (the repository may be overridden, e.g. a mirror). */
export function pinnedImage(record: ImageRecord, repository = record.repository): string {
  return `${repository}@${record.digest}`
}
