// Tracing's cost on the request path: the same data plane (1 worker, zero-latency simulated engine)
// measured with tracing off, on with every request sampled, and on at ratio 0.1 (spans exported
// over OTLP/HTTP to the Collector's real otlpreceiver, hack/otlp-receiver), at a fixed rate with
// vegeta. Runs alternate between the modes so drift on a shared machine hits all of them; the report
// is the median of each mode's p50/p99 and what tracing adds to it (target ≤ 50 µs p50 at 500
// req/s, issue 15), and where the CPU went, per request, from every thread's schedstat
// (thread-cpu.ts; a busy machine disturbs CPU far less than latency): the data plane's threads,
// its main threads (the event loops serving requests) and how long they waited for a core, the
// tracing worker (the thread at nice 19), the receiver and the engine. Everything shares two cores,
// the receiver too — in production the collector runs elsewhere — so `--receiver-nice n` starts the
// receiver n nice levels below the rest and writes its own section beside the end-to-end one.
// Spans go over OTLP/protobuf (the data plane's default; `--protocol http/json` for JSON) to a
// receiver that decodes every request and counts its spans (`--receiver count`, the stand-in for
// a collector elsewhere: its CPU is still reported); `--receiver file` has it re-encode every
// span as JSON into a file as the tests' receiver does, which on these two cores cost more CPU
// than the gateway's whole export.
// Writes its section of docs/benchmarks.md unless --no-write. The data plane is the esbuild bundle
// the image runs (proxy-bundle.ts; `--tsx`: the sources through tsx, whose keepNames wrappers cost
// CPU of their own).
//
//   npm run bench:tracing [-- --rate 500] [--seconds 15] [--rounds 3] [--json] [--no-write]
//                         [--ratios 1,0.1]     # the sample ratios measured against off (0: on,
//                                              # nothing sampled: what every request pays)
//                         [--receiver-nice 19] # the OTLP receiver at a lower priority
//                         [--protocol http/protobuf|http/json] [--receiver count|file]
//                         [--cpu-prof <dir>]   # V8 CPU profiles of each data plane run
//                         [--tsx]              # the sources instead of the bundle
//   npm run bench:tracing -- --micro [--ratios 1,0.1,0]  # a request's tracing CPU, in process
//   npm run bench:tracing -- --paired [--ratios 1,0.1,0] [--rounds 12] [--seconds 4]
//                         [--warm 1.5] [--budget 300] [--no-aa]
//                                             # each ratio and an A/A control (off vs off)
//                                             # against off, two data planes under one
//                                             # interleaved attack (tracing-paired.ts), each
//                                             # at half --rate; receiver at nice 19 unless
//                                             # --receiver-nice says otherwise; its own section
import { execFile } from 'node:child_process'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { availableParallelism, loadavg, tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs, promisify } from 'node:util'
import { Tracing } from '../../dataplane/telemetry/tracing.js'
import { otlpProtocol } from '../../dataplane/telemetry/tracing-config.js'
import { type Proc, spawnCli, spawnProc, startZeroLatencySim } from './procs.js'
import { benchGatewayArgs, bundleDataplane, spawnBundle } from './proxy-bundle.js'
import { attack, ensureVegeta, report, type VegetaReport } from './proxy-vegeta.js'
import { fmt, table, writeSection } from './report.js'
import { singleEngineManifests } from './routing-config.js'
import { nodeThreads, runNs, sampleThreads, sampleTree, threadDeltas } from './thread-cpu.js'
import {
  type Condition,
  median,
  pairedMarkdown,
  pairedRuns,
  summarisePairs,
} from './tracing-paired.js'

const SIM_HOST = '127.0.0.2'
const SIM_PORT = 18100
const GW_PORT = 18101
const OTLP = '127.0.0.4:18102'
const MODEL = 'bench-model'

