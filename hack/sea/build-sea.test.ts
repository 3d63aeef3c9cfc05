// The single executable's full build and run is in hack/build.test.ts; here, what refuses early.
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildSea, SEA_FUSE, SeaBuildError } from './build-sea.js'

let dir: string
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'igw-sea-unit-'))
})
afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

describe('buildSea', () => {
  it.runIf(process.platform === 'linux')(
    'refuses a Node binary without the single-executable fuse, saying what to use instead',
    async () => {
      // The running Node with its fuse renamed: still a working node, like a distribution build
      // compiled without SEA support.
      const bin = await readFile(process.execPath)
      expect(bin.includes(SEA_FUSE)).toBe(true)
      const noFuse = join(dir, 'node')
      await writeFile(
        noFuse,
        Buffer.from(bin.toString('latin1').replaceAll(SEA_FUSE, `X${SEA_FUSE.slice(1)}`), 'latin1'),
      )
      await chmod(noFuse, 0o755)
      const out = join(dir, 'out')
      const err = await buildSea({ outFile: out, node: noFuse }).then(
        () => undefined,
        (e: unknown) => e,
      )
      expect(err).toBeInstanceOf(SeaBuildError)
      expect((err as SeaBuildError).code).toBe('SEA_NO_FUSE')
      expect((err as SeaBuildError).message).toContain('--sea-node')
    },
  )
})
