// Hot reload against editors and shells that do not write atomically: the config file is truncated
// (`>`), left empty for a moment, then written again — also in two chunks with a pause between —
// while clients keep calling. No request for an existing model may see a 404, /readyz stays ready,
// and the live config is never replaced by an empty one (every swap has the routes). An empty
// config is refused at start unless --allow-empty-config, and then /readyz is not ready.
import { mkdtemp, open, rm, truncate, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { request } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ConfigLoadError } from '../dataplane/config-source.js'
import { type Gateway, startGateway } from '../dataplane/gateway.js'
import { memoryLogger } from '../dataplane/log.js'
import { RoundRobinPicker } from '../dataplane/picker.js'
import { manifests } from './helpers/config.js'
import { until } from './helpers/until.js'
import { json, startUpstream, type TestUpstream } from './helpers/upstream.js'

let engine: TestUpstream
let dir: string

function config(models: readonly string[]): string {
  return `# gateway config, edited by hand\n${manifests(
    [{ name: 'engine', endpoints: [{ name: 'e-0', address: engine.host, port: engine.port }] }],
    models.map((m) => ({
      name: m,
      modelName: m,
      rules: [{ targetModels: [{ modelServerName: 'engine' }] }],
    })),
  )}\n`
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

beforeAll(async () => {
  engine = await startUpstream('127.0.0.161', (_req, res, body) => {
    const model = (JSON.parse(body || '{}') as { model?: string }).model
    json(res, 200, { id: 'x', object: 'chat.completion', model, choices: [] })
  })
  dir = await mkdtemp(join(tmpdir(), 'igw-trunc-'))
})

afterAll(async () => {
  await engine?.close()
  if (dir) await rm(dir, { recursive: true, force: true })
})

describe('config file truncated and rewritten under load', () => {
  let gw: Gateway

  afterAll(async () => {
    await gw?.shutdown({ deadlineMs: 500 })
  })

  it('never serves 404 for existing models nor swaps in an empty config', async () => {
    const file = join(dir, 'gateway.yaml')
    await writeFile(file, config(['a', 'b']))
    const log = memoryLogger()
    gw = await startGateway({
      config: { kind: 'manifests', paths: [file] },
      port: 0,
      pollMs: 20,
      picker: new RoundRobinPicker(),
      log,
    })
    const swaps: number[] = []
    gw.store.onSwap((s) => swaps.push(s.routes.length))

    let stop = false
    const statuses = new Map<number, number>()
    const readyz = new Map<number, number>()
    const count = (m: Map<number, number>, k: number) => m.set(k, (m.get(k) ?? 0) + 1)
    const client = async (model: string): Promise<void> => {
      while (!stop) {
        const r = await request(`${gw.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] }),
        })
        await r.body.text()
        count(statuses, r.statusCode)
      }
    }
    const prober = async (): Promise<void> => {
      while (!stop) {
        const r = await request(`${gw.url}/readyz`)
        await r.body.text()
        count(readyz, r.statusCode)
        await sleep(5)
      }
    }
    const load = [client('a'), client('b'), prober()]

    const refusals = () =>
      log.records.filter((r) => r.msg.includes('no documents (empty or only comments)')).length
    for (let round = 0; round < 6; round++) {
      const models = round % 2 === 0 ? ['a', 'b', 'c'] : ['a', 'b']
      // `>`: truncate, and nothing written until the gateway has seen the empty file.
      const seen = refusals()
      await truncate(file, 0)
      await until(() => refusals() > seen)
      const swapped = swaps.length
      if (round % 3 === 2) {
        // A slow writer: half the file, a pause, the rest (same inode, like `cat > file`).
        const text = config(models)
        const fh = await open(file, 'w')
        await fh.write(text.slice(0, text.length / 2))
        await sleep(80)
        await fh.write(text.slice(text.length / 2))
        await fh.close()
      } else {
        await writeFile(file, config(models))
      }
      await until(
        () => swaps.length > swapped && gw.store.snapshot?.routes.length === models.length,
      )
    }
    stop = true
    await Promise.all(load)

    expect(statuses.get(404) ?? 0).toBe(0)
    expect(statuses.get(200) ?? 0).toBeGreaterThan(0)
    expect([...statuses.keys()]).toEqual([200])
    expect([...readyz.keys()]).toEqual([200])
    // Reloads happened (the `c` route came and went), none of them to an empty config.
    expect(swaps.length).toBeGreaterThanOrEqual(6)
    expect(swaps.every((n) => n >= 2)).toBe(true)
    expect(gw.store.snapshot?.routes.length).toBe(2)
    // Each truncation was refused, logged with the file and counted.
    const refused = log.records.filter((r) =>
      r.msg.includes('no documents (empty or only comments)'),
    )
    expect(refused.length).toBeGreaterThanOrEqual(6)
    expect(refused[0]?.msg).toContain(file)
    const metrics = await gw.metrics.registry.getSingleMetricAsString(
      'infer_gateway_config_reloads_total',
    )
    expect(metrics).toMatch(/result="failure"} [1-9]/)
  }, 60_000)
})

describe('empty config at start', () => {
  it('is refused unless allowed; allowed, /readyz says no routes', async () => {
    const file = join(dir, 'empty.yaml')
    await writeFile(file, '# nothing here yet\n---\n')
    await expect(
      startGateway({ config: { kind: 'manifests', paths: [file] }, port: 0 }),
    ).rejects.toBeInstanceOf(ConfigLoadError)

    const gw = await startGateway({
      config: { kind: 'manifests', paths: [file] },
      port: 0,
      allowEmptyConfig: true,
    })
    try {
      const r = await request(`${gw.url}/readyz`)
      expect(r.statusCode).toBe(503)
      expect(await r.body.json()).toMatchObject({ status: 'no-routes' })
    } finally {
      await gw.shutdown({ deadlineMs: 100 })
    }
  })
})
