import { spawnSync } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { buildAll } from './build.js'

describe('bundles', () => {
  it('builds a runnable CLI and a data-plane bundle without the Kubernetes client', async () => {
    const out = await mkdtemp(join(tmpdir(), 'igw-build-'))
    try {
      const r = await buildAll(out)
      expect(r.dataplaneInputs.some((i) => i.startsWith('dataplane/'))).toBe(true)
      expect(r.dataplaneInputs.some((i) => i.includes('@kubernetes/client-node'))).toBe(false)
      const help = spawnSync(process.execPath, [join(out, 'dataplane.mjs'), '--help'], {
        encoding: 'utf8',
        timeout: 20_000,
      })
      expect(help.status, help.stderr).toBe(0)
      expect(help.stdout).toContain('Usage: infer-gateway dataplane')
      const cli = spawnSync(process.execPath, [join(out, 'infer-gateway.mjs'), 'sim', '--help'], {
        encoding: 'utf8',
        timeout: 20_000,
      })
      expect(cli.status, cli.stderr).toBe(0)
      expect(cli.stdout).toContain('Usage: sim')
    } finally {
      await rm(out, { recursive: true, force: true })
    }
  })
})
