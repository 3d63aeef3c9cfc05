// Local rate limits hold across `dataplane --workers 2`: the real CLI (a primary and two worker
// processes on one port) in front of the engine simulator, the official `openai` SDK as client,
// one fresh connection per request so the primary hands requests to both workers (the explain
// header says which one served). Before the counters moved to the primary, each worker had its own
// and a tenant got twice its limit.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import OpenAI, { RateLimitError } from 'openai'
import { Agent } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type DataplaneProc, startDataplane } from '../hack/bench/procs.js'
import { type SimHandle, startSimulator } from '../hack/sim/index.js'
import {
  endpoints,
  gatewayPolicy,
  modelRoute,
  modelServer,
  sha256,
  yamlDocs,
} from './helpers/filters.js'

const KEYS = { small: 'sk-small-00000000000001', large: 'sk-large-00000000000002' } as const
// 10 per hour: too small to lease (every decision is the primary's). 100 per hour: 5-request
// leases per worker. Per hour, refill during the test (a few seconds) stays below one request.
const SMALL = 10
const LARGE = 100

let sim: SimHandle
let gw: DataplaneProc | undefined
let url = ''
let dir = ''

beforeAll(async () => {
  sim = await startSimulator({
    name: 'rl-workers',
    host: '127.0.0.150',
    port: 0,
    model: 'sim-model',
    metricsFormat: 'vllm',
    zeroLatency: true,
  })
  dir = await mkdtemp(join(tmpdir(), 'igw-workers-rl-'))
  const secrets = join(dir, 'secrets')
  const config = join(dir, 'config')
  await mkdir(secrets)
  await mkdir(config)
  await writeFile(join(secrets, 'key.small'), sha256(KEYS.small))
  await writeFile(join(secrets, 'key.large'), sha256(KEYS.large))
  await writeFile(
    join(config, 'gateway.yaml'),
    yamlDocs([
      modelServer('sim', 'sim-model', sim.port),
      endpoints('sim', sim.host, sim.port),
      modelRoute('sim', 'sim-model', 'sim'),
      gatewayPolicy({
        authentication: {
          apiKeys: [
            { name: 'small', secretKey: 'key.small', tenant: 'a', tier: 'small' },
            { name: 'large', secretKey: 'key.large', tenant: 'b', tier: 'large' },
          ],
        },
        tiers: [
          { name: 'small', rate: [{ requests: SMALL, per: 'hour' }] },
          { name: 'large', rate: [{ requests: LARGE, per: 'hour' }] },
        ],
      }),
    ]),
  )
  gw = await startDataplane({
    args: ['--config', config, '--secrets-dir', secrets, '--explain', '--workers', '2'],
    // Three processes load the TypeScript sources at once; slow on a busy 2-core machine.
    timeoutMs: 120_000,
  })
  url = gw.url
}, 150_000)

afterAll(async () => {
  await gw?.stop()
  await sim?.close()
  if (dir) await rm(dir, { recursive: true, force: true })
})

interface Tally {
  admitted: number
  limited: number
  /** Admitted requests per worker index (from the explain header). */
  byWorker: Map<number, number>
}

/** `n` requests one after another, each on a new connection (so both workers take turns). */
async function send(key: keyof typeof KEYS, n: number): Promise<Tally> {
  const t: Tally = { admitted: 0, limited: 0, byWorker: new Map() }
  for (let i = 0; i < n; i++) {
    const dispatcher = new Agent({ pipelining: 0 })
    const client = new OpenAI({
      baseURL: `${url}/v1`,
      apiKey: KEYS[key],
      maxRetries: 0,
      timeout: 10_000,
      fetchOptions: { dispatcher } as Record<string, unknown>,
    })
    try {
      const { response } = await client.chat.completions
        .create(
          {
            model: 'sim-model',
            messages: [{ role: 'user', content: `request ${i}: say hi` }],
            max_tokens: 2,
          },
          { headers: { 'x-infer-gateway-explain': '1' } },
        )
        .withResponse()
      t.admitted++
      const w = Number(
        /\| worker=(\d+)/.exec(response.headers.get('x-infer-gateway-explain') ?? '')?.[1],
      )
      t.byWorker.set(w, (t.byWorker.get(w) ?? 0) + 1)
    } catch (e) {
      if (!(e instanceof RateLimitError)) throw e
      t.limited++
    } finally {
      await dispatcher.close()
    }
  }
  return t
}

describe('local rate limits with --workers 2', () => {
  it('a small limit (decided by the primary) holds across both workers', async () => {
    const t = await send('small', 3 * SMALL)
    expect(t.admitted).toBe(SMALL)
    expect(t.limited).toBe(2 * SMALL)
    // Both workers admitted some: the limit was shared, not one worker's alone.
    expect([...t.byWorker.keys()].sort()).toEqual([1, 2])
  }, 60_000)

  it('a larger limit (decided on leases) holds across both workers', async () => {
    const t = await send('large', LARGE + 30)
    expect(t.admitted).toBe(LARGE)
    expect(t.limited).toBe(30)
    expect([...t.byWorker.keys()].sort()).toEqual([1, 2])
  }, 60_000)
})
