// `npx tsx hack/bench/proxy-cost.ts`: what one proxied request costs our data plane (the esbuild bundle,
// one worker, in front of `infer-gateway sim --zero-latency`), measured from inside the process so
// that a busy shared machine disturbs it little: CPU µs, garbage collections and event-loop delay
// per window (proxy-cost-probe.ts), bytes allocated per request and the top allocating functions
// (`--heap`: V8's sampling heap profiler, a window of its own since sampling costs CPU), and
// system calls per request (`--strace`: `strace -c -f` attached for a window of its own; slows
// the process, so only the counts mean anything). Non-stream requests come from vegeta at a fixed
// rate, streams from load.ts. This is the development metric of issue 11; `bench:proxy` remains
// the comparison with the peers.
//
//   npx tsx hack/bench/proxy-cost.ts --seconds 10 --heap --strace
//   npx tsx hack/bench/proxy-cost.ts --node-flags= \
//     --compare-node-flags='--max-semi-space-size=64 --min-semi-space-size=64'   # young gen
//   npx tsx hack/bench/proxy-cost.ts --compare-node-arg=--max-semi-space-size=64 \
//     --compare-node-arg=--min-semi-space-size=64 --mode nonstream
//   npx tsx hack/bench/proxy-cost.ts --bundle /tmp/before/dataplane.mjs --compare dist/dataplane.mjs \
//     --rounds 4 --seconds 5 --heap
//   npx tsx hack/bench/proxy-cost.ts --floor --rounds 3 --seconds 5 --heap   # ours against the floor
//   npx tsx hack/bench/proxy-cost.ts --floor --mode stream --cpu-prof /tmp/prof   # where it goes
//   npx tsx hack/bench/proxy-cost.ts --floor --floor-client undici --floor-client raw \
//     --floor-client http --floor-client none --peers --rounds 2 --seconds 5   # clients, peers
//   npx tsx hack/bench/proxy-cost.ts --floor-client none --floor-client raw --floor-server node \
//     --floor-server raw --rounds 3 --seconds 5 --heap   # node:http's server against a raw one
import { type ChildProcess, spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { copyFile, mkdir, mkdtemp, readFile, rm, unlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { positiveArg } from './cli-args.js'
import { fixedRate } from './load.js'
import { ensurePeer, PEERS, type PeerName, startPeer } from './peers.js'
import { type Proc, startZeroLatencySim } from './procs.js'
import {
  benchChatBody,
  benchGatewayArgs,
  benchGatewayNodeArgs,
  bundleDataplane,
  spawnBundle,
} from './proxy-bundle.js'
import { PROBE_SOURCE, type ProbeWindow, straceCounts } from './proxy-cost-probe.js'
import { bundleSourceMap, profileLines, summarizeProfile } from './proxy-cost-profile.js'
import { treeCpuSeconds } from './proxy-cpu.js'
import {
  FLOOR_CLIENTS,
  FLOOR_SERVERS,
  type FloorClient,
  type FloorServer,
  floorBundle,
  RAW_SERVER_CLIENTS,
} from './proxy-floor.js'
import { attack, ensureVegeta, failures, report } from './proxy-vegeta.js'
import { singleEngineManifests } from './routing-config.js'

const { values: opts } = parseArgs({
  options: {
    mode: { type: 'string', default: 'both' },
    rate: { type: 'string', default: '500' },
    'stream-rate': { type: 'string', default: '200' },
    seconds: { type: 'string', default: '10' },
    heap: { type: 'boolean', default: false },
    strace: { type: 'boolean', default: false },
    /**
     * Node flags (space-separated) of every data plane (and floor) measured: default the
     * data-plane Deployment's (cdk8s/dataplane-node.ts), '' for Node's defaults.
     */
    'node-flags': { type: 'string' },
    /** Node flags (space-separated) of the second data plane (default: as --node-flags). */
    'compare-node-flags': { type: 'string' },
    /**
     * Extra Node options for the data plane (repeatable; after --node-flags, so they win), e.g.
     * --node-arg=--max-semi-space-size=64.
     */
    'node-arg': { type: 'string', multiple: true, default: [] },
    /** Extra data plane options (repeatable). */
    'gateway-arg': { type: 'string', multiple: true, default: [] },
    /** A data plane bundle already built (its line numbers stay readable after the run). */
    bundle: { type: 'string' },
    /** A second bundle measured against the first in alternating windows. */
    compare: { type: 'string' },
    /** Node options of the second data plane (repeatable; with no --compare: the same bundle). */
    'compare-node-arg': { type: 'string', multiple: true, default: [] },
    /**
     * Data plane options of the second data plane only (repeatable; with no --compare: the same
     * bundle), e.g. --gateway-arg=--engine-client=undici --compare-gateway-arg=--engine-client=raw.
     */
    'compare-gateway-arg': { type: 'string', multiple: true, default: [] },
    rounds: { type: 'string', default: '1' },
    /** Rows of the allocation table. */
    top: { type: 'string', default: '25' },
    /**
     * Also measure the floor (proxy-floor.ts: the smallest honest Node proxy, label F) in the
     * same alternation: what of a request's cost is Node's and undici's, what is ours.
     */
    floor: { type: 'boolean', default: false },
    /**
     * The floor's upstream clients (repeatable; default undici): undici = F, raw (node:net and
     * dataplane/proxy/engine-client.ts) = R, raw-readable (its body as a Node Readable) = Q, http (node:http's client) = H, none (the engine's answers replayed
     * from memory: the inbound half alone) = N, each a target of its own.
     */
    'floor-client': { type: 'string', multiple: true, default: [] },
    /**
     * The floors' inbound servers (repeatable; default node): node (node:http) or raw
     * (raw-inbound.ts on node:net, with the raw and none clients only; labels Rx, Nx). Every
     * client asked runs on every server asked.
     */
    'floor-server': { type: 'string', multiple: true, default: [] },
    /**
     * Also sglang-router and vllm-router (peers.ts, cached venvs) in the same alternation. They
     * have no probe: their CPU is the process tree's from /proc around the window (as bench:proxy
     * reads it), printed as "CPU (procfs)" for every target so the columns compare.
     */
    peers: { type: 'boolean', default: false },
    /**
     * A directory: one more window per target with V8's CPU profiler running in it (the window
     * alone), the .cpuprofile kept there and summarised as µs/request by file and function.
     */
    'cpu-prof': { type: 'string' },
  },
})

const RATE = positiveArg('rate', opts.rate)
const STREAM_RATE = positiveArg('stream-rate', opts['stream-rate'])
const SECONDS = positiveArg('seconds', opts.seconds)
const ROUNDS = positiveArg('rounds', opts.rounds)
const MODES = opts.mode === 'both' ? ['nonstream', 'stream'] : [opts.mode]
const FLOOR_LABEL: Readonly<Record<FloorClient, string>> = {
  undici: 'F',
  raw: 'R',
  'raw-readable': 'Q',
  http: 'H',
  none: 'N',
}
const FLOOR_CLIENTS_ASKED: readonly FloorClient[] = (() => {
  const asked = opts['floor-client'] ?? []
  if (asked.length === 0)
    return opts.floor || (opts['floor-server'] ?? []).length > 0 ? ['undici'] : []
  return asked.map((c) => {
    const f = FLOOR_CLIENTS.find((x) => x === c)
    if (f === undefined)
      throw new Error(`--floor-client must be one of ${FLOOR_CLIENTS.join(', ')}, got ${c}`)
    return f
  })
})()
const FLOOR_SERVERS_ASKED: readonly FloorServer[] = (opts['floor-server'] ?? ['node']).map((v) => {
  const f = FLOOR_SERVERS.find((x) => x === v)
  if (f === undefined)
    throw new Error(`--floor-server must be one of ${FLOOR_SERVERS.join(', ')}, got ${v}`)
  return f
})
/** Every floor measured: each client asked on each server asked. */
const FLOORS: readonly { client: FloorClient; server: FloorServer; label: string }[] = (
  FLOOR_SERVERS_ASKED.length > 0 ? FLOOR_SERVERS_ASKED : (['node'] as const)
).flatMap((server) =>
  FLOOR_CLIENTS_ASKED.map((client) => {
    if (server === 'raw' && !RAW_SERVER_CLIENTS.includes(client))
      throw new Error(
        `--floor-server raw runs with --floor-client ${RAW_SERVER_CLIENTS.join(' or ')}, not ${client}`,
      )
    return {
      client,
      server,
      label: server === 'raw' ? `${FLOOR_LABEL[client]}x` : FLOOR_LABEL[client],
    }
  }),
)
for (const m of MODES)
  if (m !== 'nonstream' && m !== 'stream')
    throw new Error(`--mode must be nonstream, stream or both, got ${m}`)

// Own addresses and ports: bench:proxy may run at the same time on this machine.
const SIM_HOST = '127.0.0.6'
const SIM_PORT = 18130
const GW_PORT = 18131
const MODEL = 'bench-model'
const out = (line: string) => process.stdout.write(`${line}\n`)

const chat = (stream: boolean, maxTokens?: number) => benchChatBody(MODEL, stream, maxTokens)

const CONFIG = singleEngineManifests(MODEL, SIM_HOST, SIM_PORT)

async function until(what: string, ok: () => boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = performance.now() + timeoutMs
  while (!ok()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

interface Totals {
  requests: number
  failed: number
  cpuUserUs: number
  cpuSystemUs: number
  gcMinor: number
  gcMajor: number
  gcPauseMs: number
  gcMaxPauseMs: number
  eldP99Ms: number[]
  latP50Ms: number[]
  latP99Ms: number[]
  allocatedBytes: number
  allocRequests: number
  top: Map<string, number>
  /** The process tree's CPU seconds from /proc over the same windows (peers have nothing else). */
  procCpuS: number
}

/** One data plane under test: a bundle with its Node options, on its own port. */
interface Target {
  readonly label: string
  readonly port: number
  readonly probeOut: string
  readonly pid: number
  readonly totals: Totals
  readonly bundle: string
  /** false: a peer router (no in-process probe). */
  readonly probe: boolean
}

const newTotals = (): Totals => ({
  requests: 0,
  failed: 0,
  cpuUserUs: 0,
  cpuSystemUs: 0,
  gcMinor: 0,
  gcMajor: 0,
  gcPauseMs: 0,
  gcMaxPauseMs: 0,
  eldP99Ms: [],
  latP50Ms: [],
  latP99Ms: [],
  allocatedBytes: 0,
  allocRequests: 0,
  top: new Map(),
  procCpuS: 0,
})

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)] ?? Number.NaN
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'igw-proxy-cost-'))
  const procs: Proc[] = []
  try {
    const vegeta = await ensureVegeta()
    if (!vegeta.ok) throw new Error(`vegeta is required: ${vegeta.reason}`)
    if (opts.bundle === undefined) out('bundling the data plane…')
    const bundle = opts.bundle ?? (await bundleDataplane(join(dir, 'dist')))
    const probe = join(dir, 'probe.mjs')
    await writeFile(probe, PROBE_SOURCE)
    // The config in a directory of its own: the data plane watches its config's directory, and
    // vegeta writes its results into `dir` for the whole window (an fs event per write).
    const config = join(dir, 'config', 'gateway.yaml')
    await mkdir(join(dir, 'config'))
    await writeFile(config, CONFIG)
    const bodyFile = join(dir, 'body.json')
    await writeFile(bodyFile, chat(false))
    procs.push(await startZeroLatencySim(SIM_HOST, SIM_PORT, MODEL))
    // A: the bundle with --node-arg; B (--compare): another bundle or other Node options, measured
    // in alternating windows so that drift on a shared machine hits both alike.
    // F (--floor): the floor proxy, with the same probe and Node options as A.
    const nodeFlags = benchGatewayNodeArgs(opts['node-flags'])
    const variants: {
      label: string
      bundle: string
      nodeFlags: readonly string[]
      nodeArgs: readonly string[]
      gatewayArgs?: readonly string[]
      floor?: FloorClient
      server?: FloorServer
    }[] = [{ label: 'A', bundle, nodeFlags, nodeArgs: opts['node-arg'] ?? [] }]
    const compareGatewayArgs = opts['compare-gateway-arg'] ?? []
    if (
      opts.compare !== undefined ||
      (opts['compare-node-arg'] ?? []).length > 0 ||
      opts['compare-node-flags'] !== undefined ||
      compareGatewayArgs.length > 0
    )
      variants.push({
        label: 'B',
        bundle: opts.compare ?? bundle,
        nodeFlags:
          opts['compare-node-flags'] !== undefined
            ? benchGatewayNodeArgs(opts['compare-node-flags'])
            : nodeFlags,
        nodeArgs: opts['compare-node-arg'] ?? [],
        gatewayArgs: compareGatewayArgs,
      })
    if (FLOORS.length > 0) {
      const fb = await floorBundle(join(dir, 'floor'))
      for (const f of FLOORS)
        variants.push({
          label: f.label,
          bundle: fb,
          nodeFlags,
          nodeArgs: opts['node-arg'] ?? [],
          floor: f.client,
          server: f.server,
        })
    }
    const targets: Target[] = []
    for (const [i, v] of variants.entries()) {
      const probeOut = join(dir, `probe-${v.label}.json`)
      const port = GW_PORT + i
      const gw = await spawnBundle(
        v.bundle,
        v.floor !== undefined
          ? [
              '--port',
              String(port),
              '--upstream',
              `http://${SIM_HOST}:${SIM_PORT}`,
              '--client',
              v.floor,
              '--server',
              v.server ?? 'node',
            ]
          : benchGatewayArgs(config, port, [
              '--workers',
              '1',
              ...(opts['gateway-arg'] ?? []),
              ...(v.gatewayArgs ?? []),
            ]),
        v.floor !== undefined ? /floor listening/ : /data plane listening/,
        [`--import=${probe}`, ...v.nodeFlags, ...v.nodeArgs],
        undefined,
        { IGW_COST_OUT: probeOut },
      )
      procs.push(gw)
      const pid = gw.child.pid ?? 0
      out(
        `${v.label}: ${v.bundle}${v.floor !== undefined ? ` --client ${v.floor} --server ${v.server ?? 'node'}` : ''} ${[...v.nodeFlags, ...v.nodeArgs].join(' ')} ${(v.gatewayArgs ?? []).join(' ')} (pid ${pid}, port ${port})`,
      )
      targets.push({
        label: v.label,
        port,
        probeOut,
        pid,
        totals: newTotals(),
        bundle: v.bundle,
        probe: true,
      })
    }
    if (opts.peers) {
      const PEER_LABEL: Readonly<Record<PeerName, string>> = { sglang: 'S', vllm: 'V' }
      for (const [i, name] of (['sglang', 'vllm'] as const).entries()) {
        const install = await ensurePeer(name)
        if (!install.ok) {
          out(`${PEER_LABEL[name]}: ${PEERS[name].pkg} skipped: ${install.reason}`)
          continue
        }
        const port = GW_PORT + 10 + i
        const p = await startPeer({
          install,
          name,
          host: '127.0.0.1',
          port,
          metricsPort: GW_PORT + 20 + i,
          workerUrls: [`http://${SIM_HOST}:${SIM_PORT}`],
        })
        procs.push(p)
        const pid = p.child.pid ?? 0
        out(
          `${PEER_LABEL[name]}: ${PEERS[name].pkg} ${PEERS[name].version} (pid ${pid}, port ${port})`,
        )
        targets.push({
          label: PEER_LABEL[name],
          port,
          probeOut: '',
          pid,
          totals: newTotals(),
          bundle: '',
          probe: false,
        })
      }
    }

    let round = 0
    /** Runs the mode's load for `seconds` against one target. */
    const load = async (
      t: Target,
      mode: string,
      seconds: number,
    ): Promise<{ requests: number; failed: number; p50Ms: number; p99Ms: number }> => {
      const origin = `http://127.0.0.1:${t.port}`
      if (mode === 'nonstream') {
        const file = join(dir, `v-${round++}.bin`)
        await attack(vegeta.bin, {
          url: `${origin}/v1/chat/completions`,
          bodyFile,
          rate: RATE,
          seconds,
          output: file,
        })
        const r = await report(vegeta.bin, [file])
        await unlink(file).catch(() => {})
        return { requests: r.requests, failed: failures(r), p50Ms: r.p50Ms, p99Ms: r.p99Ms }
      }
      const r = await fixedRate(
        { origin, path: '/v1/chat/completions', body: chat(true), firstByte: true },
        STREAM_RATE,
        seconds * 1000,
      )
      const fb = r.firstByte ?? []
      return {
        requests: r.sent,
        failed: r.errors,
        p50Ms: fb[Math.floor(fb.length * 0.5)] ?? Number.NaN,
        p99Ms: fb[Math.floor(fb.length * 0.99)] ?? Number.NaN,
      }
    }
    const window = async (t: Target, mode: string, heap: boolean, cpu = false): Promise<void> => {
      if (!t.probe) {
        if (heap || cpu) return
        const before = await treeCpuSeconds(t.pid)
        const l = await load(t, mode, SECONDS)
        t.totals.procCpuS += (await treeCpuSeconds(t.pid)) - before
        t.totals.requests += l.requests
        t.totals.failed += l.failed
        t.totals.latP50Ms.push(l.p50Ms)
        t.totals.latP99Ms.push(l.p99Ms)
        return
      }
      const f = t.probeOut
      for (const x of [f, `${f}.opened`, `${f}.heap`, `${f}.cpu`, `${f}.cpuprofile`])
        await unlink(x).catch(() => {})
      if (heap) await writeFile(`${f}.heap`, '')
      if (cpu) await writeFile(`${f}.cpu`, '')
      process.kill(t.pid, 'SIGUSR2')
      await until('the probe to open', () => existsSync(`${f}.opened`))
      const before = await treeCpuSeconds(t.pid)
      const l = await load(t, mode, SECONDS)
      const procCpuS = (await treeCpuSeconds(t.pid)) - before
      process.kill(t.pid, 'SIGUSR2')
      await until('the probe to close', () => existsSync(f))
      const p = JSON.parse(await readFile(f, 'utf8')) as ProbeWindow
      const s = t.totals
      if (cpu && opts['cpu-prof'] !== undefined) {
        const kept = join(opts['cpu-prof'], `${t.label}-${mode}.cpuprofile`)
        await mkdir(opts['cpu-prof'], { recursive: true })
        await copyFile(`${f}.cpuprofile`, kept)
        const summary = summarizeProfile(
          JSON.parse(await readFile(kept, 'utf8')),
          l.requests,
          await bundleSourceMap(t.bundle),
        )
        out(`${t.label}: CPU profile ${kept}`)
        for (const line of profileLines(summary, Number(opts.top))) out(`${t.label}: ${line}`)
        return
      }
      if (heap) {
        s.allocatedBytes += p.allocatedBytes ?? 0
        s.allocRequests += l.requests
        for (const [k, v] of p.topAllocations ?? []) s.top.set(k, (s.top.get(k) ?? 0) + v)
        return
      }
      s.requests += l.requests
      s.failed += l.failed
      s.procCpuS += procCpuS
      s.cpuUserUs += p.cpuUserUs
      s.cpuSystemUs += p.cpuSystemUs
      s.gcMinor += p.gc.minor
      s.gcMajor += p.gc.major
      s.gcPauseMs += p.gc.pauseMs
      s.gcMaxPauseMs = Math.max(s.gcMaxPauseMs, p.gc.maxPauseMs)
      s.eldP99Ms.push(p.eventLoopDelay.p99Ms)
      s.latP50Ms.push(l.p50Ms)
      s.latP99Ms.push(l.p99Ms)
    }

    for (const mode of MODES) {
      out(
        `\n== ${mode} (${mode === 'stream' ? STREAM_RATE : RATE} req/s, ${ROUNDS} round(s) of ${SECONDS} s windows per target)`,
      )
      for (const t of targets) {
        Object.assign(t.totals, newTotals())
        await load(t, mode, 2)
      }
      for (let r = 0; r < ROUNDS; r++) for (const t of targets) await window(t, mode, false)
      if (opts.heap)
        for (let r = 0; r < ROUNDS; r++) for (const t of targets) await window(t, mode, true)
      if (opts['cpu-prof'] !== undefined)
        for (const t of targets) await window(t, mode, false, true)
      for (const t of targets) {
        const s = t.totals
        const n = s.requests
        out(
          `${t.label}: requests ${n} (${s.failed} failed), ${mode === 'stream' ? 'TTFB' : 'latency'} median of windows p50 ${median(s.latP50Ms).toFixed(3)} p99 ${median(s.latP99Ms).toFixed(3)} ms`,
        )
        const proc = `CPU (procfs) ${((s.procCpuS * 1e6) / n).toFixed(0)} µs/request`
        if (!t.probe) {
          out(`${t.label}: ${proc}`)
          continue
        }
        out(
          `${t.label}: CPU ${((s.cpuUserUs + s.cpuSystemUs) / n).toFixed(0)} µs/request (user ${(s.cpuUserUs / n).toFixed(0)}, system ${(s.cpuSystemUs / n).toFixed(0)}); ${proc}`,
        )
        out(
          `${t.label}: GC ${s.gcMinor} minor, ${s.gcMajor} major, paused ${((s.gcPauseMs * 1000) / n).toFixed(1)} µs/request, longest ${s.gcMaxPauseMs.toFixed(2)} ms; event-loop delay p99 (median of windows) ${median(s.eldP99Ms).toFixed(2)} ms`,
        )
        if (opts.heap) {
          const m = s.allocRequests
          out(
            `${t.label}: allocated ${(s.allocatedBytes / m / 1024).toFixed(1)} KiB/request; top (KiB/request):`,
          )
          for (const [k, v] of [...s.top.entries()]
            .sort((a, b) => b[1] - a[1])
            .slice(0, Number(opts.top)))
            out(`  ${(v / m / 1024).toFixed(2).padStart(7)}  ${k}`)
        }
      }
      const floor = targets.find((t) => t.label === 'F')
      if (floor !== undefined)
        for (const t of targets) {
          if (t === floor || !t.probe) continue
          const cpu = (x: Totals): number => (x.cpuUserUs + x.cpuSystemUs) / x.requests
          const kib = (x: Totals): number => x.allocatedBytes / x.allocRequests / 1024
          out(
            `${t.label} − F (over the undici floor): CPU ${(cpu(t.totals) - cpu(floor.totals)).toFixed(0)} µs/request (${(cpu(t.totals) / cpu(floor.totals)).toFixed(2)}×)${opts.heap ? `, allocated ${(kib(t.totals) - kib(floor.totals)).toFixed(1)} KiB/request` : ''}`,
          )
        }
      // Every target against each peer on the one measure they share: /proc CPU per request.
      for (const peer of targets.filter((t) => !t.probe)) {
        const us = (x: Totals): number => (x.procCpuS * 1e6) / x.requests
        out(
          `÷ ${peer.label} (procfs CPU per request): ${targets
            .filter((t) => t !== peer)
            .map((t) => `${t.label} ${(us(t.totals) / us(peer.totals)).toFixed(2)}×`)
            .join(', ')}`,
        )
      }
      if (opts.strace) {
        for (const t of targets) {
          if (!t.probe) continue
          const file = join(dir, `strace-${mode}-${t.label}.txt`)
          const st: ChildProcess = spawn('strace', ['-c', '-f', '-p', String(t.pid), '-o', file], {
            stdio: 'ignore',
          })
          await new Promise((r) => setTimeout(r, 1000))
          const l = await load(t, mode, SECONDS)
          const exited = new Promise((r) => st.once('exit', r))
          st.kill('SIGINT')
          await exited
          const counts = straceCounts(await readFile(file, 'utf8'))
          const total = [...counts.values()].reduce((a, b) => a + b, 0)
          out(`${t.label}: syscalls ${(total / l.requests).toFixed(1)} per request (under strace):`)
          for (const [k, v] of [...counts.entries()].sort((a, b) => b[1] - a[1]).slice(0, 12))
            out(`  ${(v / l.requests).toFixed(2).padStart(6)}  ${k}`)
        }
      }
    }
  } finally {
    while (procs.length > 0) await procs.pop()?.stop()
    await rm(dir, { recursive: true, force: true })
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`)
  process.exitCode = 1
})
