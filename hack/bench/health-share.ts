// How much traffic a misbehaving engine still gets once it starts misbehaving (issue 10's target:
// < 2% two seconds after it starts, at a few hundred requests per second over 4 engines).
//
// For each mode of hack/hardening/bad-engine.ts: a fresh gateway (default scheduler, scraping
// every 100 ms) over 3 healthy simulated engines and 1 bad engine, open-loop load at `--rate`
// requests/s of distinct prompts, the bad engine switched to the mode at t0, and the share of
// requests it received between t0+2 s and t0+6 s counted at the engines themselves.
//
//   tsx hack/bench/health-share.ts [--rate 300] [--modes hang,cut,...] [--stream]
import { parseArgs } from 'node:util'
import { Agent, request } from 'undici'
import { startGateway } from '../../dataplane/gateway.js'
import { ConfigVolume, manifests } from '../../test/helpers/config.js'
import { type BadEngine, type BadMode, isBadMode, startBadEngine } from '../hardening/bad-engine.js'
import { type SimHandle, startSimulator } from '../sim/index.js'

const MODEL = 'share-model'
const DEFAULT_MODES: BadMode[] = [
  'error-500',
  'hang',
  'hang-after-headers',
  'cut',
  'garbage',
  'endless',
  'sse-no-newlines',
]

interface Row {
  mode: BadMode
  sentPerSec: number
  badShare: number
  badGot: number
  total: number
  clientErrors: number
  /** Health log lines about the healthy engines (a loaded machine timing out their scrapes). */
  healthyEjections: number
  /** After `misbehaveMs` of misbehaving, ms from its recovery to its first good answer again. */
  backAfterMs: number | undefined
  /** Requests it answered in the 5 s after recovering. */
  servedAfter: number
}

