import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ensurePeer, PEERS } from './peers.js'

let dir: string

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'igw-peers-'))
})

afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

describe('ensurePeer', () => {
  it('reuses a cached venv without running pip', async () => {
    const p = PEERS.vllm
    const bin = join(dir, `${p.pkg}-${p.version}`, 'bin', p.bin)
    await mkdir(join(bin, '..'), { recursive: true })
    await writeFile(bin, '#!/bin/sh\n')
    await chmod(bin, 0o755)
    // A python that does not exist: reaching it would fail, so success proves the cache hit.
    const r = await ensurePeer('vllm', { dir, python: join(dir, 'no-python') })
    expect(r).toEqual({ ok: true, bin, version: p.version })
  })

  it('returns the reason instead of throwing when the venv cannot be made', async () => {
    const python = join(dir, 'no-python')
    const r = await ensurePeer('sglang', { dir, python })
    expect(r.ok).toBe(false)
    if (!r.ok) expect(r.reason).toContain(`${python} -m venv failed`)
  })
})
