// `tsx hack/bench/routing-paired.ts [--routers ours,sglang] [--rounds 3] [--seconds 8] [--load 0.7]
// [--gateway-args "<flags>"] [--bundle <dataplane.mjs>] [--bundle-b <dataplane.mjs>] [--idle <s>]
// [--warm <s>]`: bench:routing's uniform regime (distinct 600-word prompts, 16
// output tokens, 4 prefill-bound engines at time scale 2) with every listed router at once, each
// in front of a fleet of its own, all sent the same request at the same moment. Issue 9: the 1-3
// ms TTFT p90 between sglang-router and us there is smaller than what other work on two shared
// cores moves a sequential run by; run side by side, both routers live through the same moments
// of the machine, so the difference is theirs. The machine carries every pair's load at once.
//
// Routers: `ours` (default profile), `ours-rr` (round-robin), `ours-lp` (least-pending), `sglang`,
// `vllm` (cache_aware, PyPI; see peers.ts). --gateway-args applies to every `ours*` router;
// `ours+` is the default profile with --gateway-args and plain `ours` without them, to A/B a flag.
// Our routers run from the sources through tsx (bin/infer-gateway.js) unless --bundle names an
// esbuild bundle (hack/build.ts, as the image runs it: no tsx loader thread, no keepNames
// wrappers); --bundle-b runs `ours+` from another bundle, to A/B a code change. Every `ours*`
// starts the same way (the Deployment's Node flags, --explain, one worker, waits for a fresh
// scrape of each engine and /readyz).
//
// --warm <s>: an uncounted load of that many seconds (other prompts) before the measured one: what
// is left once V8 has compiled the hot code (a fresh process at ~25 requests/s still optimizes
// functions 20 s in, on its helper threads).
//
// --idle <s>: before the load, each router's CPU with its engines up and no request, per thread
// name (ms of CPU per second): what runs whether requests come or not (scrapes, timers, GC).
// Every round also prints each router's CPU per request under the load by thread name (schedstat:
// the main thread that serves, V8's helper threads, a worker), beside the per-process tick figure.
//
// Per router and round: TTFT percentiles, the excess over the no-queue floor (routing-path.ts:
// queueing or path), the engines' own queue total, client - engine TTFT, and the router process's
// CPU per request. Diagnostic only (stdout).
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { applyChatTemplate, countTokens, type SimOptions } from '../sim/index.js'
import { createRng } from '../sim/rng.js'
import { type Fleet, startFleet, startGateway } from './fleet-process.js'
import { percentile } from './load.js'
import { ensurePeer, type PeerName, startPeer } from './peers.js'
import { cpuBetween, treeCpu } from './proc-cpu.js'
import type { Proc } from './procs.js'
import { processTree } from './proxy-procfs.js'
import { fmt } from './report.js'
import { routingManifests, type SchedulerPluginSpec } from './routing-config.js'
import { poissonTimes, type RequestResult, runOpenLoop } from './routing-load.js'
import { aboveFloor, engineSide } from './routing-path.js'
import { sampleThreads, type ThreadSample, threadDeltas } from './thread-cpu.js'
import { PREFILL_BOUND } from './virtual-fleet.js'
import { words } from './words.js'

const { values: opts } = parseArgs({
  options: {
    routers: { type: 'string', default: 'ours,sglang' },
    rounds: { type: 'string', default: '3' },
    seconds: { type: 'string', default: '8' },
    load: { type: 'string', default: '0.7' },
    'gateway-args': { type: 'string' },
    bundle: { type: 'string' },
    'bundle-b': { type: 'string' },
    idle: { type: 'string', default: '0' },
    warm: { type: 'string', default: '0' },
  },
})
const ROUTERS = (opts.routers ?? '').split(',').filter((r) => r !== '')
const ROUNDS = Number(opts.rounds)
const DURATION_MS = Number(opts.seconds) * 1000
const WARMUP_MS = Math.min(3000, DURATION_MS / 4)
const LOAD = Number(opts.load)
const GATEWAY_ARGS = (opts['gateway-args'] ?? '').split(' ').filter((a) => a !== '')
const IDLE_MS = Number(opts.idle) * 1000
const WARM_MS = Number(opts.warm) * 1000
const MODEL = 'bench-llm'
const PODS = 4
const SCALE = 2
const PROMPT = 600
const OUT = 16
const OUR_PORT = 18_380
const PEER_PORTS: Record<PeerName, { port: number; metrics: number }> = {
  sglang: { port: 18_390, metrics: 18_391 },
  vllm: { port: 18_392, metrics: 18_393 },
}

