// bench:tracing --paired: what tracing adds to a request, resolved below the ≤ 50 µs target
// (issue 15) on a shared two-core machine where sequential runs of one data plane move by
// ±100–200 µs p50 from run to run — more than the effect, in both directions.
//
// Design. Each pairing is two data planes started side by side (the esbuild bundle, one worker
// each, same engine, same OTLP receiver): a baseline with tracing off and a challenger (tracing on
// at one ratio, or off again for the A/A control). ONE vegeta attack at the rate under test takes
// the two in turn, request by request (vegeta round-robins its targets), so both see the same
// moments of the machine — a neighbour's burst, a GC of the engine, vegeta's own pauses — and the
// machine serves the rate of the sequential runs (each data plane half of it: at twice the rate
// the two cores ran near saturation and p50s of seconds measured queues, not tracing; what a
// request's own tracing work costs does not depend on the rate, and the export's CPU, which
// does, is reported per traced request). What differs between the two sides is then the challenger's own request
// path: its p50 and its main thread's CPU per request are paired, round by round. A round runs
// every condition once, each pairing on fresh processes (process-to-process differences are part
// of the noise the A/A shows), in a rotated order, with the baseline's port and its place in the
// target list swapped every other round. The report is the median over the rounds of each
// difference, with a bootstrap 90 % interval of that median (seeded: the same data gives the same
// interval). The A/A control — tracing off on both sides, treated exactly like the others — is the
// method's noise floor: its interval must hold 0 and be narrow next to 50 µs.
//
// What a pairing does not show: CPU that slows every process on the machine alike (the tracing
// worker's export, the receiver's decoding) is in both sides and cancels out of the difference.
// It is reported beside it, per traced request: the worker (at nice 19, it yields to request
// threads) and the receiver (in production a collector elsewhere; `--receiver-nice`).
import { execFile } from 'node:child_process'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { createRng } from '../sim/rng.js'
import type { Proc } from './procs.js'
import { benchGatewayArgs, spawnBundle } from './proxy-bundle.js'
import { attack } from './proxy-vegeta.js'
import { table } from './report.js'
import {
  nodeThreads,
  runNs,
  sampleThreads,
  sampleTree,
  type ThreadSample,
  threadDeltas,
} from './thread-cpu.js'

const run = promisify(execFile)

/** The added p50 the target allows, µs (issue 15). */
export const TARGET_US = 50
/** Confidence of the intervals. */
export const LEVEL = 0.9
const RESAMPLES = 10_000

export interface PairedSetup {
  readonly vegeta: string
  readonly bundle: string
  readonly dir: string
  readonly config: string
  readonly body: string
  /** The OTLP receiver's base URL. */
  readonly otlp: string
  /** More tracing flags of a traced data plane (--otlp-protocol). */
  readonly tracingArgs: readonly string[]
  /** Two ports for a pairing's data planes, two for the next one's (started while it stops). */
  readonly ports: readonly [number, number, number, number]
  /** Requests per second of the one attack: each data plane gets half. */
  readonly rate: number
  readonly seconds: number
  /** Load before each measured attack (JIT, connection pools, the exporter's first batches). */
  readonly warmSeconds: number
  readonly rounds: number
  /**
   * Seconds the pairings may take: no round starts that would end past it at the pace so far
   * (whole rounds only, so every condition has as many). The run fits a time slot on any machine.
   */
  readonly budgetSeconds: number
  /** The OTLP receiver's pid, for its CPU per traced request. */
  readonly receiverPid: number | undefined
}

/** The challenger: tracing on at this sample ratio, or undefined for off (the A/A control). */
export type Condition = string | undefined

export const conditionName = (c: Condition): string =>
  c === undefined ? 'A/A (off vs off)' : `on, ratio ${c}`

/** One data plane's side of a pairing, per request. */
export interface Side {
  readonly requests: number
  readonly failed: number
  readonly p50Us: number
  /** The main thread's CPU (the event loop serving requests). */
  readonly mainUs: number
  /** Every thread of the process. */
  readonly allUs: number
  /** Threads at another nice than the main thread: the tracing worker. */
  readonly workerUs: number
}

export interface Pairing {
  readonly round: number
  readonly condition: Condition
  readonly base: Side
  readonly challenger: Side
  /** The receiver's CPU during the measured attack, per challenger request. */
  readonly receiverUs: number
  /** Spans the challenger counted as dropped by the end. */
  readonly dropped: number
}

