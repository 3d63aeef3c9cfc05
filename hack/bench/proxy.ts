// `npm run bench:proxy`: what a router adds on the request path, ours against the peers, in one
// run. One simulated engine in zero-latency mode; in front of it, each on its own port: nothing
// (direct), our data plane with 1 worker (and N workers when `dataplane --workers` exists),
// sglang-router and vllm-router (PyPI, cached venvs from peers.ts; skipped with the reason when
// they cannot be installed). vegeta (Go module proxy, cached) measures added latency at a fixed
// rate and max throughput in a closed loop; stream time-to-first-byte comes from load.ts (vegeta
// cannot time the first byte of a stream), the same client for every target. Both latency phases
// run an uncounted warm-up per target and then short windows, the targets in turn, each window
// with the machine's CPU steal and CPU-wait shares; the verdicts read the median of the windows' p99, the
// pooled p99 printed beside it (proxy-windows.ts: why). Then thousands of
// slow streams through ours: memory and event-loop delay. Ours is the esbuild bundle the image
// runs (proxy-bundle.ts; `--tsx`: the sources through tsx). `--profile` writes a CPU profile of
// our 1-worker data plane and prints its top self time (with --tsx it names source files). `--targets direct,ours` (with short
// --seconds) measures a subset while iterating; such runs never write docs/benchmarks.md.
import { execFile } from 'node:child_process'
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { availableParallelism, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs, promisify } from 'node:util'
import { DATAPLANE_NODE_ARGS } from '../../cdk8s/dataplane-node.js'
import { fixedRate, type LoadTarget, percentile } from './load.js'
import { ensurePeer, PEERS, type PeerName, startPeer } from './peers.js'
import { CLI, type OutputProc, type Proc, spawnCli, startZeroLatencySim } from './procs.js'
import {
  benchChatBody,
  benchGatewayArgs,
  benchGatewayNodeArgs,
  bundleDataplane,
  spawnBundle,
} from './proxy-bundle.js'
import { cpuUsPerRequest, treeCpuSeconds } from './proxy-cpu.js'
import { treeMemory } from './proxy-procfs.js'
import {
  checks,
  type Measured,
  type ProxyRun,
  render,
  type Skipped,
  type TargetKey,
} from './proxy-report.js'
import { type SlowStreamsResult, slowStreams } from './proxy-streams.js'
import { type CpuTicks, parseProcStatCpu, stealShare } from './proxy-tail-analysis.js'
import { attack, describeFailures, ensureVegeta, failures, report } from './proxy-vegeta.js'
import {
  cpuWaitShare,
  type LatencyWindow,
  pooledQuantiles,
  pressureSomeTotalUs,
  summariseWindows,
  summaryText,
  type WindowedLatency,
  windowText,
} from './proxy-windows.js'
import { writeSection } from './report.js'
import { singleEngineManifests } from './routing-config.js'
import { roundOrder } from './tracing-paired.js'

const USAGE = `usage: npm run bench:proxy -- [options]
  --rate N              non-stream requests per second, vegeta (default 500)
  --windows N           counted non-stream windows per target, targets in turn (default 5)
  --seconds N           length of each non-stream window (default 4)
  --max-seconds N       closed-loop max-throughput run per target (default 10)
  --connections N       closed-loop connections (default 64)
  --stream-rate N       streams per second, timed to the first byte (default 200)
  --stream-windows N    counted stream windows per target, targets in turn (default 5)
  --stream-seconds N    length of each stream window (default 5)
  --warmup-seconds N    uncounted warm-up per target before each phase's windows, at the
                        phase's rate (default 16: 8,000 requests at 500 req/s, what our
                        data plane takes to compile its hot path; 0: none)
  --workers N           workers of the "ours (N workers)" target (default: the cores, ${availableParallelism()})
  --streams N           concurrent slow streams through ours (default 5000; 0: skip)
  --hold-seconds N      how long the slow streams are held open (default 15)
  --no-peers            skip sglang-router and vllm-router
  --targets a,b         a subset of direct,ours,oursN,sglang,vllm (never writes the docs)
  --streams-only        only the slow streams (never writes the docs)
  --profile             CPU profiles of ours (1 worker) and of the slow-stream gateway and sim
  --no-write            print only; do not rewrite docs/benchmarks.md and docs/bench/proxy.json
  --tsx                 run our data plane from the sources through tsx, not the esbuild bundle
  --gateway-arg X       extra data plane option for ours, repeatable
                        (e.g. --gateway-arg=--engine-client=undici)
  --node-flags S        Node flags of ours, space-separated (default: the data-plane
                        Deployment's, "${DATAPLANE_NODE_ARGS.join(' ')}";
                        --node-flags= for Node's defaults)
  --help                this text
A run with fewer than 3 windows or under 10 s counted per target in a phase, --max-seconds
under 10 or --hold-seconds under 15 is marked a smoke run in its report.`