/** bench:routing's uniform plan (routing.ts uniform(): same seed, prompts and bodies). */
function plan(
  durationMs = DURATION_MS,
  seed = 20,
): { at: number; body: string; tag: string; outputTokens: number }[] {
  const e = PREFILL_BOUND
  const decode = OUT * e.decodeMsPerToken * (1 + (e.batchSlowdown * (e.maxNumSeqs - 1)) / 2)
  const sec = (SCALE * (e.prefillOverheadMs + PROMPT * e.prefillMsPerToken + decode)) / 1000
  const cap = (PODS * e.maxNumSeqs) / sec
  const r = createRng(seed)
  return poissonTimes(LOAD * cap, durationMs, r).map((at) => ({
    at,
    body: JSON.stringify({
      model: MODEL,
      messages: [{ role: 'user', content: words(PROMPT, r) }],
      max_tokens: OUT,
      stream: true,
    }),
    tag: 'all',
    outputTokens: OUT,
  }))
}

const FLOOR_MS =
  SCALE *
  (PREFILL_BOUND.prefillOverheadMs +
    countTokens(applyChatTemplate([{ role: 'user', content: words(PROMPT, createRng(0)) }])) *
      PREFILL_BOUND.prefillMsPerToken)

const OURS: Record<string, readonly SchedulerPluginSpec[] | undefined> = {
  ours: undefined,
  'ours+': undefined,
  'ours-rr': [{ name: 'round-robin' }],
  'ours-lp': [{ name: 'least-pending' }],
}

interface Running {
  readonly name: string
  readonly fleet: Fleet
  readonly procs: Proc[]
  readonly origin: string
  readonly port: number
}

async function start(name: string, k: number, dir: string): Promise<Running> {
  const sims: SimOptions[] = Array.from({ length: PODS }, (_, i) => ({
    name: `pod-${i}`,
    host: `127.0.0.${121 + 8 * k + i}`,
    port: 0,
    model: MODEL,
    metricsFormat: 'vllm',
    seed: 1000 + i,
    timeScale: SCALE,
    ...PREFILL_BOUND,
  }))
  const fleet = await startFleet(sims)
  const procs: Proc[] = []
  try {
    if (name === 'sglang' || name === 'vllm') {
      const install = await ensurePeer(name)
      if (!install.ok) throw new Error(`${name}: ${install.reason}`)
      const p = PEER_PORTS[name]
      procs.push(
        await startPeer({
          install,
          name,
          host: '127.0.0.1',
          port: p.port,
          metricsPort: p.metrics,
          workerUrls: fleet.members.map((m) => m.url),
        }),
      )
      return { name, fleet, procs, origin: `http://127.0.0.1:${p.port}`, port: p.port }
    }
    if (!(name in OURS)) throw new Error(`unknown router ${name}`)
    const plugins = OURS[name]
    const file = join(dir, `${name}-${k}.yaml`)
    await writeFile(
      file,
      routingManifests({
        model: MODEL,
        endpoints: fleet.members.map((m) => ({ name: m.name, address: m.host, port: m.port })),
        retries: 2,
        ...(plugins !== undefined ? { plugins } : {}),
      }),
    )
    const port = OUR_PORT + k
    const bundle = name === 'ours+' ? (opts['bundle-b'] ?? opts.bundle) : opts.bundle
    procs.push(
      await startGateway(file, port, PODS, {
        ...(name === 'ours' ? {} : { args: GATEWAY_ARGS }),
        // `--scrape off` (to read what scraping costs) never has fresh metrics.
        ...(name !== 'ours' && GATEWAY_ARGS.join(' ').includes('--scrape off')
          ? { fresh: false }
          : {}),
        ...(bundle !== undefined ? { bundle } : {}),
      }),
    )
    return { name, fleet, procs, origin: `http://127.0.0.1:${port}`, port }
  } catch (e) {
    for (const p of procs) await p.stop()
    await fleet.stop()
    throw e
  }
}

/** Router processes by their --port (peers by name); every fleet's engines as one role. */
function roleOf(cmd: string, pid: number): string {
  // This process's own command line names the routers (--routers).
  if (pid === process.pid) return 'load generator'
  if (cmd.includes('routing-fleet')) return 'engines'
  // A peer's launcher may run it in a child process of its own (no --port on its command line).
  if (cmd.includes('sglang')) return `:${PEER_PORTS.sglang.port}`
  if (cmd.includes('vllm')) return `:${PEER_PORTS.vllm.port}`
  const port = /--port (\d+)/.exec(cmd)?.[1]
  return port !== undefined ? `:${port}` : 'other'
}

/** Thread names (comm) of `samples`, by tid; a thread gone since reads as '?'. */
async function threadNames(samples: readonly ThreadSample[]): Promise<Map<number, string>> {
  const out = new Map<number, string>()
  for (const t of samples) {
    const comm = await readFile(`/proc/${t.pid}/task/${t.tid}/comm`, 'utf8').catch(() => '?')
    // Threads of one kind share a name but for a number (V8's "V8 DefaultWorke", libuv's pool).
    out.set(t.tid, `${t.pid === t.tid ? 'main' : comm.trim().replace(/\d+$/, '#')}`)
  }
  return out
}

