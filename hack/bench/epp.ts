// `npm run bench:epp`: the Endpoint Picker's decision latency as Envoy sees it — one ext_proc
// stream per request on loopback, from the request headers leaving the client to the destination
// and the whole (echoed) body being back: request headers + an ~8k-token chat body (32 KiB, sent
// in 16 KiB chunks as Envoy forwards them), the EPP parsing it and running the scheduler (default
// profile, engine metrics scraped from simulated pods, prefix index). Each stream then gets a
// 200 response with usage so in-flight load does not pile up. The client is the Go program on
// go-control-plane's types (test/epp-client); the EPP runs as `infer-gateway epp` in its own
// process. Target (issue 13): p99 ≤ 1 ms.
// A/B of where the EPP scrapes: `--scrape inline,thread` starts one EPP per value, all up at once,
// measured in turn (`--rounds N`); `--bundle` runs them from the esbuild bundle as the image does.
// Per row also the main thread's own CPU and run-queue wait per stream (the thread that decides),
// and GC pauses of the main isolate only (a worker thread's pauses do not stop decisions).

import { execFile, spawn } from 'node:child_process'
import { mkdtemp, readFile, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs, promisify } from 'node:util'
import { EPP_NODE_OPTIONS } from '../../cdk8s/epp.js'
import type { PhaseSummary } from '../../dataplane/epp/phases.js'
import { manifests } from '../../test/helpers/config.js'
import { type SimHandle, startSimulator } from '../sim/index.js'
import { type CostRow, eppCost, eppPhases } from './epp-cost.js'
import { GC_MAIN_FIRST_ARGS, summariseGc, watchGc } from './gc-trace.js'
import { statCpuTicks } from './proc-cpu.js'
import { type Proc, spawnCli, spawnScript } from './procs.js'
import { bundleDataplane, spawnBundle } from './proxy-bundle.js'
import { fmt, table, writeSection } from './report.js'
import { sampleThreads } from './thread-cpu.js'

const run = promisify(execFile)
const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const FLOOR_SCRIPT = fileURLToPath(new URL('./epp-floor.ts', import.meta.url))

const { values: opts } = parseArgs({
  options: {
    iterations: { type: 'string', default: '5000' },
    warmup: { type: 'string', default: '500' },
    pods: { type: 'string', default: '8' },
    'prompt-tokens': { type: 'string', default: '8192' },
    concurrency: { type: 'string', default: '1,8' },
    /** Body modes of the EPP rows (`streamed` = FULL_DUPLEX_STREAMED, `buffered`). */
    modes: { type: 'string', default: 'streamed,buffered' },
    /** Skip the two no-decision servers (quicker A/B runs of the EPP alone). */
    'no-floors': { type: 'boolean', default: false },
    /** Only the floors (no EPP rows): transport A/B runs. */
    'only-floors': { type: 'boolean', default: false },
    /**
     * Transports of the Node no-decision server (epp-floor.ts `--transport`): `grpc-js`, `http2`
     * (node:http2 directly, hack/bench/epp-h2-grpc.ts). Several: all up at once, the client
     * alternating its streams between them in each run (`--rounds` runs, order swapped each round).
     */
    'floor-transports': { type: 'string', default: 'grpc-js' },
    /** Streams per round of the in-process cost table (epp-cost.ts); 0 = no table. */
    'cost-streams': { type: 'string', default: '2000' },
    /**
     * Node flags of the EPP process, space-separated: by default what the install manifests set
     * (NODE_OPTIONS of the EPP container); `--epp-node-args=` for Node's defaults.
     */
    'epp-node-args': { type: 'string', default: EPP_NODE_OPTIONS },
    /**
     * Where each EPP scrapes its pods (its `--scrape`): `thread` (the default), `inline` (on the
     * decision's thread), `off`. A comma list starts one EPP per value, all running at once (each
     * scraping), measured in turn: an A/B on the same machine at the same time.
     */
    scrape: { type: 'string', default: 'thread' },
    /**
     * Run the EPP as the image does, from the esbuild bundle (built into a temporary directory
     * first), not from the sources through tsx (proxy-bundle.ts says what differs).
     */
    bundle: { type: 'boolean', default: false },
    /** Repeat the EPP rows this often, alternating the EPPs each round. */
    rounds: { type: 'string', default: '1' },
    'no-write': { type: 'boolean', default: false },
    /** Write a V8 CPU profile of the EPP process into this directory (where does the time go?). */
    'cpu-prof': { type: 'string' },
    /**
     * Also report when each request-phase message left the client and each answer came back,
     * from the request headers' send (p50/p90 per message, every row): where a decision's time goes.
     */
    timeline: { type: 'boolean', default: false },
    /**
     * Run the EPP with `--debug-phases` and report, per EPP row, where its decisions' time went
     * step by step in the running process (GET /debug/phases, dataplane/epp/phases.ts).
     */
    phases: { type: 'boolean', default: false },
    /**
     * A/B against another build: the path of its CLI bundle (`infer-gateway.mjs`, e.g. `npm run
     * build -- --no-sea` in a git worktree of the baseline commit, then `<worktree>/dist/
     * infer-gateway.mjs`). Each EPP row then runs one EPP from it and one from this tree, the
     * client alternating its streams between the two (same moments of the machine), their order
     * swapped every round; implies --bundle.
     */
    baseline: { type: 'string' },
  },
})