const { values: opts } = parseArgs({
  options: {
    rate: { type: 'string', default: '500' },
    windows: { type: 'string', default: '5' },
    seconds: { type: 'string', default: '4' },
    'max-seconds': { type: 'string', default: '10' },
    connections: { type: 'string', default: '64' },
    'stream-rate': { type: 'string', default: '200' },
    'stream-windows': { type: 'string', default: '5' },
    'stream-seconds': { type: 'string', default: '5' },
    'warmup-seconds': { type: 'string', default: '16' },
    workers: { type: 'string' },
    streams: { type: 'string', default: '5000' },
    'hold-seconds': { type: 'string', default: '15' },
    'no-peers': { type: 'boolean', default: false },
    /** Comma-separated subset of direct,ours,oursN,sglang,vllm (default: all). */
    targets: { type: 'string' },
    'streams-only': { type: 'boolean', default: false },
    profile: { type: 'boolean', default: false },
    'no-write': { type: 'boolean', default: false },
    /** Run our data plane from the sources through tsx instead of the esbuild bundle. */
    tsx: { type: 'boolean', default: false },
    /** Extra data plane options for ours (repeatable), e.g. --gateway-arg=--engine-client=undici. */
    'gateway-arg': { type: 'string', multiple: true, default: [] },
    /** Node flags of our data plane (default: the Deployment's; '' = Node's defaults). */
    'node-flags': { type: 'string' },
    help: { type: 'boolean', default: false },
  },
})

if (opts.help) {
  process.stdout.write(`${USAGE}\n`)
  process.exit(0)
}

function positive(name: string, v: string | undefined, min = 0): number {
  const n = Number(v)
  if (!Number.isFinite(n) || n < min)
    throw new Error(`--${name} must be a number >= ${min}, got ${v}`)
  return n
}

const RATE = positive('rate', opts.rate, 1)
const WINDOWS = Math.round(positive('windows', opts.windows, 1))
const SECONDS = positive('seconds', opts.seconds, 1)
const MAX_SECONDS = positive('max-seconds', opts['max-seconds'], 1)
const CONNECTIONS = positive('connections', opts.connections, 1)
const STREAM_RATE = positive('stream-rate', opts['stream-rate'], 1)
const STREAM_WINDOWS = Math.round(positive('stream-windows', opts['stream-windows'], 1))
const STREAM_SECONDS = positive('stream-seconds', opts['stream-seconds'], 1)
const WARMUP_SECONDS = positive('warmup-seconds', opts['warmup-seconds'], 0)
const STREAMS = positive('streams', opts.streams, 0)
const HOLD_SECONDS = positive('hold-seconds', opts['hold-seconds'], 1)
const WORKERS = positive('workers', opts.workers ?? String(availableParallelism()), 1)
const ALL_TARGETS: readonly TargetKey[] = ['direct', 'ours', 'oursN', 'sglang', 'vllm']
const TARGETS = parseTargets(opts.targets)

/** `--targets a,b`: short runs on one target while iterating (e.g. `--targets direct,ours`). */
function parseTargets(v: string | undefined): ReadonlySet<TargetKey> {
  if (v === undefined) return new Set(ALL_TARGETS)
  const out = new Set<TargetKey>()
  for (const t of v.split(',').map((x) => x.trim())) {
    const key = ALL_TARGETS.find((k) => k === t)
    if (key === undefined)
      throw new Error(`--targets: unknown target ${t}; known: ${ALL_TARGETS.join(', ')}`)
    out.add(key)
  }
  return out
}
// Shorter than this: a proof that every part runs, not a measurement (a median of fewer than 3
// windows is not the method).
const SMOKE =
  WINDOWS < 3 ||
  STREAM_WINDOWS < 3 ||
  WINDOWS * SECONDS < 10 ||
  STREAM_WINDOWS * STREAM_SECONDS < 10 ||
  MAX_SECONDS < 10 ||
  HOLD_SECONDS < 15

