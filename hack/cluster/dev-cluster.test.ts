import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { binDir } from './control-plane.js'
import { runDevClusterCommand } from './dev-cluster.js'

const FIXTURE = fileURLToPath(new URL('./fixtures/dev-cluster-main.ts', import.meta.url))

function run(cmd: string, args: readonly string[], env: NodeJS.ProcessEnv = process.env) {
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    const c = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env })
    let stdout = ''
    let stderr = ''
    c.stdout.on('data', (b: Buffer) => {
      stdout += b.toString()
    })
    c.stderr.on('data', (b: Buffer) => {
      stderr += b.toString()
    })
    c.once('error', reject)
    c.once('close', (code) => resolve({ code, stdout, stderr }))
  })
}

describe('dev-cluster command', () => {
  it('rejects unknown options as a usage error', async () => {
    await expect(runDevClusterCommand(['--bogus'])).rejects.toMatchObject({
      code: 'ERR_PARSE_ARGS_UNKNOWN_OPTION',
    })
  })

  it('names build.sh when binaries are missing and building is off', async () => {
    const empty = await mkdtemp(join(tmpdir(), 'no-bins-'))
    try {
      await expect(runDevClusterCommand(['--bin-dir', empty])).rejects.toThrow(
        /hack\/cluster\/build\.sh/,
      )
    } finally {
      await rm(empty, { recursive: true, force: true })
    }
  })

  it('prints export KUBECONFIG=…, serves kubectl, and stops cleanly on Ctrl-C', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', FIXTURE, '--no-build'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    let err = ''
    child.stderr.on('data', (b: Buffer) => {
      err += b.toString()
    })
    const exited = new Promise<number | null>((resolve) => child.once('close', resolve))
    const kubeconfig = await new Promise<string>((resolve, reject) => {
      child.stdout.on('data', (b: Buffer) => {
        out += b.toString()
        const m = /export KUBECONFIG=(\S+)/.exec(out)
        if (m?.[1] && out.includes('Press Ctrl-C')) resolve(m[1])
      })
      void exited.then((code) => reject(new Error(`dev-cluster exited (${code}): ${out}${err}`)))
    })
    const dataDir = /data dir: (\S+)/.exec(out)?.[1] ?? ''
    try {
      const r = await run(
        join(binDir(), 'kubectl'),
        ['get', 'namespace', 'default', '-o', 'name'],
        {
          ...process.env,
          KUBECONFIG: kubeconfig,
        },
      )
      expect(r.stderr).toBe('')
      expect(r.stdout.trim()).toBe('namespace/default')
    } finally {
      child.kill('SIGINT')
    }
    expect(await exited).toBe(0)
    expect(out).toContain('dev-cluster exited')
    expect(existsSync(dataDir)).toBe(false)
  }, 120_000)
})
