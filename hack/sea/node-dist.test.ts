import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { cachedNode, fetchNode, nodeCacheDir } from './node-dist.js'

let root: string
const saved = process.env['INFER_GATEWAY_CACHE']

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'igw-node-cache-'))
  process.env['INFER_GATEWAY_CACHE'] = root
})
afterEach(async () => {
  if (saved === undefined) delete process.env['INFER_GATEWAY_CACHE']
  else process.env['INFER_GATEWAY_CACHE'] = saved
  await rm(root, { recursive: true, force: true })
})

/** A cached "Node" that is a shell script printing its version (or failing). */
async function fake(version: string, runs = true): Promise<string> {
  const bin = join(root, 'node', version, 'bin', 'node')
  await mkdir(join(bin, '..'), { recursive: true })
  await writeFile(bin, runs ? `#!/bin/sh\necho ${version}\n` : '#!/bin/sh\nexit 1\n')
  await chmod(bin, 0o755)
  return bin
}

describe('cached Node binaries', () => {
  it('live under INFER_GATEWAY_CACHE', () => {
    expect(nodeCacheDir()).toBe(join(root, 'node'))
  })

  it('are found newest first by numeric version, skipping ones that do not run', async () => {
    await fake('v24.9.0')
    const newest = await fake('v24.22.3')
    await fake('v24.30.0', false)
    await fake('v22.99.0')
    expect(await cachedNode(24)).toBe(newest)
    expect(await cachedNode(22)).toBe(join(root, 'node', 'v22.99.0', 'bin', 'node'))
    expect(await cachedNode(26)).toBeUndefined()
  })

  it('are not looked for when the cache does not exist', async () => {
    process.env['INFER_GATEWAY_CACHE'] = join(root, 'missing')
    expect(await cachedNode(24)).toBeUndefined()
  })

  it('come from the cache without a download when present', async () => {
    const bin = await fake('v24.1.0')
    expect(await fetchNode(24)).toBe(bin)
  })

  it('refuse a major that is not one', async () => {
    await expect(fetchNode(Number('x'))).rejects.toThrow(/not a Node major/)
  })
})