const SIM_HOST = '127.0.0.2'
const SIM_PORT = 18000
const SLOW_SIM_HOST = '127.0.0.3'
const SLOW_SIM_PORT = 18001
const PORTS: Record<Exclude<TargetKey, 'direct'>, number> = {
  ours: 18080,
  oursN: 18081,
  sglang: 18082,
  vllm: 18083,
}
const SLOW_GW_PORT = 18084
const PEER_METRICS: Record<PeerName, number> = { sglang: 29001, vllm: 29002 }
const MODEL = 'bench-model'
const SLOW_MAX_TOKENS = 1000

const out = (line: string) => process.stdout.write(`${line}\n`)

const chat = (stream: boolean, maxTokens?: number) => benchChatBody(MODEL, stream, maxTokens)

let hasWorkers: Promise<boolean> | undefined

/** Whether this data plane has `--workers` (asked once from `dataplane --help`). */
function dataplaneHasWorkers(): Promise<boolean> {
  hasWorkers ??= promisify(execFile)(process.execPath, [CLI, 'dataplane', '--help']).then(
    ({ stdout, stderr }) => /--workers\b/.test(stdout + stderr),
  )
  return hasWorkers
}

/**
 * Our data plane with `workers` processes. Where --workers exists it is always passed: its default
 * is every core, so leaving it out would not give the 1-worker data plane.
 */
async function startGateway(
  config: string,
  port: number,
  workers: number,
  extra: readonly string[],
  nodeArgs: readonly string[] = [],
): Promise<Proc> {
  const w = (await dataplaneHasWorkers()) ? ['--workers', String(workers)] : []
  const args = benchGatewayArgs(config, port, [...w, ...extra, ...(opts['gateway-arg'] ?? [])])
  // What the image runs (proxy-bundle.ts) with the Deployment's Node flags; --tsx: the sources,
  // for iterating without a build.
  const flags = [...benchGatewayNodeArgs(opts['node-flags']), ...nodeArgs]
  if (bundle !== undefined) return spawnBundle(bundle, args, /data plane listening/, flags)
  return spawnCli(['dataplane', ...args], /data plane listening/, flags)
}

/**
 * Writes a gateway config into a directory of its own. The data plane watches its config's
 * directory, and vegeta streams its results into `dir` for the whole run: sharing one directory
 * made every gateway process re-read its config on each of vegeta's writes, which cost the
 * measured gateway CPU (about 1 ms per request served by anyone) and put stalls in its tail.
 */
async function configFile(dir: string, name: string, text: string): Promise<string> {
  const confDir = join(dir, `config-${name.replace(/\.ya?ml$/, '')}`)
  await mkdir(confDir, { recursive: true })
  const file = join(confDir, name)
  await writeFile(file, text)
  return file
}

interface Running {
  readonly key: TargetKey
  readonly label: string
  readonly origin: string
  readonly pid: number
  /** Peers only: their output, shown when requests to them fail. */
  readonly proc?: OutputProc
}

/**
 * The machine's 1-minute load average around the run. Other work on the machine inflates every
 * number here, ours most (the gateway does the most CPU work per request of the processes
 * measured): a run with a load well above the core count is not a measurement of the proxy.
 */
function loadNote(start: number, end: number): string {
  const cores = availableParallelism()
  // At the start nothing of this benchmark runs yet; at the end its own processes count too.
  const busy = start >= cores
  return `Load average (1 min): ${start.toFixed(1)} at the start, ${end.toFixed(1)} at the end${busy ? ` — other work already kept all ${cores} cores busy before the run began, so these numbers are disturbed` : ''}.`
}

/** Our data plane's esbuild bundle (built once per run), unless --tsx. */
let bundle: string | undefined