/** A median with its bootstrap interval. */
export interface Estimate {
  readonly median: number
  readonly lo: number
  readonly hi: number
}

export type Verdict = 'met' | 'not met' | 'not resolved'

export interface ConditionResult {
  readonly condition: Condition
  readonly rounds: number
  /** Challenger minus baseline, over the rounds. */
  readonly p50Us: Estimate
  readonly mainUs: Estimate
  readonly allUs: Estimate
  /** Medians over the rounds. */
  readonly baseP50Us: number
  readonly workerUs: number
  readonly receiverUs: number
  readonly requests: number
  readonly failed: number
  readonly dropped: number
  readonly verdict: Verdict
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return Number.NaN
  const s = [...xs].sort((a, b) => a - b)
  const m = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2
}

/**
 * The median of `xs` and a percentile-bootstrap interval of it at `level`: `resamples` draws of
 * xs.length values with replacement from a PRNG seeded by `seed`, so the same data always gives
 * the same interval.
 */
export function bootstrapMedian(
  xs: readonly number[],
  level = LEVEL,
  resamples = RESAMPLES,
  seed = 15,
): Estimate {
  const m = median(xs)
  if (xs.length < 2) return { median: m, lo: m, hi: m }
  const rng = createRng(seed)
  const meds = new Float64Array(resamples)
  const draw = new Array<number>(xs.length)
  for (let b = 0; b < resamples; b++) {
    for (let i = 0; i < xs.length; i++) draw[i] = xs[Math.floor(rng() * xs.length)] as number
    meds[b] = median(draw)
  }
  meds.sort()
  const tail = (1 - level) / 2
  const at = (q: number): number =>
    meds[Math.min(resamples - 1, Math.max(0, Math.floor(q * resamples)))] as number
  return { median: m, lo: at(tail), hi: at(1 - tail) }
}

/** Fewer rounds than this give no interval worth the name: their verdict is "not resolved". */
export const MIN_ROUNDS = 5

/**
 * The target's verdict on an added p50 over `rounds` rounds: not resolved when the interval
 * straddles the target (the data cannot tell) or rests on too few rounds, otherwise met or not
 * by the median.
 */
export function verdict(e: Estimate, rounds: number, target = TARGET_US): Verdict {
  if (rounds < MIN_ROUNDS || (e.lo <= target && e.hi > target)) return 'not resolved'
  return e.median <= target ? 'met' : 'not met'
}

/** Latencies (µs) and failures per URL from `vegeta encode -to json` lines. */
export function splitByUrl(jsonLines: string): Map<string, { latUs: number[]; failed: number }> {
  const out = new Map<string, { latUs: number[]; failed: number }>()
  for (const line of jsonLines.split('\n')) {
    if (line.trim() === '') continue
    const r = JSON.parse(line) as { url?: unknown; latency?: unknown; code?: unknown }
    if (typeof r.url !== 'string' || typeof r.latency !== 'number')
      throw new Error(`vegeta result without url/latency: ${line.slice(0, 120)}`)
    let s = out.get(r.url)
    if (s === undefined) {
      s = { latUs: [], failed: 0 }
      out.set(r.url, s)
    }
    if (typeof r.code === 'number' && r.code >= 200 && r.code < 300) s.latUs.push(r.latency / 1000)
    else s.failed++
  }
  return out
}

/** The rounds' order of the conditions: rotated by one each round, so none is always first. */
export function roundOrder<T>(conditions: readonly T[], round: number): T[] {
  const k = round % conditions.length
  return [...conditions.slice(k), ...conditions.slice(0, k)]
}

function sideOf(
  d: readonly ThreadSample[],
  lat: { latUs: number[]; failed: number } | undefined,
): Side {
  const t = nodeThreads(d)
  const n = lat?.latUs.length ?? 0
  const per = (ns: number): number => (n === 0 ? Number.NaN : ns / 1000 / n)
  return {
    requests: n + (lat?.failed ?? 0),
    failed: lat?.failed ?? 0,
    p50Us: median(lat?.latUs ?? []),
    mainUs: per(t.main.runNs),
    allUs: per(runNs(d)),
    workerUs: per(t.reniced.runNs),
  }
}