async function runMode(
  mode: BadMode,
  rate: number,
  stream: boolean,
  misbehaveMs: number,
): Promise<Row> {
  const sims: SimHandle[] = await Promise.all(
    [0, 1, 2].map((i) =>
      startSimulator({
        name: `ok-${i}`,
        host: `127.0.0.${131 + i}`,
        port: 0,
        model: MODEL,
        metricsFormat: 'vllm',
        seed: i,
        zeroLatency: true,
        maxNumSeqs: 256,
      }),
    ),
  )
  const bad: BadEngine = await startBadEngine({
    name: 'bad',
    host: '127.0.0.134',
    model: MODEL,
    sim: { metricsFormat: 'vllm', zeroLatency: true, maxNumSeqs: 256 },
  })
  const eps = [
    ...sims.map((s) => ({ name: s.name, address: s.host, port: s.port })),
    { name: bad.name, address: bad.host, port: bad.port },
  ]
  const vol = await ConfigVolume.create({
    'gateway.yaml': manifests(
      [
        {
          name: 'pool',
          endpoints: eps,
          trafficPolicy: {
            retry: { attempts: 3, retryInterval: '10ms' },
            timeouts: { connect: '1s', responseHeader: '500ms', idle: '500ms' },
          },
        },
      ],
      [
        {
          name: 'base',
          modelName: MODEL,
          rules: [{ targetModels: [{ modelServerName: 'pool' }] }],
        },
      ],
    ),
  })
  const healthLines: string[] = []
  const gw = await startGateway({
    log: (_level, msg, fields) => {
      if (msg.startsWith('endpoint ') || msg === 'engine restart detected') {
        healthLines.push(
          `${msg} ${String(fields?.['endpoint'])} ${String(fields?.['reason'] ?? '')}`,
        )
      }
    },
    config: { kind: 'manifests', paths: [vol.dir] },
    port: 0,
    pollMs: 1000,
    maxUpstreamBodyBytes: 1024 * 1024,
    maxSseLineBytes: 64 * 1024,
    scheduler: { scrape: { intervalMs: 100 } },
  })
  const agent = new Agent({ connections: 512 })
  let seq = 0
  let inflight = 0
  let sent = 0
  let clientErrors = 0
  const one = async (): Promise<void> => {
    inflight++
    sent++
    try {
      const r = await request(`${gw.url}/v1/chat/completions`, {
        method: 'POST',
        dispatcher: agent,
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          model: MODEL,
          messages: [{ role: 'user', content: `question ${seq++}` }],
          max_tokens: 4,
          stream,
        }),
      })
      await r.body.text()
      if (r.statusCode !== 200) clientErrors++
    } catch {
      clientErrors++
    } finally {
      inflight--
    }
  }
  const perTick = rate / 100
  let credit = 0
  const timer = setInterval(() => {
    credit += perTick
    while (credit >= 1) {
      credit--
      if (inflight < 512) void one()
    }
  }, 10)
  const received = (): number[] => [...sims.map((s) => s.stats().requests), bad.stats().requests]
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
  await sleep(2000) // warm: every engine scraped and serving
  bad.setMode(mode)
  const t0 = performance.now()
  await sleep(2000)
  const before = received()
  const sentBefore = sent
  const errorsBefore = clientErrors
  await sleep(4000)
  const after = received()
  const elapsed = (performance.now() - t0 - 2000) / 1000
  const windowErrors = clientErrors - errorsBefore
  await sleep(Math.max(0, misbehaveMs - (performance.now() - t0)))
  // Recovery: how soon does it answer requests again, and how many in the next 5 s?
  const completedAtHeal = bad.sim.stats().completed
  bad.setMode('ok')
  const healedAt = performance.now()
  let backAfterMs: number | undefined
  while (performance.now() - healedAt < 5000) {
    if (backAfterMs === undefined && bad.sim.stats().completed > completedAtHeal) {
      backAfterMs = performance.now() - healedAt
    }
    await sleep(20)
  }
  const servedAfter = bad.sim.stats().completed - completedAtHeal
  clearInterval(timer)
  const d = after.map((v, i) => v - (before[i] as number))
  const total = d.reduce((a, b) => a + b, 0)
  const row: Row = {
    mode,
    sentPerSec: Math.round((sent - sentBefore) / elapsed),
    badGot: d[3] as number,
    total,
    badShare: total === 0 ? 0 : (d[3] as number) / total,
    clientErrors: windowErrors,
    backAfterMs,
    servedAfter,
    healthyEjections: healthLines.filter((l) => l.startsWith('endpoint ejected ok-')).length,
  }
  await sleep(1000)
  await gw.shutdown({ deadlineMs: 500 })
  await agent.close()
  await Promise.all([...sims.map((s) => s.close()), bad.close()])
  await vol.remove()
  return row
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      rate: { type: 'string', default: '300' },
      modes: { type: 'string' },
      stream: { type: 'boolean', default: false },
      'misbehave-ms': { type: 'string', default: '6000' },
    },
  })
  const rate = Number(values.rate)
  const modes = values.modes === undefined ? DEFAULT_MODES : values.modes.split(',')
  console.log(
    `rate ${rate}/s, ${values.stream ? 'streaming' : 'non-streaming'}; window t0+2 s … t0+6 s`,
  )
  console.log(
    `misbehaving for ${values['misbehave-ms']} ms, then healed: first good answer after / answers in the next 5 s`,
  )
  console.log(
    'mode                  sent/s  bad got / total   share   client errors  healthy ejected  back after  served',
  )
  for (const m of modes) {
    if (!isBadMode(m)) throw new Error(`unknown mode ${m}`)
    const r = await runMode(m, rate, values.stream, Number(values['misbehave-ms']))
    console.log(
      `${r.mode.padEnd(20)} ${String(r.sentPerSec).padStart(7)}  ${String(r.badGot).padStart(7)} / ${String(r.total).padEnd(6)} ${(100 * r.badShare).toFixed(2).padStart(6)}%  ${String(r.clientErrors).padStart(13)}  ${String(r.healthyEjections).padStart(15)}  ${r.backAfterMs === undefined ? '      >5 s' : `${Math.round(r.backAfterMs)} ms`.padStart(10)}  ${r.servedAfter}`,
    )
  }
}

await main()