async function main(): Promise<void> {
  const loadAtStart = loadavg()[0] ?? 0
  const dir = await mkdtemp(join(tmpdir(), 'igw-bench-proxy-'))
  if (!opts.tsx) {
    out('bundling the data plane (esbuild, as the image runs it)…')
    bundle = await bundleDataplane(join(dir, 'dist'))
  }
  // Kept after the run (the rest of `dir` is removed): .cpuprofile files open in DevTools.
  const profDir = opts.profile ? await mkdtemp(join(tmpdir(), 'igw-proxy-profile-')) : ''
  const procs: Proc[] = []
  const skipped: Skipped[] = []
  try {
    const vegeta = await ensureVegeta()
    if (!vegeta.ok) throw new Error(`vegeta is required: ${vegeta.reason}`)
    out(`vegeta ${vegeta.version}: ${vegeta.bin}`)
    const measured = opts['streams-only']
      ? []
      : await fastPaths(dir, profDir, vegeta.bin, procs, skipped)
    // The fast-path targets are done: stop them so the slow-stream run has the machine.
    while (procs.length > 0) await procs.pop()?.stop()
    const streamsSetup = `engine: \`infer-gateway sim\` with its default latency model (15 ms per token, +2 % per running sequence: about ${Math.round(15 * (1 + 0.02 * (STREAMS - 1)))} ms between tokens with ${STREAMS} running), \`--max-num-seqs ${STREAMS + 1000}\`; gateway: \`--upstream-connections ${STREAMS + 1000}\` (the default 256 would queue the rest); clients: one undici connection per stream, opened 100 per 50 ms; each asks for ${SLOW_MAX_TOKENS} tokens so none ends during the run (the sim's \`--block-size 256\` keeps its KV bookkeeping small).`
    // --profile: the slow-stream gateway and engine write profiles of their own (the ramp's stalls).
    const streamsProf = opts.profile
      ? { gateway: join(profDir, 'streams-gateway'), engine: join(profDir, 'streams-engine') }
      : undefined
    const streams: ProxyRun['streams'] =
      STREAMS > 0 ? await manyStreams(dir, procs, streamsProf) : { skipped: '--streams 0' }
    while (procs.length > 0) await procs.pop()?.stop()
    if (streamsProf !== undefined && STREAMS > 0) {
      out(`\n${await profileSummary(streamsProf.gateway, 'Slow-stream gateway')}\n`)
      out(`\n${await profileSummary(streamsProf.engine, 'Slow-stream engine (sim)')}\n`)
    }

    const command = [
      'npm run bench:proxy --',
      `--rate ${RATE} --windows ${WINDOWS} --seconds ${SECONDS} --max-seconds ${MAX_SECONDS} --connections ${CONNECTIONS}`,
      `--stream-rate ${STREAM_RATE} --stream-windows ${STREAM_WINDOWS} --stream-seconds ${STREAM_SECONDS}`,
      `--warmup-seconds ${WARMUP_SECONDS} --workers ${WORKERS}`,
      `--streams ${STREAMS} --hold-seconds ${HOLD_SECONDS}`,
      ...(opts['no-peers'] ? ['--no-peers'] : []),
      ...(opts.targets !== undefined ? [`--targets ${opts.targets}`] : []),
      ...(opts.tsx ? ['--tsx'] : []),
      ...(opts['gateway-arg'] ?? []).map((a) => `--gateway-arg=${a}`),
      ...(opts['node-flags'] !== undefined ? [`--node-flags='${opts['node-flags']}'`] : []),
    ].join(' ')
    const run: ProxyRun = {
      command,
      rate: RATE,
      warmupSeconds: WARMUP_SECONDS,
      windows: WINDOWS,
      windowSeconds: SECONDS,
      streamWindows: STREAM_WINDOWS,
      streamWindowSeconds: STREAM_SECONDS,
      maxSeconds: MAX_SECONDS,
      connections: CONNECTIONS,
      streamRate: STREAM_RATE,
      measured,
      skipped,
      streams,
      streamsSetup,
      smoke: SMOKE,
      machine: `Measured ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC on ${process.platform}/${process.arch}, ${availableParallelism()} cores shared by the engine, the router under test and the load tool, Node ${process.version}, vegeta ${vegeta.version}; ours with the Node flags "${benchGatewayNodeArgs(opts['node-flags']).join(' ')}"${opts['node-flags'] === undefined ? " (the data-plane Deployment's)" : ''}. ${loadNote(loadAtStart, loadavg()[0] ?? 0)}`,
    }
    const text = render(run)
    out(`\n${text}\n`)
    if (opts.profile && !opts['streams-only']) out(`\n${await profileSummary(profDir)}\n`)
    // A streams-only or --targets run is for iterating; it never replaces the whole section.
    if (!opts['no-write'] && !opts['streams-only'] && opts.targets === undefined) {
      const file = await writeSection('proxy', text, { ...run, checks: checks(run) })
      out(`written to ${file}`)
    }
  } finally {
    while (procs.length > 0) await procs.pop()?.stop()
    await rm(dir, { recursive: true, force: true })
  }
}

