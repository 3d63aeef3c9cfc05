// `npm run bench:routing` (tsx hack/bench/routing.ts [--quick] [--no-write] [--only <workload>]):
// routing quality of the scheduler. A fleet of simulated engines (own process) behind the real
// data plane (own process, the CLI), driven by an open-loop load generator (this process), for
// several workloads, arrival rates and scheduling policies. Every policy sees the same request
// sequence (seeded), and each run starts with a fresh fleet and gateway (cold caches).
//
// The simulator's modelled GPU time (prefill per token, decode per token, batching slowdown, KV
// blocks with prefix caching, LoRA slots) is tens to hundreds of milliseconds per request, so the
// CPU time of three processes sharing two cores stays small next to it.
import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { DEFAULT_PROFILE } from '../../dataplane/scheduler/profile.js'
import type { SimOptions, SimStats } from '../sim/index.js'
import { percentile } from './load.js'
import { spawnCli } from './procs.js'
import { fmt, table, writeSection } from './report.js'
import { routingManifests, type SchedulerPluginSpec } from './routing-config.js'
import type { FleetMember } from './routing-fleet.js'
import {
  burstyTimes,
  type PlannedRequest,
  poissonTimes,
  type RequestResult,
  runOpenLoop,
} from './routing-load.js'

const { values: opts } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    'no-write': { type: 'boolean', default: false },
    only: { type: 'string' },
    seconds: { type: 'string' },
  },
})
const QUICK = opts.quick
const DURATION_MS = Number(opts.seconds ?? (QUICK ? 8 : 16)) * 1000
const WARMUP_MS = Math.min(3000, DURATION_MS / 4)
const GW_PORT = 18_280
const MODEL = 'bench-llm'
const FLEET_SCRIPT = fileURLToPath(new URL('./routing-fleet.ts', import.meta.url))

// ---------------------------------------------------------------------------------------------
// engine model

/** One simulated pod: the same engine everywhere unless a workload says otherwise. */
interface PodSpec {
  readonly timeScale: number
  readonly labels?: Record<string, string>
}

const ENGINE = {
  maxNumSeqs: 8,
  blockSize: 16,
  numGpuBlocks: 1024,
  prefillOverheadMs: 10,
  prefillMsPerToken: 0.25,
  decodeMsPerToken: 10,
  batchSlowdown: 0.02,
  loraLoadMs: 50,
} as const

/** Seconds one request holds a batch slot with nothing cached (half-full batch for decode). */
function serviceSec(promptTokens: number, outputTokens: number, timeScale: number): number {
  const decode =
    outputTokens *
    ENGINE.decodeMsPerToken *
    (1 + (ENGINE.batchSlowdown * (ENGINE.maxNumSeqs - 1)) / 2)
  return (
    (timeScale * (ENGINE.prefillOverheadMs + promptTokens * ENGINE.prefillMsPerToken + decode)) /
    1000
  )
}

/** Requests per second the fleet serves with nothing cached: the 100 % load reference. */
function capacity(pods: readonly PodSpec[], promptTokens: number, outputTokens: number): number {
  let c = 0
  for (const p of pods) c += ENGINE.maxNumSeqs / serviceSec(promptTokens, outputTokens, p.timeScale)
  return c
}

// ---------------------------------------------------------------------------------------------
// text

function rng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) | 0
    let t = Math.imul(a ^ (a >>> 15), 1 | a)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296
  }
}

const VOCAB = (() => {
  const r = rng(7)
  const letters = 'abcdefghijklmnopqrstuvwxyz'
  return Array.from({ length: 4000 }, () => {
    const n = 2 + Math.floor(r() * 7)
    let w = ''
    for (let i = 0; i < n; i++) w += letters[Math.floor(r() * 26)]
    return w
  })
})()

/** `n` words of pseudo-text (one simulator token each). */
function words(n: number, r: () => number): string {
  const out: string[] = []
  for (let i = 0; i < n; i++) out.push(VOCAB[Math.floor(r() * VOCAB.length)] as string)
  return out.join(' ')
}

function chatBody(model: string, system: string | undefined, user: string, maxTokens: number) {
  return JSON.stringify({
    model,
    messages: [
      ...(system !== undefined ? [{ role: 'system', content: system }] : []),
      { role: 'user', content: user },
    ],
    max_tokens: maxTokens,
    stream: true,
  })
}

