// `npm run bench:routing -- --only spill [--quick] [--seconds <n>] [--no-write]` (or run this file
// with tsx): spill-over to a public provider when the self-hosted pool is saturated (issue 15).
//
// Two simulated engines (own process, hack/sim) of 4 batch slots each serve ~11 requests/s; an
// open-loop burst at twice that (Poisson, seeded, the same sequence for both runs) comes from two
// tiers, half gold and half free (API keys of a GatewayPolicy). The real data plane (own process,
// the CLI) routes with the default scheduler profile. Without spill-over every request waits for a
// slot on the pool; with it, the rule's fallback `on: [saturated]`, `saturation: {ttftSLO, tiers:
// [gold], maxQueuePerEndpoint: 0}` sends a gold request to an OpenAI provider simulator (own
// process) instead when its predicted time to first token is above the SLO or it would wait
// for a slot, while free requests keep queueing on the pool. (With the TTFT bound alone, runs on
// a loaded 2-core machine spilled too little: the prediction lagged the pool's real queue.)
// Target: gold TTFT p99 <= the SLO with spill-over, and not without.
// SPILL_BENCH_DEBUG=1 prints every gold request over the SLO (arrival, TTFT, pod or `?` = provider).
import { createHash } from 'node:crypto'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { DEFAULT_PROFILE } from '../../dataplane/scheduler/profile.js'
import { type SimServer, startOpenAISim } from '../providers-sim/index.js'
import type { SimOptions } from '../sim/index.js'
import { createRng } from '../sim/rng.js'
import { startFleet, startGateway } from './fleet-process.js'
import { percentile } from './load.js'
import { type Proc, type ScriptProc, spawnScript } from './procs.js'
import { fmt, table, writeSection } from './report.js'
import { fleetEndpoints, routingManifests } from './routing-config.js'
import type { FleetMember } from './routing-fleet.js'
import {
  type PlannedRequest,
  poissonTimes,
  type RequestResult,
  runOpenLoop,
} from './routing-load.js'
import { runScenario, type ScenarioOptions, scenarioArgs } from './scenario.js'

const MODEL = 'spill-bench'
const GW_PORT = 18_330
/** This file, run again as the provider simulator's own process (SPILL_PROVIDER=1). */
const THIS_FILE = fileURLToPath(import.meta.url)
/** Real time (time scale 1): a decode step 20 ms, so a 32-token answer holds a slot ~0.7 s. */
const ENGINE = {
  timeScale: 1,
  prefillOverheadMs: 10,
  prefillMsPerToken: 0.1,
  decodeMsPerToken: 20,
  batchSlowdown: 0.02,
  maxNumSeqs: 4,
} as const satisfies Partial<SimOptions>
const PODS = 2
const OUTPUT_TOKENS = 32
const SLO_MS = 800
const KEYS = { gold: 'sk-bench-gold-0000001', free: 'sk-bench-free-0000002' } as const
const PROVIDER_KEY = 'sk-bench-provider-01'

export type SpillBenchOptions = ScenarioOptions

type Mode = 'no spill-over' | 'spill-over (gold)'

function plan(rate: number, durationMs: number, seed = 15): PlannedRequest[] {
  const random = createRng(seed)
  return poissonTimes(rate, durationMs, random).map((at, i) => {
    const tier = random() < 0.5 ? 'gold' : 'free'
    return {
      at,
      tag: tier,
      outputTokens: OUTPUT_TOKENS,
      headers: { authorization: `Bearer ${KEYS[tier]}` },
      body: JSON.stringify({
        model: MODEL,
        messages: [{ role: 'user', content: `Request ${i}: summarise item ${i * 7919} briefly.` }],
        max_tokens: OUTPUT_TOKENS,
        stream: true,
      }),
    }
  })
}

