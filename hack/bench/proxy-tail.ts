// `npx tsx hack/bench/proxy-tail.ts`: what the slowest 1 % of proxied requests wait for. The same
// set-up as bench:proxy's 500 req/s run (one `infer-gateway sim --zero-latency`, our data plane as
// the esbuild bundle with one worker, vegeta at a fixed rate; `--mode stream`: streams at a fixed
// rate from a client here, timed to the first byte), with proxy-tail-probe.ts inside the data
// plane recording timelines (GC pauses, event-loop stalls with their CPU, each request as the
// server and undici saw it; `--cpu`: a CPU profile). Each request vegeta timed is placed on the
// data plane's clock (proxy-tail-analysis.ts) and the slowest 1 % are set against all: which
// overlapped a GC pause or a stall, how their time splits into before our handler / in it /
// upstream / after, and (with --cpu) which code ran in the stalls they overlapped.
//
// Two data planes can run side by side in alternating windows (`--compare-gateway-arg`,
// `--compare-node-arg`, `--compare` bundle): the p99 of many short windows, drift hitting both.
//
//   npx tsx hack/bench/proxy-tail.ts --seconds 5 --rounds 4 --cpu
//   npx tsx hack/bench/proxy-tail.ts --compare-gateway-arg=--scrape --compare-gateway-arg=thread
//   npx tsx hack/bench/proxy-tail.ts --mode stream --stream-rate 200

import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, readFile, rm, unlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { basename, join } from 'node:path'
import { parseArgs, promisify } from 'node:util'
import { Pool } from 'undici'
import { BenchUsageError, positiveArg } from './cli-args.js'
import { type Proc, startZeroLatencySim } from './procs.js'
import {
  benchChatBody,
  benchGatewayArgs,
  benchGatewayNodeArgs,
  bundleDataplane,
  spawnBundle,
} from './proxy-bundle.js'
import {
  CAUSES,
  type ClientClock,
  type ClientRecord,
  type CpuProfile,
  type Placed,
  parseProcStatCpu,
  parseVegetaCsv,
  place,
  profileSamples,
  quantile,
  samplesWithin,
  stealShare,
  summarise,
} from './proxy-tail-analysis.js'
import { TAIL_PROBE_SOURCE, type TailWindow } from './proxy-tail-probe.js'
import { attack, ensureVegeta } from './proxy-vegeta.js'
import { singleEngineManifests } from './routing-config.js'

const USAGE = `usage: npx tsx hack/bench/proxy-tail.ts [options]
  --mode nonstream|stream   vegeta at --rate, or streams at --stream-rate timed to the first byte
  --rate N                  non-stream requests per second (default 500)
  --stream-rate N           streams per second (default 200)
  --seconds N               length of one window (default 5)
  --rounds N                windows per data plane (default 4)
  --stall-ms N              shortest event-loop gap recorded as a stall (default 3)
  --direct                  also the engine alone, one window per round: p99 added per round
  --cpu-us N                the profile's sampling interval (default 250)
  --cpu                     CPU profile per window (sampling every --cpu-us µs): code run in the stalls
  --gateway-arg X           extra data plane option, repeatable (e.g. --gateway-arg=--scrape --gateway-arg=off)
  --node-flags S            Node flags of the data plane, space-separated (default: the data-plane
                            Deployment's, as bench:proxy; --node-flags= for Node's defaults)
  --node-arg X              extra Node option for the data plane, repeatable (after --node-flags)
  --bundle FILE             a data plane bundle built beforehand (default: bundle the tree)
  --compare FILE            a second bundle, run in alternating windows with the first
  --compare-gateway-arg X   data plane options of the second (same bundle unless --compare)
  --compare-node-arg X      Node options of the second
  --top N                   rows of the per-function tables (default 12)`

