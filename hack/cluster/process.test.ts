import { spawn } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { supervise } from './process.js'

function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0)
    return true
  } catch {
    return false
  }
}

async function waitUntil(cond: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (cond()) return true
    await new Promise((r) => setTimeout(r, 50))
  }
  return cond()
}

describe('supervise', () => {
  let dir = ''
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'supervise-test-'))
  })
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  it('logs output, reports the exit code and keeps a tail', async () => {
    const lines: string[] = []
    const p = supervise({
      name: 'sh',
      command: '/bin/sh',
      args: ['-c', 'echo one; echo two >&2; exit 3'],
      logFile: join(dir, 'a.log'),
      log: (l) => lines.push(l),
    })
    expect(await p.exited).toBe(3)
    expect(p.running()).toBe(false)
    expect(lines.sort()).toEqual(['[sh] one', '[sh] two'])
    expect(p.tail()).toContain('one')
    await p.stop() // no-op once exited
    await new Promise((r) => setTimeout(r, 50)) // the log stream flushes on its own tick
    expect((await readFile(join(dir, 'a.log'), 'utf8')).split('\n').sort()).toEqual([
      '',
      'one',
      'two',
    ])
  })

  it('stop() returns only after the program is gone (TERM, then KILL after the grace time)', async () => {
    const p = supervise({
      name: 'stubborn',
      command: '/bin/sh',
      // Ignores TERM, so only the KILL after the grace period ends it.
      args: ['-c', 'trap "" TERM; echo up; while :; do sleep 0.1; done'],
      logFile: join(dir, 'b.log'),
    })
    await waitUntil(() => p.tail().includes('up'), 5000)
    const t0 = Date.now()
    await p.stop(300)
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250)
    expect(p.running()).toBe(false)
    expect(await waitUntil(() => !groupAlive(p.pid), 2000)).toBe(true)
  })

  it('the program dies when its parent is SIGKILLed', async () => {
    const fixture = fileURLToPath(new URL('./fixtures/supervise-orphan.ts', import.meta.url))
    const parent = spawn(process.execPath, ['--import', 'tsx', fixture], {
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    const pgid = await new Promise<number>((resolve, reject) => {
      let out = ''
      parent.stdout.on('data', (c: Buffer) => {
        out += c.toString()
        const m = /^(\d+)\n/.exec(out)
        if (m?.[1]) resolve(Number(m[1]))
      })
      parent.once('exit', (code) => reject(new Error(`fixture exited early (${code})`)))
    })
    expect(groupAlive(pgid)).toBe(true)
    parent.kill('SIGKILL')
    // The guard sees EOF on its stdin pipe and TERMs `sleep`; then the whole group is gone.
    expect(await waitUntil(() => !groupAlive(pgid), 5000)).toBe(true)
  })
})
