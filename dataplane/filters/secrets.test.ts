import { writeFileSync } from 'node:fs'
import { mkdir, mkdtemp, rename, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { memoryLogger } from '../log.js'
import { SecretStore, staticSecrets } from './secrets.js'

const dirs: string[] = []
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true })
})

/** Writes a new version the way kubelet updates a Secret volume: new dir, atomic ..data swap. */
async function kubeletWrite(dir: string, files: Record<string, string>, n: number, first: boolean) {
  const ts = join(dir, `..v${n}`)
  await mkdir(ts)
  for (const [k, v] of Object.entries(files)) await writeFile(join(ts, k), v)
  await symlink(`..v${n}`, join(dir, '..data_tmp'))
  await rename(join(dir, '..data_tmp'), join(dir, '..data'))
  if (first) for (const k of Object.keys(files)) await symlink(join('..data', k), join(dir, k))
}

describe('SecretStore', () => {
  it('reads a mounted Secret and follows kubelet updates, naming entries but never values', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'igw-sec-'))
    dirs.push(dir)
    await kubeletWrite(dir, { a: 'one\n', b: 'two' }, 1, true)
    const log = memoryLogger()
    const s = new SecretStore({ dir, log, pollMs: 20 })
    await s.start()
    let changes = 0
    s.onChange(() => changes++)
    expect(s.get('a')).toBe('one')
    expect(s.get('b')).toBe('two')
    expect(s.get('..data')).toBeUndefined()
    await kubeletWrite(dir, { a: 'uno', b: 'two' }, 2, false)
    await expect.poll(() => s.get('a'), { timeout: 3000 }).toBe('uno')
    expect(changes).toBe(1)
    s.stop()
    const logged = JSON.stringify(log.records)
    expect(logged).not.toContain('one')
    expect(logged).not.toContain('uno')
  })

  it('a refresh asked for while a read is under way waits for a read that starts after it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'igw-sec-'))
    dirs.push(dir)
    await writeFile(join(dir, 'key'), 'old')
    const s = new SecretStore({ dir, log: memoryLogger() })
    await s.start()
    const first = s.refresh()
    const second = s.refresh()
    // The change lands once the first read has finished (it saw 'old'); the second read, which
    // the caller of the second refresh waits for, must see it.
    await first
    writeFileSync(join(dir, 'key'), 'new')
    await second
    expect(s.get('key')).toBe('new')
    s.stop()
  })

  it('skips oversized entries and refuses a missing directory', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'igw-sec-'))
    dirs.push(dir)
    await writeFile(join(dir, 'big'), 'x'.repeat(70_000))
    await writeFile(join(dir, 'ok'), 'v')
    const s = new SecretStore({ dir, log: memoryLogger() })
    await s.start()
    expect(s.get('big')).toBeUndefined()
    expect(s.get('ok')).toBe('v')
    s.stop()
    await expect(
      new SecretStore({ dir: join(dir, 'nope'), log: memoryLogger() }).start(),
    ).rejects.toThrow()
    expect(staticSecrets({ k: 'v' }).get('k')).toBe('v')
  })
})