// ---------------------------------------------------------------------------------------------
// workloads

interface Workload {
  readonly name: string
  readonly title: string
  readonly describe: string
  readonly pods: readonly PodSpec[]
  readonly loras?: readonly string[]
  readonly maxLoras?: number
  /** 100 % load in requests per second. */
  readonly capacity: number
  /** The request sequence for a given load (fraction of capacity); same seed for every policy. */
  plan(load: number): PlannedRequest[]
}

/**
 * Four identical pods. `timeScale` stretches the modelled GPU time so that every workload's 70 %
 * load lands near 40 req/s: fast enough for stable percentiles in a short run, slow enough that
 * the CPU time of the gateway, engines and client on two cores stays small beside GPU time.
 */
function homogeneous(timeScale: number): PodSpec[] {
  return [0, 1, 2, 3].map(() => ({ timeScale }))
}
const OUT = 16

function sharedPrefix(bursty: boolean): Workload {
  const groups = 16
  const sys = 1500
  const q = 60
  const pods = homogeneous(1)
  const cap = capacity(pods, sys + q, OUT)
  const name = bursty ? 'bursty' : 'shared-prefix'
  return {
    name,
    title: bursty ? 'Bursty shared-prefix' : 'Shared prefix',
    describe: bursty
      ? `the shared-prefix requests arriving in bursts: Poisson at 1.9× the average rate for 2 s, then 0.1× for 2 s`
      : `${groups} groups, each a ${sys}-token system prompt shared by its requests + a ${q}-token question, ${OUT} output tokens (GAIE's "high-cache" shape scaled down: ${groups} prefixes × ${Math.ceil(sys / ENGINE.blockSize)} blocks exceed one pod's ${ENGINE.numGpuBlocks}-block KV cache, a quarter of them fit)`,
    pods,
    capacity: cap,
    plan(load) {
      const r = rng(bursty ? 11 : 10)
      const systems = Array.from(
        { length: groups },
        (_, g) => `Group ${g} policy. ${words(sys, rng(100 + g))}`,
      )
      const rate = load * cap
      const times = bursty
        ? burstyTimes(rate * 1.9, rate * 0.1, 4000, DURATION_MS, r)
        : poissonTimes(rate, DURATION_MS, r)
      return times.map((at) => ({
        at,
        body: chatBody(MODEL, systems[Math.floor(r() * groups)], words(q, r), OUT),
        tag: 'all',
        outputTokens: OUT,
      }))
    },
  }
}

function uniform(): Workload {
  const prompt = 600
  const pods = homogeneous(2)
  const cap = capacity(pods, prompt, OUT)
  return {
    name: 'uniform',
    title: 'Uniform (no sharing)',
    describe: `every request a distinct ${prompt}-token prompt, ${OUT} output tokens`,
    pods,
    capacity: cap,
    plan(load) {
      const r = rng(20)
      return poissonTimes(load * cap, DURATION_MS, r).map((at) => ({
        at,
        body: chatBody(MODEL, undefined, words(prompt, r), OUT),
        tag: 'all',
        outputTokens: OUT,
      }))
    },
  }
}

function multiLora(): Workload {
  const prompt = 300
  const loras = Array.from({ length: 8 }, (_, i) => `adapter-${i}`)
  const pods = homogeneous(2.5)
  const cap = capacity(pods, prompt, OUT)
  return {
    name: 'multi-lora',
    title: 'Multi-LoRA',
    describe: `${loras.length} adapters, uniformly requested, ${prompt}-token distinct prompts; each pod has 2 adapter slots (${ENGINE.loraLoadMs} ms to load one, only idle ones can be evicted), so the fleet's 8 slots fit every adapter exactly once`,
    pods,
    loras,
    maxLoras: 2,
    capacity: cap,
    plan(load) {
      const r = rng(30)
      return poissonTimes(load * cap, DURATION_MS, r).map((at) => ({
        at,
        body: chatBody(
          loras[Math.floor(r() * loras.length)] as string,
          undefined,
          words(prompt, r),
          OUT,
        ),
        tag: 'all',
        outputTokens: OUT,
      }))
    },
  }
}

