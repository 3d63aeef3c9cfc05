// The workers of `dataplane --workers N` run with the primary's Node flags: the young generation
// the manifests set (cdk8s/dataplane-node.ts) must hold in the processes that serve requests.
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { type CliProc, spawnCli } from '../../hack/bench/procs.js'
import { singleEngineManifests } from '../../hack/bench/routing-config.js'
import { parseProm, promValue } from '../../hack/sim/testkit.js'

const procs: CliProc[] = []
const dirs: string[] = []
afterAll(async () => {
  await Promise.all(procs.map((p) => p.stop()))
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })))
})

describe('dataplane --workers 2', () => {
  it("forks workers with the primary's Node flags (their young generation)", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'igw-primary-'))
    dirs.push(dir)
    const config = join(dir, 'gateway.yaml')
    // An engine nobody answers on: the data plane starts all the same, and nothing is scraped.
    await writeFile(config, singleEngineManifests('m', '127.0.0.9', 9))
    // A young generation far below Node's (1 MB semi-spaces against 8-16 MB once a data plane
    // has warmed up): a worker without the flags shows at once in the sum.
    const gw = await spawnCli(
      [
        'dataplane',
        '--config',
        config,
        '--host',
        '127.0.0.1',
        '--port',
        '0',
        '--workers',
        '2',
        '--scrape',
        'off',
        '--no-access-log',
        '--drain-delay',
        '0',
      ],
      /"msg":"data plane listening","url":"([^"]+)"/,
      ['--max-semi-space-size=1', '--min-semi-space-size=1'],
      60_000,
    )
    procs.push(gw)
    const text = await (await fetch(`${gw.match[1]}/metrics`)).text()
    // /metrics answers the sum over the workers; each holds at most its two 1 MB semi-spaces.
    const newSpace = promValue(parseProm(text), 'nodejs_heap_space_size_total_bytes', {
      space: 'new',
    })
    expect(newSpace).toBeGreaterThan(0)
    expect(newSpace).toBeLessThanOrEqual(2 * 2 * 2 ** 20)
  }, 90_000)
})
