// Three data-plane processes (the CLI, as in production) share global limits through one real
// redis-server, under concurrent load spread over all three, while Redis is killed (-9) and
// restarted mid-run. What the limits admitted must stay within ±1% of what they allow: requests
// (a per-day rate) and tokens (a daily budget, settled with the engine's usage). Fail-closed
// answers 503 during the outage; nothing charged before, during or after it is lost or doubled.
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Agent, request } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type Proc, startDataplane } from '../hack/bench/procs.js'
import { type SimHandle, startSimulator } from '../hack/sim/index.js'
import { promSum, scrapeProm } from '../hack/sim/testkit.js'
import {
  endpoints,
  gatewayPolicy,
  modelRoute,
  modelServer,
  sha256,
  yamlDocs,
} from './helpers/filters.js'
import { type RedisServer, startRedis } from './helpers/redis-server.js'
import { until } from './helpers/until.js'

const REQUEST_LIMIT = 400
const TOKEN_BUDGET = 20_000
const KEYS = { rq: 'sk-global-requests-01', tok: 'sk-global-tokens-0002' }

let redis: RedisServer
let sim: SimHandle
let dir: string
const procs: Proc[] = []
const urls: string[] = []
const agent = new Agent({ connections: 64 })

beforeAll(async () => {
  redis = await startRedis()
  sim = await startSimulator({
    name: 'global',
    host: '127.0.0.60',
    port: 0,
    model: 'sim-model',
    metricsFormat: 'vllm',
    zeroLatency: true,
  })
  dir = await mkdtemp(join(tmpdir(), 'igw-global-'))
  const secrets = join(dir, 'secrets')
  const config = join(dir, 'config')
  await Promise.all([
    import('node:fs/promises').then((fs) => fs.mkdir(secrets)),
    import('node:fs/promises').then((fs) => fs.mkdir(config)),
  ])
  await writeFile(join(secrets, 'key.rq'), sha256(KEYS.rq))
  await writeFile(join(secrets, 'key.tok'), sha256(KEYS.tok))
  await writeFile(
    join(config, 'gateway.yaml'),
    yamlDocs([
      modelServer('sim', 'sim-model', sim.port),
      endpoints('sim', sim.host, sim.port),
      modelRoute('sim', 'sim-model', 'sim'),
      gatewayPolicy({
        authentication: {
          apiKeys: [
            { name: 'rq', secretKey: 'key.rq', tenant: 'a', tier: 'requests' },
            { name: 'tok', secretKey: 'key.tok', tenant: 'b', tier: 'tokens' },
          ],
        },
        tiers: [
          // Per day: refill during the run (≈0.1 request) stays far below 1%.
          { name: 'requests', rate: [{ requests: REQUEST_LIMIT, per: 'day' }] },
          { name: 'tokens', budget: [{ tokens: TOKEN_BUDGET, per: 'day' }] },
        ],
        rateLimit: {
          backend: 'redis',
          redis: { address: redis.address, timeout: '200ms' },
          failureMode: 'closed',
        },
      }),
    ]),
  )
  const started = await Promise.all(
    [0, 1, 2].map(() =>
      startDataplane({
        args: ['--config', config, '--secrets-dir', secrets],
        // Three data planes (a primary and a worker per core each) start at once: on a busy
        // 2-core machine that took longer than 30 s.
        timeoutMs: 90_000,
      }),
    ),
  )
  procs.push(...started)
  urls.push(...started.map((p) => p.url))
}, 120_000)

afterAll(async () => {
  await Promise.all(procs.map((p) => p.stop()))
  await agent.close()
  await sim?.close()
  await redis?.stop()
  if (dir) await rm(dir, { recursive: true, force: true })
})

interface Tally {
  admitted: number
  tokens: number
  limited: number
  unavailable: number
  other: string[]
}