function twoTenant(): Workload {
  const prompt = 400
  const pods = homogeneous(2.5)
  const cap = capacity(pods, prompt, OUT)
  return {
    name: 'two-tenant',
    title: 'Two tenants (heavy + light)',
    describe: `distinct ${prompt}-token prompts from two tenants (header \`x-tenant-id\`): "heavy" at 80 % of capacity and "light" at 10 %; the "light alone" run has only the light tenant`,
    pods,
    capacity: cap,
    plan(load) {
      // `load` < 0.5 means "light alone" (the heavy tenant is left out).
      const r = rng(40)
      const light = poissonTimes(0.1 * cap, DURATION_MS, rng(41)).map((at) => ({
        at,
        tenant: 'light',
      }))
      const heavy =
        load < 0.5
          ? []
          : poissonTimes(0.8 * cap, DURATION_MS, rng(42)).map((at) => ({ at, tenant: 'heavy' }))
      return [...light, ...heavy]
        .sort((a, b) => a.at - b.at)
        .map(({ at, tenant }) => ({
          at,
          body: chatBody(MODEL, undefined, words(prompt, r), OUT),
          headers: { 'x-tenant-id': tenant },
          tag: tenant,
          outputTokens: OUT,
        }))
    },
  }
}

function heterogeneous(): Workload {
  const prompt = 400
  const pods: PodSpec[] = [
    { timeScale: 1.5, labels: { 'nvidia.com/gpu.product': 'NVIDIA-H100-80GB-HBM3' } },
    { timeScale: 1.5, labels: { 'nvidia.com/gpu.product': 'NVIDIA-H100-80GB-HBM3' } },
    { timeScale: 6, labels: { 'nvidia.com/gpu.product': 'NVIDIA-A10G' } },
    { timeScale: 6, labels: { 'nvidia.com/gpu.product': 'NVIDIA-A10G' } },
  ]
  const cap = capacity(pods, prompt, OUT)
  return {
    name: 'heterogeneous',
    title: 'Heterogeneous GPUs',
    describe: `two "H100" pods and two "A10G" pods four times slower (label \`nvidia.com/gpu.product\`), distinct ${prompt}-token prompts`,
    pods,
    capacity: cap,
    plan(load) {
      const r = rng(50)
      return poissonTimes(load * cap, DURATION_MS, r).map((at) => ({
        at,
        body: chatBody(MODEL, undefined, words(prompt, r), OUT),
        tag: 'all',
        outputTokens: OUT,
      }))
    },
  }
}

// ---------------------------------------------------------------------------------------------
// policies

interface Policy {
  readonly name: string
  /** undefined = the data plane's default profile. */
  readonly plugins?: readonly SchedulerPluginSpec[]
}

const alone = (name: string): Policy => ({ name, plugins: [{ name }] })
const DEFAULT: Policy = { name: 'default profile' }
const DEFAULT_FAIR: Policy = {
  name: 'default + fairness',
  plugins: [
    ...DEFAULT_PROFILE.plugins.map((p) => ({ name: p.name, weight: p.weight })),
    { name: 'fairness', args: { tenantHeader: 'x-tenant-id' } },
  ],
}
const RR = alone('round-robin')
const RANDOM = alone('random')
const LP = alone('least-pending')

interface RunSpec {
  readonly workload: Workload
  readonly policy: Policy
  readonly load: number
}

function matrix(): RunSpec[] {
  const runs: RunSpec[] = []
  const add = (w: Workload, load: number, policies: readonly Policy[]) => {
    for (const policy of policies) runs.push({ workload: w, policy, load })
  }
  const sp = sharedPrefix(false)
  const un = uniform()
  const ml = multiLora()
  const bu = sharedPrefix(true)
  const tt = twoTenant()
  const he = heterogeneous()
  if (QUICK) {
    add(sp, 0.7, [RR, LP, DEFAULT])
    add(un, 0.7, [LP, DEFAULT])
    add(ml, 0.7, [RR, DEFAULT])
    add(tt, 0, [DEFAULT])
    add(tt, 1, [DEFAULT, DEFAULT_FAIR])
    return runs
  }
  add(sp, 0.7, [
    RANDOM,
    RR,
    LP,
    alone('least-kv-cache'),
    alone('least-latency'),
    alone('prefix-cache'),
    DEFAULT,
  ])
  add(sp, 0.4, [RR, LP, DEFAULT])
  add(sp, 0.9, [RR, LP, DEFAULT])
  add(un, 0.7, [
    RANDOM,
    RR,
    LP,
    alone('least-kv-cache'),
    alone('least-latency'),
    alone('prefix-cache'),
    DEFAULT,
  ])
  add(un, 0.4, [LP, DEFAULT])
  add(un, 0.9, [LP, DEFAULT])
  add(ml, 0.7, [RR, LP, alone('lora-affinity'), DEFAULT])
  add(bu, 0.6, [RR, LP, alone('prefix-cache'), DEFAULT])
  add(tt, 0, [DEFAULT])
  add(tt, 1, [RR, DEFAULT, DEFAULT_FAIR])
  add(he, 0.7, [RR, LP, alone('gpu-aware'), DEFAULT])
  return runs
}