const { values: opts } = parseArgs({
  options: {
    mode: { type: 'string', default: 'nonstream' },
    rate: { type: 'string', default: '500' },
    'stream-rate': { type: 'string', default: '200' },
    seconds: { type: 'string', default: '5' },
    rounds: { type: 'string', default: '4' },
    'stall-ms': { type: 'string', default: '3' },
    'cpu-us': { type: 'string', default: '250' },
    cpu: { type: 'boolean', default: false },
    direct: { type: 'boolean', default: false },
    'gateway-arg': { type: 'string', multiple: true, default: [] },
    'node-flags': { type: 'string' },
    'node-arg': { type: 'string', multiple: true, default: [] },
    bundle: { type: 'string' },
    compare: { type: 'string' },
    'compare-gateway-arg': { type: 'string', multiple: true, default: [] },
    'compare-node-arg': { type: 'string', multiple: true, default: [] },
    top: { type: 'string', default: '12' },
    help: { type: 'boolean', default: false },
  },
})

const MODEL = 'bench-model'
// Own addresses and ports: bench:proxy and proxy-cost.ts may run on this machine at the same time.
const SIM_HOST = '127.0.0.7'
const SIM_PORT = 18140
const GW_PORT = 18141
const out = (line: string) => process.stdout.write(`${line}\n`)
const f2 = (n: number) => (Number.isFinite(n) ? n.toFixed(2) : '—')
const pct = (n: number) => `${(n * 100).toFixed(0)}%`

const chat = (stream: boolean, maxTokens?: number) => benchChatBody(MODEL, stream, maxTokens)