/**
 * Direct, ours and the peers against one zero-latency engine: vegeta at a fixed rate (windowed)
 * and in a closed loop, then stream time to first byte (windowed). Started processes go to `procs` (stopped by the
 * caller); targets that cannot run go to `skipped`.
 */
async function fastPaths(
  dir: string,
  /** Where our 1-worker data plane writes its CPU profile; '' = no profile. */
  profDir: string,
  vegetaBin: string,
  procs: Proc[],
  skipped: Skipped[],
): Promise<Measured[]> {
  const config = await configFile(
    dir,
    'gateway.yaml',
    singleEngineManifests(MODEL, SIM_HOST, SIM_PORT),
  )
  const bodies = { json: join(dir, 'body.json') }
  await writeFile(bodies.json, chat(false))

  const sim = await startZeroLatencySim(SIM_HOST, SIM_PORT, MODEL)
  procs.push(sim)
  // Direct always runs: every other number is read against it.
  const targets: Running[] = [
    {
      key: 'direct',
      label: 'direct',
      origin: `http://${SIM_HOST}:${SIM_PORT}`,
      pid: sim.child.pid ?? 0,
    },
  ]
  if (!TARGETS.has('ours')) {
    skipped.push({ key: 'ours', label: 'ours (1 worker)', reason: 'not in --targets' })
  } else {
    const ours = await startGateway(
      config,
      PORTS.ours,
      1,
      [],
      opts.profile ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : [],
    )
    procs.push(ours)
    targets.push({
      key: 'ours',
      label: 'ours (1 worker)',
      origin: `http://127.0.0.1:${PORTS.ours}`,
      pid: ours.child.pid ?? 0,
    })
  }
  if (!TARGETS.has('oursN')) {
    skipped.push({ key: 'oursN', label: 'ours (N workers)', reason: 'not in --targets' })
  } else if (WORKERS < 2) {
    skipped.push({ key: 'oursN', label: 'ours (N workers)', reason: `--workers ${WORKERS}` })
  } else if (await dataplaneHasWorkers()) {
    const many = await startGateway(config, PORTS.oursN, WORKERS, [])
    procs.push(many)
    targets.push({
      key: 'oursN',
      label: `ours (${WORKERS} workers)`,
      origin: `http://127.0.0.1:${PORTS.oursN}`,
      pid: many.child.pid ?? 0,
    })
  } else {
    skipped.push({
      key: 'oursN',
      label: 'ours (N workers)',
      reason: '`infer-gateway dataplane --help` has no --workers yet',
    })
  }
  for (const name of ['sglang', 'vllm'] as const) {
    const label = `${PEERS[name].pkg} ${PEERS[name].version}`
    if (opts['no-peers'] || !TARGETS.has(name)) {
      skipped.push({
        key: name,
        label,
        reason: opts['no-peers'] ? '--no-peers' : 'not in --targets',
      })
      continue
    }
    out(`installing/starting ${label}…`)
    const install = await ensurePeer(name)
    if (!install.ok) {
      skipped.push({ key: name, label, reason: install.reason })
      continue
    }
    try {
      const p = await startPeer({
        install,
        name,
        host: '127.0.0.1',
        port: PORTS[name],
        metricsPort: PEER_METRICS[name],
        workerUrls: [`http://${SIM_HOST}:${SIM_PORT}`],
      })
      procs.push(p)
      targets.push({
        key: name,
        label,
        origin: `http://127.0.0.1:${PORTS[name]}`,
        pid: p.child.pid ?? 0,
        proc: p,
      })
    } catch (e) {
      skipped.push({
        key: name,
        label,
        reason: (e instanceof Error ? e.message : String(e)).split('\n')[0] ?? '',
      })
    }
  }
  for (const s of skipped) out(`skipped ${s.label}: ${s.reason}`)

  // A peer that fails requests says why in its own log; show its last lines once.
  const shown = new Set<TargetKey>()
  const peerTail = (t: Running): void => {
    if (t.proc === undefined || shown.has(t.key)) return
    shown.add(t.key)
    const lines = t.proc.output().trim().split('\n').slice(-5)
    out(`  ${t.label} log tail:\n${lines.map((l) => `    ${l.slice(0, 300)}`).join('\n')}`)
  }
  const url = (t: Running) => `${t.origin}/v1/chat/completions`
  // Both latency phases: an uncounted warm-up per target, then counted windows with the targets
  // in turn (proxy-windows.ts says why).
  const fixed = await windowed({
    what: `${RATE} req/s`,
    targets,
    windows: WINDOWS,
    measure: async (t, seconds, name) => {
      const file = join(dir, `rate-${t.key}-${name}.bin`)
      await attack(vegetaBin, {
        url: url(t),
        bodyFile: bodies.json,
        rate: RATE,
        seconds,
        output: file,
      })
      const r = await report(vegetaBin, [file])
      if (failures(r) > 0) {
        out(`  ${t.label}: ${failures(r)} failed${describeFailures(r)}`)
        peerTail(t)
      }
      // vegeta gives the quantiles, not the latencies: pooled comes from its report over all files.
      return {
        window: {
          p50Ms: r.p50Ms,
          p99Ms: r.p99Ms,
          failed: failures(r),
          requests: r.requests - failures(r),
        },
        pooled: file,
      }
    },
    pooled: async (_t, files) => report(vegetaBin, files),
    seconds: SECONDS,
  })
  const cpuUs = (t: Running): number =>
    cpuUsPerRequest(0, fixed.cpuS.get(t.key) ?? 0, RATE * SECONDS * WINDOWS)
  for (const t of targets)
    out(`${RATE} req/s ${t.label}: CPU ${cpuUs(t).toFixed(0)} µs/req over the counted windows`)

  const max = new Map<TargetKey, Measured['max']>()
  for (const t of targets) {
    const file = join(dir, `max-${t.key}.bin`)
    await attack(vegetaBin, {
      url: url(t),
      bodyFile: bodies.json,
      rate: 0,
      workers: CONNECTIONS,
      seconds: MAX_SECONDS,
      output: file,
    })
    const r = await report(vegetaBin, [file])
    max.set(t.key, { rps: r.throughput, failed: failures(r) })
    out(
      `closed loop ${CONNECTIONS} ${t.label}: ${r.throughput.toFixed(0)} req/s, ${failures(r)} failed${describeFailures(r)}`,
    )
    if (failures(r) > 0) peerTail(t)
  }

  const ttfb = await windowed({
    what: `stream ${STREAM_RATE} req/s TTFB`,
    targets,
    windows: STREAM_WINDOWS,
    measure: async (t, seconds) => {
      const target: LoadTarget = {
        origin: t.origin,
        path: '/v1/chat/completions',
        body: chat(true),
        firstByte: true,
      }
      const r = await fixedRate(target, STREAM_RATE, seconds * 1000)
      const fb = r.firstByte ?? []
      return {
        window: {
          p50Ms: percentile(fb, 50),
          p99Ms: percentile(fb, 99),
          failed: r.errors,
          requests: fb.length,
        },
        pooled: fb,
      }
    },
    pooled: async (_t, samples) => pooledQuantiles(samples),
    seconds: STREAM_SECONDS,
  })

  const measured: Measured[] = []
  for (const t of targets) {
    const f = fixed.results.get(t.key)
    const m = max.get(t.key)
    const s = ttfb.results.get(t.key)
    if (!f || !m || !s) throw new Error(`missing results for ${t.label}`)
    measured.push({
      key: t.key,
      label: t.label,
      fixed: f,
      max: m,
      ttfb: s,
      peakRssMb: (await treeMemory(t.pid)).peakMb,
      cpuUsPerRequest: cpuUs(t),
    })
  }
  return measured
}

