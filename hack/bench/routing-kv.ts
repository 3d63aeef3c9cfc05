// `npm run bench:routing -- --only kv [--quick] [--seconds <n>] [--no-write]` (or run this file
// with tsx, which also takes --rate <req/s>, --margin <n>, --modes <a,b> and --replicas <n> for
// development): precise KV-cache routing from engine KV events under cache pressure
// (issue 14).
//
// llm-d's published regime scaled to the simulator: 8 simulated vLLM engines (own process,
// hack/sim) publishing KV events (ZMQ, vLLM's format) behind the real data plane (own process, the
// CLI); prompt groups × 5 users, each group a long shared system prompt and each user a fixed
// question after it, drawn uniformly, near saturation, with more groups than the fleet's KV cache
// holds, so engines keep evicting and an index of what was *sent* goes stale. Compared:
// `kv-cache` (the engines' events), `prefix-cache` (approximate, what was dispatched),
// round-robin, and an oracle that reads the engines' caches (kv-oracle.ts; bench-only, no real
// router can). Measured: TTFT p50/p90 as the client sees it and the fleet's prefix-cache hit rate
// (the engines' own counters: prompt tokens found cached / prompt tokens).
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import type { SimOptions, SimStats } from '../sim/index.js'
import { createRng } from '../sim/rng.js'
import { type Fleet, startFleet, startGateway } from './fleet-process.js'
import { type Oracle, startOracle } from './kv-oracle.js'
import { percentile } from './load.js'
import { benchRoleOf, cpuBetween, treeCpu } from './proc-cpu.js'
import { type Proc, spawnScript } from './procs.js'
import { fmt, table, writeSection } from './report.js'
import { routingManifests, type SchedulerPluginSpec } from './routing-config.js'
import type { FleetMember } from './routing-fleet.js'
import {
  type PlannedRequest,
  poissonTimes,
  type RequestResult,
  runOpenLoop,
} from './routing-load.js'

const MODEL = 'kv-bench'
const GW_PORT = 18_320
/** The round-robin balancer in front of the replicas (routing-balancer.ts). */
const LB_PORT = 18_329
const LB_SCRIPT = fileURLToPath(new URL('./routing-balancer.ts', import.meta.url))
/**
 * Data-plane replicas of the multi-replica run: each sees a third of the traffic, so what it
 * dispatched (prefix-cache's index) is a third of what the engines hold, while the engines' events
 * reach every replica whole.
 */
export const REPLICAS = 3
const EVENTS_PORT = 18_557
const REPLAY_PORT = 18_558
const PODS = 8
/**
 * Engine shape at real time: prefill 0.3 ms per token (a 1200-token system prompt costs 360 ms
 * uncached, ~40 ms when cached), decode 15 ms per token. 512 blocks of 16 tokens per engine hold
 * about 4 prompt groups with their users' questions; the fleet of eight ~35, fewer than GROUPS.
 * Running sequences pin their blocks too (as in vLLM), so under load even less stays cached.
 */
export const ENGINE = {
  timeScale: 1,
  prefillOverheadMs: 10,
  prefillMsPerToken: 0.3,
  decodeMsPerToken: 15,
  batchSlowdown: 0.02,
  maxNumSeqs: 16,
  numGpuBlocks: 512,
  blockSize: 16,
  maxModelLen: 8192,
  // Prompts are computed one after another on the GPU, as in a real engine: a miss delays every
  // request queued behind it on that pod, which is what makes misplacement cost near saturation.
  prefillInterference: true,
} as const satisfies Partial<SimOptions>
export const GROUPS = 64
export const USERS = 5
const SYSTEM_WORDS = 1200
const QUESTION_WORDS = 80
export const OUT = 24
/** The kv-cache and prefix-cache profiles' weights (and the oracle's): affinity vs load. */
const AFFINITY_WEIGHT = 10
const LOAD_WEIGHT = 1
/** Load margin of kv-cache, prefix-cache and the oracle alike (both plugins' default: 8). */
let loadMargin = 8
/** Near the fleet's saturation with round-robin placement (most prompts uncached). */
export const DEFAULT_RATE = 16

