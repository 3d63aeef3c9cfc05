// `npm run bench:routing` (tsx hack/bench/routing.ts [--quick] [--no-write] [--only <regime>] [--trace <dir>]
// [--routers <a,b>] [--seconds <n>] [--no-peers] [--workers <n>] [--prefill-interference]
// [--gateway-args=<flags>] [--gateway-node-args=<flags>] [--poll-metrics <ms>]): routing quality of the scheduler. A fleet of
// simulated engines (own process) behind the real data plane (own process, the CLI), driven by an
// open-loop load generator (this process), for several workloads, engine shapes, arrival rates and
// routers. Every router sees the same request sequence (seeded), and each run starts with a fresh
// fleet and gateway (cold caches).
//
// Besides our scheduling profiles, each of the headline regimes also runs round-robin and two peer
// routers from PyPI (sglang-router and vllm-router, `--policy cache_aware`, installed into a cached
// venv by ./peers.ts; "skipped: <reason>" when pip cannot install them). Two scenarios stress what a
// fresh fleet does not: engines restarting mid-run (container restarts: same address, empty KV
// cache, new process start time) and three data-plane replicas behind a round-robin balancer
// (judged against one replica behind that same balancer: the same network path, see balancerHop).
//
// The simulator's modelled GPU time (prefill per token, decode per token, batching slowdown, KV
// blocks with prefix caching, LoRA slots) is tens to hundreds of milliseconds per request, so the
// CPU time of the processes sharing two cores stays small next to it. Routers see the engines
// only as a real deployment would: `/metrics` and responses (the benchmark itself reads
// `/sim/stats` afterwards, for the prefix-hit column).
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { DATAPLANE_NODE_ARGS } from '../../cdk8s/dataplane-node.js'
import { DEFAULT_PROFILE } from '../../dataplane/scheduler/profile.js'
import { applyChatTemplate, countTokens, type SimOptions, type SimStats } from '../sim/index.js'
import { createRng } from '../sim/rng.js'
import { type Fleet, startFleet, startGateway } from './fleet-process.js'
import { percentile } from './load.js'
import { pairedPercentileDiff } from './paired-diff.js'
import { ensurePeer, PEERS, type PeerInstall, type PeerName, startPeer } from './peers.js'
import { benchRoleOf, cpuBetween, treeCpu } from './proc-cpu.js'
import { type Proc, spawnCli, spawnScript } from './procs.js'
import { benchGatewayArgs } from './proxy-bundle.js'
import { fmt, table, writeSection } from './report.js'
import { routingManifests, type SchedulerPluginSpec } from './routing-config.js'
import { runEppRoutingBench } from './routing-epp.js'
import { runKvBench } from './routing-kv.js'
import {
  burstyTimes,
  type PlannedRequest,
  poissonTimes,
  type RequestResult,
  runOpenLoop,
} from './routing-load.js'
import { aboveFloor, type EngineSide, engineSide } from './routing-path.js'
import { runPdBench } from './routing-pd.js'
import { runSpillBench } from './routing-spill.js'
import { runScenario, type ScenarioOptions } from './scenario.js'
import {
  DECODE_BOUND as SIM_DECODE_BOUND,
  PREFILL_BOUND as SIM_PREFILL_BOUND,
} from './virtual-fleet.js'
import { words } from './words.js'

const { values: opts } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    'no-write': { type: 'boolean', default: false },
    'no-peers': { type: 'boolean', default: false },
    only: { type: 'string' },
    routers: { type: 'string' },
    seconds: { type: 'string' },
    // Directory: per run, our data plane's /debug/endpoints every 100 ms during the load and every
    // request's send time, pod and TTFT (JSON), to see why a policy did what it did.
    trace: { type: 'string' },
    // Worker processes of our data plane (`dataplane --workers`); default 1. With 2, the same
    // matrix shows whether sharing load across workers keeps the routing quality of one.
    workers: { type: 'string' },
    // Every engine's prefills delay its other requests (the simulator's prefillInterference: one
    // GPU computes prompts one after another and decode waits for them), off by default.
    'prefill-interference': { type: 'boolean', default: false },
    // More flags for our data plane (space-separated, e.g. "--scrape off"): A/B of the path.
    'gateway-args': { type: 'string' },
    // Node flags for our data plane's process (e.g. "--cpu-prof --cpu-prof-dir=/tmp/p").
    'gateway-node-args': { type: 'string' },
    // While the load runs, GET every engine's /metrics this often (ms) from this process: gives a
    // peer router's engines the scrape load our data plane puts on them (it scrapes every 200 ms).
    'poll-metrics': { type: 'string' },
  },
})
const GATEWAY_ARGS = (opts['gateway-args'] ?? '').split(' ').filter((a) => a !== '')
const GATEWAY_NODE_ARGS = (opts['gateway-node-args'] ?? '').split(' ').filter((a) => a !== '')
const POLL_METRICS_MS =
  opts['poll-metrics'] !== undefined ? Number(opts['poll-metrics']) : undefined
const WORKERS = Number(opts.workers ?? 1)
if (!Number.isInteger(WORKERS) || WORKERS < 1) throw new Error('--workers must be an integer >= 1')
const QUICK = opts.quick
const DURATION_MS = Number(opts.seconds ?? (QUICK ? 8 : 16)) * 1000
const WARMUP_MS = Math.min(3000, DURATION_MS / 4)
const GW_PORT = 18_280
const BALANCER_PORT = 18_289
const PEER_PORT = 18_290
const PEER_METRICS_PORT = 18_291
const MODEL = 'bench-llm'
const BALANCER_SCRIPT = fileURLToPath(new URL('./routing-balancer.ts', import.meta.url))
/** Engines restarted in the restart scenario and how long each is down (a container restart). */
const RESTARTS = [
  { pod: 'pod-1', atFraction: 0.35, downMs: 1000 },
  { pod: 'pod-2', atFraction: 0.5, downMs: 1000 },
] as const
const REPLICAS = 3
/** restart-idle: how long after the engines are back the load starts. */
const IDLE_RESTART_LEAD_MS = 500

/** The exact command line of this run, for the report. */
function reproduce(): string {
  const flags = process.argv.slice(2).filter((a) => a !== '--no-write')
  return `npm run bench:routing${flags.length > 0 ? ` -- ${flags.join(' ')}` : ''}`
}

// ---------------------------------------------------------------------------------------------
// engine model

/**
 * The engine's modelled GPU (hack/sim): what a request costs and how many run at once. Two shapes
 * so that no policy is flattered by construction: on the prefill-bound one a prefix hit saves most
 * of a request's time; on the decode-bound one a request holds one of few batch slots for a long
 * decode, so queueing behind a busy engine costs more than the prefill a hit saves.
 */
interface EngineShape {
  readonly name: string
  readonly maxNumSeqs: number
  readonly blockSize: number
  readonly numGpuBlocks: number
  readonly prefillOverheadMs: number
  readonly prefillMsPerToken: number
  readonly decodeMsPerToken: number
  readonly batchSlowdown: number
  readonly loraLoadMs: number
}

// The engine shapes are virtual-fleet.ts's (the virtual-time sweeps model the same engines).
const PREFILL_BOUND: EngineShape = { name: 'prefill-bound', ...SIM_PREFILL_BOUND }
const DECODE_BOUND: EngineShape = { name: 'decode-bound', ...SIM_DECODE_BOUND }

const SHAPES = [PREFILL_BOUND, DECODE_BOUND] as const

/** One simulated pod: the workload's engine shape, stretched by `timeScale`. */
interface PodSpec {
  readonly timeScale: number
  readonly labels?: Record<string, string>
}

/** Seconds one request holds a batch slot with nothing cached (half-full batch for decode). */
function serviceSec(
  e: EngineShape,
  promptTokens: number,
  outputTokens: number,
  timeScale: number,
): number {
  const decode =
    outputTokens * e.decodeMsPerToken * (1 + (e.batchSlowdown * (e.maxNumSeqs - 1)) / 2)
  return (timeScale * (e.prefillOverheadMs + promptTokens * e.prefillMsPerToken + decode)) / 1000
}

/** Requests per second the fleet serves with nothing cached: the 100 % load reference. */
function capacity(
  e: EngineShape,
  pods: readonly PodSpec[],
  promptTokens: number,
  outputTokens: number,
): number {
  let c = 0
  for (const p of pods) c += e.maxNumSeqs / serviceSec(e, promptTokens, outputTokens, p.timeScale)
  return c
}