const { values } = parseArgs({
  options: {
    rate: { type: 'string', default: '500' },
    // Defaults by mode: sequential 15 s × 3 rounds, --paired 4 s × 12 (below).
    seconds: { type: 'string' },
    rounds: { type: 'string' },
    warm: { type: 'string', default: '1.5' },
    budget: { type: 'string', default: '300' },
    'no-aa': { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
    micro: { type: 'boolean', default: false },
    paired: { type: 'boolean', default: false },
    'no-write': { type: 'boolean', default: false },
    'cpu-prof': { type: 'string' },
    tsx: { type: 'boolean', default: false },
    ratios: { type: 'string' },
    'receiver-nice': { type: 'string' },
    protocol: { type: 'string', default: 'http/protobuf' },
    receiver: { type: 'string', default: 'count' },
  },
})
const PROTOCOL = otlpProtocol(values.protocol, '--protocol')
const RECEIVER = values.receiver
if (RECEIVER !== 'count' && RECEIVER !== 'file')
  throw new Error(`--receiver must be count or file, got "${RECEIVER}"`)
/** The data plane's tracing flags besides endpoint and ratio. */
const PROTOCOL_ARGS = ['--otlp-protocol', PROTOCOL]
const RATE = Number(values.rate)
/** The sample ratios measured against off: --paired adds ratio 0 (on, nothing sampled). */
const RATIOS = values.ratios ?? (values.paired || values.micro ? '1,0.1,0' : '1,0.1')
const SECONDS = Number(values.seconds ?? (values.paired ? 4 : 15))
const ROUNDS = Number(values.rounds ?? (values.paired ? 12 : 3))

const yaml = singleEngineManifests(MODEL, SIM_HOST, SIM_PORT)

/** The data plane's tracing settings under test; the first is the baseline. */
const MODES: readonly { readonly name: string; readonly ratio: string | undefined }[] = [
  { name: 'off', ratio: undefined },
  ...RATIOS.split(',')
    .map((r) => r.trim())
    .filter((r) => r !== '')
    .map((ratio) => ({ name: `on, ratio ${ratio}`, ratio })),
]
type Mode = string

interface Run {
  readonly mode: Mode
  readonly r: VegetaReport
  /** The data plane's CPU (all its processes and threads) over the measured run, per request. */
  readonly cpuUs: number
  /** Spans the receiver got from this run (warm-up included), after the data plane stopped. */
  readonly spans: number
  /** Spans the data plane had dropped by the end of the load (its /metrics, any reason). */
  readonly dropped: number
  /** Per request, from schedstat (ns precision): where the CPU went and what the loop waited. */
  readonly threads: ThreadFigures
}

/** µs per request by thread (thread-cpu.ts), and the receiver's and engine's own CPU. */
interface ThreadFigures {
  /** The main threads' CPU (the event loops serving requests). */
  readonly mainUs: number
  /** Time the main threads were ready to run but had no core. */
  readonly mainWaitUs: number
  /** Times the main threads were put on a core (wakeups), per request. */
  readonly mainSlices: number
  /** Threads at another nice than their main thread (the tracing worker). */
  readonly renicedUs: number
  /** The data plane's other threads (V8 GC/platform helpers, libuv pool, an un-reniced worker). */
  readonly otherUs: number
  /** The OTLP receiver (the Collector's otlpreceiver): in production it runs elsewhere. */
  readonly receiverUs: number
  /** The simulated engine. */
  readonly engineUs: number
}

interface ModeResult {
  readonly mode: Mode
  readonly p50Us: number
  readonly p99Us: number
  readonly cpuUsPerRequest: number
  /** Over "off" (0 for off itself). */
  readonly addedP50Us: number
  readonly addedCpuUs: number
  /** The main threads' CPU over "off": what the request path itself pays. */
  readonly addedMainUs: number
  /** The main threads' run-queue wait over "off": time ready to serve but without a core. */
  readonly addedWaitUs: number
  readonly success: number
  readonly requests: number
  readonly spans: number
  readonly dropped: number
  /** Medians of the runs' per-thread figures. */
  readonly threads: ThreadFigures
}

/** CPU time of this process's main thread so far, in ns (/proc schedstat: ns, not 10 ms ticks). */
async function mainThreadNs(): Promise<number> {
  const s = await readFile(`/proc/self/task/${process.pid}/schedstat`, 'utf8')
  return Number(s.split(' ')[0])
}

/** Spans the data plane counted as dropped so far (infer_gateway_trace_spans_dropped_total). */
async function droppedSpans(metricsUrl: string): Promise<number> {
  const text = await (await fetch(metricsUrl)).text()
  let n = 0
  for (const m of text.matchAll(/^infer_gateway_trace_spans_dropped_total\{[^}]*\} (\d+)$/gm))
    n += Number(m[1])
  return n
}

/**
 * --micro: what one request costs its thread at each --ratios value (start on a request without
 * a traceparent: the sampling decision; when sampled, the decision event, the engine's
 * traceparent, end with the GenAI attributes), paced at --rate, exported by the same worker to
 * the real receiver; CPU time per request from process.cpuUsage() and the main thread's
 * schedstat, which a busy machine disturbs far less than wall-clock latency under load.
 */