function manifests(mode: Mode, members: readonly FleetMember[], providerUrl: string): string {
  return routingManifests({
    model: MODEL,
    endpoints: fleetEndpoints(members),
    // One try, as the default traffic policy: a retry would hide nothing here.
    retries: 0,
    // The default profile, with the engines' batch size given (as an operator would) instead of
    // learned: the warm-up never fills a batch, and spill-over acts from the first burst.
    plugins: DEFAULT_PROFILE.plugins.map((p) =>
      p.name === 'predicted-latency'
        ? { name: p.name, weight: p.weight, args: { maxNumSeqs: ENGINE.maxNumSeqs } }
        : { name: p.name, weight: p.weight },
    ),
    providers: [
      {
        name: 'overflow',
        spec: {
          providerType: 'OpenAI',
          model: 'gpt-overflow',
          baseURL: `${providerUrl}/v1`,
          allowInsecureHTTP: true,
          auth: { secretRef: { name: 'overflow', key: 'api-key' } },
          pricing: { inputPerMillion: '0.15', outputPerMillion: '0.60' },
        },
      },
    ],
    ...(mode !== 'no spill-over'
      ? {
          fallback: {
            targets: [{ externalModelProviderName: 'overflow' }],
            on: ['saturated'],
            saturation: { ttftSLO: `${SLO_MS}ms`, maxQueuePerEndpoint: 0, tiers: ['gold'] },
          },
        }
      : {}),
    policy: {
      authentication: {
        apiKeys: Object.keys(KEYS).map((tier) => ({
          name: tier,
          secretKey: `key.${tier}`,
          tenant: `tenant-${tier}`,
          tier,
        })),
      },
      tiers: Object.keys(KEYS).map((name) => ({ name })),
    },
  })
}

/** The provider simulator in its own process (its timers off the load generator's loop). */
function startProvider(): Promise<ScriptProc<string>> {
  return spawnScript<string>(THIS_FILE, { SPILL_PROVIDER: '1' }, { killAfterMs: 1000 })
}

interface TierRow {
  readonly sent: number
  readonly ok: number
  readonly spilled: number
  readonly ttftP50: number
  readonly ttftP99: number
}

interface Row {
  readonly mode: Mode
  readonly gold: TierRow
  readonly free: TierRow
}

function tierRow(results: readonly RequestResult[], tier: string): TierRow {
  const mine = results.filter((r) => r.tag === tier)
  const good = mine.filter((r) => r.status === 200 && r.error === undefined)
  const ttft = good
    .map((r) => r.ttftMs)
    .filter((x) => Number.isFinite(x))
    .sort((a, b) => a - b)
  return {
    sent: mine.length,
    ok: good.length,
    // The engines name themselves in x-inference-pod; the provider does not.
    spilled: good.filter((r) => r.pod === '?').length,
    ttftP50: percentile(ttft, 50),
    ttftP99: percentile(ttft, 99),
  }
}

async function runMode(mode: Mode, rate: number, durationMs: number): Promise<Row> {
  const dir = await mkdtemp(join(tmpdir(), 'igw-spill-'))
  const fleet = await startFleet(
    Array.from({ length: PODS }, (_, i) => ({
      name: `pod-${i}`,
      host: `127.0.0.${141 + i}`,
      port: 0,
      model: MODEL,
      metricsFormat: 'vllm' as const,
      seed: 700 + i,
      ...ENGINE,
    })),
  )
  const provider = await startProvider()
  let gw: Proc | undefined
  try {
    const secrets = join(dir, 'secrets')
    await mkdir(secrets)
    for (const [tier, key] of Object.entries(KEYS))
      await writeFile(join(secrets, `key.${tier}`), createHash('sha256').update(key).digest('hex'))
    await writeFile(join(secrets, 'provider_default_overflow_api-key'), PROVIDER_KEY)
    const file = join(dir, 'gateway.yaml')
    await writeFile(file, manifests(mode, fleet.members, provider.ready))
    gw = await startGateway(file, GW_PORT, PODS, {
      args: ['--secrets-dir', secrets, '--allow-private-provider-addresses'],
    })
    // Warm-up below capacity (not measured): compilation, and the scheduler's latency model
    // calibrates on the engines' real TTFT and TPOT.
    await runOpenLoop(`http://127.0.0.1:${GW_PORT}`, plan(rate / 4, 3000, 99), {
      timeoutMs: 60_000,
    })
    const results = await runOpenLoop(`http://127.0.0.1:${GW_PORT}`, plan(rate, durationMs), {
      timeoutMs: 120_000,
    })
    if (process.env['SPILL_BENCH_DEBUG'])
      for (const r of results)
        if (r.tag === 'gold' && r.ttftMs > SLO_MS)
          process.stdout.write(
            `slow gold at ${Math.round(r.at)} ms: ${Math.round(r.ttftMs)} ms on ${r.pod}\n`,
          )
    return { mode, gold: tierRow(results, 'gold'), free: tierRow(results, 'free') }
  } finally {
    await gw?.stop()
    await fleet.stop()
    await provider.stop()
    await rm(dir, { recursive: true, force: true })
  }
}