// ---------------------------------------------------------------------------------------------
// text

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
  readonly shape: EngineShape
  readonly pods: readonly PodSpec[]
  readonly loras?: readonly string[]
  readonly maxLoras?: number
  /** 100 % load in requests per second. */
  readonly capacity: number
  /**
   * Every request's engine-side TTFT with no queue (its whole prompt prefilled), when that is one
   * figure for the workload (distinct prompts of one length): what the client sees above it is
   * queueing or the path (routing-path.ts). Printed per run.
   */
  readonly floorMs?: number
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
const SP_GROUPS = 16
const SP_SYSTEM = 1500
const SP_QUESTION = 60

/** The shared-prefix prompt set: SP_GROUPS system prompts, each shared by its group. */
function sharedSystems(): string[] {
  return Array.from(
    { length: SP_GROUPS },
    (_, g) => `Group ${g} policy. ${words(SP_SYSTEM, createRng(100 + g))}`,
  )
}

function sharedPrefix(bursty: boolean): Workload {
  const e = PREFILL_BOUND
  const pods = homogeneous(1)
  const cap = capacity(e, pods, SP_SYSTEM + SP_QUESTION, OUT)
  const name = bursty ? 'bursty' : 'shared-prefix'
  return {
    name,
    title: bursty ? 'Bursty shared-prefix' : 'Shared prefix, prefill-bound',
    describe: bursty
      ? `the shared-prefix requests arriving in bursts: Poisson at 1.9× the average rate for 2 s, then 0.1× for 2 s`
      : `${SP_GROUPS} groups, each a ${SP_SYSTEM}-token system prompt shared by its requests + a ${SP_QUESTION}-token question, ${OUT} output tokens, prefill-bound engines (GAIE's "high-cache" shape scaled down: ${SP_GROUPS} prefixes × ${Math.ceil(SP_SYSTEM / e.blockSize)} blocks exceed one pod's ${e.numGpuBlocks}-block KV cache, a quarter of them fit)`,
    shape: e,
    pods,
    capacity: cap,
    plan(load) {
      const r = createRng(bursty ? 11 : 10)
      const systems = sharedSystems()
      const rate = load * cap
      const times = bursty
        ? burstyTimes(rate * 1.9, rate * 0.1, 4000, DURATION_MS, r)
        : poissonTimes(rate, DURATION_MS, r)
      return times.map((at) => ({
        at,
        body: chatBody(MODEL, systems[Math.floor(r() * SP_GROUPS)], words(SP_QUESTION, r), OUT),
        tag: 'all',
        outputTokens: OUT,
      }))
    },
  }
}

/** The same prompts on decode-bound engines: few batch slots, long answers. */
function decodeBound(): Workload {
  const e = DECODE_BOUND
  const out = 64
  const pods = homogeneous(1)
  const cap = capacity(e, pods, SP_SYSTEM + SP_QUESTION, out)
  return {
    name: 'decode-bound',
    title: 'Shared prefix, decode-bound',
    describe: `the shared-prefix prompts (${SP_GROUPS} × ${SP_SYSTEM}-token system prompts + ${SP_QUESTION}-token questions) with ${out} output tokens on decode-bound engines (${e.maxNumSeqs} sequences per batch): a request holds a slot ~${fmt(serviceSec(e, SP_SYSTEM + SP_QUESTION, out, 1), 2)} s, of which an uncached prefill is ~${fmt((e.prefillOverheadMs + (SP_SYSTEM + SP_QUESTION) * e.prefillMsPerToken) / 1000, 2)} s, so stacking requests on the engine that holds their prefix costs more queueing than the prefill it saves`,
    shape: e,
    pods,
    capacity: cap,
    plan(load) {
      const r = createRng(12)
      const systems = sharedSystems()
      return poissonTimes(load * cap, DURATION_MS, r).map((at) => ({
        at,
        body: chatBody(MODEL, systems[Math.floor(r() * SP_GROUPS)], words(SP_QUESTION, r), out),
        tag: 'all',
        outputTokens: out,
      }))
    },
  }
}