export interface KvBenchOptions {
  readonly quick: boolean
  readonly seconds?: number
  readonly rate?: number
  /** Run only these routers (development); the report needs all four. */
  readonly modes?: readonly Mode[]
  /** The affinity plugins' (and the oracle's) load margin; default 8, the plugins' default. */
  readonly margin?: number
  /** Run only this many data-plane replicas (development); the report needs 1 and 3. */
  readonly replicas?: number
  readonly write: boolean
}

export type Mode = 'kv-cache' | 'prefix-cache' | 'round-robin' | 'oracle'

/** Short pseudo-words (~4 characters a token with the space, as BPE text averages). */
function word(x: number): string {
  const a = 'bcdfghjklmnprstvwz'
  const v = 'aeiou'
  return `${a[x % 18]}${v[Math.floor(x / 18) % 5]}${a[Math.floor(x / 90) % 18]}`
}

const systems = new Map<number, string>()

export function system(g: number): string {
  let s = systems.get(g)
  if (s === undefined) {
    s = `Group ${g} assistant. ${Array.from({ length: SYSTEM_WORDS }, (_, k) => word((g * 7919 + k * 31) % 1620)).join(' ')}`
    systems.set(g, s)
  }
  return s
}

export function question(g: number, u: number): string {
  return `User ${u} of group ${g} asks: ${Array.from({ length: QUESTION_WORDS }, (_, k) => word((g * 131 + u * 977 + k * 17) % 1620)).join(' ')}?`
}

function plan(rate: number, durationMs: number, seed = 14): PlannedRequest[] {
  const random = createRng(seed)
  return poissonTimes(rate, durationMs, random).map((at) => {
    // Uniform over groups and users, as llm-d's shared-prefix workload draws them.
    const g = Math.floor(random() * GROUPS)
    const u = Math.floor(random() * USERS)
    return {
      at,
      tag: `g${g}`,
      outputTokens: OUT,
      body: JSON.stringify({
        model: MODEL,
        messages: [
          { role: 'system', content: system(g) },
          { role: 'user', content: question(g, u) },
        ],
        max_tokens: OUT,
        stream: true,
      }),
    }
  })
}

function pods(): SimOptions[] {
  return Array.from({ length: PODS }, (_, i) => ({
    name: `kv-${i}`,
    host: `127.0.0.${131 + i}`,
    port: 0,
    model: MODEL,
    metricsFormat: 'vllm',
    seed: 700 + i,
    kvEvents: { port: EVENTS_PORT, replayPort: REPLAY_PORT, hashSeed: '0' },
    ...ENGINE,
  }))
}

export function profile(mode: Mode, eventsPort = EVENTS_PORT): SchedulerPluginSpec[] {
  const lp: SchedulerPluginSpec = { name: 'least-pending', weight: LOAD_WEIGHT }
  if (mode === 'round-robin') return [{ name: 'round-robin', weight: 1 }]
  if (mode === 'prefix-cache')
    return [
      {
        name: 'prefix-cache',
        weight: AFFINITY_WEIGHT,
        args: { blockSizeTokens: 16, loadMargin: loadMargin },
      },
      lp,
    ]
  return [
    {
      name: 'kv-cache',
      weight: AFFINITY_WEIGHT,
      args: {
        eventsPort,
        replayPort: REPLAY_PORT,
        blockSize: 16,
        hashSeed: '0',
        tokenizer: 'words',
        loadMargin: loadMargin,
      },
    },
    lp,
  ]
}

function manifests(mode: Mode, members: readonly FleetMember[]): string {
  return routingManifests({
    model: MODEL,
    endpoints: members.map((m) => ({
      name: m.name,
      address: m.host,
      port: m.port,
      labels: { app: 'pool' },
    })),
    plugins: profile(mode),
  })
}

interface Row {
  readonly mode: Mode
  /** Data-plane replicas behind the balancer (1: the client talks to the data plane). */
  readonly replicas: number
  readonly sent: number
  readonly ok: number
  readonly ttftP50: number
  readonly ttftP90: number
  readonly hitRate: number
}

