// `npm run bench:routing -- --only pd [--quick] [--seconds <n>] [--no-write]` (or run this file
// with tsx): prefill/decode disaggregation against aggregated serving at equal pod count, under a
// mixed load (long prompts with short answers beside short prompts with long answers), and the
// same disaggregated fleet with a prefill pod killed mid-run.
//
// Four simulated engines either way (own process, hack/sim): aggregated = four `both` pods whose
// prefills stall their running decodes (--prefill-interference: prompts are computed on the same
// GPU); disaggregated = two prefill + two decode pods in one group (2P2D) behind a ModelServer
// with pdGroup and the nixl connector, so the decode pods receive each prompt's KV (transfer time
// per token) and only decode. The real data plane (own process, the CLI) routes; the load is
// open-loop and seeded, the same sequence for every run. TPOT is what a client sees between
// stream chunks; the target (issue 14) is decode TPOT p90 at least 1.5x better than aggregated,
// and no failed request when a prefill pod dies.
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { SimOptions, SimStats } from '../sim/index.js'
import { createRng } from '../sim/rng.js'
import { startFleet, startGateway } from './fleet-process.js'
import { percentile } from './load.js'
import type { Proc } from './procs.js'
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

const MODEL = 'pd-bench'
const GW_PORT = 18_310
/**
 * Engine shape at real time (time scale 1, so modelled times stay large against the CPU noise
 * of a shared machine): a decode step 20 ms, a prompt 0.4 ms per token. Prompts are few tokens
 * that each stand for four (fewer bytes for every process to move), so a "long" prompt of 1,000
 * tokens costs what ~4,000 tokens cost at 0.1 ms/token.
 */
const ENGINE = {
  timeScale: 1,
  prefillOverheadMs: 10,
  prefillMsPerToken: 0.4,
  decodeMsPerToken: 20,
  batchSlowdown: 0.02,
  maxNumSeqs: 32,
  numGpuBlocks: 16_384,
  blockSize: 16,
  maxModelLen: 16_384,
  kvTransferMsPerToken: 0.08,
  prefillInterference: true,
} as const satisfies Partial<SimOptions>
/** Mixed load: half RAG-like (long prompt, short answer), half chat (short prompt, long answer). */
const LONG = { words: 1000, out: 16 }
const CHAT = { words: 60, out: 64 }

export type PdBenchOptions = ScenarioOptions

type Mode = 'aggregated' | 'disaggregated' | 'disaggregated, prefill pod killed'

function plan(rate: number, durationMs: number, seed = 14): PlannedRequest[] {
  const random = createRng(seed)
  return poissonTimes(rate, durationMs, random).map((at, i) => {
    const long = random() < 0.5
    const w = long ? LONG : CHAT
    // Distinct prompts: no prefix cache helps either side.
    const text = `Request ${i}: ${Array.from({ length: w.words }, (_, k) => `w${(i * 7919 + k) % 10007}`).join(' ')}`
    return {
      at,
      tag: long ? 'long' : 'chat',
      outputTokens: w.out,
      body: JSON.stringify({
        model: MODEL,
        messages: [{ role: 'user', content: text }],
        max_tokens: w.out,
        stream: true,
      }),
    }
  })
}

function pods(mode: Mode): SimOptions[] {
  const roles =
    mode === 'aggregated'
      ? ['both', 'both', 'both', 'both']
      : ['prefill', 'prefill', 'decode', 'decode']
  return roles.map((role, i) => ({
    name: `${role}-${i}`,
    host: `127.0.0.${121 + i}`,
    port: 0,
    model: MODEL,
    metricsFormat: 'vllm',
    seed: 500 + i,
    role: role as SimOptions['role'] & string,
    ...ENGINE,
  }))
}

function manifests(mode: Mode, members: readonly FleetMember[]): string {
  return routingManifests({
    model: MODEL,
    endpoints: fleetEndpoints(members, (name) => ({
      app: 'pool',
      role: name.split('-')[0] ?? '',
      group: 'g0',
    })),
    retries: 3,
    ...(mode !== 'aggregated'
      ? {
          pd: {
            groupKey: 'group',
            prefillLabels: { role: 'prefill' },
            decodeLabels: { role: 'decode' },
            connector: 'nixl',
          },
        }
      : {}),
    // Plain load balancing on both sides: the comparison is about disaggregation, not about a
    // profile that packs pods (the default fills warm pods first, which on aggregated pods piles
    // prefills onto the running decodes of fewer pods).
    plugins: [{ name: 'least-pending' }],
  })
}

interface Row {
  readonly mode: Mode
  readonly sent: number
  readonly ok: number
  readonly failed: number
  readonly ttftP50: number
  readonly ttftP90: number
  readonly chatTpotP50: number
  readonly chatTpotP90: number
  readonly tokensPerS: number
  readonly reqPerS: number
  readonly recomputed: number
}