function uniform(): Workload {
  const e = PREFILL_BOUND
  const prompt = 600
  const scale = 2
  const pods = homogeneous(scale)
  const cap = capacity(e, pods, prompt, OUT)
  return {
    name: 'uniform',
    title: 'Uniform (no sharing)',
    describe: `every request a distinct ${prompt}-token prompt, ${OUT} output tokens`,
    shape: e,
    pods,
    capacity: cap,
    // The chat template adds its tokens to the words (617 in all here).
    floorMs:
      scale *
      (e.prefillOverheadMs +
        countTokens(applyChatTemplate([{ role: 'user', content: words(prompt, createRng(0)) }])) *
          e.prefillMsPerToken),
    plan(load) {
      const r = createRng(20)
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
  const e = PREFILL_BOUND
  const prompt = 300
  const loras = Array.from({ length: 8 }, (_, i) => `adapter-${i}`)
  const pods = homogeneous(2.5)
  const cap = capacity(e, pods, prompt, OUT)
  return {
    name: 'multi-lora',
    title: 'Multi-LoRA',
    describe: `${loras.length} adapters, uniformly requested, ${prompt}-token distinct prompts; each pod has 2 adapter slots (${e.loraLoadMs} ms to load one, only idle ones can be evicted), so the fleet's 8 slots fit every adapter exactly once`,
    shape: e,
    pods,
    loras,
    maxLoras: 2,
    capacity: cap,
    plan(load) {
      const r = createRng(30)
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
  const e = PREFILL_BOUND
  const prompt = 400
  const pods = homogeneous(2.5)
  const cap = capacity(e, pods, prompt, OUT)
  return {
    name: 'two-tenant',
    title: 'Two tenants (heavy + light)',
    describe: `distinct ${prompt}-token prompts from two tenants (header \`x-tenant-id\`): "heavy" at 80 % of capacity and "light" at 10 %; the "light alone" run has only the light tenant`,
    shape: e,
    pods,
    capacity: cap,
    plan(load) {
      // `load` < 0.5 means "light alone" (the heavy tenant is left out).
      const r = createRng(40)
      const light = poissonTimes(0.1 * cap, DURATION_MS, createRng(41)).map((at) => ({
        at,
        tenant: 'light',
      }))
      const heavy =
        load < 0.5
          ? []
          : poissonTimes(0.8 * cap, DURATION_MS, createRng(42)).map((at) => ({
              at,
              tenant: 'heavy',
            }))
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
  const e = PREFILL_BOUND
  const prompt = 400
  const pods: PodSpec[] = [
    { timeScale: 1.5, labels: { 'nvidia.com/gpu.product': 'NVIDIA-H100-80GB-HBM3' } },
    { timeScale: 1.5, labels: { 'nvidia.com/gpu.product': 'NVIDIA-H100-80GB-HBM3' } },
    { timeScale: 6, labels: { 'nvidia.com/gpu.product': 'NVIDIA-A10G' } },
    { timeScale: 6, labels: { 'nvidia.com/gpu.product': 'NVIDIA-A10G' } },
  ]
  const cap = capacity(e, pods, prompt, OUT)
  return {
    name: 'heterogeneous',
    title: 'Heterogeneous GPUs',
    describe: `two "H100" pods and two "A10G" pods four times slower (label \`nvidia.com/gpu.product\`), distinct ${prompt}-token prompts`,
    shape: e,
    pods,
    capacity: cap,
    plan(load) {
      const r = createRng(50)
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
// routers

interface Policy {
  readonly name: string
  /** Our data plane with these plugins; undefined = its default profile (DEFAULT_PROFILE). */
  readonly plugins?: readonly SchedulerPluginSpec[]
  /** A peer router from PyPI instead of our data plane. */
  readonly peer?: PeerName
}

const alone = (name: string): Policy => ({ name, plugins: [{ name }] })
const DEFAULT: Policy = { name: 'default profile' }
const DEFAULT_FAIR: Policy = {
  name: 'default + fairness',
  plugins: [
    ...DEFAULT_PROFILE.plugins.map((p) => ({ name: p.name, weight: p.weight, args: p.args })),
    { name: 'fairness', args: { tenantHeader: 'x-tenant-id' } },
  ],
}
const RR = alone('round-robin')
const RANDOM = alone('random')
const LP = alone('least-pending')
const SGLANG: Policy = { name: 'sglang-router cache_aware', peer: 'sglang' }
const VLLM: Policy = { name: 'vllm-router cache_aware', peer: 'vllm' }
const PEER_POLICIES = [SGLANG, VLLM]

/** What happens around the load: nothing, engines restarting, or several gateway replicas. */
/**
 * What happens around the load: nothing; 2 of 4 engines restarting mid-run (under load); the same
 * restarts while the router sits idle just before the load (the case of issue 9's table: a gateway
 * that saw its engines go away and come back with nothing to send); several gateway replicas
 * behind a round-robin balancer; one replica behind that same balancer ('balanced': the
 * reference the replicas are judged against, on the same network path — see balancerHop).
 */
type Scenario = 'fresh' | 'restart' | 'restart-idle' | 'replicas' | 'balanced'

/**
 * Whether the load goes through the bench's balancer process. Its extra HTTP hop (another
 * process parsing and piping every stream, on the same two cores) is not what a Kubernetes
 * Service costs (kernel DNAT, no userspace hop), and it is not routing: compared with one
 * replica reached directly it added ~3 ms at p50 and 8 ms at p90 (39/50 vs 36/42 ms, quiet run),
 * while on virtual time (no HTTP) 3 replicas and 1 had the same p90 on every seed tried
 * (regimes.test.ts). So the replicas are judged against one replica behind the same balancer.
 */
function balancerHop(scenario: Scenario): boolean {
  return scenario === 'replicas' || scenario === 'balanced'
}

interface RunSpec {
  readonly workload: Workload
  readonly policy: Policy
  readonly load: number
  readonly scenario: Scenario
}

/** The regime a run belongs to in the report (workload, or workload + scenario). */
function regimeOf(workload: string, scenario: Scenario): string {
  return scenario === 'fresh' ? workload : `${workload}+${scenario}`
}

function matrix(): RunSpec[] {
  const runs: RunSpec[] = []
  const add = (
    w: Workload,
    load: number,
    policies: readonly Policy[],
    scenario: Scenario = 'fresh',
  ) => {
    for (const policy of policies) runs.push({ workload: w, policy, load, scenario })
  }
  const sp = sharedPrefix(false)
  const db = decodeBound()
  const un = uniform()
  const ml = multiLora()
  const bu = sharedPrefix(true)
  const tt = twoTenant()
  const he = heterogeneous()
  // The headline regimes: round-robin, our default and both peers, same seeded sequence.
  const headline = [RR, DEFAULT, ...PEER_POLICIES]
  if (QUICK) {
    add(sp, 0.7, headline)
    add(db, 0.7, headline)
    add(un, 0.7, [...headline, LP])
    add(sp, 0.7, headline, 'restart')
    add(sp, 0.7, [RR, DEFAULT], 'restart-idle')
    add(sp, 0.7, [DEFAULT], 'balanced')
    add(sp, 0.7, [DEFAULT], 'replicas')
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
    ...PEER_POLICIES,
  ])
  add(sp, 0.4, [RR, LP, DEFAULT])
  add(sp, 0.9, [RR, LP, DEFAULT])
  add(db, 0.7, [RANDOM, RR, LP, alone('prefix-cache'), DEFAULT, ...PEER_POLICIES])
  add(db, 0.9, [RR, LP, DEFAULT])
  add(un, 0.7, [
    RANDOM,
    RR,
    LP,
    alone('least-kv-cache'),
    alone('least-latency'),
    alone('prefix-cache'),
    DEFAULT,
    ...PEER_POLICIES,
  ])
  add(un, 0.4, [LP, DEFAULT])
  add(un, 0.9, [LP, DEFAULT])
  add(sp, 0.7, headline, 'restart')
  add(db, 0.7, headline, 'restart')
  add(sp, 0.7, headline, 'restart-idle')
  add(db, 0.7, headline, 'restart-idle')
  add(sp, 0.7, [DEFAULT], 'balanced')
  add(sp, 0.7, [DEFAULT], 'replicas')
  add(db, 0.7, [DEFAULT], 'balanced')
  add(db, 0.7, [DEFAULT], 'replicas')
  add(ml, 0.7, [RR, LP, alone('lora-affinity'), DEFAULT])
  add(bu, 0.6, [RR, LP, alone('prefix-cache'), DEFAULT])
  add(tt, 0, [DEFAULT])
  add(tt, 1, [RR, DEFAULT, DEFAULT_FAIR])
  add(he, 0.7, [RR, LP, alone('gpu-aware'), DEFAULT])
  return runs
}

// ---------------------------------------------------------------------------------------------
// processes

/** The workload's engines in the fleet process (fleet-process.ts), pods on 127.0.0.101, .102, … */
function startWorkloadFleet(w: Workload): Promise<Fleet> {
  const { name: _shape, ...engine } = w.shape
  const sims: SimOptions[] = w.pods.map((p, i) => ({
    name: `pod-${i}`,
    host: `127.0.0.${101 + i}`,
    port: 0,
    model: MODEL,
    metricsFormat: 'vllm',
    seed: 1000 + i,
    timeScale: p.timeScale,
    ...engine,
    ...(opts['prefill-interference'] ? { prefillInterference: true } : {}),
    ...(w.loras !== undefined ? { loras: w.loras, maxLoras: w.maxLoras ?? 1 } : {}),
  }))
  return startFleet(sims)
}

function startBalancerProc(ports: readonly number[]): Promise<Proc> {
  return spawnScript<string>(BALANCER_SCRIPT, {
    ROUTING_BALANCER: JSON.stringify({
      backends: ports.map((port) => ({ host: '127.0.0.1', port })),
      host: '127.0.0.1',
      port: BALANCER_PORT,
    }),
  })
}

async function getJson<T>(url: string): Promise<T> {
  const res = await fetch(url)
  return (await res.json()) as T
}

interface DebugView {
  endpoints: {
    name: string
    scrape: { fresh: boolean }
    lastEjection?: { reason: string; count: number }
    restarts?: { count: number }
  }[]
  decisions?: { decisions: number; p50Us: number | null; p99Us: number | null }
  servers: Record<string, { state?: Record<string, Record<string, unknown>> }>
}

/**
 * Our data plane with --gateway-args / --gateway-node-args, as startGateway starts it otherwise.
 * With `--scrape off` it never has fresh metrics: then wait for it to list every pod only.
 */
async function startGatewayWith(file: string, port: number, pods: number): Promise<Proc> {
  const gw = await spawnCli(
    [
      'dataplane',
      ...benchGatewayArgs(file, port, [...GATEWAY_ARGS, '--explain', '--workers', String(WORKERS)]),
    ],
    /"msg":"data plane listening"/,
    // Without --gateway-node-args, the Deployment's flags, as startGateway (startDataplane) gives.
    opts['gateway-node-args'] === undefined ? DATAPLANE_NODE_ARGS : GATEWAY_NODE_ARGS,
    60_000 * WORKERS,
  )
  const scraped = !GATEWAY_ARGS.join(' ').includes('--scrape off')
  const deadline = Date.now() + 10_000
  for (;;) {
    try {
      const d = await getJson<DebugView>(`http://127.0.0.1:${port}/debug/endpoints`)
      if (d.endpoints.length === pods && (!scraped || d.endpoints.every((e) => e.scrape.fresh)))
        return gw
    } catch {
      // not yet
    }
    if (Date.now() > deadline) {
      await gw.stop()
      throw new Error('gateway never listed its endpoints')
    }
    await new Promise((r) => setTimeout(r, 50))
  }
}

/** GETs each engine's /metrics every `everyMs` (one loop per engine) until the returned stop. */
function pollMetrics(urls: readonly string[], everyMs: number): () => Promise<void> {
  let on = true
  const loops = urls.map(async (url) => {
    while (on) {
      const t = performance.now()
      try {
        await (await fetch(`${url}/metrics`)).text()
      } catch {
        // a restarting engine: next round
      }
      await new Promise((r) => setTimeout(r, Math.max(0, everyMs - (performance.now() - t))))
    }
  })
  return async () => {
    on = false
    await Promise.all(loops)
  }
}

/**
 * Choice or path (routing-path.ts): the client's TTFT above the workload's floor over the measured
 * window, and per engine (whole run, as its counters are) requests, engine-side queue and TTFT
 * against the client's mean TTFT of the requests it served.
 */
function pathLines(
  floorMs: number,
  measured: readonly RequestResult[],
  all: readonly RequestResult[],
  engines: readonly (readonly [string, EngineSide])[],
): string {
  const a = aboveFloor(measured, floorMs)
  const f = (n: number) => fmt(n, 1)
  let out = `  above the ${f(floorMs)} ms floor (client TTFT - prefill; measured window): p10/p50/p75/p90/p99 ${f(a.p10)}/${f(a.p50)}/${f(a.p75)}/${f(a.p90)}/${f(a.p99)} ms; queued (> 15 ms) ${a.queued}/${a.n}; not queued p50/p90 ${f(a.pathP50)}/${f(a.pathP90)} ms\n`
  // Over the run (warm-up included): a start-up cost of the router shows in the first seconds.
  const bySec = new Map<number, RequestResult[]>()
  for (const r of all) {
    const k = Math.floor(r.at / 1000)
    bySec.set(k, [...(bySec.get(k) ?? []), r])
  }
  out += `    above the floor per second of the run, p50/p90: ${[...bySec.entries()]
    .sort((x, y) => x[0] - y[0])
    .map(([k, rs]) => {
      const b = aboveFloor(rs, floorMs)
      return `${k}s ${fmt(b.p50, 1)}/${fmt(b.p90, 1)}`
    })
    .join(', ')}\n`
  let clientSum = 0
  let engineSum = 0
  let n = 0
  for (const [pod, e] of engines) {
    const mine = all.filter(
      (r) =>
        r.pod === pod && r.status === 200 && r.error === undefined && Number.isFinite(r.ttftMs),
    )
    const clientMean = mine.reduce((s, r) => s + r.ttftMs, 0) / mine.length
    clientSum += clientMean * mine.length
    engineSum += e.ttftMeanMs * e.requests
    n += mine.length
    out += `    ${pod} (whole run): ${mine.length} ok (engine counted ${e.requests}), engine queue mean ${f(e.queueMeanMs)} ms (total ${fmt(e.queueTotalMs, 0)} ms), engine TTFT mean ${f(e.ttftMeanMs)} ms, client TTFT mean ${f(clientMean)} ms → path ${f(clientMean - e.ttftMeanMs)} ms\n`
  }
  out += `    all pods: client − engine TTFT mean ${f((clientSum - engineSum) / n)} ms\n`
  return out
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
  readonly scenario: Scenario
  readonly regime: string
  readonly policy: string
  readonly peer?: PeerName
  readonly load: number
  readonly offeredRps: number
  readonly all: Stats
  readonly byTag: Record<string, Stats>
  readonly throughputRps: number
  readonly outputTokPerSec: number
  readonly rejected: number
  readonly failed: number
  /** Failed + rejected over the whole run, warm-up included (restarts may fall in it). */
  readonly errorsAllRun: number
  readonly prefixHitRate: number
  readonly adapterHitRate?: number
  readonly perPod: Record<string, number>
  readonly replicas: number
  /**
   * Our data plane's view at the end (first replica): per endpoint the last ejection's reason and
   * count, and the engine restarts it detected. Explains a pod left without traffic.
   */
  readonly health?: Record<string, { ejection?: string; restarts?: number }>
  /** Our data plane's own decision cost over its last 1024 decisions (first replica). */
  readonly decisionUs?: { readonly p50: number; readonly p99: number }
  readonly fairness?: Record<string, unknown>
}

/**
 * Each run's TTFT per request, keyed by its planned send time (the same requests in every run of a
 * workload and load): the headline's paired intervals. Kept beside the results, not in the JSON.
 */
const ttftByRequest = new WeakMap<RunResult, ReadonlyMap<number, number>>()

/**
 * "(p90 difference +0.6 ms, 90 % interval −1.1 to +2.0 over 812 paired requests)" for `def`
 * against `other` (another router, or the same one fresh).
 */
function pairedNote(def: RunResult, other: RunResult | undefined): string {
  const a = ttftByRequest.get(def)
  const b = other === undefined ? undefined : ttftByRequest.get(other)
  if (a === undefined || b === undefined) return ''
  const d = pairedPercentileDiff(a, b, 90)
  const signed = (x: number) => `${x >= 0 ? '+' : '−'}${fmt(Math.abs(x), 1)}`
  return ` (p90 difference ${signed(d.diff)} ms, 90 % interval ${signed(d.lo)} to ${signed(d.hi)} over ${d.pairs} paired requests${d.lo <= 0 && d.hi >= 0 ? ': not resolved' : ''})`
}

/**
 * "; 12 of 234 judged requests over twice the fresh p90 (fresh: 0 of 239; a p90 leaves 23), the
 * rest's p90 43 ms vs 43 ms fresh" for a restarted run against the fresh one. Why: after a restart
 * the slow requests are cold prefills of the groups the killed engines held and the requests of
 * those groups that wait for them (~400 ms on the prefill-bound shape); the p90 sits where they
 * begin, so it reads the warm requests' tail at a higher rank (~p95 with 12 slow) and flips with
 * the machine's wall-clock jitter. The count is what a router changes; the rest's p90 shows
 * whether the warm requests are any slower than fresh.
 */
function kneeNote(restarted: RunResult, fresh: RunResult): string {
  const a = ttftByRequest.get(restarted)
  const b = ttftByRequest.get(fresh)
  if (a === undefined || b === undefined) return ''
  const bar = 2 * fresh.all.ttft.p90
  const split = (m: ReadonlyMap<number, number>) => {
    const ok = [...m.values()].filter((x) => Number.isFinite(x))
    const rest = ok.filter((x) => x <= bar).sort((x, y) => x - y)
    return { judged: ok.length, slow: ok.length - rest.length, p90: percentile(rest, 90) }
  }
  const r = split(a)
  const f = split(b)
  return `; ${r.slow} of ${r.judged} judged requests over twice the fresh p90 (fresh: ${f.slow} of ${f.judged}; a p90 leaves ${Math.floor(r.judged / 10)}), the rest's p90 ${ms(r.p90)} ms vs ${ms(f.p90)} ms fresh`
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

function healthOf(d: DebugView): Record<string, { ejection?: string; restarts?: number }> {
  const out: Record<string, { ejection?: string; restarts?: number }> = {}
  for (const e of d.endpoints) {
    if (e.lastEjection === undefined && e.restarts === undefined) continue
    out[e.name] = {
      ...(e.lastEjection !== undefined
        ? { ejection: `${e.lastEjection.reason} ×${e.lastEjection.count}` }
        : {}),
      ...(e.restarts !== undefined ? { restarts: e.restarts.count } : {}),
    }
  }
  return out
}

const isError = (r: RequestResult) => r.error !== undefined || r.status !== 200

/** Polls our first replica's /debug/endpoints every 100 ms until the returned stop is called. */
function traceDebug(): () => Promise<unknown[]> {
  const snapshots: unknown[] = []
  const t0 = performance.now()
  let on = true
  const loop = (async () => {
    while (on) {
      try {
        const d = await getJson<unknown>(`http://127.0.0.1:${GW_PORT}/debug/endpoints`)
        snapshots.push({ t: performance.now() - t0, d })
      } catch {
        // the gateway may be between workers: next poll
      }
      await new Promise((r) => setTimeout(r, 100))
    }
  })()
  return async () => {
    on = false
    await loop
    return snapshots
  }
}

/**
 * Every decision predicted-latency kept in the traced snapshots (its `recentDecisions`: each
 * candidate's pending, capacity, predicted wait and prefill saved), once each, by server.
 */
function tracedDecisions(snapshots: readonly unknown[]): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = []
  const seen = new Map<string, number>()
  for (const snap of snapshots) {
    const servers = (snap as { d?: { servers?: Record<string, unknown> } }).d?.servers ?? {}
    for (const [key, srv] of Object.entries(servers)) {
      const state = (srv as { state?: Record<string, unknown> }).state?.['predicted-latency']
      const recent = (state as { recentDecisions?: unknown } | undefined)?.recentDecisions
      if (!Array.isArray(recent)) continue
      for (const d of recent as { seq: number }[]) {
        if (d.seq <= (seen.get(key) ?? 0)) continue
        seen.set(key, d.seq)
        out.push({ server: key, ...d })
      }
    }
  }
  return out
}

/** When each restart begins (ms after the start of the load) in the restart scenario. */
function restartTimes(): { pod: string; at: number; downMs: number }[] {
  return RESTARTS.map((x) => ({ pod: x.pod, at: x.atFraction * DURATION_MS, downMs: x.downMs }))
}

/** Phase of a request in the restart scenario (for the before / during / after split). */
function phaseOf(at: number): string {
  const ts = restartTimes()
  const first = Math.min(...ts.map((t) => t.at))
  // "after": every engine back for at least a second.
  const settled = Math.max(...ts.map((t) => t.at + t.downMs)) + 1000
  return at < first ? 'before' : at < settled ? 'during' : 'after'
}

async function runOne(spec: RunSpec, dir: string, peers: PeerInstalls): Promise<RunResult> {
  const { workload: w, policy, load, scenario } = spec
  const plan = w.plan(load)
  const fleet = await startWorkloadFleet(w)
  const procs: Proc[] = []
  let origin: string
  const replicas = scenario === 'replicas' ? REPLICAS : 1
  try {
    if (policy.peer !== undefined) {
      const install = peers[policy.peer]
      if (!install.ok) throw new Error(`peer ${policy.peer} not installed: ${install.reason}`)
      procs.push(
        await startPeer({
          install,
          name: policy.peer,
          host: '127.0.0.1',
          port: PEER_PORT,
          metricsPort: PEER_METRICS_PORT,
          workerUrls: fleet.members.map((m) => m.url),
        }),
      )
      origin = `http://127.0.0.1:${PEER_PORT}`
    } else {
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
      const ports = Array.from({ length: replicas }, (_, i) => GW_PORT + i)
      // One at a time: starting several CLIs at once on two cores only makes each slower.
      for (const port of ports)
        procs.push(
          GATEWAY_ARGS.length + GATEWAY_NODE_ARGS.length > 0
            ? await startGatewayWith(file, port, w.pods.length)
            : await startGateway(file, port, w.pods.length, { workers: WORKERS }),
        )
      if (balancerHop(scenario)) {
        procs.push(await startBalancerProc(ports))
        origin = `http://127.0.0.1:${BALANCER_PORT}`
      } else {
        origin = `http://127.0.0.1:${GW_PORT}`
      }
    }
    // Engines restarted in this run: their counters from before the restart, added at the end.
    const retired: SimStats[] = []
    const timers: NodeJS.Timeout[] = []
    const restarts: Promise<void>[] = []
    // Armed right before the load starts (not before the trace and CPU set-up): each restart then
    // lands at its nominal time on the load's clock, as phaseOf assumes.
    const armRestarts = (): void => {
      if (scenario !== 'restart') return
      for (const r of restartTimes()) {
        timers.push(
          setTimeout(() => {
            restarts.push(
              fleet.restart(r.pod, r.downMs).then((before) => {
                retired.push(before)
              }),
            )
          }, r.at),
        )
      }
    }
    if (scenario === 'restart-idle') {
      // Both down at once for their downtime, then the load starts half a second after they are
      // back: the router has had nothing to send meanwhile, only its scrapes or health checks.
      const before = await Promise.all(RESTARTS.map((r) => fleet.restart(r.pod, r.downMs)))
      retired.push(...before)
      await new Promise((r) => setTimeout(r, IDLE_RESTART_LEAD_MS))
    }
    const trace = opts.trace !== undefined && policy.peer === undefined ? traceDebug() : undefined
    // CPU per process over the load (stdout only): on two shared cores, whether the figures
    // measure routing or CPU starvation (3 gateways, engines, balancer and client share them).
    const cpu0 = await treeCpu(process.pid, benchRoleOf)
    const loadStart = performance.now()
    armRestarts()
    const stopPolling =
      POLL_METRICS_MS !== undefined
        ? pollMetrics(
            fleet.members.map((m) => m.url),
            POLL_METRICS_MS,
          )
        : undefined
    const results = await runOpenLoop(origin, plan)
    await stopPolling?.()
    const loadSec = (performance.now() - loadStart) / 1000
    const cpu = [...cpuBetween(cpu0, await treeCpu(process.pid, benchRoleOf))].filter(
      ([, s]) => s > 0,
    )
    process.stdout.write(
      `  CPU during the load (${fmt(loadSec, 1)} s wall; 2 cores = ${fmt(2 * loadSec, 1)} CPU-s): ${cpu.map(([r, s]) => `${r} ${fmt(s, 2)}`).join(', ')} CPU-s\n`,
    )
    if (trace !== undefined && opts.trace !== undefined) {
      const file = join(
        opts.trace,
        `${regimeOf(w.name, scenario)}-${policy.name.replace(/\W+/g, '_')}.json`,
      )
      // The prefix group of each planned request (by send time): which pods each group went to,
      // per replica too (the balancer hands requests out in turn: request i went to i % replicas).
      const groups = plan.map((p, i) => ({
        at: p.at,
        i,
        group: /Group (\d+) policy/.exec(p.body)?.[1],
      }))
      const snapshots = await trace()
      await writeFile(
        file,
        JSON.stringify({
          snapshots,
          decisions: tracedDecisions(snapshots),
          requests: results,
          plan: groups,
          replicas,
        }),
      )
    }
    for (const t of timers) clearTimeout(t)
    await Promise.all(restarts)
    const tagged =
      scenario === 'restart' ? results.map((r) => ({ ...r, tag: phaseOf(r.at) })) : results
    const measured = tagged.filter((r) => r.at >= WARMUP_MS)
    const sims = [
      ...(await Promise.all(fleet.members.map((m) => getJson<SimStats>(`${m.url}/sim/stats`)))),
      ...retired,
    ]
    if (w.floorMs !== undefined) {
      const engines = await Promise.all(
        fleet.members.map(
          async (m) =>
            [m.name, engineSide(await (await fetch(`${m.url}/metrics`)).text())] as const,
        ),
      )
      process.stdout.write(pathLines(w.floorMs, measured, results, engines))
    }
    const debug =
      policy.peer === undefined
        ? await getJson<DebugView>(`http://127.0.0.1:${GW_PORT}/debug/endpoints`)
        : undefined
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
    const fairness = debug?.servers['default/pool']?.state?.['fairness']
    const outTokens = plan[0]?.outputTokens ?? OUT
    const result: RunResult = {
      workload: w.name,
      scenario,
      regime: regimeOf(w.name, scenario),
      policy: policy.name,
      ...(policy.peer !== undefined ? { peer: policy.peer } : {}),
      load,
      offeredRps: plan.length / (DURATION_MS / 1000),
      all: stats(measured),
      byTag,
      throughputRps: ok.length / windowSec,
      outputTokPerSec: (ok.length * outTokens) / windowSec,
      rejected: measured.filter((r) => r.status === 429 || r.status === 503).length,
      failed: measured.filter(
        (r) => r.error !== undefined || (r.status !== 200 && r.status !== 429 && r.status !== 503),
      ).length,
      errorsAllRun: tagged.filter(isError).length,
      prefixHitRate: query > 0 ? hit / query : 0,
      ...(w.loras !== undefined ? { adapterHitRate: 1 - loads / results.length } : {}),
      perPod,
      replicas,
      ...(debug !== undefined ? { health: healthOf(debug) } : {}),
      ...(debug?.decisions?.p50Us != null && debug.decisions.p99Us != null
        ? { decisionUs: { p50: debug.decisions.p50Us, p99: debug.decisions.p99Us } }
        : {}),
      ...(fairness !== undefined ? { fairness } : {}),
    }
    ttftByRequest.set(
      result,
      new Map(
        measured.map((r) => [
          r.at,
          r.status === 200 && r.error === undefined ? r.ttftMs : Number.NaN,
        ]),
      ),
    )
    return result
  } finally {
    for (const p of procs.reverse()) await p.stop()
    await fleet.stop()
  }
}

// ---------------------------------------------------------------------------------------------
// report

type PeerInstalls = Record<PeerName, PeerInstall>

const ms = (n: number) => fmt(n, 0)
const pct = (n: number) => `${fmt(n * 100, 1)} %`
const ratio = (n: number) => (Number.isFinite(n) ? `${fmt(n, 2)}×` : 'n/a')

/** The two-tenant workload uses `load` as a switch: below 0.5 only the light tenant runs. */
function loadLabel(r: RunResult): string {
  if (r.workload === 'two-tenant') return r.load < 0.5 ? '10 % (light only)' : '90 % (80 + 10)'
  return `${Math.round(r.load * 100)} %`
}

function routerLabel(r: RunResult): string {
  if (r.scenario === 'balanced') return `${r.policy} (1 replica behind the balancer)`
  return r.replicas > 1 ? `${r.policy} (${r.replicas} replicas)` : r.policy
}

/** Round-robin's and the best peer's TTFT p90 in the same regime and load (NaN when absent). */
function baselines(
  rs: readonly RunResult[],
  r: RunResult,
): { rr: number; peer: number; rrRun?: RunResult; peerRun?: RunResult } {
  // Round-robin and the peers are single routers: for the replicas scenario their figures are
  // those of the same workload and load with one router.
  const regime = balancerHop(r.scenario) ? r.workload : r.regime
  const same = rs.filter((x) => x.regime === regime && x.load === r.load)
  const rrRun = same.find((x) => x.policy === RR.name)
  const peerRun = same
    .filter((x) => x.peer !== undefined)
    .reduce<RunResult | undefined>(
      (best, x) => (best === undefined || x.all.ttft.p90 < best.all.ttft.p90 ? x : best),
      undefined,
    )
  return {
    rr: rrRun?.all.ttft.p90 ?? Number.NaN,
    peer: peerRun?.all.ttft.p90 ?? Number.NaN,
    ...(rrRun !== undefined ? { rrRun } : {}),
    ...(peerRun !== undefined ? { peerRun } : {}),
  }
}

function workloadTable(all: readonly RunResult[], rs: readonly RunResult[], lora: boolean): string {
  const header = [
    'load',
    'router',
    'req/s offered',
    'TTFT p50',
    'TTFT p90',
    'TTFT p99',
    'p90 ÷ round-robin',
    'p90 ÷ best peer',
    'TPOT p50',
    'E2E p90',
    'done req/s',
    'prefix hit',
    ...(lora ? ['adapter hit'] : []),
    'errors',
  ]
  return table(
    header,
    rs.map((r) => {
      const b = baselines(all, r)
      return [
        loadLabel(r),
        routerLabel(r),
        fmt(r.offeredRps, 1),
        ms(r.all.ttft.p50),
        ms(r.all.ttft.p90),
        ms(r.all.ttft.p99),
        ratio(r.all.ttft.p90 / b.rr),
        ratio(r.all.ttft.p90 / b.peer),
        fmt(r.all.tpotP50, 1),
        ms(r.all.e2eP90),
        fmt(r.throughputRps, 1),
        pct(r.prefixHitRate),
        ...(lora ? [r.adapterHitRate === undefined ? 'n/a' : pct(r.adapterHitRate)] : []),
        String(r.failed + r.rejected),
      ]
    }),
  )
}

function find(
  rs: readonly RunResult[],
  regime: string,
  policy: string,
  load?: number,
): RunResult | undefined {
  return rs.find(
    (r) => r.regime === regime && r.policy === policy && (load === undefined || r.load === load),
  )
}

const verdict = (ok: boolean) => (ok ? '**pass**' : '**FAIL**')

/** Issue 9's targets, each with the numbers it was judged on. */
function headlineTargets(rs: readonly RunResult[]): string[] {
  const out: string[] = []
  const regimes: [string, string][] = [
    ['shared-prefix', 'Shared prefix, prefill-bound'],
    ['decode-bound', 'Shared prefix, decode-bound'],
    ['uniform', 'Uniform'],
    ['shared-prefix+restart', 'Engines restarted mid-run (prefill-bound)'],
    ['decode-bound+restart', 'Engines restarted mid-run (decode-bound)'],
    ['shared-prefix+restart-idle', 'Engines restarted while idle (prefill-bound)'],
    ['decode-bound+restart-idle', 'Engines restarted while idle (decode-bound)'],
  ]
  for (const [regime, title] of regimes) {
    const def = find(rs, regime, DEFAULT.name, 0.7)
    if (def === undefined) continue
    const b = baselines(rs, def)
    const p90 = def.all.ttft.p90
    const vsRr = Number.isNaN(b.rr)
      ? 'round-robin not run'
      : `≤ round-robin ${ms(b.rr)} ms: ${verdict(p90 <= b.rr)}${pairedNote(def, b.rrRun)}`
    const vsPeer = Number.isNaN(b.peer)
      ? 'no peer ran (see above)'
      : `≤ best peer ${ms(b.peer)} ms: ${verdict(p90 <= b.peer)}${pairedNote(def, b.peerRun)}`
    out.push(`${title} at 70 %: default TTFT p90 ${ms(p90)} ms; ${vsRr}; ${vsPeer}.`)
  }
  const spRr = find(rs, 'shared-prefix', RR.name, 0.7)
  const spDef = find(rs, 'shared-prefix', DEFAULT.name, 0.7)
  if (spRr && spDef) {
    const x = spRr.all.ttft.p90 / spDef.all.ttft.p90
    out.push(
      `Shared prefix, prefill-bound: ${fmt(x, 1)}× lower TTFT p90 than round-robin (target ≥ 5×): ${verdict(x >= 5)}.`,
    )
  }
  for (const w of ['shared-prefix', 'decode-bound']) {
    const fresh = find(rs, w, DEFAULT.name, 0.7)
    for (const sc of ['restart', 'restart-idle'] as const) {
      const restarted = find(rs, `${w}+${sc}`, DEFAULT.name, 0.7)
      if (fresh && restarted) {
        const d = restarted.all.ttft.p90 / fresh.all.ttft.p90 - 1
        out.push(
          `${sc === 'restart' ? 'Restarts under load' : 'Restarts while idle'} (${w}): default TTFT p90 ${ms(restarted.all.ttft.p90)} ms vs ${ms(fresh.all.ttft.p90)} ms fresh → ${d >= 0 ? '+' : ''}${fmt(d * 100, 1)} % (target within 10 %): ${verdict(d <= 0.1)}${pairedNote(restarted, fresh)}; ${restarted.errorsAllRun} failed requests over the whole run; requests per pod ${JSON.stringify(restarted.perPod)}${kneeNote(restarted, fresh)}.`,
        )
      }
    }
    // Judged against one replica behind the same balancer (see balancerHop) when it ran; the
    // direct figure is printed beside it.
    const balanced = find(rs, `${w}+balanced`, DEFAULT.name, 0.7)
    const one = balanced ?? fresh
    const many = find(rs, `${w}+replicas`, DEFAULT.name, 0.7)
    if (one && many) {
      const d = many.all.ttft.p90 / one.all.ttft.p90 - 1
      const hit = (many.prefixHitRate - one.prefixHitRate) * 100
      const path =
        balanced !== undefined
          ? ` behind the same balancer${fresh ? ` (${ms(fresh.all.ttft.p90)} ms reached directly)` : ''}`
          : ' reached directly (no balanced run: the balancer hop counts against the replicas)'
      out.push(
        `${REPLICAS} replicas (${w}): TTFT p90 ${ms(many.all.ttft.p90)} ms vs ${ms(one.all.ttft.p90)} ms with 1 replica${path} → ${d >= 0 ? '+' : ''}${fmt(d * 100, 1)} % (target within 15 %): ${verdict(d <= 0.15)}; prefix hit ${pct(many.prefixHitRate)} vs ${pct(one.prefixHitRate)} (${hit >= 0 ? '+' : ''}${fmt(hit, 1)} points, target within 5): ${verdict(Math.abs(hit) <= 5)}.`,
      )
    }
  }
  const costs = rs.filter((r) => r.policy === DEFAULT.name && r.decisionUs !== undefined)
  if (costs.length > 0) {
    const worst = Math.max(...costs.map((r) => r.decisionUs?.p99 ?? 0))
    out.push(
      `Decision cost inside the data plane during these runs (default profile, 4 endpoints): p99 at most ${fmt(worst, 1)} µs per run (informational; the target of ≤ 100 µs p99 at 64 endpoints and an 8k-token prompt is measured by \`npm run bench:scheduler-cost\`).`,
    )
  }
  return out
}

/** Targets of the original scheduler work (issue 3), kept so regressions show. */
function earlierTargets(rs: readonly RunResult[]): string[] {
  const out: string[] = []
  const unLp = find(rs, 'uniform', LP.name, 0.7)
  const unDef = find(rs, 'uniform', DEFAULT.name, 0.7)
  if (unLp && unDef) {
    const d = unDef.all.ttft.p90 / unLp.all.ttft.p90 - 1
    out.push(
      `Uniform at 70 %: TTFT p90 default ${ms(unDef.all.ttft.p90)} ms vs least-pending ${ms(unLp.all.ttft.p90)} ms → ${d >= 0 ? '+' : ''}${fmt(d * 100, 1)} % (target within 5 %): ${verdict(d <= 0.05)}.`,
    )
  }
  const mlDef = find(rs, 'multi-lora', DEFAULT.name)
  if (mlDef?.adapterHitRate !== undefined) {
    out.push(
      `Multi-LoRA at 70 %: ${pct(mlDef.adapterHitRate)} of requests landed where their adapter was loaded with the default profile (target ≥ 95 %): ${verdict(mlDef.adapterHitRate >= 0.95)}.`,
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
      `Two tenants: light tenant TTFT p90 alone ${ms(la.ttft.p90)} ms, with the heavy tenant and fairness ${ms(lf.ttft.p90)} ms → ${x >= 0 ? '+' : ''}${fmt(x * 100, 1)} % (target < 20 %): ${verdict(x < 0.2)}${lu ? `; without fairness ${ms(lu.ttft.p90)} ms (${lu.ttft.p90 / la.ttft.p90 - 1 >= 0 ? '+' : ''}${fmt((lu.ttft.p90 / la.ttft.p90 - 1) * 100, 1)} %)` : ''}.`,
    )
  }
  return out
}

/** One line per regime × headline router: the table issue 9 asked for. */
function headlineTable(rs: readonly RunResult[]): string {
  const rows: (string | number)[][] = []
  const order = [
    'shared-prefix',
    'decode-bound',
    'uniform',
    'shared-prefix+restart',
    'decode-bound+restart',
    'shared-prefix+restart-idle',
    'decode-bound+restart-idle',
    'shared-prefix+balanced',
    'shared-prefix+replicas',
    'decode-bound+balanced',
    'decode-bound+replicas',
  ]
  const names = new Set([RR.name, DEFAULT.name, ...PEER_POLICIES.map((p) => p.name)])
  for (const regime of order) {
    for (const r of rs.filter((x) => x.regime === regime && x.load === 0.7)) {
      if (!names.has(r.policy)) continue
      const b = baselines(rs, r)
      rows.push([
        REGIME_TITLES[regime] ?? regime,
        routerLabel(r),
        ms(r.all.ttft.p50),
        ms(r.all.ttft.p90),
        ms(r.all.ttft.p99),
        ratio(r.all.ttft.p90 / b.rr),
        ratio(r.all.ttft.p90 / b.peer),
        pct(r.prefixHitRate),
        String(
          r.scenario === 'fresh' || balancerHop(r.scenario)
            ? r.failed + r.rejected
            : r.errorsAllRun,
        ),
      ])
    }
  }
  return table(
    [
      'regime (70 % load)',
      'router',
      'TTFT p50',
      'TTFT p90',
      'TTFT p99',
      'p90 ÷ round-robin',
      'p90 ÷ best peer',
      'prefix hit',
      'errors',
    ],
    rows,
  )
}

const REGIME_TITLES: Record<string, string> = {
  'shared-prefix': 'shared prefix, prefill-bound',
  'decode-bound': 'shared prefix, decode-bound',
  uniform: 'uniform prompts',
  'shared-prefix+restart': 'prefill-bound, 2 of 4 engines restarted',
  'decode-bound+restart': 'decode-bound, 2 of 4 engines restarted',
  'shared-prefix+restart-idle': 'prefill-bound, 2 of 4 engines restarted while idle',
  'decode-bound+restart-idle': 'decode-bound, 2 of 4 engines restarted while idle',
  'shared-prefix+replicas': `prefill-bound, ${REPLICAS} gateway replicas`,
  'decode-bound+replicas': `decode-bound, ${REPLICAS} gateway replicas`,
  'shared-prefix+balanced': 'prefill-bound, 1 gateway replica behind the balancer',
  'decode-bound+balanced': 'decode-bound, 1 gateway replica behind the balancer',
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

/** TTFT per phase of the restart scenario (before the first restart, while any is down, after). */
function phaseTable(rs: readonly RunResult[]): string {
  const rows: (string | number)[][] = []
  for (const r of rs.filter((x) => x.scenario === 'restart')) {
    for (const phase of ['before', 'during', 'after']) {
      const s = r.byTag[phase]
      if (s === undefined) continue
      rows.push([
        REGIME_TITLES[r.regime] ?? r.regime,
        r.policy,
        phase,
        `${s.ok}/${s.n}`,
        ms(s.ttft.p50),
        ms(s.ttft.p90),
        ms(s.ttft.p99),
      ])
    }
  }
  return table(['regime', 'router', 'phase', 'ok/sent', 'TTFT p50', 'TTFT p90', 'TTFT p99'], rows)
}

/**
 * Proof that no router of ours can read the simulator's internals: no production module under
 * dataplane/, api/ or operator/ imports hack/ or names a simulator-only route or header. Run at
 * report time so the claim in the report is checked, not remembered.
 */
async function simIsolation(): Promise<string> {
  const root = fileURLToPath(new URL('../../', import.meta.url))
  const needles = [/from '(\.\.\/)+hack\//, /\/sim\//, /x-inference-pod/, /SimStats/]
  const offenders: string[] = []
  let files = 0
  for (const dir of ['dataplane', 'api', 'operator']) {
    const entries = await readdir(join(root, dir), { recursive: true })
    for (const f of entries) {
      if (!f.endsWith('.ts') || f.endsWith('.test.ts')) continue
      files++
      const text = await readFile(join(root, dir, f), 'utf8')
      if (needles.some((n) => n.test(text))) offenders.push(`${dir}/${f}`)
    }
  }
  return offenders.length === 0
    ? `Checked at report time: none of the ${files} production modules under \`dataplane/\`, \`api/\` and \`operator/\` imports \`hack/\` or names \`/sim/\`, \`x-inference-pod\` or \`SimStats\`.`
    : `**Check failed**: ${offenders.join(', ')} reference the simulator.`
}

/** The engine model, generated from the parameters the run used (issue 9, deliverable 5). */
function engineModel(isolation: string): string {
  const rows = SHAPES.map((e) => [
    e.name,
    e.maxNumSeqs,
    `${e.numGpuBlocks} × ${e.blockSize}`,
    `${e.prefillOverheadMs} + ${e.prefillMsPerToken} × uncached prompt tokens`,
    `${e.decodeMsPerToken} × (1 + ${e.batchSlowdown} × (running − 1))`,
    e.loraLoadMs,
  ])
  return `#### Engine model

Each pod is one simulated engine (\`hack/sim\`), modelled as vLLM's v1 scheduler is: a FIFO waiting
queue; at most \`max_num_seqs\` running sequences; a request is admitted when a batch slot is free
and its KV blocks fit (head-of-line otherwise); a prefix hit is the run of leading full KV blocks
already in the cache (hash-chained, LRU eviction of unreferenced blocks; generated tokens are cached
too); TTFT = queue wait + prefill of the uncached tokens; each later token costs the decode time,
slowed down by the other running sequences. Two shapes (all times in ms, × the workload's time scale):

${table(['shape', 'max_num_seqs', 'KV blocks × tokens', 'prefill ms', 'decode ms per token', 'LoRA load ms'], rows)}

What the routers see: only what a real vLLM exposes — \`/metrics\` in vLLM v1's exposition
(\`vllm:num_requests_running\`, \`vllm:num_requests_waiting\`, \`vllm:kv_cache_usage_perc\`,
\`vllm:cache_config_info\` with \`num_gpu_blocks\` and \`block_size\`, prefix-cache query/hit
counters, TTFT/ITL/queue histograms, \`vllm:lora_requests_info\`, \`process_start_time_seconds\`)
and the responses. \`max_num_seqs\` is not exported by vLLM, so no router is told it: ours learns
the batch limit from \`running\` while requests wait. The benchmark alone reads \`/sim/stats\` (for
the prefix-hit column) and the \`x-inference-pod\` response header (requests per pod). ${isolation}
Not exported by the simulator although real vLLM has them: \`vllm:num_preemptions_total\`, the
prefill/decode/inference-time and token-count histograms, iteration-token and speculative-decoding
metrics, \`python_*\`/\`process_*\` other than the start time; none is read by the scheduler. Not modelled: chunked prefill (a long prefill does not slow the running
decodes), preemption and recomputation, speculative decoding, tensor parallelism, real tokenizers
(one word = one token), network latency between pods.`
}

function peerLines(peers: PeerInstalls): string[] {
  return (Object.keys(PEERS) as PeerName[]).map((n) => {
    const p = peers[n]
    return p.ok
      ? `${PEERS[n].pkg} ${p.version} (PyPI, cached venv; \`--policy cache_aware\`, otherwise its defaults): ran.`
      : `${PEERS[n].pkg} ${PEERS[n].version}: skipped: ${p.reason}`
  })
}

function selected(spec: RunSpec): boolean {
  if (opts.only !== undefined) {
    const regime = regimeOf(spec.workload.name, spec.scenario)
    const only = opts.only.split(',')
    // The replicas' reference (one replica behind the same balancer) comes with them.
    const alsoAs =
      spec.scenario === 'balanced' ? [regimeOf(spec.workload.name, 'replicas'), 'replicas'] : []
    const wanted = [regime, spec.scenario, ...alsoAs]
    if (!wanted.some((x) => only.includes(x))) return false
  }
  if (opts.routers !== undefined) {
    const want = opts.routers.split(',')
    if (!want.some((x) => spec.policy.name.includes(x))) return false
  }
  return true
}

async function installPeers(): Promise<PeerInstalls> {
  if (opts['no-peers']) {
    const reason = '--no-peers given'
    return { sglang: { ok: false, reason }, vllm: { ok: false, reason } }
  }
  const [sglang, vllm] = await Promise.all([ensurePeer('sglang'), ensurePeer('vllm')])
  return { sglang, vllm }
}

const SCENARIOS: Readonly<Record<string, (o: ScenarioOptions) => Promise<string>>> = {
  pd: runPdBench,
  kv: runKvBench,
  spill: runSpillBench,
  epp: runEppRoutingBench,
}

async function main(): Promise<void> {
  // Scenarios of their own: prefill/decode vs aggregated (issue 14, routing-pd.ts), KV-cache
  // routing from engine KV events under cache pressure (issue 14, routing-kv.ts), spill-over to a
  // provider under a 2x burst (issue 15, routing-spill.ts).
  const scenario = opts.only !== undefined ? SCENARIOS[opts.only] : undefined
  if (scenario !== undefined)
    return runScenario(scenario, {
      quick: QUICK,
      write: !opts['no-write'],
      ...(opts.seconds !== undefined ? { seconds: Number(opts.seconds) } : {}),
    })
  const dir = await mkdtemp(join(tmpdir(), 'igw-routing-'))
  const started = Date.now()
  const peers = await installPeers()
  for (const line of peerLines(peers)) process.stdout.write(`${line}\n`)
  const runs = matrix()
    .filter(selected)
    .filter((r) => r.policy.peer === undefined || peers[r.policy.peer].ok)
  const results: RunResult[] = []
  // Each run: its arrivals, draining, and ~10 s of process start-up (3 gateways for replicas).
  const estimateMin = runs.reduce(
    (t, r) =>
      t +
      DURATION_MS / 1000 +
      10 +
      (r.scenario === 'replicas' ? 20 : 0) +
      (r.scenario === 'balanced' ? 2 : 0),
    0,
  )
  process.stdout.write(
    `${runs.length} runs, about ${Math.ceil(estimateMin / 60)} min on an idle machine\n`,
  )
  try {
    for (const [i, spec] of runs.entries()) {
      const t0 = Date.now()
      const r = await runOne(spec, dir, peers)
      results.push(r)
      process.stdout.write(
        `[${i + 1}/${runs.length}] ${r.regime} @${Math.round(r.load * 100)}% ${routerLabel(r)}: ` +
          `TTFT p50/p90/p99 ${ms(r.all.ttft.p50)}/${ms(r.all.ttft.p90)}/${ms(r.all.ttft.p99)} ms, ` +
          `${fmt(r.throughputRps, 1)} req/s, prefix hit ${pct(r.prefixHitRate)}` +
          `${r.adapterHitRate !== undefined ? `, adapter hit ${pct(r.adapterHitRate)}` : ''}` +
          `, errors ${r.failed}+${r.rejected} (whole run ${r.errorsAllRun})` +
          `${r.health !== undefined && Object.keys(r.health).length > 0 ? `, health ${JSON.stringify(r.health)}` : ''}` +
          `${r.decisionUs !== undefined ? `, decision ${fmt(r.decisionUs.p50, 1)}/${fmt(r.decisionUs.p99, 1)} µs p50/p99` : ''}` +
          `, per pod ${JSON.stringify(r.perPod)} (${((Date.now() - t0) / 1000).toFixed(1)} s)\n`,
      )
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
  const byRegime = new Map<string, RunResult[]>()
  for (const r of results) byRegime.set(r.regime, [...(byRegime.get(r.regime) ?? []), r])
  const sp = sharedPrefix(false)
  const db = decodeBound()
  const all: [Workload, Scenario][] = [
    [sp, 'fresh'],
    [db, 'fresh'],
    [uniform(), 'fresh'],
    [sp, 'restart'],
    [db, 'restart'],
    [sp, 'restart-idle'],
    [db, 'restart-idle'],
    [sp, 'balanced'],
    [sp, 'replicas'],
    [db, 'balanced'],
    [db, 'replicas'],
    [multiLora(), 'fresh'],
    [sharedPrefix(true), 'fresh'],
    [twoTenant(), 'fresh'],
    [heterogeneous(), 'fresh'],
  ]
  const sections: string[] = []
  for (const [w, scenario] of all) {
    const regime = regimeOf(w.name, scenario)
    const rs = byRegime.get(regime)
    if (rs === undefined) continue
    const extra =
      scenario === 'restart'
        ? ` Engines restarted during the run: ${restartTimes()
            .map((t) => `${t.pod} at ${fmt(t.at / 1000, 1)} s, down ${fmt(t.downMs / 1000, 1)} s`)
            .join(
              '; ',
            )} (listener closed: streams in flight cut, connections refused; back on the same address with an empty KV cache, counters from zero and a new process start time). Errors in the table: measured window only; the whole run's are in the summary.`
        : scenario === 'restart-idle'
          ? ` Before the load, with the router idle: ${RESTARTS.map((r) => r.pod).join(' and ')} restarted together, down ${fmt(RESTARTS[0].downMs / 1000, 1)} s; the load starts ${IDLE_RESTART_LEAD_MS} ms after they are back (empty KV caches, new process start times).`
          : scenario === 'replicas'
            ? ` ${REPLICAS} data-plane processes that never talk to each other, behind a round-robin HTTP balancer (per request; hack/bench/balancer.ts). The ratios use round-robin's and the peers' one-router figures of the same workload.`
            : scenario === 'balanced'
              ? ` One data-plane process behind the same round-robin HTTP balancer as the replicas: the reference the ${REPLICAS} replicas are judged against, on the same network path (the balancer is an extra userspace hop a Kubernetes Service does not add). The ratios use round-robin's and the peers' one-router figures of the same workload.`
              : ''
    sections.push(
      `### ${REGIME_TITLES[regime] !== undefined && scenario !== 'fresh' ? REGIME_TITLES[regime] : w.title}\n\n${w.describe}. Engine shape ${w.shape.name}, time scale ${[...new Set(w.pods.map((p) => p.timeScale))].join(' / ')}; 100 % load = ${fmt(w.capacity, 1)} req/s (the fleet's rate with nothing cached).${extra}\n\n${workloadTable(results, rs, w.loras !== undefined)}`,
    )
    if (scenario === 'restart') sections.push(`Per phase:\n\n${phaseTable(rs)}`)
    if (w.name === 'two-tenant') sections.push(`Per tenant:\n\n${tenantTable(rs)}`)
  }
  const profile = DEFAULT_PROFILE.plugins.map((p) => `${p.name} ${p.weight}`).join(', ')
  const text = `## Routing quality (\`npm run bench:routing\`${QUICK ? ' -- --quick' : ''})

Reproduce: \`${reproduce()}\` (peers are installed on first use into
\`~/.cache/infer-gateway/peers\`; \`--no-peers\` leaves them out).

Simulated engines (4 pods, vLLM-style metrics; engine shapes below) in one process, the router
under test in another (our data plane: the CLI with a standalone config, metrics scraped every
200 ms; or a peer router), open-loop Poisson load from a third. Each run: fresh fleet and router,
${DURATION_MS / 1000} s of arrivals, the first ${WARMUP_MS / 1000} s excluded from latency statistics,
the same seeded request sequence for every router. Times in ms measured by the client (TTFT =
first streamed chunk, TPOT = spacing of the rest); prefix hit = cached prompt tokens / prompt
tokens over the run, adapter hit = requests that did not have to load their adapter; errors =
failed + rejected requests; "÷ round-robin" and "÷ best peer" = TTFT p90 over theirs in the same
regime and load (below 1 = better). Default profile at run time: ${profile}.

${peerLines(peers)
  .map((l) => `- ${l}`)
  .join('\n')}

### Summary (issue 9)

${headlineTable(results)}

${headlineTargets(results)
  .map((t) => `- ${t}`)
  .join('\n')}
${earlierTargets(results)
  .map((t) => `- ${t}`)
  .join('\n')}

${engineModel(await simIsolation())}

${sections.join('\n\n')}

Full run ${((Date.now() - started) / 60000).toFixed(1)} min, measured ${new Date().toISOString().slice(0, 10)} on ${process.platform}/${process.arch}, Node ${process.version}, 2 cores shared by all processes.`
  process.stdout.write(`\n${text}\n`)
  if (!opts['no-write'] && opts.only === undefined && opts.routers === undefined && WORKERS === 1) {
    const file = await writeSection(QUICK ? 'routing-quick' : 'routing', text, {
      quick: QUICK,
      durationMs: DURATION_MS,
      warmupMs: WARMUP_MS,
      shapes: SHAPES,
      defaultProfile: DEFAULT_PROFILE,
      peers,
      results,
    })
    process.stdout.write(`\nwritten to ${file}\n`)
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`)
  process.exitCode = 1
})