interface BenchOut {
  iterations: number
  errors: number
  concurrency: number
  mode: string
  /** The EPP's `--scrape` (EPP rows only). */
  scrape?: string
  /** Floor rows with `--floor-transports`: the no-decision server's transport. */
  transport?: string
  /** With --baseline: which build served the row (`baseline` or `this tree`), and the round. */
  variant?: string
  round?: number
  bodyBytes: number
  p50Us: number
  p90Us: number
  p99Us: number
  maxUs: number
  perSecond: number
  firstError?: string
  /** CPU time of the EPP process per decision (user + system, whole stream), µs. */
  eppCpuUs?: number
  /**
   * Of which the thread that decides (the process's main thread), µs per stream, from schedstat;
   * and how long it waited for a core per stream (ready to run, another thread or process on it).
   */
  mainCpuUs?: number
  mainWaitUs?: number
  /**
   * Share of decisions (warm-up included) the EPP itself took more than 1 ms over, headers in →
   * answer out, from its own histogram: what the EPP spends, apart from the transport and the
   * client.
   */
  eppOver1ms?: number
  /** The EPP's GC pauses (its --trace-gc) during the run, per 1,000 streams (warm-up included). */
  gcPer1k?: number
  gcMedianMs?: number
  gcMaxMs?: number
  /** With --timeline: the client's offsets per message (test/epp-client bench). */
  timeline?: { message: string; p50Us: number; p90Us: number; p99Us: number }[]
  /** With --phases: the EPP's own step timings over the run (warm-up included). */
  phases?: PhaseSummary
}

/** The EPP's /debug/phases (`--debug-phases`); `reset` starts it over after reading. */
async function debugPhases(port: number, reset: boolean): Promise<PhaseSummary> {
  const r = await fetch(`http://127.0.0.1:${port}/debug/phases${reset ? '?reset=1' : ''}`)
  if (!r.ok) throw new Error(`/debug/phases: HTTP ${r.status}`)
  return (await r.json()) as PhaseSummary
}

/** `le` → cumulative count of infer_gateway_epp_decision_duration_seconds. */
async function decisionBuckets(port: number): Promise<Map<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()
  const out = new Map<string, number>()
  for (const m of text.matchAll(
    /^infer_gateway_epp_decision_duration_seconds_bucket\{le="([^"]+)"\} (\d+)/gm,
  ))
    out.set(m[1] as string, Number(m[2]))
  return out
}

function overOneMs(a: Map<string, number>, b: Map<string, number>): number | undefined {
  const all = (b.get('+Inf') ?? 0) - (a.get('+Inf') ?? 0)
  if (all === 0) return undefined
  return (all - ((b.get('0.001') ?? 0) - (a.get('0.001') ?? 0))) / all
}

/** User + system CPU seconds of a process so far (Linux /proc; undefined elsewhere). */
async function cpuSeconds(pid: number | undefined): Promise<number | undefined> {
  if (pid === undefined) return undefined
  try {
    // Clock ticks, 100 per second (proc-cpu.ts).
    return statCpuTicks(await readFile(`/proc/${pid}/stat`, 'utf8')) / 100
  } catch {
    return undefined
  }
}

async function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, host, () => {
      const a = s.address()
      const port = typeof a === 'object' && a !== null ? a.port : 0
      s.close(() => resolve(port))
    })
  })
}