function dataPlane(s: PairedSetup, ratio: Condition, port: number): Promise<Proc> {
  const args = benchGatewayArgs(s.config, port, [
    '--workers',
    '1',
    ...(ratio !== undefined
      ? ['--otlp-endpoint', s.otlp, '--trace-sample-ratio', ratio, ...s.tracingArgs]
      : []),
  ])
  return spawnBundle(s.bundle, args, /data plane listening/)
}

/** Spans a data plane counted as dropped so far (infer_gateway_trace_spans_dropped_total). */
async function droppedSpans(port: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()
  let n = 0
  for (const m of text.matchAll(/^infer_gateway_trace_spans_dropped_total\{[^}]*\} (\d+)$/gm))
    n += Number(m[1])
  return n
}

/** A pairing's two data planes, started. */
interface Pair {
  readonly condition: Condition
  readonly round: number
  readonly basePort: number
  readonly chPort: number
  readonly base: Proc
  readonly ch: Proc
}

/**
 * Starts a pairing's baseline (off) and challenger side by side on `ports`; every other round the
 * baseline takes the other port (and, in measure, the second place in the targets).
 */
async function startPair(
  s: PairedSetup,
  condition: Condition,
  round: number,
  ports: readonly [number, number],
): Promise<Pair> {
  const [basePort, chPort] = round % 2 === 1 ? [ports[1], ports[0]] : ports
  const started = await Promise.allSettled([
    dataPlane(s, undefined, basePort),
    dataPlane(s, condition, chPort),
  ])
  const [b, c] = started
  if (b?.status === 'fulfilled' && c?.status === 'fulfilled')
    return { condition, round, basePort, chPort, base: b.value, ch: c.value }
  await Promise.all(started.map((p) => (p.status === 'fulfilled' ? p.value.stop() : undefined)))
  throw started.find((p) => p.status === 'rejected')?.reason
}

const stopPair = (p: Pair): Promise<unknown> => Promise.all([p.base.stop(), p.ch.stop()])

/**
 * One pairing under one interleaved attack: warm-up, then the measured attack with CPU sampled
 * around it. `measured` is called as soon as the measured attack ends (the next pairing's
 * processes start while this one's results are read and its processes stop).
 */
async function measure(s: PairedSetup, pair: Pair, measured: () => void): Promise<Pairing> {
  const { condition, round, basePort, chPort } = pair
  const url = (p: number): string => `http://127.0.0.1:${p}/v1/chat/completions`
  const urls = round % 2 === 1 ? [url(chPort), url(basePort)] : [url(basePort), url(chPort)]
  const tag = `${condition ?? 'aa'}-${round}`
  await attack(s.vegeta, {
    url: urls,
    bodyFile: s.body,
    rate: s.rate,
    seconds: s.warmSeconds,
    output: join(s.dir, `paired-${tag}-warm.bin`),
  })
  const pids = [pair.base.child.pid, pair.ch.child.pid]
  if (pids[0] === undefined || pids[1] === undefined) throw new Error('data plane has no pid')
  const receiver = s.receiverPid === undefined ? [] : [s.receiverPid]
  const sample = () =>
    Promise.all([
      sampleTree(pids[0] as number),
      sampleTree(pids[1] as number),
      sampleThreads(receiver),
    ])
  const before = await sample()
  const out = join(s.dir, `paired-${tag}.bin`)
  await attack(s.vegeta, {
    url: urls,
    bodyFile: s.body,
    rate: s.rate,
    seconds: s.seconds,
    output: out,
  })
  const after = await sample()
  const dropped = condition === undefined ? 0 : await droppedSpans(chPort)
  measured()
  const { stdout } = await run(s.vegeta, ['encode', '-to', 'json', out], { maxBuffer: 256 << 20 })
  const byUrl = splitByUrl(stdout)
  const chSide = sideOf(threadDeltas(before[1], after[1]), byUrl.get(url(chPort)))
  return {
    round,
    condition,
    base: sideOf(threadDeltas(before[0], after[0]), byUrl.get(url(basePort))),
    challenger: chSide,
    receiverUs:
      runNs(threadDeltas(before[2], after[2])) /
      1000 /
      Math.max(1, chSide.requests - chSide.failed),
    dropped,
  }
}

/**
 * Whether another round fits the budget: `roundsDone` rounds took `elapsedMs`, and one more at
 * their pace must end within `budgetSeconds`. The first round always runs.
 */