async function micro(endpoint: string, receiverPid: number): Promise<void> {
  const header = (): string | undefined => undefined
  // Paced at --rate (a few requests per tick of ~5 ms) for --seconds; the same pacing without
  // spans is the baseline.
  const perTick = Math.max(1, Math.round(RATE / 200))
  const tickMs = (perTick * 1000) / RATE
  const ticks = Math.round((SECONDS * 1000) / tickMs)
  const n = ticks * perTick
  const paced = async (
    one: () => void,
    tracing: Tracing | undefined,
    onPath: number[],
  ): Promise<{ all: number; main: number }> => {
    const cpu0 = process.cpuUsage()
    const main0 = await mainThreadNs()
    for (let k = 0; k < ticks; k++) {
      const t0 = performance.now()
      for (let i = 0; i < perTick; i++) one()
      onPath.push(((performance.now() - t0) * 1000) / perTick)
      await new Promise((r) => setTimeout(r, tickMs))
    }
    await tracing?.flush()
    const c = process.cpuUsage(cpu0)
    return { all: c.user + c.system, main: ((await mainThreadNs()) - main0) / 1000 }
  }
  // The baseline times an empty call the same way: the timer's and a cold cache's share of the
  // on-path figures (after a ~5 ms sleep on a busy machine, most of a microsecond).
  const floor: number[] = []
  const base = await paced(() => {}, undefined, floor)
  const mean = (xs: readonly number[]): number => xs.reduce((a, x) => a + x, 0) / xs.length
  for (const { ratio } of MODES.slice(1)) {
    const tracing = new Tracing({
      endpoint,
      protocol: PROTOCOL,
      sampleRatio: Number(ratio),
      exportDelayMs: 200,
    })
    let sampled = 0
    const one = (): void => {
      const t = tracing.start(header, 'chat')
      if (t === undefined) return
      sampled++
      t.event('infer_gateway.scheduler.decision', {
        'infer_gateway.server': 'default/pool',
        'infer_gateway.endpoint': '10.0.0.1:8000',
        'infer_gateway.candidates': 4,
      })
      t.traceparent()
      t.model(MODEL, true)
      t.end(200, {
        'infer_gateway.request_id': 'x',
        'url.path': '/v1/chat/completions',
        'infer_gateway.route': 'default/bench',
        'infer_gateway.rule': 'rule-0',
        'gen_ai.response.model': MODEL,
        'infer_gateway.target': 'server:default/bench',
        'infer_gateway.stream': true,
        'server.address': '10.0.0.1',
        'server.port': 8000,
        'infer_gateway.attempts': 1,
        'gen_ai.usage.input_tokens': 12,
        'gen_ai.usage.output_tokens': 8,
      })
    }
    // Warm-up: JIT, the worker's start, its first exports.
    for (let i = 0; i < 2000; i++) one()
    await tracing.flush()
    sampled = 0
    /** Wall time of the tracing work of one request, per tick (what a request waits for). */
    const onPath: number[] = []
    const r0 = runNs(await sampleThreads([receiverPid]))
    const traced = await paced(one, tracing, onPath)
    // The receiver has answered every export (flush waited for it).
    const receiverNs = runNs(await sampleThreads([receiverPid])) - r0
    const r1 = (x: number): number => Math.round(x * 10) / 10
    process.stdout.write(
      `${JSON.stringify({
        mode: 'micro',
        ratio,
        rate: RATE,
        requests: n,
        spans: sampled,
        // On the request path: the sampling decision, and for a sampled request span start,
        // decision event, traceparent, attributes, end; over the empty call's (floor) figures.
        onPathUsP50: r1(median(onPath) - median(floor)),
        onPathNsMean: Math.round((mean(onPath) - mean(floor)) * 1000),
        floorNsMean: Math.round(mean(floor) * 1000),
        // Everything, the batch export (serialisation + HTTP) included, over the idle baseline.
        cpuUsPerRequest: r1((traced.all - base.all) / n),
        // This process's main thread alone (the tracing worker's thread excluded): the request
        // path and the batches' structured clone to the worker.
        mainThreadCpuUsPerRequest: r1((traced.main - base.main) / n),
        // The receiver's CPU per span (decoding; re-encoding as JSON into its file with --receiver file).
        receiverCpuUsPerSpan: sampled === 0 ? 0 : r1(receiverNs / 1000 / sampled),
      })}\n`,
    )
    await tracing.shutdown()
  }
}

