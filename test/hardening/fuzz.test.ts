// Seeded fuzz (issue 10): 20,000 mutated chat / completions / embeddings bodies through a real
// data-plane process in front of two well-behaved simulated engines. No 5xx may come from the
// gateway itself (an engine's 5xx carries its x-inference-pod header and is counted apart), every
// error body is OpenAI-shaped, every request gets an answer, and the in-flight gauge is back to 0
// at the end. A failure names the case: `fuzzCase(SEED, index, …)` rebuilds its exact bytes.
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { runFuzz } from '../../hack/hardening/fuzz-run.js'
import {
  chatBody,
  type GatewayProc,
  runLoad,
  settledInflight,
  spawnGateway,
} from '../../hack/hardening/kit.js'
import { type Fleet, startFleet } from '../../hack/sim/index.js'
import { manifests } from '../helpers/config.js'

const GW_HOST = '127.0.11.1'
const SIM_HOSTS = ['127.0.11.2', '127.0.11.3']
const MODEL = 'chat'
const SEED = 20_261_201
const COUNT = 20_000

let fleet: Fleet
let gw: GatewayProc
let dir: string

beforeAll(async () => {
  fleet = await startFleet(
    SIM_HOSTS.map((host, i) => ({
      name: `fuzz-${i}`,
      host,
      port: 0,
      model: 'upstream-model',
      metricsFormat: 'vllm' as const,
      zeroLatency: true,
      maxNumSeqs: 256,
    })),
  )
  dir = await mkdtemp(join(tmpdir(), 'igw-fuzz-'))
  const file = join(dir, 'gateway.yaml')
  await writeFile(
    file,
    manifests(
      [
        {
          name: 'pool',
          model: 'upstream-model',
          endpoints: fleet.sims.map((s) => ({ name: s.name, address: s.host, port: s.port })),
          // Well-behaved engines: a 504 can then only be a stuck request path, not a busy machine.
          trafficPolicy: { timeouts: { responseHeader: '30s', idle: '30s' } },
          scheduler: {
            plugins: [
              { name: 'prefix-cache', weight: 3 },
              { name: 'least-pending', weight: 2 },
              { name: 'fairness', args: { maxInFlightPerEndpoint: 16 } },
            ],
          },
        },
      ],
      [{ name: 'r', modelName: MODEL, rules: [{ targetModels: [{ modelServerName: 'pool' }] }] }],
    ),
  )
  gw = await spawnGateway(GW_HOST, ['--config', file])
}, 60_000)

afterAll(async () => {
  await gw?.stop()
  await fleet?.close()
  if (dir) await rm(dir, { recursive: true, force: true })
})

describe('seeded fuzz', () => {
  it(`${COUNT} fuzzed bodies: no gateway-made 5xx, every answer shaped, in-flight back to 0`, async () => {
    const r = await runFuzz({
      url: gw.url,
      model: MODEL,
      seed: SEED,
      count: COUNT,
      concurrency: 16,
      // CI-sized: huge strings up to 32 KiB here (the 100k long form goes to 1 MiB).
      maxStringBytes: 32 * 1024,
    })
    const summary = JSON.stringify({
      byStatus: r.byStatus,
      engine5xx: r.engine5xx,
      seconds: Math.round(r.durationMs / 1000),
      samples: r.samples,
    })
    expect(r.sent, summary).toBe(COUNT)
    expect(r.gateway5xx, summary).toBe(0)
    expect(r.transportErrors, summary).toBe(0)
    expect(r.unshaped, summary).toBe(0)
    // Both outcomes occurred: the fuzz reached the engines and was refused too.
    expect(r.byStatus[200] ?? 0, summary).toBeGreaterThan(COUNT / 50)
    expect(r.byStatus[400] ?? 0, summary).toBeGreaterThan(COUNT / 4)
    expect(await settledInflight(gw.url)).toBe(0)
    expect(gw.exited()).toBe(false)
    // And it still serves: nothing queued behind a leaked admission slot.
    let n = 0
    const after = await runLoad({
      url: gw.url,
      concurrency: 8,
      next: (i) =>
        i < 64 ? { path: '/v1/chat/completions', body: chatBody(MODEL, n++) } : undefined,
    })
    expect(after.byStatus, JSON.stringify(after.samples)).toEqual({ 200: 64 })
  }, 300_000)
})
