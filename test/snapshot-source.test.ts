// The data plane fed a compiled snapshot file (what the operator publishes): gzip or plain JSON,
// atomic replacement, older versions ignored, bad files rejected while the last good one serves.
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { compileSnapshot, parseManifests } from '../api/index.js'
import type { RoutingSnapshot } from '../api/snapshot.js'
import { type Gateway, startGateway } from '../dataplane/gateway.js'
import { memoryLogger } from '../dataplane/log.js'
import { manifests } from './helpers/config.js'
import { until } from './helpers/until.js'
import { json, startUpstream, type TestUpstream } from './helpers/upstream.js'

let up: TestUpstream
let dir: string
let gw: Gateway
const log = memoryLogger()

function build(model: string, version: number): RoutingSnapshot {
  const parsed = parseManifests([
    {
      name: 'x.yaml',
      text: manifests(
        [{ name: 's', model, endpoints: [{ name: 'up', address: '127.0.0.20', port: up.port }] }],
        [{ name: 'r', modelName: 'm', rules: [{ targetModels: [{ modelServerName: 's' }] }] }],
      ),
    },
  ])
  expect(parsed.issues).toEqual([])
  return compileSnapshot({
    routes: parsed.routes,
    servers: parsed.servers,
    endpoints: parsed.endpoints,
    version,
  }).snapshot
}

async function publish(data: string | Buffer): Promise<void> {
  // Write-then-rename makes it atomic, as a sane publisher (and kubelet's symlink swap) does.
  await writeFile(join(dir, '.tmp'), data)
  await rename(join(dir, '.tmp'), join(dir, 'snapshot.json.gz'))
}

async function upstreamModel(): Promise<string> {
  const res = await fetch(`${gw.url}/v1/completions`, {
    method: 'POST',
    body: JSON.stringify({ model: 'm', prompt: 'x' }),
  })
  expect(res.status).toBe(200)
  return ((await res.json()) as { model: string }).model
}

beforeAll(async () => {
  up = await startUpstream('127.0.0.20', (_q, res, body) =>
    json(res, 200, { model: (JSON.parse(body) as { model: string }).model }),
  )
  dir = await mkdtemp(join(tmpdir(), 'igw-snap-'))
  await publish(gzipSync(JSON.stringify(build('model-v1', 5))))
  gw = await startGateway({
    config: { kind: 'snapshot', paths: [join(dir, 'snapshot.json.gz')] },
    port: 0,
    pollMs: 50,
    log,
  })
})
afterAll(async () => {
  await gw.shutdown({ deadlineMs: 500 })
  await up.close()
  await rm(dir, { recursive: true, force: true })
})

describe('snapshot file source', () => {
  it('serves a gzipped snapshot and reports its version', async () => {
    expect(await upstreamModel()).toBe('model-v1')
    expect(await (await fetch(`${gw.url}/readyz`)).json()).toEqual({
      status: 'ready',
      snapshotVersion: 5,
    })
  })

  it('swaps in a newer version (plain JSON is accepted too)', async () => {
    await publish(JSON.stringify(build('model-v2', 6)))
    await until(async () => gw.store.snapshot?.version === 6, 15_000)
    expect(await upstreamModel()).toBe('model-v2')
  })

  it('ignores an older version', async () => {
    await publish(JSON.stringify(build('model-old', 3)))
    await until(async () => log.records.some((r) => r.msg.includes('older snapshot')), 15_000)
    expect(await upstreamModel()).toBe('model-v2')
  })

  it('rejects a tampered or malformed snapshot and keeps the last good one', async () => {
    const failuresBefore =
      (await gw.metrics.reloads.get()).values.find((v) => v.labels['result'] === 'failure')
        ?.value ?? 0
    const tampered = { ...build('model-v3', 7), hash: 'f'.repeat(64) }
    await publish(JSON.stringify(tampered))
    await until(
      async () =>
        ((await gw.metrics.reloads.get()).values.find((v) => v.labels['result'] === 'failure')
          ?.value ?? 0) > failuresBefore,
      15_000,
    )
    await publish('{"schemaVersion": 1, "version": ')
    await until(
      async () =>
        ((await gw.metrics.reloads.get()).values.find((v) => v.labels['result'] === 'failure')
          ?.value ?? 0) >
        failuresBefore + 1,
      15_000,
    )
    expect(log.records.some((r) => r.level === 'error' && r.msg.includes('not valid JSON'))).toBe(
      true,
    )
    expect(await upstreamModel()).toBe('model-v2')
  })
})