// ---------------------------------------------------------------------------------------------
// processes

interface Fleet {
  readonly members: FleetMember[]
  stop(): Promise<void>
}

async function startFleet(w: Workload): Promise<Fleet> {
  const sims: SimOptions[] = w.pods.map((p, i) => ({
    name: `pod-${i}`,
    host: `127.0.0.${101 + i}`,
    port: 0,
    model: MODEL,
    metricsFormat: 'vllm',
    seed: 1000 + i,
    timeScale: p.timeScale,
    ...ENGINE,
    ...(w.loras !== undefined ? { loras: w.loras, maxLoras: w.maxLoras ?? 1 } : {}),
  }))
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', FLEET_SCRIPT], {
    env: { ...process.env, ROUTING_FLEET: JSON.stringify(sims) },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let seen = ''
  const members = await new Promise<FleetMember[]>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`fleet did not start: ${seen}`)), 30_000)
    const onData = (b: Buffer): void => {
      seen += b.toString()
      const m = /READY (.*)\n/.exec(seen)
      if (m) {
        clearTimeout(timer)
        resolve(JSON.parse(m[1] as string) as FleetMember[])
      }
    }
    child.stdout?.on('data', onData)
    child.stderr?.on('data', onData)
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`fleet exited with ${code}: ${seen}`))
    })
  })
  child.removeAllListeners('exit')
  child.stdout?.resume()
  child.stderr?.resume()
  return {
    members,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve()
        child.once('exit', () => resolve())
        child.kill('SIGTERM')
        setTimeout(() => child.kill('SIGKILL'), 5000).unref()
      }),
  }
}

async function getJson<T>(url: string): Promise<T> {
  const res = await fetch(url)
  return (await res.json()) as T
}

interface DebugView {
  endpoints: { name: string; scrape: { fresh: boolean } }[]
  servers: Record<string, { state?: Record<string, Record<string, unknown>> }>
}

// ---------------------------------------------------------------------------------------------
// one run

interface Stats {
  readonly n: number
  readonly ok: number
  readonly ttft: { p50: number; p90: number; p99: number }
  readonly tpotP50: number
  readonly e2eP90: number
}

interface RunResult {
  readonly workload: string
  readonly policy: string
  readonly load: number
  readonly offeredRps: number
  readonly all: Stats
  readonly byTag: Record<string, Stats>
  readonly throughputRps: number
  readonly outputTokPerSec: number
  readonly rejected: number
  readonly failed: number
  readonly prefixHitRate: number
  readonly adapterHitRate?: number
  readonly perPod: Record<string, number>
  readonly fairness?: Record<string, unknown>
}

function stats(rs: readonly RequestResult[]): Stats {
  const ok = rs.filter(
    (r) => r.status === 200 && r.error === undefined && Number.isFinite(r.ttftMs),
  )
  const sorted = (f: (r: RequestResult) => number) => ok.map(f).sort((a, b) => a - b)
  const ttft = sorted((r) => r.ttftMs)
  return {
    n: rs.length,
    ok: ok.length,
    ttft: { p50: percentile(ttft, 50), p90: percentile(ttft, 90), p99: percentile(ttft, 99) },
    tpotP50: percentile(
      sorted((r) => r.tpotMs),
      50,
    ),
    e2eP90: percentile(
      sorted((r) => r.e2eMs),
      90,
    ),
  }
}