async function fleetCounters(fleet: Fleet): Promise<{ query: number; hit: number }> {
  let query = 0
  let hit = 0
  for (const m of fleet.members) {
    const s = (await (await fetch(`${m.url}/sim/stats`)).json()) as SimStats
    query += s.prefixQueryTokens
    hit += s.prefixHitTokens
  }
  return { query, hit }
}

const WARM_MS = 5000

/**
 * One line per replica (stdout, diagnosis): the kv-cache plugin's decisions from events vs the
 * approximate index, and its event streams' gaps, replays and resets summed over the pods.
 */
async function kvDebug(port: number): Promise<string> {
  interface KvDebug {
    decisions: { events: number; approximate: number }
    endpoints: Record<string, { blocks: number; gaps: number; replays: number; resets: number }>
  }
  const d = (await (await fetch(`http://127.0.0.1:${port}/debug/endpoints`)).json()) as {
    servers?: Record<string, { state?: { 'kv-cache'?: KvDebug } }>
  }
  const kv = Object.values(d.servers ?? {}).find((s) => s.state?.['kv-cache'] !== undefined)
    ?.state?.['kv-cache']
  if (kv === undefined) return `  :${port} kv-cache state not found\n`
  const eps = Object.values(kv.endpoints)
  const sum = (k: 'blocks' | 'gaps' | 'replays' | 'resets'): number =>
    eps.reduce((n, e) => n + e[k], 0)
  return `  :${port} decisions ${JSON.stringify(kv.decisions)}, ${eps.length} streams: blocks ${sum('blocks')}, gaps ${sum('gaps')}, replays ${sum('replays')}, resets ${sum('resets')}\n`
}

function startLb(ports: readonly number[]): Promise<Proc> {
  return spawnScript<string>(LB_SCRIPT, {
    ROUTING_BALANCER: JSON.stringify({
      backends: ports.map((port) => ({ host: '127.0.0.1', port })),
      host: '127.0.0.1',
      port: LB_PORT,
    }),
  })
}