/**
 * What the machine was doing, read before and after a window: /proc/stat's CPU ticks (steal) and
 * /proc/pressure/cpu's "some" total (NaN where the kernel has no PSI).
 */
interface MachineReading {
  readonly ticks: CpuTicks
  readonly waitUs: number
  readonly atMs: number
}

async function machineReading(): Promise<MachineReading> {
  const ticks = parseProcStatCpu(await readFile('/proc/stat', 'utf8'))
  const waitUs = await readFile('/proc/pressure/cpu', 'utf8').then(
    pressureSomeTotalUs,
    () => Number.NaN,
  )
  return { ticks, waitUs, atMs: performance.now() }
}

function machineShares(
  a: MachineReading,
  b: MachineReading,
): { readonly steal: number; readonly cpuWait: number } {
  return {
    steal: stealShare(a.ticks, b.ticks),
    cpuWait: cpuWaitShare(a.waitUs, b.waitUs, b.atMs - a.atMs),
  }
}

/** A latency phase run the same way for every target; `P` is what pools a target's windows. */
interface Phase<P> {
  /** As printed: "500 req/s", "stream 200 req/s TTFB". */
  readonly what: string
  readonly targets: readonly Running[]
  readonly windows: number
  /** Length of each counted window, s. */
  readonly seconds: number
  /** Loads `t` for `seconds`; `name` ('warm', '1', …) tells the windows' files apart. */
  readonly measure: (
    t: Running,
    seconds: number,
    name: string,
  ) => Promise<{
    readonly window: Omit<LatencyWindow, 'steal' | 'cpuWait'>
    readonly pooled: P
  }>
  /** p50 / p99 of all of a target's counted requests together. */
  readonly pooled: (
    t: Running,
    parts: readonly P[],
  ) => Promise<{ readonly p50Ms: number; readonly p99Ms: number }>
}