async function runOne(spec: RunSpec, dir: string): Promise<RunResult> {
  const { workload: w, policy, load } = spec
  const plan = w.plan(load)
  const fleet = await startFleet(w)
  const file = join(dir, 'gateway.yaml')
  await writeFile(
    file,
    routingManifests({
      model: MODEL,
      ...(w.loras !== undefined ? { loras: w.loras } : {}),
      endpoints: fleet.members.map((m, i) => ({
        name: m.name,
        address: m.host,
        port: m.port,
        ...(w.pods[i]?.labels !== undefined ? { labels: w.pods[i]?.labels ?? {} } : {}),
      })),
      retries: 2,
      ...(policy.plugins !== undefined ? { plugins: policy.plugins } : {}),
    }),
  )
  const gw = await spawnCli(
    [
      'dataplane',
      '--config',
      file,
      '--host',
      '127.0.0.1',
      '--port',
      String(GW_PORT),
      '--no-access-log',
      '--debug-endpoints',
      '--drain-delay',
      '0',
    ],
    /data plane listening/,
  )
  const origin = `http://127.0.0.1:${GW_PORT}`
  try {
    // Start with metrics in hand, as a long-running gateway would.
    const deadline = Date.now() + 5000
    for (;;) {
      const d = await getJson<DebugView>(`${origin}/debug/endpoints`)
      if (d.endpoints.length === w.pods.length && d.endpoints.every((e) => e.scrape.fresh)) break
      if (Date.now() > deadline) throw new Error('gateway never saw fresh metrics')
      await new Promise((r) => setTimeout(r, 50))
    }
    const results = await runOpenLoop(origin, plan)
    const measured = results.filter((r) => r.at >= WARMUP_MS)
    const sims = await Promise.all(
      fleet.members.map((m) => getJson<SimStats>(`${m.url}/sim/stats`)),
    )
    const debug = await getJson<DebugView>(`${origin}/debug/endpoints`)
    const ok = measured.filter((r) => r.status === 200 && r.error === undefined)
    const windowSec = (DURATION_MS - WARMUP_MS) / 1000
    const byTag: Record<string, Stats> = {}
    for (const tag of new Set(measured.map((r) => r.tag))) {
      byTag[tag] = stats(measured.filter((r) => r.tag === tag))
    }
    const perPod: Record<string, number> = {}
    for (const r of ok) perPod[r.pod] = (perPod[r.pod] ?? 0) + 1
    const hit = sims.reduce((n, s) => n + s.prefixHitTokens, 0)
    const query = sims.reduce((n, s) => n + s.prefixQueryTokens, 0)
    const loads = sims.reduce((n, s) => n + s.loraLoads, 0)
    const fairness = debug.servers['default/pool']?.state?.['fairness']
    return {
      workload: w.name,
      policy: policy.name,
      load,
      offeredRps: plan.length / (DURATION_MS / 1000),
      all: stats(measured),
      byTag,
      throughputRps: ok.length / windowSec,
      outputTokPerSec: (ok.length * OUT) / windowSec,
      rejected: measured.filter((r) => r.status === 429 || r.status === 503).length,
      failed: measured.filter(
        (r) => r.error !== undefined || (r.status !== 200 && r.status !== 429 && r.status !== 503),
      ).length,
      prefixHitRate: query > 0 ? hit / query : 0,
      ...(w.loras !== undefined ? { adapterHitRate: 1 - loads / results.length } : {}),
      perPod,
      ...(fairness !== undefined ? { fairness } : {}),
    }
  } finally {
    await gw.stop()
    await fleet.stop()
  }
}

// ---------------------------------------------------------------------------------------------
// report

const ms = (n: number) => fmt(n, 0)
const pct = (n: number) => `${fmt(n * 100, 1)} %`

/** The two-tenant workload uses `load` as a switch: below 0.5 only the light tenant runs. */
function loadLabel(r: RunResult): string {
  if (r.workload === 'two-tenant') return r.load < 0.5 ? '10 % (light only)' : '90 % (80 + 10)'
  return `${Math.round(r.load * 100)} %`
}