/**
 * Spans in the receiver's file so far: a span count per line (-count-only), or OTLP-JSON lines
 * ("parentSpanId" does not match the quote).
 */
async function spansIn(file: string): Promise<number> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch {
    return 0 // nothing exported yet
  }
  if (RECEIVER === 'file') return text.split('"spanId"').length - 1
  let n = 0
  for (const line of text.split('\n')) if (line !== '') n += Number(line)
  return n
}

function medianThreads(xs: readonly ThreadFigures[]): ThreadFigures {
  const m = (k: keyof ThreadFigures): number => Math.round(median(xs.map((x) => x[k])) * 10) / 10
  return {
    mainUs: m('mainUs'),
    mainWaitUs: m('mainWaitUs'),
    mainSlices: m('mainSlices'),
    renicedUs: m('renicedUs'),
    otherUs: m('otherUs'),
    receiverUs: m('receiverUs'),
    engineUs: m('engineUs'),
  }
}

function summarise(runs: readonly Run[]): ModeResult[] {
  const of = (mode: Mode) => runs.filter((x) => x.mode === mode)
  const base = of('off')
  const baseP50 = median(base.map((x) => x.r.p50Ms * 1000))
  const baseCpu = median(base.map((x) => x.cpuUs))
  const baseMain = median(base.map((x) => x.threads.mainUs))
  const baseWait = median(base.map((x) => x.threads.mainWaitUs))
  return MODES.map(({ name }) => {
    const rs = of(name)
    const p50 = median(rs.map((x) => x.r.p50Ms * 1000))
    const cpu = median(rs.map((x) => x.cpuUs))
    const threads = medianThreads(rs.map((x) => x.threads))
    return {
      mode: name,
      p50Us: Math.round(p50),
      p99Us: Math.round(median(rs.map((x) => x.r.p99Ms * 1000))),
      cpuUsPerRequest: Math.round(cpu),
      addedP50Us: Math.round(p50 - baseP50),
      addedCpuUs: Math.round(cpu - baseCpu),
      addedMainUs: Math.round((median(rs.map((x) => x.threads.mainUs)) - baseMain) * 10) / 10,
      addedWaitUs: Math.round(median(rs.map((x) => x.threads.mainWaitUs)) - baseWait),
      success: Math.min(...rs.map((x) => x.r.success)),
      requests: rs.reduce((a, x) => a + x.r.requests, 0),
      spans: rs.reduce((a, x) => a + x.spans, 0),
      dropped: rs.reduce((a, x) => a + x.dropped, 0),
      threads,
    }
  })
}

/**
 * The receiver's nice offset (--receiver-nice): 0 for the sequential end-to-end run; 19 for
 * --paired, where its CPU slows both sides alike and only adds noise to their difference.
 */
const RECEIVER_NICE = Number(values['receiver-nice'] ?? (values.paired ? 19 : 0))
/** Its own section: the end-to-end figures (receiver at the same priority) are never replaced. */
const SECTION = RECEIVER_NICE > 0 ? 'tracing-receiver-niced' : 'tracing'