describe('a global limit shared by three data-plane processes', () => {
  it('admits within ±1% of the limits under load, across a hard Redis restart', async () => {
    const tallies: Record<keyof typeof KEYS, Tally> = {
      rq: { admitted: 0, tokens: 0, limited: 0, unavailable: 0, other: [] },
      tok: { admitted: 0, tokens: 0, limited: 0, unavailable: 0, other: [] },
    }
    let restartedAt = 0
    let restart: Promise<void> | undefined
    // Set once Redis is back and every data plane has written back what waited for it (uncertain
    // reservations undone): a refusal from then on is the limit itself. A time after the restart
    // stood in for this and ran short on a loaded machine (workers stopped at 68 % of the budget).
    let settled = false
    const pending = async (url: string): Promise<number> =>
      promSum(await scrapeProm(`${url}/metrics`), 'infer_gateway_ratelimit_pending_adjustments', {
        backend: 'redis',
      })
    // Only a bound for a broken run: the workers stop on the limit, whatever the machine's pace.
    const deadline = Date.now() + 100_000

    const worker = async (key: keyof typeof KEYS, i: number): Promise<void> => {
      const t = tallies[key]
      let n = i
      let refusedSinceSettled = 0
      while (Date.now() < deadline) {
        // Kill Redis once 40% of the request limit went through, with requests in flight.
        if (restart === undefined && tallies.rq.admitted >= REQUEST_LIMIT * 0.4) {
          restart = redis.restart(500).then(async () => {
            restartedAt = Date.now()
            await until(
              async () => (await Promise.all(urls.map(pending))).every((v) => v === 0),
              30_000,
              'every data plane to write back what waited for Redis',
            )
            settled = true
          })
        }
        const url = urls[n++ % urls.length]
        const r = await request(`${url}/v1/chat/completions`, {
          method: 'POST',
          dispatcher: agent,
          headers: { 'content-type': 'application/json', authorization: `Bearer ${KEYS[key]}` },
          body: JSON.stringify({
            model: 'sim-model',
            messages: [
              { role: 'user', content: `Request ${n} from worker ${i}: say a few words.` },
            ],
            max_tokens: 20,
          }),
        })
        const body = (await r.body.json()) as {
          usage?: { total_tokens: number }
          error?: { code: string }
        }
        if (r.statusCode === 200) {
          t.admitted++
          t.tokens += body.usage?.total_tokens ?? 0
          refusedSinceSettled = 0
        } else if (r.statusCode === 429) {
          t.limited++
          // Done once the limit holds after Redis came back and the write-back is done;
          // otherwise keep trying.
          if (settled && ++refusedSinceSettled >= 5) return
          await new Promise((res) => setTimeout(res, 20))
        } else if (r.statusCode === 503 && body.error?.code === 'rate_limit_unavailable') {
          t.unavailable++
          await new Promise((res) => setTimeout(res, 20))
        } else {
          t.other.push(`${r.statusCode} ${JSON.stringify(body)}`)
          return
        }
      }
    }

    await Promise.all([
      ...Array.from({ length: 12 }, (_, i) => worker('rq', i)),
      // Fewer in flight for tokens: each admitted request may use a few more tokens than it
      // reserved (input is estimated), so the overshoot is bounded by what is in flight.
      ...Array.from({ length: 6 }, (_, i) => worker('tok', i)),
    ])
    await restart

    expect(tallies.rq.other).toEqual([])
    expect(tallies.tok.other).toEqual([])
    // The outage happened under load: fail-closed refused requests meanwhile.
    expect(tallies.rq.unavailable + tallies.tok.unavailable).toBeGreaterThan(0)
    expect(restartedAt).toBeGreaterThan(0)
    expect(tallies.rq.admitted).toBeGreaterThanOrEqual(REQUEST_LIMIT * 0.99)
    expect(tallies.rq.admitted).toBeLessThanOrEqual(REQUEST_LIMIT * 1.01)
    expect(tallies.tok.tokens).toBeGreaterThanOrEqual(TOKEN_BUDGET * 0.99)
    expect(tallies.tok.tokens).toBeLessThanOrEqual(TOKEN_BUDGET * 1.01)

    // Every process has written back whatever waited for Redis.
    for (const url of urls) {
      const text = await (await request(`${url}/metrics`, { dispatcher: agent })).body.text()
      expect(text).toMatch(/infer_gateway_ratelimit_pending_adjustments\{backend="redis"\} 0\b/)
    }
    console.log(JSON.stringify(tallies))
  }, 150_000)
})