async function runMode(
  mode: Mode,
  rate: number,
  durationMs: number,
  replicas: number,
): Promise<Row> {
  const dir = await mkdtemp(join(tmpdir(), 'igw-kv-'))
  const fleet = await startFleet(pods())
  const procs: Proc[] = []
  let oracle: Oracle | undefined
  try {
    let origin = `http://127.0.0.1:${GW_PORT}`
    if (mode === 'oracle') {
      oracle = await startOracle(
        fleet.members.map((m) => ({ host: m.host, port: m.port })),
        { host: '127.0.0.1', port: 0 },
        { kvWeight: AFFINITY_WEIGHT, loadWeight: LOAD_WEIGHT, loadMargin: loadMargin },
      )
      origin = oracle.url
    } else {
      const file = join(dir, 'gateway.yaml')
      await writeFile(file, manifests(mode, fleet.members))
      // One at a time: starting several CLIs at once on two cores only makes each slower.
      for (let i = 0; i < replicas; i++)
        procs.push(
          // A busy machine delays the first scrapes of the later replicas.
          await startGateway(file, GW_PORT + i, fleet.members.length, { freshWithinMs: 60_000 }),
        )
      if (replicas > 1) {
        procs.push(await startLb(procs.map((_, i) => GW_PORT + i)))
        origin = `http://127.0.0.1:${LB_PORT}`
      }
    }
    // Warm-up (not measured): compilation, subscribers connected, caches filled.
    await runOpenLoop(origin, plan(rate, WARM_MS, 99), { timeoutMs: 60_000 })
    const before = await fleetCounters(fleet)
    const cpu0 = await treeCpu(process.pid, benchRoleOf)
    const results: RequestResult[] = await runOpenLoop(origin, plan(rate, durationMs), {
      timeoutMs: 60_000,
    })
    const cpu = [...cpuBetween(cpu0, await treeCpu(process.pid, benchRoleOf))].filter(
      ([, x]) => x > 0,
    )
    const after = await fleetCounters(fleet)
    // CPU per process over the measured run (stdout): on a shared machine, whether the figures
    // measure routing or starvation, and what the events cost the engines' and gateways' processes.
    process.stdout.write(
      `  CPU over the run: ${cpu.map(([r, x]) => `${r} ${fmt(x, 2)}`).join(', ')} CPU-s (${fmt((2 * durationMs) / 1000, 0)} available on 2 cores)\n`,
    )
    if (mode === 'kv-cache') {
      for (let i = 0; i < replicas; i++) process.stdout.write(await kvDebug(GW_PORT + i))
    }
    const good = results.filter((r) => r.status === 200 && r.error === undefined)
    const ttft = good
      .map((r) => r.ttftMs)
      .filter((x) => Number.isFinite(x))
      .sort((a, b) => a - b)
    const errors = new Set(
      results
        .filter((r) => r.status !== 200 || r.error !== undefined)
        .map((r) => r.error ?? `HTTP ${r.status}`),
    )
    const label = replicas > 1 ? `${mode} ×${replicas}` : mode
    if (errors.size > 0) process.stdout.write(`${label}: failures: ${[...errors].join('; ')}\n`)
    const perPod = new Map<string, number>()
    for (const r of results) perPod.set(r.pod, (perPod.get(r.pod) ?? 0) + 1)
    process.stdout.write(
      `${label}: requests per pod ${JSON.stringify(Object.fromEntries([...perPod].sort()))}\n`,
    )
    return {
      mode,
      replicas,
      sent: results.length,
      ok: good.length,
      ttftP50: percentile(ttft, 50),
      ttftP90: percentile(ttft, 90),
      hitRate: (after.hit - before.hit) / Math.max(1, after.query - before.query),
    }
  } finally {
    await oracle?.close()
    // The balancer first, then the replicas behind it.
    for (const p of procs.reverse()) await p.stop()
    await fleet.stop()
    await rm(dir, { recursive: true, force: true })
  }
}

const MODES: readonly Mode[] = ['kv-cache', 'prefix-cache', 'round-robin', 'oracle']
/**
 * Routers run again behind the balancer: the two whose state lives in each replica. Round-robin
 * keeps nothing worth sharing and the oracle is one router reading the engines, with or without
 * replicas.
 */
const REPLICATED: readonly Mode[] = ['kv-cache', 'prefix-cache']

function rowLabel(r: Row): string {
  return r.replicas > 1 ? `${r.mode} (${r.replicas} replicas)` : r.mode
}