async function until(what: string, ok: () => boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = performance.now() + timeoutMs
  while (!ok()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

const hrMs = (): number => Number(process.hrtime.bigint() / 1000n) / 1000

/**
 * Streams at a fixed rate, each timed to its first body byte; start times on hrtime (the probe
 * maps them). One client process for every variant, as in bench:proxy.
 */
async function streamLoad(origin: string, rate: number, seconds: number): Promise<ClientRecord[]> {
  const pool = new Pool(origin, { connections: 256, pipelining: 1 })
  const records: ClientRecord[] = []
  const body = chat(true)
  const one = async (): Promise<void> => {
    const startMs = hrMs()
    const t0 = performance.now()
    let first = -1
    let code = 0
    try {
      const res = await pool.request({
        path: '/v1/chat/completions',
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body,
      })
      code = res.statusCode
      for await (const _ of res.body) if (first < 0) first = performance.now() - t0
    } catch {
      code = 0
    }
    const total = performance.now() - t0
    records.push({ startMs, latencyMs: first < 0 ? total : first, totalMs: total, code })
  }
  const pending = new Set<Promise<void>>()
  const total = Math.floor(rate * seconds)
  const start = performance.now()
  let sent = 0
  while (sent < total) {
    const due = Math.min(total, Math.floor(((performance.now() - start) * rate) / 1000) + 1)
    for (; sent < due; sent++) {
      const p = one().finally(() => pending.delete(p))
      pending.add(p)
    }
    await new Promise((r) => setTimeout(r, 1))
  }
  await Promise.all(pending)
  await pool.close()
  return records
}

interface Variant {
  readonly label: string
  readonly bundle: string
  readonly gatewayArgs: readonly string[]
  readonly nodeArgs: readonly string[]
}

interface Target extends Variant {
  readonly port: number
  readonly probeOut: string
  readonly pid: number
  readonly placed: Placed[]
  readonly windowP99: number[]
  readonly windowP50: number[]
  /** Per window: stalls, GC pauses, event-loop p99, utilisation. */
  readonly windows: TailWindow[]
  readonly stallTasks: Map<string, number>
  readonly stallLeaves: Map<string, number>
  readonly slowTasks: Map<string, number>
  readonly allTasks: Map<string, number>
}

const add = (into: Map<string, number>, from: Map<string, number>): void => {
  for (const [k, v] of from) into.set(k, (into.get(k) ?? 0) + v)
}

function table(title: string, m: Map<string, number>, top: number): void {
  const total = [...m.values()].reduce((a, b) => a + b, 0)
  out(`  ${title} (${total} samples):`)
  for (const [k, v] of [...m.entries()].sort((a, b) => b[1] - a[1]).slice(0, top))
    out(`    ${pct(v / Math.max(1, total)).padStart(4)}  ${k}`)
}

async function main(): Promise<void> {
  if (opts.help) {
    out(USAGE)
    return
  }
  const mode = opts.mode
  if (mode !== 'nonstream' && mode !== 'stream')
    throw new BenchUsageError(`--mode must be nonstream or stream, got ${mode}`)
  const rate = positiveArg('rate', opts.rate)
  const streamRate = positiveArg('stream-rate', opts['stream-rate'])
  const seconds = positiveArg('seconds', opts.seconds)
  const rounds = positiveArg('rounds', opts.rounds)
  const top = positiveArg('top', opts.top)
  const stallMs = positiveArg('stall-ms', opts['stall-ms'])
  const cpuUs = positiveArg('cpu-us', opts['cpu-us'])
  const dir = await mkdtemp(join(tmpdir(), 'igw-proxy-tail-'))
  const procs: Proc[] = []
  try {
    const vegeta = await ensureVegeta()
    if (!vegeta.ok) throw new Error(`vegeta is required: ${vegeta.reason}`)
    if (opts.bundle === undefined) out('bundling the data plane…')
    const bundle = opts.bundle ?? (await bundleDataplane(join(dir, 'dist')))
    const probe = join(dir, 'probe.mjs')
    await writeFile(probe, TAIL_PROBE_SOURCE)
    // The config in a directory of its own: the data plane watches its config's directory and
    // vegeta's result files go to `dir`.
    const confDir = join(dir, 'config')
    await mkdir(confDir)
    const config = join(confDir, 'gateway.yaml')
    await writeFile(config, singleEngineManifests(MODEL, SIM_HOST, SIM_PORT))
    const bodyFile = join(dir, 'body.json')
    await writeFile(bodyFile, chat(false))
    procs.push(await startZeroLatencySim(SIM_HOST, SIM_PORT, MODEL))
    // The Deployment's young generation and memory reducer by default, as every proxy benchmark
    // (a tail measured under Node's defaults is not the one the pods have).
    const nodeBase = [...benchGatewayNodeArgs(opts['node-flags']), ...(opts['node-arg'] ?? [])]
    const variants: Variant[] = [
      {
        label: 'A',
        bundle,
        gatewayArgs: opts['gateway-arg'] ?? [],
        nodeArgs: nodeBase,
      },
    ]
    const cmpGw = opts['compare-gateway-arg'] ?? []
    const cmpNode = opts['compare-node-arg'] ?? []
    if (opts.compare !== undefined || cmpGw.length > 0 || cmpNode.length > 0)
      variants.push({
        label: 'B',
        bundle: opts.compare ?? bundle,
        gatewayArgs: [...(opts['gateway-arg'] ?? []), ...cmpGw],
        nodeArgs: [...nodeBase, ...cmpNode],
      })
    const targets: Target[] = []
    for (const [i, v] of variants.entries()) {
      const probeOut = join(dir, `probe-${v.label}.json`)
      const port = GW_PORT + i
      const env = {
        IGW_TAIL_OUT: probeOut,
        IGW_TAIL_STALL_MS: String(stallMs),
        IGW_TAIL_CPU_US: String(cpuUs),
      }
      const gw = await spawnBundle(
        v.bundle,
        benchGatewayArgs(config, port, ['--workers', '1', ...v.gatewayArgs]),
        /data plane listening/,
        [`--import=${probe}`, ...v.nodeArgs],
        undefined,
        env,
      )
      procs.push(gw)
      const pid = gw.child.pid ?? 0
      out(
        `${v.label}: ${basename(v.bundle)} ${[...v.nodeArgs, ...v.gatewayArgs].join(' ')} (pid ${pid})`,
      )
      targets.push({
        ...v,
        port,
        probeOut,
        pid,
        placed: [],
        windowP99: [],
        windowP50: [],
        windows: [],
        stallTasks: new Map(),
        stallLeaves: new Map(),
        slowTasks: new Map(),
        allTasks: new Map(),
      })
    }

    let n = 0
    const load = async (
      origin: string,
      secs: number,
    ): Promise<{ records: ClientRecord[]; clock: ClientClock }> => {
      if (mode === 'stream')
        return { records: await streamLoad(origin, streamRate, secs), clock: 'hr' }
      const file = join(dir, `v-${n++}.bin`)
      await attack(vegeta.bin, {
        url: `${origin}/v1/chat/completions`,
        bodyFile,
        rate,
        seconds: secs,
        output: file,
      })
      const { stdout } = await promisify(execFile)(vegeta.bin, ['encode', '-to=csv', file], {
        maxBuffer: 256 << 20,
      })
      await unlink(file).catch(() => {})
      return { records: parseVegetaCsv(stdout), clock: 'wall' }
    }

    const window = async (t: Target): Promise<void> => {
      const f = t.probeOut
      for (const x of [f, `${f}.opened`, `${f}.cpu`, `${f}.cpuprofile`])
        await unlink(x).catch(() => {})
      if (opts.cpu) await writeFile(`${f}.cpu`, '')
      process.kill(t.pid, 'SIGUSR2')
      await until('the probe to open', () => existsSync(`${f}.opened`))
      const cpu0 = parseProcStatCpu(await readFile('/proc/stat', 'utf8'))
      const { records, clock } = await load(`http://127.0.0.1:${t.port}`, seconds)
      const steal = stealShare(cpu0, parseProcStatCpu(await readFile('/proc/stat', 'utf8')))
      process.kill(t.pid, 'SIGUSR2')
      await until('the probe to close', () => existsSync(f))
      const w = JSON.parse(await readFile(f, 'utf8')) as TailWindow
      const placed = place(records, w, clock)
      const s = summarise(placed)
      t.placed.push(...placed)
      t.windowP50.push(s.p50Ms)
      t.windowP99.push(s.p99Ms)
      t.windows.push(w)
      const failed = records.filter((r) => r.code !== 200).length
      out(
        `${t.label} window: ${records.length} requests${failed > 0 ? ` (${failed} failed)` : ''}, p50 ${f2(s.p50Ms)} p99 ${f2(s.p99Ms)} ms; ${w.stalls.length} stalls ≥ ${stallMs} ms (longest ${f2(Math.max(0, ...w.stalls.map((x) => x.gapMs)))}), GC ${w.gc.filter((g) => g.kind === 'minor').length} minor / ${w.gc.filter((g) => g.kind !== 'minor').length} other (longest ${f2(Math.max(0, ...w.gc.map((g) => g.durationMs)))} ms), loop p99 ${f2(w.eventLoopDelay.p99Ms)} ms, busy ${pct(w.utilisation)}, machine steal ${(steal * 100).toFixed(1)}%`,
      )
      if (w.profile === undefined) return
      const prof = JSON.parse(await readFile(w.profile.file, 'utf8')) as CpuProfile
      const ours = (url: string) => url.endsWith(basename(t.bundle))
      const ps = profileSamples(
        prof,
        w.profile.markerStartMs,
        ours,
        w.anchor.hrMs - w.anchor.perfMs,
      )
      const stallSpans = w.stalls.map((x) => ({ startMs: x.endMs - x.gapMs, endMs: x.endMs }))
      add(t.stallTasks, samplesWithin(ps, stallSpans, 'task'))
      add(t.stallLeaves, samplesWithin(ps, stallSpans, 'leaf'))
      const slow = placed.filter((p) => p.latencyMs >= s.p99Ms)
      add(t.slowTasks, samplesWithin(ps, slow, 'task'))
      add(t.allTasks, samplesWithin(ps, [{ startMs: w.openMs + 25, endMs: w.closeMs }], 'task'))
    }

    out(
      `\n== ${mode} (${mode === 'stream' ? streamRate : rate} req/s), ${rounds} window(s) of ${seconds} s per data plane`,
    )
    const direct = { p50: [] as number[], p99: [] as number[] }
    const directOrigin = `http://${SIM_HOST}:${SIM_PORT}`
    // The engine alone under the same load, in the same alternation: what the machine adds.
    const directWindow = async (): Promise<void> => {
      const { records } = await load(directOrigin, seconds)
      const lat = records.map((r) => r.latencyMs).sort((a, b) => a - b)
      direct.p50.push(quantile(lat, 0.5))
      direct.p99.push(quantile(lat, 0.99))
      out(`direct window: p50 ${f2(quantile(lat, 0.5))} p99 ${f2(quantile(lat, 0.99))} ms`)
    }
    for (const t of targets) await load(`http://127.0.0.1:${t.port}`, 2)
    for (let r = 0; r < rounds; r++) {
      if (opts.direct) await directWindow()
      for (const t of targets) await window(t)
    }
    if (opts.direct) {
      const p99s = [...direct.p99].sort((a, b) => a - b)
      out(`\ndirect: window p99s ${p99s.map(f2).join(' ')} (median ${f2(quantile(p99s, 0.5))})`)
    }

    for (const t of targets) {
      const s = summarise(t.placed)
      const p99s = [...t.windowP99].sort((a, b) => a - b)
      out(`\n${t.label}: ${[...t.nodeArgs, ...t.gatewayArgs].join(' ') || '(defaults)'}`)
      out(
        `  ${mode === 'stream' ? 'TTFB' : 'latency'} over all windows p50 ${f2(s.p50Ms)} p99 ${f2(s.p99Ms)} ms; window p99s ${p99s.map(f2).join(' ')} (median ${f2(quantile(p99s, 0.5))})`,
      )
      if (opts.direct) {
        const added = t.windowP99
          .map((v, i) => v - (direct.p99[i] ?? Number.NaN))
          .sort((a, b) => a - b)
        const addedP50 = t.windowP50
          .map((v, i) => v - (direct.p50[i] ?? Number.NaN))
          .sort((a, b) => a - b)
        out(
          `  added to direct, same round: p50 median ${f2(quantile(addedP50, 0.5))}; p99 ${added.map(f2).join(' ')} (median ${f2(quantile(added, 0.5))}) ms`,
        )
      }
      out(
        `  slowest 1 % (${s.slow} requests ≥ ${f2(s.p99Ms)} ms) by what took most of their time (≥ 0.5 ms), against all requests:`,
      )
      for (const c of CAUSES)
        out(
          `    ${c.padEnd(16)} ${pct(s.slowByCause[c]).padStart(4)}  (all ${pct(s.allByCause[c])})`,
        )
      const dur = (x: typeof s.slowDuring) =>
        `GC minor ${f2(x['gc-minor'])}, GC other ${f2(x['gc-major'])}, busy stalls ${f2(x['stall-busy'])}, preempted stalls ${f2(x['stall-preempted'])} ms`
      out(`  mean time inside, slowest 1 %: ${dur(s.slowDuring)}`)
      out(`  mean time inside, all:         ${dur(s.allDuring)}`)
      const sp = (x: typeof s.slowSplit) =>
        `before handler ${f2(x.beforeMs)}, handler ${f2(x.handlerMs)} (upstream ${f2(x.upstreamMs)}), after ${f2(x.afterMs)} ms [${x.matched} matched]`
      out(`  median split, slowest 1 %: ${sp(s.slowSplit)}`)
      out(`  median split, all:         ${sp(s.allSplit)}`)
      const ws = t.windows
      const stalls = ws.flatMap((w) => w.stalls)
      const secs = ws.reduce((a, w) => a + (w.closeMs - w.openMs) / 1000, 0)
      const busy = stalls.filter((x) => x.cpuMs >= x.gapMs * 0.5)
      out(
        `  stalls: ${(stalls.length / secs).toFixed(1)}/s (${busy.length} busy, ${stalls.length - busy.length} preempted); busy stall ms p50 ${f2(
          quantile(
            busy.map((x) => x.gapMs).sort((a, b) => a - b),
            0.5,
          ),
        )} max ${f2(Math.max(0, ...busy.map((x) => x.gapMs)))}`,
      )
      for (const kind of ['minor', 'major', 'incremental', 'weak', 'other'] as const) {
        const g = ws
          .flatMap((w) => w.gc)
          .filter((x) => x.kind === kind)
          .map((x) => x.durationMs)
          .sort((a, b) => a - b)
        if (g.length > 0)
          out(
            `  GC ${kind}: ${(g.length / secs).toFixed(2)}/s, pause p50 ${f2(quantile(g, 0.5))} p90 ${f2(quantile(g, 0.9))} max ${f2(g[g.length - 1] ?? 0)} ms`,
          )
      }
      if (opts.cpu) {
        table('stall samples by task (outermost bundle frame)', t.stallTasks, top)
        table('stall samples by leaf', t.stallLeaves, top)
        table('samples during the slowest 1 % by task', t.slowTasks, top)
        table('all samples by task', t.allTasks, top)
      }
    }
  } finally {
    while (procs.length > 0) await procs.pop()?.stop()
    await rm(dir, { recursive: true, force: true })
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`)
  if (e instanceof BenchUsageError) process.stderr.write(`${USAGE}\n`)
  process.exitCode = 1
})