/** Each router's CPU by thread name (ns) while `during` runs, and how long that took (ms). */
async function cpuByThread<T>(
  running: readonly Running[],
  during: () => Promise<T>,
): Promise<{ result: T; ms: number; by: Map<string, number>[]; threads: number[] }> {
  const pids = await Promise.all(
    running.map(async (r) =>
      (await Promise.all(r.procs.map((p) => processTree(p.child.pid ?? 0)))).flat(),
    ),
  )
  const before = await Promise.all(pids.map((p) => sampleThreads(p)))
  const t0 = performance.now()
  const result = await during()
  const ms = performance.now() - t0
  const after = await Promise.all(pids.map((p) => sampleThreads(p)))
  const by: Map<string, number>[] = []
  const threads: number[] = []
  for (const [j] of running.entries()) {
    const d = threadDeltas(before[j] ?? [], after[j] ?? [])
    const names = await threadNames(d)
    const m = new Map<string, number>()
    for (const t of d) {
      const n = names.get(t.tid) ?? '?'
      m.set(n, (m.get(n) ?? 0) + t.runNs)
    }
    by.push(m)
    threads.push(d.length)
  }
  return { result, ms, by, threads }
}

/** `name total (n threads: main x, node y, …)` with each figure as `scale` makes it of ns. */
function threadLine(
  by: Map<string, number>,
  threads: number,
  scale: (ns: number) => number,
): string {
  const total = [...by.values()].reduce((a, b) => a + b, 0)
  const parts = [...by.entries()]
    .sort((a, b) => b[1] - a[1])
    .map(([n, ns]) => `${n} ${fmt(scale(ns), 2)}`)
  return `${fmt(scale(total), 2)} (${threads} threads: ${parts.join(', ')})`
}

/**
 * Each router's CPU per second with no requests (engines up, scrapes running), in total and by
 * thread name: the background work that a request at low rate pays a share of.
 */
async function idleCpu(running: readonly Running[], ms: number): Promise<string[]> {
  const c = await cpuByThread(running, () => new Promise((r) => setTimeout(r, ms)))
  return running.map(
    (r, j) =>
      `  ${r.name.padEnd(8)} idle CPU ms/s ${threadLine(c.by[j] ?? new Map(), c.threads[j] ?? 0, (ns) => ns / 1e6 / (c.ms / 1000))}`,
  )
}

interface Row {
  readonly round: number
  readonly name: string
  readonly p50: number
  readonly p90: number
  readonly p99: number
  readonly aboveP50: number
  readonly aboveP90: number
  readonly queued: number
  readonly n: number
  readonly engineQueueMs: number
  readonly clientMinusEngineMs: number
  readonly cpuMsPerReq: number
}

function ok(r: RequestResult): boolean {
  return r.status === 200 && r.error === undefined && Number.isFinite(r.ttftMs)
}