export function roundFits(elapsedMs: number, roundsDone: number, budgetSeconds: number): boolean {
  if (roundsDone === 0) return true
  return elapsedMs + elapsedMs / roundsDone <= budgetSeconds * 1000
}

/** Every condition against tracing off, `s.rounds` rounds, each pairing logged as it ends. */
export async function pairedRuns(
  s: PairedSetup,
  conditions: readonly Condition[],
  log: (line: string) => void,
): Promise<Pairing[]> {
  const plan: { round: number; condition: Condition }[] = []
  for (let round = 0; round < s.rounds; round++)
    for (const condition of roundOrder(conditions, round)) plan.push({ round, condition })
  // Consecutive pairings use the two port pairs in turn: the next one starts while this one stops.
  const portsOf = (i: number): readonly [number, number] =>
    i % 2 === 0 ? [s.ports[0], s.ports[1]] : [s.ports[2], s.ports[3]]
  const start = (i: number): Promise<Pair> => {
    const q = plan[i] as { round: number; condition: Condition }
    return startPair(s, q.condition, q.round, portsOf(i))
  }
  const all: Pairing[] = []
  const began = performance.now()
  /** Whether pairing i may start: within the plan, and a new round only if it fits the budget. */
  const fits = (i: number): boolean =>
    i < plan.length &&
    (i % conditions.length !== 0 ||
      roundFits(performance.now() - began, (plan[i] as { round: number }).round, s.budgetSeconds))
  let next: Promise<Pair> | undefined = plan.length > 0 ? start(0) : undefined
  try {
    for (let i = 0; next !== undefined; i++) {
      const t0 = performance.now()
      const pair = await next
      next = undefined
      let p: Pairing
      try {
        p = await measure(s, pair, () => {
          if (fits(i + 1)) next = start(i + 1)
          else if (i + 1 < plan.length)
            log(`time budget (${s.budgetSeconds} s): stopping after round ${pair.round + 1}`)
        })
      } finally {
        await stopPair(pair)
      }
      all.push(p)
      const { round, condition: c } = pair
      const f = (x: number): string => `${x >= 0 ? '+' : ''}${x.toFixed(1)}`
      log(
        `round ${round + 1} ${conditionName(c)}: p50 ${p.challenger.p50Us.toFixed(0)} vs ${p.base.p50Us.toFixed(0)} µs (${f(p.challenger.p50Us - p.base.p50Us)}), main thread ${p.challenger.mainUs.toFixed(1)} vs ${p.base.mainUs.toFixed(1)} µs/request (${f(p.challenger.mainUs - p.base.mainUs)}), all threads ${f(p.challenger.allUs - p.base.allUs)}, tracing worker ${p.challenger.workerUs.toFixed(1)}, receiver ${p.receiverUs.toFixed(1)}, ${p.base.requests}+${p.challenger.requests} requests, ${p.base.failed + p.challenger.failed} failed, ${((performance.now() - t0) / 1000).toFixed(1)} s`,
      )
    }
  } finally {
    // A failure left the next pairing starting: its processes end too.
    await next?.then(stopPair, () => undefined)
  }
  return all
}

/** Per condition: the rounds' paired differences, their medians and intervals, the verdict. */
export function summarisePairs(
  pairs: readonly Pairing[],
  conditions: readonly Condition[],
): ConditionResult[] {
  return conditions.map((c) => {
    const ps = pairs.filter((p) => p.condition === c)
    const d = (k: 'p50Us' | 'mainUs' | 'allUs'): Estimate =>
      bootstrapMedian(ps.map((p) => p.challenger[k] - p.base[k]))
    const p50Us = d('p50Us')
    return {
      condition: c,
      rounds: ps.length,
      p50Us,
      mainUs: d('mainUs'),
      allUs: d('allUs'),
      baseP50Us: median(ps.map((p) => p.base.p50Us)),
      workerUs: median(ps.map((p) => p.challenger.workerUs)),
      receiverUs: median(ps.map((p) => p.receiverUs)),
      requests: ps.reduce((a, p) => a + p.base.requests + p.challenger.requests, 0),
      failed: ps.reduce((a, p) => a + p.base.failed + p.challenger.failed, 0),
      dropped: ps.reduce((a, p) => a + p.dropped, 0),
      verdict: verdict(p50Us, ps.length),
    }
  })
}

const signed = (x: number, digits = 0): string =>
  `${x > 0 ? '+' : x < 0 ? '−' : ''}${Math.abs(x).toFixed(digits)}`