function markdown(rows: readonly ModeResult[], load: string): string {
  const command = `npm run bench:tracing -- --rate ${RATE} --seconds ${SECONDS} --rounds ${ROUNDS}${RECEIVER_NICE > 0 ? ` --receiver-nice ${RECEIVER_NICE}` : ''}${PROTOCOL !== 'http/protobuf' ? ` --protocol ${PROTOCOL}` : ''}${RECEIVER !== 'count' ? ` --receiver ${RECEIVER}` : ''}${values.tsx ? ' --tsx' : ''}`
  const met = rows
    .filter((r) => r.mode !== 'off')
    .map(
      (r) =>
        `${r.mode}: ${r.addedP50Us >= 0 ? '+' : ''}${r.addedP50Us} µs ${r.addedP50Us <= 50 ? '(met)' : '(not met)'}`,
    )
    .join('; ')
  const dash = (r: ModeResult, v: number | string): number | string => (r.mode === 'off' ? '—' : v)
  return [
    RECEIVER_NICE > 0
      ? `## Tracing cost, OTLP receiver at nice +${RECEIVER_NICE}`
      : '## Tracing cost',
    '',
    `\`${command}\`: one data plane (${values.tsx ? 'the sources through tsx' : 'the esbuild bundle the image runs'}, 1 worker, access log off) in front of one zero-latency simulated engine, chat requests at ${RATE} req/s with vegeta for ${SECONDS} s after a 3 s warm-up, ${ROUNDS} round${ROUNDS === 1 ? '' : 's'} (each starting with the next mode) alternating tracing off / ${MODES.slice(
      1,
    )
      .map((m) => m.name)
      .join(
        ' / ',
      )}, spans exported over OTLP/HTTP (${PROTOCOL === 'http/protobuf' ? 'protobuf' : 'JSON'}) to the OpenTelemetry Collector's otlpreceiver (hack/otlp-receiver${RECEIVER === 'count' ? ', decoding every request and counting its spans, as a stand-in for a collector elsewhere' : ', re-encoding every span as JSON into a file'}) on the same two cores${RECEIVER_NICE > 0 ? `, the receiver started ${RECEIVER_NICE} nice levels below everything else (in production the collector runs elsewhere; this shows the gateway's own share — the end-to-end figures, receiver at the same priority, are in "Tracing cost")` : ' at the same priority as everything else (end to end: in production the collector runs elsewhere)'}. Each figure is the median over the rounds. CPU is per request over the measured run, from each thread's schedstat: the data plane's (all threads, the tracing worker's included); its main threads' (the event loops serving requests) and the time they were ready to run but had no core (run-queue wait); the reniced threads' (the tracing worker at nice 19); the receiver's. Load average at start: ${load}.`,
    '',
    `Target: tracing on adds ≤ 50 µs p50 per request at 500 req/s (issue 15). ${met}.${
      // More runnable work than cores at the start: p50 then measures the neighbours.
      Number(load.split(' ')[0]) > availableParallelism()
        ? ' The machine was busy (load average above its core count): these latencies say little; the CPU columns still hold.'
        : ''
    }`,
    '',
    table(
      [
        'tracing',
        'p50 µs',
        'p99 µs',
        'added p50 µs',
        'CPU µs/request',
        'added CPU',
        'added main-thread CPU',
        'added main-thread run-queue wait',
        'tracing worker CPU',
        'receiver CPU',
        'success',
        'spans received / requests',
        'spans dropped',
      ],
      rows.map((r) => [
        r.mode,
        r.p50Us,
        r.p99Us,
        dash(r, r.addedP50Us),
        r.cpuUsPerRequest,
        dash(r, r.addedCpuUs),
        dash(r, r.addedMainUs),
        dash(r, r.addedWaitUs),
        dash(r, r.threads.renicedUs),
        r.threads.receiverUs,
        `${fmt(r.success * 100, 2)} %`,
        `${r.spans} / ${r.requests}`,
        r.dropped,
      ]),
    ),
    '',
    'CPU columns in µs per request. Spans received include the warm-up requests; at ratio 0.1 about a tenth of all requests.',
  ].join('\n')
}