interface PhaseResult {
  readonly results: ReadonlyMap<TargetKey, WindowedLatency>
  /** CPU seconds each target's process tree used over its counted windows. */
  readonly cpuS: ReadonlyMap<TargetKey, number>
}

/**
 * A warm-up window per target that is printed and not counted (a fresh process's, and a fresh
 * client's, first seconds are the slowest of a run), then `windows` rounds in which every target
 * gets one window in turn, the order rotated each round: a stretch of CPU steal or another
 * process's burst then lands on some window of every target instead of all of one target's run.
 * Each window records the machine's steal and CPU-wait shares over it.
 */
async function windowed<P>(phase: Phase<P>): Promise<PhaseResult> {
  const { what, targets, windows, seconds } = phase
  if (WARMUP_SECONDS > 0) {
    out(`${what}: warm-up of ${WARMUP_SECONDS} s per target, not counted`)
    for (const t of targets) {
      const { window } = await phase.measure(t, WARMUP_SECONDS, 'warm')
      out(
        `  warm-up (not counted) ${t.label}: p50 ${window.p50Ms.toFixed(3)} p99 ${window.p99Ms.toFixed(3)} ms`,
      )
    }
  }
  out(`${what}: ${windows} counted windows of ${seconds} s per target, targets in turn`)
  const parts = new Map<TargetKey, P[]>()
  const ws = new Map<TargetKey, LatencyWindow[]>()
  const cpuS = new Map<TargetKey, number>()
  for (let round = 0; round < windows; round++) {
    for (const t of roundOrder(targets, round)) {
      const cpu0 = await treeCpuSeconds(t.pid)
      const m0 = await machineReading()
      const { window, pooled } = await phase.measure(t, seconds, String(round + 1))
      const w: LatencyWindow = { ...window, ...machineShares(m0, await machineReading()) }
      cpuS.set(t.key, (cpuS.get(t.key) ?? 0) + (await treeCpuSeconds(t.pid)) - cpu0)
      ws.set(t.key, [...(ws.get(t.key) ?? []), w])
      parts.set(t.key, [...(parts.get(t.key) ?? []), pooled])
      out(`  window ${round + 1}/${windows} ${t.label}: ${windowText(w)}`)
    }
  }
  const results = new Map<TargetKey, WindowedLatency>()
  for (const t of targets) {
    const s = summariseWindows(ws.get(t.key) ?? [], await phase.pooled(t, parts.get(t.key) ?? []))
    results.set(t.key, s)
    out(`${what} ${t.label}: ${summaryText(s)}`)
  }
  return { results, cpuS }
}