function workloadTable(rs: readonly RunResult[], lora: boolean): string {
  const header = [
    'load',
    'policy',
    'req/s offered',
    'TTFT p50',
    'TTFT p90',
    'TTFT p99',
    'TPOT p50',
    'E2E p90',
    'done req/s',
    'prefix hit',
    ...(lora ? ['adapter hit'] : []),
    'errors',
  ]
  return table(
    header,
    rs.map((r) => [
      loadLabel(r),
      r.policy,
      fmt(r.offeredRps, 1),
      ms(r.all.ttft.p50),
      ms(r.all.ttft.p90),
      ms(r.all.ttft.p99),
      fmt(r.all.tpotP50, 1),
      ms(r.all.e2eP90),
      fmt(r.throughputRps, 1),
      pct(r.prefixHitRate),
      ...(lora ? [r.adapterHitRate === undefined ? 'n/a' : pct(r.adapterHitRate)] : []),
      String(r.failed + r.rejected),
    ]),
  )
}

function find(
  rs: readonly RunResult[],
  w: string,
  policy: string,
  load?: number,
): RunResult | undefined {
  return rs.find(
    (r) => r.workload === w && r.policy === policy && (load === undefined || r.load === load),
  )
}

function targets(rs: readonly RunResult[]): string[] {
  const out: string[] = []
  const spRr = find(rs, 'shared-prefix', 'round-robin', 0.7)
  const spDef = find(rs, 'shared-prefix', DEFAULT.name, 0.7)
  if (spRr && spDef) {
    const x = spRr.all.ttft.p90 / spDef.all.ttft.p90
    out.push(
      `Shared prefix at 70 %: TTFT p90 round-robin ${ms(spRr.all.ttft.p90)} ms vs default ${ms(spDef.all.ttft.p90)} ms → **${fmt(x, 1)}× lower** (target ≥ 3×: ${x >= 3 ? 'met' : 'not met'}).`,
    )
  }
  const unLp = find(rs, 'uniform', LP.name, 0.7)
  const unDef = find(rs, 'uniform', DEFAULT.name, 0.7)
  if (unLp && unDef) {
    const d = unDef.all.ttft.p90 / unLp.all.ttft.p90 - 1
    out.push(
      `Uniform at 70 %: TTFT p90 default ${ms(unDef.all.ttft.p90)} ms vs least-pending ${ms(unLp.all.ttft.p90)} ms → **${d >= 0 ? '+' : ''}${fmt(d * 100, 1)} %** (target within 5 %: ${Math.abs(d) <= 0.05 || d < 0 ? 'met' : 'not met'}).`,
    )
  }
  const mlDef = find(rs, 'multi-lora', DEFAULT.name)
  if (mlDef?.adapterHitRate !== undefined) {
    out.push(
      `Multi-LoRA at 70 %: **${pct(mlDef.adapterHitRate)}** of requests landed where their adapter was loaded with the default profile (target ≥ 95 %: ${mlDef.adapterHitRate >= 0.95 ? 'met' : 'not met'}).`,
    )
  }
  const alone = find(rs, 'two-tenant', DEFAULT.name, 0)
  const fair = find(rs, 'two-tenant', DEFAULT_FAIR.name, 1)
  const unfair = find(rs, 'two-tenant', DEFAULT.name, 1)
  const la = alone?.byTag['light']
  const lf = fair?.byTag['light']
  if (la && lf) {
    const x = lf.ttft.p90 / la.ttft.p90 - 1
    const lu = unfair?.byTag['light']
    out.push(
      `Two tenants: light tenant TTFT p90 alone ${ms(la.ttft.p90)} ms, with the heavy tenant and fairness ${ms(lf.ttft.p90)} ms → **${x >= 0 ? '+' : ''}${fmt(x * 100, 1)} %** (target < 20 %: ${x < 0.2 ? 'met' : 'not met'})${lu ? `; without fairness ${ms(lu.ttft.p90)} ms (${lu.ttft.p90 / la.ttft.p90 - 1 >= 0 ? '+' : ''}${fmt((lu.ttft.p90 / la.ttft.p90 - 1) * 100, 1)} %)` : ''}.`,
    )
  }
  return out
}