async function main(): Promise<void> {
  const built = await run('bash', [join(ROOT, 'test/epp-client/build.sh')], { timeout: 900_000 })
  const client = built.stdout.trim().split('\n').pop() as string
  const sims: SimHandle[] = []
  for (let i = 0; i < Number(opts.pods); i++) {
    sims.push(
      await startSimulator({
        name: `bench-epp-${i}`,
        host: `127.0.0.${120 + i}`,
        port: 0,
        model: 'bench-model',
        metricsFormat: 'vllm',
        zeroLatency: true,
      }),
    )
  }
  const dir = tmpdir()
  const config = join(dir, `bench-epp-${process.pid}.yaml`)
  await writeFile(
    config,
    manifests(
      [
        {
          name: 'pool',
          endpoints: sims.map((s) => ({ name: s.name, address: s.host, port: s.port })),
        },
      ],
      [],
    ),
  )
  /** One EPP per scrape mode, all up at once (each scraping the same pods). */
  const epps: {
    scrape: string
    variant: string
    grpcPort: number
    metricsPort: number
    proc: Proc
    gc: ReturnType<typeof watchGc> | undefined
  }[] = []
  const stopAll = async (): Promise<void> => {
    for (const e of epps.splice(0)) await e.proc.stop()
    await Promise.all(sims.map((s) => s.close()))
  }
  const bundle =
    opts.bundle || opts.baseline !== undefined
      ? join(
          await bundleDataplane(await mkdtemp(join(tmpdir(), 'bench-epp-bundle-'))),
          '..',
          'infer-gateway.mjs',
        )
      : undefined
  const variants: { variant: string; bundle: string | undefined }[] = [
    ...(opts.baseline !== undefined ? [{ variant: 'baseline', bundle: opts.baseline }] : []),
    { variant: 'this tree', bundle },
  ]
  try {
    for (const scrape of opts['only-floors'] ? [] : opts.scrape.split(','))
      for (const { variant, bundle } of variants) {
        const grpcPort = await freePort('127.0.0.1')
        const metricsPort = await freePort('127.0.0.1')
        const spawnEpp = (args: string[], ready: RegExp, nodeArgs: string[]): Promise<Proc> =>
          bundle !== undefined
            ? spawnBundle(bundle, args, ready, nodeArgs)
            : spawnCli(args, ready, nodeArgs)
        const proc = await spawnEpp(
          [
            'epp',
            '--server',
            'default/pool',
            '--config',
            config,
            '--host',
            '127.0.0.1',
            '--grpc-port',
            String(grpcPort),
            '--metrics-port',
            String(metricsPort),
            '--scrape',
            scrape,
            ...(opts.phases ? ['--debug-phases'] : []),
          ],
          /"msg":"epp listening"/,
          [
            // Every pause is one line on stdout: counted per run below (cheap: a few lines a second).
            '--trace-gc',
            ...GC_MAIN_FIRST_ARGS,
            ...opts['epp-node-args'].split(' ').filter((a) => a !== ''),
            ...(opts['cpu-prof'] !== undefined
              ? ['--cpu-prof', '--cpu-prof-dir', opts['cpu-prof']]
              : []),
          ],
        )
        const gc = proc.child.stdout !== null ? watchGc(proc.child.stdout) : undefined
        epps.push({ scrape, variant, grpcPort, metricsPort, proc, gc })
      }
  } catch (e) {
    await stopAll()
    throw e
  }
  // Let the first scrapes land (the scheduler then sees every pod's engine metrics).
  await new Promise((r) => setTimeout(r, 1500))
  const words = 'the quarterly report shows revenue growth across every region and segment '
  const content = words.repeat(Math.ceil((Number(opts['prompt-tokens']) * 4) / words.length))
  const body = JSON.stringify({
    model: 'bench-model',
    messages: [
      { role: 'system', content: content.slice(0, Number(opts['prompt-tokens']) * 4) },
      { role: 'user', content: 'Summarise it.' },
    ],
    max_tokens: 16,
  })
  const rows: BenchOut[] = []
  /** One client run against `port`; the server's CPU per stream from `pid`. */
  interface Target {
    readonly port: number
    readonly pid: number | undefined
    /** The EPP's metrics port: its own decision histogram is read around the run. */
    readonly metricsPort?: number
    readonly gc?: ReturnType<typeof watchGc>
  }
  /** One client run over `targets` (streams alternating between them); one row per target. */
  const measure = async (
    targets: readonly Target[],
    mode: string,
    c: number,
  ): Promise<BenchOut[]> => {
    const file = join(dir, `bench-epp-${process.pid}-${mode}-${c}.json`)
    await writeFile(
      file,
      JSON.stringify({
        addr: `127.0.0.1:${targets[0]?.port}`,
        ...(targets.length > 1 ? { targets: targets.map((t) => `127.0.0.1:${t.port}`) } : {}),
        concurrency: c,
        iterations: Number(opts.iterations),
        warmup: Number(opts.warmup),
        timeline: opts.timeline,
        requests: [{ id: 'bench', mode, body, chunkBytes: 16 * 1024 }],
      }),
    )
    const before = await Promise.all(
      targets.map((t) =>
        t.metricsPort !== undefined ? decisionBuckets(t.metricsPort) : undefined,
      ),
    )
    for (const t of targets)
      if (opts.phases && t.metricsPort !== undefined) await debugPhases(t.metricsPort, true)
    for (const t of targets) t.gc?.take()
    const cpu0 = await Promise.all(targets.map((t) => cpuSeconds(t.pid)))
    // A Node server (the GC-watched ones) serves on its main thread; Go's spreads over threads.
    const nodePids = targets.flatMap((t) =>
      t.gc !== undefined && t.pid !== undefined ? [t.pid] : [],
    )
    const threads0 = nodePids.length > 0 ? await sampleThreads(nodePids) : []
    const { stdout } = await run(client, ['bench', file], { maxBuffer: 1 << 20 })
    const cpu1 = await Promise.all(targets.map((t) => cpuSeconds(t.pid)))
    const threads1 = nodePids.length > 0 ? await sampleThreads(nodePids) : []
    const all = JSON.parse(stdout) as BenchOut & { targets?: BenchOut[] }
    const outs = targets.length > 1 ? (all.targets ?? []) : [all]
    // Warm-up streams are in the CPU time too: divide by every stream the run made (each target
    // got its share of them).
    const streams = (Number(opts.iterations) + Number(opts.warmup)) / targets.length
    for (const [k, t] of targets.entries()) {
      const out = outs[k]
      if (out === undefined) throw new Error(`epp-client bench: no result for target ${k}`)
      const b = before[k]
      if (b !== undefined && t.metricsPort !== undefined) {
        const over = overOneMs(b, await decisionBuckets(t.metricsPort))
        if (over !== undefined) out.eppOver1ms = over
        if (opts.phases) out.phases = await debugPhases(t.metricsPort, true)
      }
      const c0 = cpu0[k]
      const c1 = cpu1[k]
      if (c0 !== undefined && c1 !== undefined) out.eppCpuUs = ((c1 - c0) * 1e6) / streams
      const main0 = threads0.find((x) => x.tid === t.pid)
      const main1 = threads1.find((x) => x.tid === t.pid)
      if (main0 !== undefined && main1 !== undefined) {
        out.mainCpuUs = (main1.runNs - main0.runNs) / 1000 / streams
        out.mainWaitUs = (main1.waitNs - main0.waitNs) / 1000 / streams
      }
      if (t.gc !== undefined) {
        const g = summariseGc(t.gc.take())
        out.gcPer1k = (g.pauses * 1000) / streams
        out.gcMedianMs = g.medianMs
        out.gcMaxMs = g.maxMs
      }
      const { phases: _phases, ...line } = out
      process.stderr.write(`${JSON.stringify(line)}\n`)
    }
    return outs
  }
  const eppTarget = (e: (typeof epps)[number]): Target => ({
    port: e.grpcPort,
    pid: e.proc.child.pid,
    metricsPort: e.metricsPort,
    ...(e.gc !== undefined ? { gc: e.gc } : {}),
  })
  try {
    for (let round = 0; round < (opts['only-floors'] ? 0 : Number(opts.rounds)); round++)
      for (const scrape of opts.scrape.split(',')) {
        // With --baseline the two builds share each run; which goes first swaps every round.
        const group = epps.filter((e) => e.scrape === scrape)
        if (round % 2 === 1) group.reverse()
        for (const mode of opts.modes.split(','))
          for (const c of opts.concurrency.split(',').map(Number)) {
            const outs = await measure(group.map(eppTarget), mode, c)
            for (const [k, e] of group.entries())
              rows.push({
                ...(outs[k] as BenchOut),
                scrape,
                ...(opts.baseline !== undefined ? { variant: e.variant, round } : {}),
              })
          }
      }
  } finally {
    await stopAll()
  }
  if (!opts['no-floors']) {
    // The same streams against a server that decides nothing (epp-floor.ts): the transport's share.
    // The same Node settings as the EPP (NODE_OPTIONS), so the two differ by what the EPP does.
    const floors: { transport: string; proc: Awaited<ReturnType<typeof spawnScript<number>>> }[] =
      []
    try {
      for (const transport of opts['floor-transports'].split(','))
        floors.push({
          transport,
          proc: await spawnScript<number>(FLOOR_SCRIPT, {
            EPP_FLOOR_TRACE_GC: '1',
            EPP_FLOOR_TRANSPORT: transport,
            NODE_OPTIONS: opts['epp-node-args'],
          }),
        })
      const targets = floors.map((f) => {
        const gc = f.proc.child.stdout !== null ? watchGc(f.proc.child.stdout) : undefined
        return {
          transport: f.transport,
          target: { port: f.proc.ready, pid: f.proc.child.pid, ...(gc ? { gc } : {}) },
        }
      })
      const floorRounds = opts['only-floors'] || floors.length > 1 ? Number(opts.rounds) : 1
      for (let round = 0; round < floorRounds; round++) {
        const group = round % 2 === 1 ? [...targets].reverse() : targets
        for (const c of opts.concurrency.split(',').map(Number)) {
          const outs = await measure(
            group.map((g) => g.target),
            'streamed',
            c,
          )
          for (const [k, g] of group.entries())
            rows.push({
              ...(outs[k] as BenchOut),
              mode: 'floor',
              ...(floors.length > 1 || g.transport !== 'grpc-js'
                ? { transport: g.transport, round }
                : {}),
            })
        }
      }
    } finally {
      for (const f of floors) await f.proc.stop()
    }
    // And against the same no-decision server written in Go (grpc-go, test/epp-client/floor.go):
    // what a stream costs on this machine with no Node in the path, the floor any EPP could reach.
    const goFloor = spawn(client, ['floor-server', '127.0.0.1:0'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    try {
      const port = await new Promise<number>((resolve, reject) => {
        let seen = ''
        goFloor.stdout.on('data', (b: Buffer) => {
          seen += b.toString()
          const m = /READY (\d+)\n/.exec(seen)
          if (m) resolve(Number(m[1]))
        })
        goFloor.once('exit', (code) => reject(new Error(`epp-client floor-server exited ${code}`)))
      })
      for (const c of opts.concurrency.split(',').map(Number))
        rows.push({
          ...((await measure([{ port, pid: goFloor.pid }], 'streamed', c))[0] as BenchOut),
          mode: 'go-floor',
        })
    } finally {
      goFloor.kill('SIGTERM')
    }
  }
  // The EPP's own code in process (no gRPC, no scraping): CPU and heap per stream, by step. Run
  // last, with the servers gone, so it competes with nothing of the bench.
  const costStreams = Number(opts['cost-streams'])
  const cost =
    costStreams > 0
      ? await eppCost({
          streams: costStreams,
          rounds: 3,
          promptTokens: Number(opts['prompt-tokens']),
        })
      : []
  // The same steps in process (epp-cost.ts): hot, and with the caches swept between streams.
  const inProcess: { label: string; summary: PhaseSummary }[] = []
  if (opts.phases && costStreams > 0)
    for (const sweepKiB of [0, 4096])
      inProcess.push({
        label:
          sweepKiB === 0 ? 'in process, hot' : `in process, ${sweepKiB / 1024} MiB swept between`,
        summary: await eppPhases({
          streams: costStreams,
          promptTokens: Number(opts['prompt-tokens']),
          sweepKiB,
        }),
      })
  const md = [
    '## Endpoint Picker (ext_proc) decision latency',
    '',
    `\`npm run bench:epp\`: one ext_proc stream per request from a Go client on go-control-plane's types to \`infer-gateway epp\` on loopback; request headers + a ${Math.round(body.length / 1024)} KiB (~${opts['prompt-tokens']}-token) chat body in 16 KiB chunks; latency = headers sent → destination and whole body back; EPP CPU = the EPP process's user + system time per stream (request and response phases, engine scraping included, in whichever thread); main thread CPU / wait = of that, the CPU of the server's main thread (the one that decides; scrape and GC helper threads excluded) and the time it waited for a core, per stream (schedstat); EPP scrape = where the EPP scrapes its pods' /metrics (its \`--scrape\`: \`thread\` = a worker thread, the default; \`inline\` = the thread that decides; several values = one EPP each, all running, measured in turn); EPP-side > 1 ms = share of decisions whose own headers-in → answer-out time (its histogram) passed 1 ms; GC pauses = the server process's garbage-collection pauses (its \`--trace-gc\`; EPP and grpc-js floor) during the run per 1,000 streams, with their median and longest (at concurrency 1 each pause holds up at most one stream: pauses per 1,000 above 10 put GC in the p99); the transport floor row is the same client and body against an ext_proc server on the EPP's stack (grpc-js, proto-loader's serializers) that decides nothing (\`hack/bench/epp-floor.ts\`): what one stream costs in Node whatever the EPP does; the machine floor row is that no-decision server written in Go on grpc-go (\`test/epp-client/floor.go\`): what one stream costs on this machine and client with no Node in the path. ${opts.pods} simulated pods, default profile; the EPP run from ${opts.bundle ? 'the esbuild bundle, as the image runs it' : 'the sources through tsx (`--bundle`: from the esbuild bundle, as the image runs it)'}; Node flags of the EPP and the grpc-js floor: ${opts['epp-node-args'] === '' ? 'none' : `\`${opts['epp-node-args']}\` (as the install manifests run the EPP)`}. Target p99 ≤ 1 ms.`,
    '',
    table(
      [
        'body mode',
        'EPP scrape',
        'concurrency',
        'decisions',
        'p50 µs',
        'p90 µs',
        'p99 µs',
        'max µs',
        'decisions/s',
        'EPP CPU µs/decision',
        'main thread CPU / wait µs',
        'EPP-side > 1 ms',
        'GC pauses / 1k streams',
        'GC pause median / max ms',
        'errors',
      ],
      rows.map((r) => [
        r.mode === 'buffered'
          ? 'BUFFERED'
          : r.mode === 'floor'
            ? `FULL_DUPLEX_STREAMED, no decision (transport floor${r.transport !== undefined ? `, ${r.transport}${r.round !== undefined ? `, round ${r.round + 1}` : ''}` : ''})`
            : r.mode === 'go-floor'
              ? 'FULL_DUPLEX_STREAMED, no decision, Go server (machine floor)'
              : 'FULL_DUPLEX_STREAMED',
        r.scrape === undefined
          ? '—'
          : `${r.scrape}${r.variant !== undefined ? `, ${r.variant}` : ''}`,
        r.concurrency,
        r.iterations,
        fmt(r.p50Us, 0),
        fmt(r.p90Us, 0),
        fmt(r.p99Us, 0),
        fmt(r.maxUs, 0),
        fmt(r.perSecond, 0),
        r.eppCpuUs !== undefined ? fmt(r.eppCpuUs, 0) : '—',
        r.mainCpuUs !== undefined ? `${fmt(r.mainCpuUs, 0)} / ${fmt(r.mainWaitUs ?? 0, 0)}` : '—',
        r.eppOver1ms !== undefined ? `${fmt(r.eppOver1ms * 100, 2)} %` : '—',
        r.gcPer1k !== undefined ? fmt(r.gcPer1k, 1) : '—',
        r.gcMedianMs !== undefined ? `${fmt(r.gcMedianMs, 2)} / ${fmt(r.gcMaxMs ?? 0, 1)}` : '—',
        r.errors,
      ]),
    ),
    ...pairedTable(rows),
    ...overFloorTable(rows),
    ...timelineTable(rows),
    ...phasesTable(rows, inProcess),
    ...costTable(cost),
  ].join('\n')
  process.stdout.write(`${md}\n`)
  if (!opts['no-write']) await writeSection('epp', md, { rows, overFloor: overFloor(rows), cost })
}

/** With --baseline: per round, this tree's p50 / p99 minus the baseline's from the same run. */
function pairedTable(rows: readonly BenchOut[]): string[] {
  const ours = rows.filter((r) => r.variant === 'this tree')
  if (ours.length === 0) return []
  const groups = new Map<string, { p50: number[]; p99: number[] }>()
  for (const r of ours) {
    const b = rows.find(
      (x) =>
        x.variant === 'baseline' &&
        x.round === r.round &&
        x.mode === r.mode &&
        x.concurrency === r.concurrency &&
        x.scrape === r.scrape,
    )
    if (b === undefined) continue
    const key = `${r.mode === 'buffered' ? 'BUFFERED' : 'FULL_DUPLEX_STREAMED'} | ${r.scrape} | ${r.concurrency}`
    const g = groups.get(key) ?? { p50: [], p99: [] }
    groups.set(key, g)
    g.p50.push(r.p50Us - b.p50Us)
    g.p99.push(r.p99Us - b.p99Us)
  }
  const med = (xs: number[]): number => {
    const s = [...xs].sort((a, b) => a - b)
    const m = s.length >> 1
    return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2
  }
  const list = (xs: number[]): string => xs.map((x) => fmt(x, 0)).join(', ')
  return [
    '',
    'This tree against the baseline build (`--baseline`), the client alternating its streams between the two EPPs in each run: per round, this tree minus the baseline (µs; negative = faster), and the median over the rounds.',
    '',
    table(
      [
        'body mode | scrape | concurrency',
        'p50 diff per round',
        'median',
        'p99 diff per round',
        'median',
      ],
      [...groups].map(([k, g]) => [
        k,
        list(g.p50),
        fmt(med(g.p50), 0),
        list(g.p99),
        fmt(med(g.p99), 0),
      ]),
    ),
  ]
}

interface OverFloor {
  readonly concurrency: number
  /** The EPP row's `--scrape`. */
  readonly scrape: string
  /** `floor` (grpc-js) or `go-floor` (grpc-go). */
  readonly floor: string
  readonly p50OverUs: number
  readonly p99OverUs: number
  /** EPP p99 / floor p99. */
  readonly p99Ratio: number
}

/** The full-duplex EPP rows against each floor at the same concurrency, from the same run. */
function overFloor(rows: readonly BenchOut[]): OverFloor[] {
  const out: OverFloor[] = []
  for (const e of rows) {
    if (e.mode !== 'streamed') continue
    for (const floor of ['floor', 'go-floor']) {
      const f = rows.find(
        (r) =>
          r.mode === floor &&
          r.concurrency === e.concurrency &&
          (r.transport === undefined || r.transport === 'grpc-js'),
      )
      if (f === undefined) continue
      out.push({
        concurrency: e.concurrency,
        scrape: e.scrape ?? 'thread',
        floor,
        p50OverUs: e.p50Us - f.p50Us,
        p99OverUs: e.p99Us - f.p99Us,
        p99Ratio: e.p99Us / f.p99Us,
      })
    }
  }
  return out
}

function overFloorTable(rows: readonly BenchOut[]): string[] {
  const o = overFloor(rows)
  if (o.length === 0) return []
  return [
    '',
    "The EPP (FULL_DUPLEX_STREAMED) over each floor in this run: what the EPP's own work adds to one stream.",
    '',
    table(
      ['EPP scrape', 'concurrency', 'floor', 'p50 over µs', 'p99 over µs', 'p99 EPP / floor'],
      o.map((x) => [
        x.scrape,
        x.concurrency,
        x.floor === 'floor' ? 'grpc-js (transport floor)' : 'grpc-go (machine floor)',
        fmt(x.p50OverUs, 0),
        fmt(x.p99OverUs, 0),
        `${fmt(x.p99Ratio, 2)}×`,
      ]),
    ),
  ]
}

/** Per row, the client's p50 / p90 offset of each message from the request headers' send. */
function timelineTable(rows: readonly BenchOut[]): string[] {
  const withTl = rows.filter((r) => r.timeline !== undefined && r.timeline.length > 0)
  const first = withTl[0]?.timeline
  if (first === undefined) return []
  const label = (r: BenchOut): string =>
    `${r.mode === 'floor' ? 'grpc-js floor' : r.mode === 'go-floor' ? 'Go floor' : `EPP ${r.mode} (${r.scrape ?? 'thread'}${r.variant !== undefined ? `, ${r.variant}` : ''})`}, c=${r.concurrency}`
  return [
    '',
    "When each request-phase message left the client and each answer arrived, from the start of the request headers' send (`--timeline`; p50 / p90 µs over the measured streams).",
    '',
    table(
      ['message', ...withTl.map(label)],
      first.map((m, i) => [
        m.message.replace('*ext_procv3.ProcessingResponse_', 'answer '),
        ...withTl.map((r) => {
          const x = r.timeline?.[i]
          return x === undefined ? '—' : `${fmt(x.p50Us, 0)} / ${fmt(x.p90Us, 0)}`
        }),
      ]),
    ),
  ]
}

/** Per EPP row, its decisions' steps as the EPP timed them (`--phases`). */
function phasesTable(
  rows: readonly BenchOut[],
  inProcess: readonly { label: string; summary: PhaseSummary }[],
): string[] {
  const withPh = rows.filter((r) => r.phases !== undefined && r.phases.decisions > 0)
  const first = withPh[0]?.phases
  if (first === undefined) return []
  const label = (r: BenchOut): string =>
    `${r.mode} (${r.scrape ?? 'thread'}${r.variant !== undefined ? `, ${r.variant}` : ''}), c=${r.concurrency}`
  const cell = (x: PhaseSummary['steps'][number] | undefined): string =>
    x === undefined ? '—' : `${fmt(x.p50Us, 0)} / ${fmt(x.p90Us, 0)} / ${fmt(x.p99Us, 0)}`
  const slow = (r: BenchOut): string => {
    const s = r.phases?.slowest
    if (s === undefined) return '—'
    const steps = Object.entries(s.longestStep)
      .sort((a, b) => b[1] - a[1])
      .map(([k, v]) => `${k} ${v}`)
      .join(', ')
    return `${s.decisions} over ${fmt(s.minTotalUs, 0)} µs: GC inside ${s.withGc}, scrape events ${s.withScrape}, off core p50 ${fmt(s.waitedP50Us, 0)} µs; longest step: ${steps}`
  }
  return [
    '',
    "Where the EPP's decisions went, step by step, timed inside the running EPP (`--phases`: `epp --debug-phases`, GET /debug/phases; from the body's last message handed over by grpc-js to node:http2's write callbacks of the answers; p50 / p90 / p99 µs over every decision of the run, warm-up included). The in-process columns time the same steps for the same stream in a loop with no gRPC (`hack/bench/epp-cost.ts`: answers encoded, reported written once the request phase is handled, so the flush steps are only the rest of that handling), hot and with 4 MiB written between streams so that each decision finds the caches holding other data.",
    '',
    table(
      ['step', 'what', ...withPh.map(label), ...inProcess.map((p) => p.label)],
      first.steps.map((st, i) => [
        st.step,
        st.what,
        ...withPh.map((r) => cell(r.phases?.steps[i])),
        ...inProcess.map((p) => cell(p.summary.steps[i])),
      ]),
    ),
    '',
    table(
      ['', ...withPh.map(label)],
      [
        [
          'decisions with a GC inside / with scrape events',
          ...withPh.map(
            (r) =>
              `${fmt((r.phases?.withGcShare ?? 0) * 100, 2)} % / ${fmt((r.phases?.withScrapeShare ?? 0) * 100, 1)} %`,
          ),
        ],
        [
          'total p50 / p99 µs of the decisions with neither',
          ...withPh.map(
            (r) => `${fmt(r.phases?.clean.p50Us ?? 0, 0)} / ${fmt(r.phases?.clean.p99Us ?? 0, 0)}`,
          ),
        ],
        ['slowest 1 % (by total)', ...withPh.map(slow)],
      ],
    ),
  ]
}

function costTable(cost: readonly CostRow[]): string[] {
  if (cost.length === 0) return []
  return [
    '',
    "The EPP's own code per stream, in process (`npx tsx hack/bench/epp-cost.ts`: the same messages decoded and answered against the real scheduler, no gRPC, no scraping; medians of 3 rounds): CPU and V8 heap allocated per stream, whole and by step.",
    '',
    table(
      ['step', 'CPU µs/stream', 'heap KiB/stream'],
      cost.map((c) => [c.step, fmt(c.cpuUs, 1), fmt(c.heapBytes / 1024, 1)]),
    ),
  ]
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`)
  process.exitCode = 1
})
