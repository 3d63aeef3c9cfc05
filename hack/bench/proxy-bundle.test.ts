import { spawnSync } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DATAPLANE_NODE_ARGS } from '../../cdk8s/dataplane-node.js'
import { semiSpaceFlag } from '../../dataplane/worker-heap.js'
import { BundleStartError, benchGatewayNodeArgs, spawnBundle } from './proxy-bundle.js'

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

describe('benchGatewayNodeArgs', () => {
  // The young generation a started process holds at once (one semi-space, MiB): with the
  // Deployment's flags it starts at their minimum; with Node's defaults at 1 MiB.
  const newSpaceMiB = async (nodeArgs: readonly string[]): Promise<number> => {
    const script = join(dir, 'new-space.mjs')
    await writeFile(
      script,
      "import v8 from 'node:v8'\n" +
        "const s = v8.getHeapSpaceStatistics().find((x) => x.space_name === 'new_space')\n" +
        'console.log(s.space_size / 2 ** 20)\n',
    )
    const r = spawnSync(process.execPath, [...nodeArgs, script], { encoding: 'utf8' })
    expect(r.status, r.stderr).toBe(0)
    return Number(r.stdout)
  }

  it("starts the data plane with the Deployment's young generation, or Node's with ''", async () => {
    expect(benchGatewayNodeArgs()).toEqual(DATAPLANE_NODE_ARGS)
    expect(benchGatewayNodeArgs(' --a  --b=1 ')).toEqual(['--a', '--b=1'])
    expect(await newSpaceMiB(benchGatewayNodeArgs())).toBe(
      semiSpaceFlag(DATAPLANE_NODE_ARGS, undefined),
    )
    expect(await newSpaceMiB(benchGatewayNodeArgs(''))).toBeLessThan(16)
  })
})
