import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { BundleStartError, spawnBundle } from './proxy-bundle.js'

let dir = ''
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'igw-proxy-bundle-'))
})
afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

describe('spawnBundle', () => {
  it('resolves once the script prints its ready line, with the arguments passed on', async () => {
    const script = join(dir, 'ready.mjs')
    await writeFile(
      script,
      "console.log('data plane listening ' + process.argv.slice(2).join(' ')); setInterval(() => {}, 1000)\n",
    )
    const p = await spawnBundle(script, ['--port', '1234'], /data plane listening --port 1234/)
    expect(p.child.exitCode).toBeNull()
    await p.stop()
    expect(p.child.exitCode !== null || p.child.signalCode !== null).toBe(true)
  })

  it('fails with the output when the script exits before it is ready', async () => {
    const script = join(dir, 'dies.mjs')
    await writeFile(script, "console.error('bad flag --nope'); process.exit(2)\n")
    const err = await spawnBundle(script, [], /data plane listening/).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(BundleStartError)
    expect((err as BundleStartError).message).toContain('bad flag --nope')
  })
})