export async function runSpillBench(o: SpillBenchOptions): Promise<string> {
  const durationMs = (o.seconds ?? (o.quick ? 6 : 12)) * 1000
  // Pool capacity: PODS × maxNumSeqs slots, each held ~ prefill + OUTPUT_TOKENS decode steps.
  const slotS = (ENGINE.prefillOverheadMs + OUTPUT_TOKENS * ENGINE.decodeMsPerToken) / 1000
  const capacity = (PODS * ENGINE.maxNumSeqs) / slotS
  const rate = 2 * capacity
  const rows: Row[] = []
  for (const mode of ['no spill-over', 'spill-over (gold)'] as const) {
    const r = await runMode(mode, rate, durationMs)
    process.stdout.write(
      `${mode}: gold TTFT p99 ${fmt(r.gold.ttftP99, 0)} ms (${r.gold.spilled}/${r.gold.sent} spilled), free TTFT p99 ${fmt(r.free.ttftP99, 0)} ms\n`,
    )
    rows.push(r)
  }
  const without = rows[0] as Row
  const withSpill = rows[1] as Row
  const met = withSpill.gold.ttftP99 <= SLO_MS && without.gold.ttftP99 > SLO_MS
  const text = `### Spill-over to a provider under a burst (${PODS} pods, 2x capacity)

Open-loop Poisson burst at ${fmt(rate, 1)} req/s for ${durationMs / 1000} s — twice the pool's capacity (${PODS} engines x ${ENGINE.maxNumSeqs} slots, ~${fmt(slotS, 2)} s per ${OUTPUT_TOKENS}-token answer: ${fmt(capacity, 1)} req/s) — half gold, half free tier, streamed, after a warm-up at a quarter of the rate. With spill-over the rule's fallback is an OpenAI provider simulator, \`on: [saturated]\`, \`saturation: {ttftSLO: ${SLO_MS}ms, maxQueuePerEndpoint: 0, tiers: [gold]}\` (gold never waits for a slot on the pool); free requests queue on the pool either way.

${table(
  ['run', 'tier', 'ok/sent', 'spilled', 'TTFT p50', 'TTFT p99'],
  rows.flatMap((r) =>
    (['gold', 'free'] as const).map((tier) => [
      r.mode,
      tier,
      `${r[tier].ok}/${r[tier].sent}`,
      String(r[tier].spilled),
      `${fmt(r[tier].ttftP50, 0)} ms`,
      `${fmt(r[tier].ttftP99, 0)} ms`,
    ]),
  ),
)}

Gold TTFT p99: ${fmt(withSpill.gold.ttftP99, 0)} ms with spill-over, ${fmt(without.gold.ttftP99, 0)} ms without (target: <= ${SLO_MS} ms with, above it without: ${met ? 'met' : 'not met'}).
`
  if (o.write) await writeSection('routing-spill', text, { rate, durationMs, engine: ENGINE, rows })
  return text
}

if (process.env['SPILL_PROVIDER'] === '1') {
  const sim: Promise<SimServer> = startOpenAISim({
    host: '127.0.0.145',
    flavor: 'openai',
    name: 'overflow',
  })
  sim.then(
    (p) => {
      p.keys.add(PROVIDER_KEY)
      process.stdout.write(`READY ${JSON.stringify(p.url)}\n`)
      process.once('SIGTERM', () => {
        void p.close().then(() => process.exit(0))
      })
    },
    (e: unknown) => {
      process.stderr.write(`${String(e)}\n`)
      process.exit(1)
    },
  )
} else if (process.argv[1] === THIS_FILE) {
  void runScenario(runSpillBench, scenarioArgs(process.argv.slice(2)))
}