export async function runKvBench(o: KvBenchOptions): Promise<string> {
  const durationMs = (o.seconds ?? (o.quick ? 20 : 40)) * 1000
  const rate = o.rate ?? DEFAULT_RATE
  loadMargin = o.margin ?? 8
  const rows: Row[] = []
  const modes = o.modes ?? MODES
  const counts = o.replicas !== undefined ? [o.replicas] : [1, REPLICAS]
  for (const replicas of counts) {
    for (const mode of modes) {
      if (replicas > 1 && !REPLICATED.includes(mode)) continue
      const r = await runMode(mode, rate, durationMs, replicas)
      process.stdout.write(
        `${rowLabel(r)}: ${r.ok}/${r.sent} ok, TTFT p50 ${fmt(r.ttftP50, 0)} ms, p90 ${fmt(r.ttftP90, 0)} ms, hit rate ${fmt(r.hitRate * 100, 1)} %\n`,
      )
      rows.push(r)
    }
  }
  if (modes.length < MODES.length || o.replicas !== undefined)
    return rows.map((r) => rowLabel(r)).join(', ')
  const by = (m: Mode, n = 1): Row => rows.find((r) => r.mode === m && r.replicas === n) as Row
  const or = by('oracle')
  const verdict = (n: number): string => {
    const kv = by('kv-cache', n)
    const pc = by('prefix-cache', n)
    const ratio = pc.ttftP90 / kv.ttftP90
    const gap = (or.hitRate - kv.hitRate) * 100
    return `TTFT p90 prefix-cache / kv-cache = **${fmt(ratio, 2)}x** (target >= 2x: ${ratio >= 2 ? 'met' : 'not met'}); kv-cache hit rate ${fmt(gap, 1)} points below the oracle's (target within 5: ${gap <= 5 ? 'met' : 'not met'})`
  }
  const text = `### KV-cache routing from engine KV events under cache pressure (${PODS} pods)

llm-d's precise-prefix regime (8 pods, 150 prompt groups × 5 users, 6k-token prompts near saturation) scaled to the simulator: open-loop Poisson load at ${rate} req/s for ${durationMs / 1000} s after a ${WARM_MS / 1000} s warm-up; ${GROUPS} prompt groups × ${USERS} users drawn uniformly, each request a ~${SYSTEM_WORDS}-token group system prompt + the user's fixed ~${QUESTION_WORDS}-token question, ${OUT} output tokens, streamed. Each engine holds ${ENGINE.numGpuBlocks} blocks of ${ENGINE.blockSize} tokens (~4 groups with their questions, fewer while running sequences pin blocks), the fleet ~35 of the ${GROUPS} groups. Prompts are computed one after another per engine (\`prefillInterference\`: a miss delays the requests queued behind it), ${ENGINE.prefillMsPerToken} ms/token uncached, decode ${ENGINE.decodeMsPerToken} ms/token, at most ${ENGINE.maxNumSeqs} running per engine. Affinity weight ${AFFINITY_WEIGHT}, least-pending weight ${LOAD_WEIGHT}, load margin ${loadMargin} for kv-cache, prefix-cache and the oracle alike. The oracle asks every engine what it holds of each prompt (\`POST /sim/kv/peek\`, a simulator-only route) and proxies straight to its pick: no real router can read engine caches this way; it bounds what KV events can reach. Hit rate: the engines' own prefix-cache counters over the measured run.

The "${REPLICAS} replicas" rows run ${REPLICAS} data-plane processes with the same configuration behind a round-robin HTTP balancer (per request; hack/bench/balancer.ts), as a Deployment with ${REPLICAS} replicas behind a Service: each replica dispatches a third of the traffic, so prefix-cache's index (what this replica sent) sees a third of what each engine holds, while every replica receives each engine's KV events whole. The replicas share nothing else (their load view is their own in-flight requests plus the engines' scraped queue). Round-robin and the oracle keep no per-replica state and are not run again.

${table(
  ['router', 'ok/sent', 'TTFT p50', 'TTFT p90', 'hit rate'],
  rows.map((r) => [
    rowLabel(r),
    `${r.ok}/${r.sent}`,
    `${fmt(r.ttftP50, 0)} ms`,
    `${fmt(r.ttftP90, 0)} ms`,
    `${fmt(r.hitRate * 100, 1)} %`,
  ]),
)}

One data plane: ${verdict(1)}.
${REPLICAS} replicas: ${verdict(REPLICAS)}.
`
  if (o.write) await writeSection('routing-kv', text, { rate, durationMs, engine: ENGINE, rows })
  return text
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      seconds: { type: 'string' },
      rate: { type: 'string' },
      modes: { type: 'string' },
      margin: { type: 'string' },
      replicas: { type: 'string' },
      'no-write': { type: 'boolean', default: false },
    },
  })
  runKvBench({
    quick: values.quick === true,
    ...(values.seconds !== undefined ? { seconds: Number(values.seconds) } : {}),
    ...(values.rate !== undefined ? { rate: Number(values.rate) } : {}),
    ...(values.modes !== undefined ? { modes: values.modes.split(',') as Mode[] } : {}),
    ...(values.margin !== undefined ? { margin: Number(values.margin) } : {}),
    ...(values.replicas !== undefined ? { replicas: Number(values.replicas) } : {}),
    write: values['no-write'] !== true,
  }).then(
    (t) => process.stdout.write(`\n${t}`),
    (e: unknown) => {
      process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`)
      process.exitCode = 1
    },
  )
}