const est = (e: Estimate, digits = 0): string =>
  `${signed(e.median, digits)} (${signed(e.lo, digits)} … ${signed(e.hi, digits)})`

export interface PairedReport {
  /** The command that reproduces the section. */
  readonly command: string
  /** How the receiver ran ("at the same priority", "at nice +19"). */
  readonly receiver: string
  readonly load: string
  /** More runnable work than cores at the start: the latencies then measure the neighbours. */
  readonly busy: boolean
}

/** The docs/benchmarks.md section of a paired run. */
export function pairedMarkdown(
  results: readonly ConditionResult[],
  s: Pick<PairedSetup, 'rate' | 'seconds' | 'warmSeconds' | 'rounds'>,
  r: PairedReport,
): string {
  const roundsRun = Math.min(...results.map((x) => x.rounds))
  const aa = results.find((x) => x.condition === undefined)
  const on = results.filter((x) => x.condition !== undefined)
  const floor =
    aa === undefined
      ? 'No A/A control was run: the method’s noise floor is unknown.'
      : `A/A control (tracing off on both sides, run like the others): p50 ${est(aa.p50Us)} µs, main-thread CPU ${est(aa.mainUs, 1)} µs per request — the method’s noise floor${aa.p50Us.lo <= 0 && aa.p50Us.hi >= 0 ? '' : '; its interval does not hold 0, so the pairing itself is biased by about this much'}.`
  const verdicts = on
    .map((x) => `${conditionName(x.condition)}: ${signed(x.p50Us.median)} µs, ${x.verdict}`)
    .join('; ')
  return [
    '## Tracing cost, paired (one attack, two data planes)',
    '',
    `\`${r.command}\`: each pairing is two data planes (the esbuild bundle the image runs, 1 worker, access log off) started side by side in front of one zero-latency simulated engine — a baseline with tracing off and a challenger (tracing on at a ratio, or off again for the A/A control) — and ONE vegeta attack at ${s.rate} req/s that takes the two in turn, request by request: both see the same moments of the machine, which serves ${s.rate} req/s as in the sequential runs, ${s.rate / 2} req/s each (a request's own tracing work does not depend on the rate; the export's CPU, which does, is given per traced request). ${s.warmSeconds} s of warm-up, then ${s.seconds} s measured; ${roundsRun === s.rounds ? `${s.rounds} rounds` : `${roundsRun} round${roundsRun === 1 ? '' : 's'} (of ${s.rounds} asked: the time budget)`}, each running every condition once on fresh processes, in a rotated order, the baseline's port and place in the target list swapped every other round. Spans go over OTLP/HTTP to the OpenTelemetry Collector's otlpreceiver (hack/otlp-receiver, counting spans) ${r.receiver}. Each figure is the median over the rounds of the challenger minus the baseline, with a bootstrap ${Math.round(LEVEL * 100)} % interval of that median in brackets; CPU per request from each thread's schedstat. CPU that slows both sides alike (the tracing worker at nice 19, the receiver) cancels out of the difference and is given per traced request beside it. Load average at start: ${r.load}.`,
    '',
    floor,
    ...(r.busy
      ? [
          '',
          'The machine was busy (load average above its core count at the start): the latency differences measure the neighbours as much as tracing; compare the A/A floor.',
        ]
      : []),
    '',
    `Target: tracing on adds ≤ ${TARGET_US} µs p50 per request at 500 req/s (issue 15; here ${s.rate} req/s through the machine), judged on the median, "not resolved" when the interval straddles ${TARGET_US} µs. ${verdicts}.`,
    '',
    table(
      [
        'challenger',
        'added p50 µs (90 % interval)',
        'verdict',
        'added main-thread CPU µs/request',
        'added CPU, all threads',
        'tracing worker CPU µs/request',
        'receiver CPU µs/request',
        'baseline p50 µs',
        'requests (failed)',
        'spans dropped',
      ],
      results.map((x) => [
        conditionName(x.condition),
        est(x.p50Us),
        x.condition === undefined ? '—' : x.verdict,
        est(x.mainUs, 1),
        est(x.allUs, 1),
        x.workerUs.toFixed(1),
        x.receiverUs.toFixed(1),
        Math.round(x.baseP50Us),
        `${x.requests} (${x.failed})`,
        x.dropped,
      ]),
    ),
  ].join('\n')
}