async function main(): Promise<void> {
  const vegeta = await ensureVegeta()
  if (!vegeta.ok) throw new Error(`vegeta unavailable: ${vegeta.reason}`)
  const build = join(import.meta.dirname, '..', 'otlp-receiver', 'build.sh')
  await promisify(execFile)('bash', [build])
  const receiverBin = (await promisify(execFile)('bash', [build, '--print-bin'])).stdout.trim()
  const dir = await mkdtemp(join(tmpdir(), 'igw-bench-tracing-'))
  const procs: Proc[] = []
  const load = loadavg()
    .map((x) => x.toFixed(2))
    .join(' ')
  try {
    await writeFile(join(dir, 'gateway.yaml'), yaml)
    const body = join(dir, 'body.json')
    await writeFile(
      body,
      JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'hi' }], max_tokens: 8 }),
    )
    const sim = await startZeroLatencySim(SIM_HOST, SIM_PORT, MODEL)
    procs.push(sim)
    const traces = join(dir, 'traces.jsonl')
    // --receiver-nice n: the receiver n nice levels below the rest (the collector runs elsewhere
    // in production; here it shares the two cores with the data plane, engine and vegeta).
    const receiverNice = RECEIVER_NICE
    const receiverArgs = [
      '-http',
      OTLP,
      '-out',
      traces,
      ...(RECEIVER === 'count' ? ['-count-only'] : []),
    ]
    const receiver =
      receiverNice > 0
        ? spawnProc('nice', ['-n', String(receiverNice), receiverBin, ...receiverArgs])
        : spawnProc(receiverBin, receiverArgs)
    procs.push(receiver)
    for (let i = 0; !receiver.output().includes('listening'); i++) {
      if (i > 100) throw new Error(`otlp-receiver did not start: ${receiver.output()}`)
      await new Promise((r) => setTimeout(r, 50))
    }
    if (values.micro) {
      await micro(`http://${OTLP}`, receiver.child.pid ?? -1)
      process.stdout.write(`receiver got ${await spansIn(traces)} spans\n`)
      return
    }
    const prof = values['cpu-prof'] === undefined ? undefined : resolve(values['cpu-prof'])
    // What the image runs; --tsx: the sources, for iterating without a build.
    const bundle = values.tsx ? undefined : await bundleDataplane(join(dir, 'dist'))
    if (values.paired) {
      if (bundle === undefined) throw new Error('--paired runs the bundle (no --tsx)')
      const setup = {
        vegeta: vegeta.bin,
        bundle,
        dir,
        config: join(dir, 'gateway.yaml'),
        body,
        otlp: `http://${OTLP}`,
        tracingArgs: PROTOCOL_ARGS,
        ports: [GW_PORT, GW_PORT + 2, GW_PORT + 4, GW_PORT + 6] as const,
        rate: RATE,
        seconds: SECONDS,
        warmSeconds: Number(values.warm),
        budgetSeconds: Number(values.budget),
        rounds: ROUNDS,
        receiverPid: receiver.child.pid,
      }
      // The A/A control first in the table: the floor the others are read against.
      const conditions: Condition[] = [
        ...(values['no-aa'] ? [] : [undefined]),
        ...MODES.slice(1).map((m) => m.ratio),
      ]
      const pairs = await pairedRuns(setup, conditions, (l) => {
        if (!values.json) process.stdout.write(`${l}\n`)
      })
      const results = summarisePairs(pairs, conditions)
      const command = `npm run bench:tracing -- --paired --rate ${RATE} --seconds ${SECONDS} --rounds ${ROUNDS} --warm ${setup.warmSeconds}${setup.budgetSeconds !== 300 ? ` --budget ${setup.budgetSeconds}` : ''} --ratios ${RATIOS}${values['no-aa'] ? ' --no-aa' : ''}${RECEIVER_NICE !== 19 ? ` --receiver-nice ${RECEIVER_NICE}` : ''}${PROTOCOL !== 'http/protobuf' ? ` --protocol ${PROTOCOL}` : ''}${RECEIVER !== 'count' ? ` --receiver ${RECEIVER}` : ''}`
      const md = pairedMarkdown(results, setup, {
        command,
        receiver:
          RECEIVER_NICE > 0
            ? `at nice +${RECEIVER_NICE} (in production the collector runs elsewhere)`
            : 'at the same priority as everything else',
        load,
        busy: Number(load.split(' ')[0]) > availableParallelism(),
      })
      process.stdout.write(values.json ? `${JSON.stringify(results)}\n` : `${md}\n`)
      if (!values['no-write'])
        process.stdout.write(
          `wrote ${await writeSection('tracing-paired', md, { rate: RATE, seconds: SECONDS, warmSeconds: setup.warmSeconds, rounds: ROUNDS, receiverNice: RECEIVER_NICE, loadAvg: load, results, pairs })}\n`,
        )
      return
    }
    const runs: Run[] = []
    for (let round = 0; round < ROUNDS; round++) {
      // Each round starts with another mode: a machine still settling (or a neighbour's burst)
      // would otherwise always fall on the first mode, tracing off, and read as tracing's gain.
      const order = [...MODES.slice(round % MODES.length), ...MODES.slice(0, round % MODES.length)]
      for (const { name: mode, ratio } of order) {
        const nodeArgs: string[] = []
        if (prof !== undefined) {
          const d = join(prof, `${round + 1}-${mode.replace(/[^a-z0-9.]+/g, '-')}`)
          await mkdir(d, { recursive: true })
          nodeArgs.push('--cpu-prof', `--cpu-prof-dir=${d}`)
        }
        const spansBefore = await spansIn(traces)
        const args = benchGatewayArgs(join(dir, 'gateway.yaml'), GW_PORT, [
          '--workers',
          '1',
          ...(ratio !== undefined
            ? ['--otlp-endpoint', `http://${OTLP}`, '--trace-sample-ratio', ratio, ...PROTOCOL_ARGS]
            : []),
        ])
        const gw =
          bundle !== undefined
            ? await spawnBundle(bundle, args, /data plane listening/, nodeArgs)
            : await spawnCli(['dataplane', ...args], /data plane listening/, nodeArgs)
        let r: VegetaReport
        let cpuUs: number
        let dropped: number
        let threads: ThreadFigures
        try {
          const pid = gw.child.pid
          if (pid === undefined) throw new Error('data plane has no pid')
          const url = `http://127.0.0.1:${GW_PORT}/v1/chat/completions`
          // Warm-up: JIT, connection pools, the exporter's first batches.
          const warm = join(dir, `warm-${round}-${ratio ?? 'off'}.bin`)
          await attack(vegeta.bin, { url, bodyFile: body, rate: RATE, seconds: 3, output: warm })
          const out = join(dir, `run-${round}-${ratio ?? 'off'}.bin`)
          const others = [receiver.child.pid ?? -1, sim.child.pid ?? -1]
          const t0 = await sampleTree(pid)
          const o0 = await sampleThreads(others)
          await attack(vegeta.bin, {
            url,
            bodyFile: body,
            rate: RATE,
            seconds: SECONDS,
            output: out,
          })
          const t1 = await sampleTree(pid)
          const o1 = await sampleThreads(others)
          r = await report(vegeta.bin, [out])
          const n = r.requests
          const td = threadDeltas(t0, t1)
          const nt = nodeThreads(td)
          const od = threadDeltas(o0, o1)
          const perReq = (ns: number): number => ns / 1000 / n
          threads = {
            mainUs: perReq(nt.main.runNs),
            mainWaitUs: perReq(nt.main.waitNs),
            mainSlices: nt.main.slices / n,
            renicedUs: perReq(nt.reniced.runNs),
            otherUs: perReq(nt.otherRunNs),
            receiverUs: perReq(runNs(od.filter((d) => d.pid !== sim.child.pid))),
            engineUs: perReq(runNs(od.filter((d) => d.pid === sim.child.pid))),
          }
          cpuUs = perReq(runNs(td))
          dropped = await droppedSpans(`http://127.0.0.1:${GW_PORT}/metrics`)
        } finally {
          // Stopping flushes the exporter, so the receiver holds this run's spans afterwards.
          await gw.stop()
        }
        // The receiver writes what it got a little later (much later at a low priority on a busy
        // machine): this run's spans are counted once the file stops growing (10 s at most).
        let seen = -1
        for (let i = 0; i < 33; i++) {
          await new Promise((res) => setTimeout(res, 300))
          const now = await spansIn(traces)
          if (now === seen) break
          seen = now
        }
        const spans = seen - spansBefore
        runs.push({ mode, r, cpuUs, spans, dropped, threads })
        const f = (x: number): string => x.toFixed(1)
        if (!values.json)
          process.stdout.write(
            `round ${round + 1} tracing ${mode}: p50 ${(r.p50Ms * 1000).toFixed(0)} µs, p99 ${(r.p99Ms * 1000).toFixed(0)} µs, CPU ${cpuUs.toFixed(0)} µs/request, success ${(r.success * 100).toFixed(2)} %, ${r.requests} requests, ${spans} spans, ${dropped} dropped\n` +
              `  per request: main thread ${f(threads.mainUs)} µs CPU, ${f(threads.mainWaitUs)} µs waiting for a core, ${f(threads.mainSlices)} wakeups; reniced threads ${f(threads.renicedUs)} µs; other threads ${f(threads.otherUs)} µs; receiver ${f(threads.receiverUs)} µs; engine ${f(threads.engineUs)} µs\n`,
          )
      }
    }
    const rows = summarise(runs)
    const md = markdown(rows, load)
    if (values.json) process.stdout.write(`${JSON.stringify(rows)}\n`)
    else process.stdout.write(`${md}\n`)
    if (!values['no-write']) {
      const data = {
        rate: RATE,
        seconds: SECONDS,
        rounds: ROUNDS,
        receiverNice: RECEIVER_NICE,
        loadAvg: load,
        modes: rows,
      }
      process.stdout.write(`wrote ${await writeSection(SECTION, md, data)}\n`)
    }
  } finally {
    for (const p of procs.reverse()) await p.stop()
    await rm(dir, { recursive: true, force: true })
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`)
  process.exit(1)
})