/** Thousands of slow streams through a fresh 1-worker data plane in front of a slow engine. */
async function manyStreams(
  dir: string,
  procs: Proc[],
  prof?: { readonly gateway: string; readonly engine: string },
): Promise<SlowStreamsResult> {
  out(`${STREAMS} slow streams through ours…`)
  const slowConfig = await configFile(
    dir,
    'slow.yaml',
    singleEngineManifests(MODEL, SLOW_SIM_HOST, SLOW_SIM_PORT),
  )
  const slowSim = await spawnCli(
    [
      'sim',
      '--count',
      '1',
      '--host-base',
      SLOW_SIM_HOST,
      '--port',
      String(SLOW_SIM_PORT),
      '--model',
      MODEL,
      '--max-num-seqs',
      String(STREAMS + 1000),
      // Every stream reserves prompt + max_tokens of KV; room for all, so the engine never queues.
      '--block-size',
      '256',
      '--num-gpu-blocks',
      String((STREAMS + 1000) * Math.ceil((SLOW_MAX_TOKENS + 256) / 256)),
    ],
    /127\.0\.0\.3/,
    prof !== undefined ? ['--cpu-prof', `--cpu-prof-dir=${prof.engine}`] : [],
  )
  procs.push(slowSim)
  const gw = await startGateway(
    slowConfig,
    SLOW_GW_PORT,
    1,
    ['--upstream-connections', String(STREAMS + 1000)],
    prof !== undefined ? ['--cpu-prof', `--cpu-prof-dir=${prof.gateway}`] : [],
  )
  procs.push(gw)
  return slowStreams({
    origin: `http://127.0.0.1:${SLOW_GW_PORT}`,
    pid: gw.child.pid ?? 0,
    body: chat(true, SLOW_MAX_TOKENS),
    count: STREAMS,
    holdMs: HOLD_SECONDS * 1000,
    log: out,
  })
}

interface ProfileNode {
  id: number
  callFrame: { functionName: string; url: string; lineNumber: number }
  hitCount?: number
}

/**
 * Self time by function from the gateway's V8 CPU profiles (the main thread and the module-loader
 * thread), as a share of busy time: the profile spans the whole run, most of it idle while other
 * targets are measured.
 */
async function profileSummary(profDir: string, what = 'Gateway'): Promise<string> {
  const files = (await readdir(profDir)).filter((f) => f.endsWith('.cpuprofile'))
  const totals = new Map<string, number>()
  let all = 0
  let idle = 0
  for (const f of files) {
    const prof = JSON.parse(await readFile(join(profDir, f), 'utf8')) as { nodes: ProfileNode[] }
    for (const n of prof.nodes) {
      const hits = n.hitCount ?? 0
      all += hits
      if (n.callFrame.functionName === '(idle)') {
        idle += hits
        continue
      }
      const url = n.callFrame.url
        .replace(/^.*node_modules\//, '')
        .replace(/^file:\/\/.*\/main\//, '')
      const key = `${n.callFrame.functionName || '(anonymous)'} ${url}:${n.callFrame.lineNumber + 1}`
      totals.set(key, (totals.get(key) ?? 0) + hits)
    }
  }
  const busy = all - idle
  const top = [...totals.entries()].sort((a, b) => b[1] - a[1]).slice(0, 25)
  return `${what} CPU profile in ${profDir} (${files.length} file(s); ${fmtPct(idle, all)} idle over the run), top self time as a share of busy time:\n${top.map(([k, v]) => `  ${fmtPct(v, busy).padStart(6)}  ${k}`).join('\n')}`
}

function fmtPct(part: number, whole: number): string {
  return whole > 0 ? `${((part / whole) * 100).toFixed(1)}%` : 'n/a'
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`)
  process.exitCode = 1
})