async function runMode(mode: Mode, rate: number, durationMs: number): Promise<Row> {
  const dir = await mkdtemp(join(tmpdir(), 'igw-pd-'))
  const fleet = await startFleet(pods(mode))
  let gw: Proc | undefined
  try {
    const file = join(dir, 'gateway.yaml')
    await writeFile(file, manifests(mode, fleet.members))
    gw = await startGateway(file, GW_PORT, fleet.members.length)
    // Warm-up (not measured): the first requests of a fresh process pay for compilation.
    await runOpenLoop(`http://127.0.0.1:${GW_PORT}`, plan(rate / 2, 2000, 99), {
      timeoutMs: 60_000,
    })
    const requests = plan(rate, durationMs)
    const t0 = performance.now()
    if (mode === 'disaggregated, prefill pod killed') {
      // Down for longer than the run: a pod that died, not one that restarts.
      setTimeout(() => {
        fleet.restart('prefill-0', durationMs * 3).catch(() => {})
      }, durationMs * 0.4)
    }
    const results: RequestResult[] = await runOpenLoop(`http://127.0.0.1:${GW_PORT}`, requests, {
      timeoutMs: 60_000,
    })
    const wallS = (performance.now() - t0) / 1000
    const good = results.filter((r) => r.status === 200 && r.error === undefined)
    const bad = results.find((r) => !(r.status === 200 && r.error === undefined))
    if (bad !== undefined)
      process.stdout.write(`${mode}: a failed request: status ${bad.status} ${bad.error ?? ''}\n`)
    const sorted = (xs: number[]) => xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b)
    const ttft = sorted(good.map((r) => r.ttftMs))
    const tpot = sorted(good.filter((r) => r.tag === 'chat').map((r) => r.tpotMs))
    const tokens = good.reduce((n, r) => n + (r.tag === 'long' ? LONG.out : CHAT.out), 0)
    let recomputed = 0
    for (const m of fleet.members) {
      try {
        const s = (await (await fetch(`${m.url}/sim/stats`)).json()) as SimStats
        recomputed += s.pd.kvRecomputed
      } catch {
        // the killed pod
      }
    }
    return {
      mode,
      sent: results.length,
      ok: good.length,
      failed: results.length - good.length,
      ttftP50: percentile(ttft, 50),
      ttftP90: percentile(ttft, 90),
      chatTpotP50: percentile(tpot, 50),
      chatTpotP90: percentile(tpot, 90),
      tokensPerS: tokens / wallS,
      reqPerS: good.length / wallS,
      recomputed,
    }
  } finally {
    await gw?.stop()
    await fleet.stop()
    await rm(dir, { recursive: true, force: true })
  }
}

export async function runPdBench(o: PdBenchOptions): Promise<string> {
  const durationMs = (o.seconds ?? (o.quick ? 10 : 20)) * 1000
  // ~40 % of an aggregated pod's GPU time goes to prefill at this rate (the two prefill pods of
  // the disaggregated fleet then run at ~80 %: its TTFT pays for that): a mixed load where
  // interference shows.
  const rate = 8
  const rows: Row[] = []
  for (const mode of [
    'aggregated',
    'disaggregated',
    'disaggregated, prefill pod killed',
  ] as const) {
    const r = await runMode(mode, rate, durationMs)
    process.stdout.write(
      `${mode}: ${r.ok}/${r.sent} ok, chat TPOT p90 ${fmt(r.chatTpotP90, 1)} ms\n`,
    )
    rows.push(r)
  }
  const agg = rows[0] as Row
  const pd = rows[1] as Row
  const ratio = agg.chatTpotP90 / pd.chatTpotP90
  const killed = rows[2] as Row
  const text = `### Prefill/decode disaggregation vs aggregated (4 pods each)

Mixed open-loop load at ${rate} req/s for ${durationMs / 1000} s: half long prompts (~${LONG.words} words, ${LONG.out} output tokens), half chat (~${CHAT.words} words, ${CHAT.out} output tokens), streamed. Both use the least-pending profile (plain load balancing; each role on its own for the pairs) after a 2 s warm-up. Aggregated: 4 engines that compute prompts on the GPU that decodes (prefill stalls decode); disaggregated: 2 prefill + 2 decode engines (one group), nixl connector (the decode engine pulls the prompt's KV, ${ENGINE.kvTransferMsPerToken} ms/token time scale ${ENGINE.timeScale}). TPOT is the chat requests' time between chunks as the client sees it.

${table(
  [
    'serving',
    'ok/sent',
    'failed',
    'TTFT p50',
    'TTFT p90',
    'chat TPOT p50',
    'chat TPOT p90',
    'output tok/s',
    'req/s',
    'prompts recomputed',
  ],
  rows.map((r) => [
    r.mode,
    `${r.ok}/${r.sent}`,
    String(r.failed),
    `${fmt(r.ttftP50, 0)} ms`,
    `${fmt(r.ttftP90, 0)} ms`,
    `${fmt(r.chatTpotP50, 1)} ms`,
    `${fmt(r.chatTpotP90, 1)} ms`,
    fmt(r.tokensPerS, 0),
    fmt(r.reqPerS, 1),
    String(r.recomputed),
  ]),
)}

Decode TPOT p90: aggregated / disaggregated = **${fmt(ratio, 2)}x** (target >= 1.5x: ${ratio >= 1.5 ? 'met' : 'not met'}). Prefill pod killed at 40 % of the run: ${killed.failed} failed of ${killed.sent} (target 0: ${killed.failed === 0 ? 'met' : 'not met'}).
`
  if (o.write) await writeSection('routing-pd', text, { rate, durationMs, engine: ENGINE, rows })
  return text
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  void runScenario(runPdBench, scenarioArgs(process.argv.slice(2)))
}