function tenantTable(rs: readonly RunResult[]): string {
  const rows: (string | number)[][] = []
  for (const r of rs.filter((x) => x.workload === 'two-tenant')) {
    for (const tag of ['light', 'heavy']) {
      const s = r.byTag[tag]
      if (s === undefined) continue
      rows.push([
        r.load < 0.5 ? 'light alone' : 'heavy + light',
        r.policy,
        tag,
        `${s.ok}/${s.n}`,
        ms(s.ttft.p50),
        ms(s.ttft.p90),
        ms(s.ttft.p99),
        ms(s.e2eP90),
      ])
    }
  }
  return table(
    ['scenario', 'policy', 'tenant', 'ok/sent', 'TTFT p50', 'TTFT p90', 'TTFT p99', 'E2E p90'],
    rows,
  )
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'igw-routing-'))
  const started = Date.now()
  const runs = matrix().filter((r) => opts.only === undefined || r.workload.name === opts.only)
  const results: RunResult[] = []
  try {
    for (const [i, spec] of runs.entries()) {
      const t0 = Date.now()
      const r = await runOne(spec, dir)
      results.push(r)
      process.stdout.write(
        `[${i + 1}/${runs.length}] ${r.workload} @${Math.round(r.load * 100)}% ${r.policy}: ` +
          `TTFT p50/p90/p99 ${ms(r.all.ttft.p50)}/${ms(r.all.ttft.p90)}/${ms(r.all.ttft.p99)} ms, ` +
          `${fmt(r.throughputRps, 1)} req/s, prefix hit ${pct(r.prefixHitRate)}` +
          `${r.adapterHitRate !== undefined ? `, adapter hit ${pct(r.adapterHitRate)}` : ''}` +
          `, errors ${r.failed}+${r.rejected} (${((Date.now() - t0) / 1000).toFixed(1)} s)\n`,
      )
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
  const byWorkload = new Map<string, RunResult[]>()
  for (const r of results) byWorkload.set(r.workload, [...(byWorkload.get(r.workload) ?? []), r])
  const all = [
    sharedPrefix(false),
    uniform(),
    multiLora(),
    sharedPrefix(true),
    twoTenant(),
    heterogeneous(),
  ]
  const sections: string[] = []
  for (const w of all) {
    const rs = byWorkload.get(w.name)
    if (rs === undefined) continue
    sections.push(
      `### ${w.title}\n\n${w.describe}. Time scale ${[...new Set(w.pods.map((p) => p.timeScale))].join(' / ')}; 100 % load = ${fmt(w.capacity, 1)} req/s (the fleet's rate with nothing cached).\n\n${workloadTable(rs, w.loras !== undefined)}`,
    )
    if (w.name === 'two-tenant') sections.push(`Per tenant:\n\n${tenantTable(rs)}`)
  }
  const text = `## Routing quality (\`npm run bench:routing\`${QUICK ? ' -- --quick' : ''})

Simulated engines (4 pods; vLLM-style metrics; ${ENGINE.maxNumSeqs} sequences per
batch, ${ENGINE.numGpuBlocks} KV blocks of ${ENGINE.blockSize} tokens with prefix caching, prefill
${ENGINE.prefillOverheadMs} ms + ${ENGINE.prefillMsPerToken} ms/token, decode ${ENGINE.decodeMsPerToken} ms/token
+${ENGINE.batchSlowdown * 100} % per extra running sequence; all times × a per-workload time scale that puts
70 % load near 40 req/s) in one process, the data plane (CLI, standalone
config, metrics scraped every 200 ms) in another, open-loop Poisson load from a third. Each run:
fresh fleet and gateway, ${DURATION_MS / 1000} s of arrivals, the first ${WARMUP_MS / 1000} s excluded from
latency statistics, the same seeded request sequence for every policy. Times in ms measured by
the client (TTFT = first streamed chunk, TPOT = spacing of the rest); prefix hit = cached prompt
tokens / prompt tokens over the run, adapter hit = requests that did not have to load their
adapter; errors = failed + rejected requests.

${targets(results)
  .map((t) => `- ${t}`)
  .join('\n')}

${sections.join('\n\n')}

Full run ${((Date.now() - started) / 60000).toFixed(1)} min, measured ${new Date().toISOString().slice(0, 10)} on ${process.platform}/${process.arch}, Node ${process.version}, 2 cores shared by the three processes.`
  process.stdout.write(`\n${text}\n`)
  if (!opts['no-write'] && opts.only === undefined) {
    const file = await writeSection(QUICK ? 'routing-quick' : 'routing', text, {
      quick: QUICK,
      durationMs: DURATION_MS,
      warmupMs: WARMUP_MS,
      engine: ENGINE,
      results,
    })
    process.stdout.write(`\nwritten to ${file}\n`)
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`)
  process.exitCode = 1
})
