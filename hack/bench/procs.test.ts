import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { SpawnTimeoutError, spawnCli, spawnScript } from './procs.js'

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

describe('spawnCli', () => {
  it('stops a child that never gets ready instead of leaving it running', async () => {
    // `node -e <loop> <cli>`: a process that runs forever and never prints the ready line.
    const err = await spawnCli(
      [],
      /never printed/,
      ['-e', 'setInterval(() => {}, 1000)'],
      300,
    ).then(
      () => undefined,
      (e: unknown) => e,
    )
    expect(err).toBeInstanceOf(SpawnTimeoutError)
    const pid = (err as SpawnTimeoutError).pid
    expect(pid).toBeTypeOf('number')
    // Gone once the signal is delivered and Node has reaped it.
    await expect.poll(() => alive(pid as number), { timeout: 10_000, interval: 50 }).toBe(false)
  }, 20_000)
})

describe('spawnScript', () => {
  const dir = mkdtempSync(join(tmpdir(), 'igw-procs-'))
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  it("resolves with the READY line's JSON (env passed) and stop() ends the script", async () => {
    const script = join(dir, 'ready.ts')
    writeFileSync(
      script,
      `const n: number = Number(process.env.PROCS_TEST_N)
process.once('SIGTERM', () => process.exit(0))
process.stdout.write('starting\\nREADY ' + JSON.stringify({ n, urls: ['a', 'b'] }) + '\\n')
setInterval(() => {}, 1000)
`,
    )
    const p = await spawnScript<{ n: number; urls: string[] }>(script, { PROCS_TEST_N: '7' })
    expect(p.ready).toEqual({ n: 7, urls: ['a', 'b'] })
    await p.stop()
    expect(p.child.exitCode).toBe(0)
  }, 30_000)

  it('rejects, naming the script and its output, when it exits before READY', async () => {
    const script = join(dir, 'dies.ts')
    writeFileSync(script, "process.stderr.write('no engines\\n')\nprocess.exit(3)\n")
    await expect(spawnScript(script, {})).rejects.toThrow(/dies\.ts exited with 3: no engines/)
  }, 30_000)
})
