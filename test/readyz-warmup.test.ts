// /readyz waits for the scheduler's start-up warm-up (--scheduler-warmup): a pod that took traffic
// before it ended would serve its first requests from cold code while sharing the core with the
// warm-up. Later reloads warm new profiles while the pod stays ready (scheduler warmup.test.ts).
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { type Gateway, startGateway } from '../dataplane/gateway.js'
import { memoryLogger } from '../dataplane/log.js'
import { Scheduler } from '../dataplane/scheduler/scheduler.js'
import { manifests } from './helpers/config.js'

let dir: string
let file: string
let gw: Gateway | undefined

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'igw-warm-'))
  file = join(dir, 'gateway.yaml')
  // The engine need not answer: readiness reads the config and the scheduler, not the engines.
  await writeFile(
    file,
    manifests(
      [{ name: 'engine', endpoints: [{ name: 'e-0', address: '127.0.0.162', port: 9 }] }],
      [{ name: 'm', modelName: 'm', rules: [{ targetModels: [{ modelServerName: 'engine' }] }] }],
    ),
  )
})

afterEach(async () => {
  await gw?.shutdown({ deadlineMs: 200 })
  gw = undefined
})

afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

function start(picker: Scheduler): Promise<Gateway> {
  return startGateway({
    config: { kind: 'manifests', paths: [file] },
    port: 0,
    picker,
    log: memoryLogger(),
  })
}

async function readyz(): Promise<{ status: number; body: { status: string } }> {
  const r = await fetch(`${gw?.url}/readyz`)
  return { status: r.status, body: (await r.json()) as { status: string } }
}

describe('/readyz and the start-up warm-up', () => {
  it('answers 503 warming while the first warm-up runs', async () => {
    // A million decisions take minutes: the warm-up is certainly still running when asked.
    const picker = new Scheduler({ scrape: false, warmup: 1_000_000 })
    gw = await start(picker)
    expect(await readyz()).toEqual({
      status: 503,
      body: { status: 'warming', snapshotVersion: gw?.store.snapshot?.version },
    })
  })

  it('is ready once the warm-up has ended', async () => {
    const picker = new Scheduler({ scrape: false, warmup: 32 })
    gw = await start(picker)
    await picker.warmedUp()
    expect(await readyz()).toEqual({
      status: 200,
      body: { status: 'ready', snapshotVersion: gw?.store.snapshot?.version },
    })
  })
})