async function round(i: number, dir: string): Promise<{ rows: Row[]; idle: string[] }> {
  // Each round starts the routers and their loops in a rotated order (who goes first each instant).
  const order = ROUTERS.map((_, j) => ROUTERS[(j + i) % ROUTERS.length] as string)
  const running: Running[] = []
  try {
    for (const [k, name] of order.entries()) running.push(await start(name, k, dir))
    // Our warm-up (2000 synthetic decisions at start-up) runs after the data plane listens: let
    // it finish before the load, as a peer has nothing of the kind.
    await new Promise((r) => setTimeout(r, 3000))
    // An uncounted load first (other prompts): a fresh Node process compiles its hot code in
    // background threads for tens of seconds at this rate; a Rust router has nothing of the kind.
    if (WARM_MS > 0) await Promise.all(running.map((r) => runOpenLoop(r.origin, plan(WARM_MS, 21))))
    const idle = IDLE_MS > 0 ? await idleCpu(running, IDLE_MS) : []
    const p = plan()
    // The engines' own sums before the measured load (a --warm load is in them): differences.
    const engineTotals = (r: Running) =>
      Promise.all(
        r.fleet.members.map(async (m) =>
          engineSide(await (await fetch(`${m.url}/metrics`)).text()),
        ),
      ).then((es) => ({
        ttftMs: es.reduce((s, e) => s + (e.requests > 0 ? e.ttftMeanMs * e.requests : 0), 0),
        queueMs: es.reduce((s, e) => s + e.queueTotalMs, 0),
      }))
    const engines0 = await Promise.all(running.map(engineTotals))
    const cpu0 = await treeCpu(process.pid, roleOf)
    const loaded = await cpuByThread(running, () =>
      Promise.all(running.map((r) => runOpenLoop(r.origin, p))),
    )
    const results = loaded.result
    const cpu = cpuBetween(cpu0, await treeCpu(process.pid, roleOf))
    for (const [j, r] of running.entries()) {
      const n = results[j]?.length ?? 0
      // Per thread from schedstat (ns), beside the tick-based per-process figure of the rows.
      idle.push(
        `  ${r.name.padEnd(8)} CPU ms/request under load ${threadLine(loaded.by[j] ?? new Map(), loaded.threads[j] ?? 0, (ns) => ns / 1e6 / n)}`,
      )
    }
    const rows: Row[] = []
    for (const [j, r] of running.entries()) {
      const all = results[j] ?? []
      const measured = all.filter((x) => x.at >= WARMUP_MS)
      const ttft = measured
        .filter(ok)
        .map((x) => x.ttftMs)
        .sort((a, b) => a - b)
      const a = aboveFloor(measured, FLOOR_MS)
      const e1 = await engineTotals(r)
      const e0 = engines0[j] ?? { ttftMs: 0, queueMs: 0 }
      const engineTtftSum = e1.ttftMs - e0.ttftMs
      const good = all.filter(ok)
      const clientSum = good.reduce((s, x) => s + x.ttftMs, 0)
      rows.push({
        round: i,
        name: r.name,
        p50: percentile(ttft, 50),
        p90: percentile(ttft, 90),
        p99: percentile(ttft, 99),
        aboveP50: a.p50,
        aboveP90: a.p90,
        queued: a.queued,
        n: a.n,
        engineQueueMs: e1.queueMs - e0.queueMs,
        clientMinusEngineMs: (clientSum - engineTtftSum) / good.length,
        cpuMsPerReq: ((cpu.get(`:${r.port}`) ?? Number.NaN) * 1000) / all.length,
      })
    }
    return { rows, idle }
  } finally {
    for (const r of running) {
      for (const p of r.procs) await p.stop()
      await r.fleet.stop()
    }
  }
}

function line(r: Row): string {
  return `  ${r.name.padEnd(8)} TTFT p50/p90/p99 ${fmt(r.p50, 1)}/${fmt(r.p90, 1)}/${fmt(r.p99, 1)} ms; above the ${fmt(FLOOR_MS, 1)} ms floor p50/p90 ${fmt(r.aboveP50, 1)}/${fmt(r.aboveP90, 1)}, queued > 15 ms ${r.queued}/${r.n}; engines' queue total ${fmt(r.engineQueueMs, 0)} ms; client - engine TTFT mean ${fmt(r.clientMinusEngineMs, 1)} ms; router CPU ${fmt(r.cpuMsPerReq, 2)} ms/request`
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'igw-routing-paired-'))
  const rows: Row[] = []
  try {
    for (let i = 0; i < ROUNDS; i++) {
      const { rows: rs, idle } = await round(i, dir)
      rows.push(...rs)
      for (const l of idle) process.stdout.write(`${l}\n`)
      const avg = loadavg().map((x) => x.toFixed(2))
      process.stdout.write(`round ${i + 1}/${ROUNDS} (load average ${avg.join(' ')})\n`)
      for (const r of rs) process.stdout.write(`${line(r)}\n`)
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
  const med = (xs: number[]) =>
    percentile(
      [...xs].sort((a, b) => a - b),
      50,
    )
  process.stdout.write(`median over ${ROUNDS} rounds:\n`)
  for (const name of ROUTERS) {
    const mine = rows.filter((r) => r.name === name)
    process.stdout.write(
      `  ${name.padEnd(8)} TTFT p50 ${fmt(med(mine.map((r) => r.p50)), 1)}, p90 ${fmt(med(mine.map((r) => r.p90)), 1)} ms; above floor p50 ${fmt(med(mine.map((r) => r.aboveP50)), 1)}, p90 ${fmt(med(mine.map((r) => r.aboveP90)), 1)} ms; client - engine ${fmt(med(mine.map((r) => r.clientMinusEngineMs)), 1)} ms; CPU ${fmt(med(mine.map((r) => r.cpuMsPerReq)), 2)} ms/request\n`,
    )
  }
  const [a, b] = ROUTERS
  if (a !== undefined && b !== undefined) {
    const d = (f: (r: Row) => number) =>
      Array.from({ length: ROUNDS }, (_, i) => {
        const x = rows.find((r) => r.round === i && r.name === a)
        const y = rows.find((r) => r.round === i && r.name === b)
        return x !== undefined && y !== undefined ? f(x) - f(y) : Number.NaN
      })
    const list = (xs: number[]) => xs.map((x) => fmt(x, 1)).join(', ')
    process.stdout.write(
      `${a} - ${b} per round: TTFT p50 ${list(d((r) => r.p50))}; p90 ${list(d((r) => r.p90))} ms\n`,
    )
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`)
  process.exitCode = 1
})
