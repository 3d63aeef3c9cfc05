import { describe, expect, it } from 'vitest'
import { SpawnTimeoutError, spawnCli } from './procs.js'

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
