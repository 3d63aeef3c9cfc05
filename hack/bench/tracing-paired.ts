// bench:tracing --paired: tracing off and on measured at the same time. Two data planes run side by
// side against the same engine and receiver, each at half the rate; whatever else the machine is
// doing then hits both alike, and the difference of each round — main-thread CPU per request, all
// threads', the tracing worker's, p50 — is paired. On the busy shared two-core machine the
// sequential runs' main-thread CPU moves by ±50 µs from run to run, more than the request path's
// own span work; paired rounds resolve it. Ports alternate between the modes every round.
import { join } from 'node:path'
import type { Proc } from './procs.js'
import { spawnBundle } from './proxy-bundle.js'
import { attack, report, type VegetaReport } from './proxy-vegeta.js'
import { nodeThreads, runNs, sampleTree, type ThreadSample, threadDeltas } from './thread-cpu.js'

export interface PairedSetup {
  readonly vegeta: string
  readonly bundle: string
  readonly dir: string
  readonly config: string
  readonly body: string
  /** The OTLP receiver's base URL. */
  readonly otlp: string
  /** More tracing flags of the traced data plane (--otlp-protocol). */
  readonly tracingArgs: readonly string[]
  /** The two data planes' ports. */
  readonly ports: readonly [number, number]
  /** Both data planes together (each gets half). */
  readonly rate: number
  readonly seconds: number
  readonly rounds: number
}

/** One side of a round, µs per request. */
interface Side {
  readonly mainUs: number
  readonly allUs: number
  readonly workerUs: number
  readonly p50Us: number
}

export interface PairedResult {
  readonly ratio: string
  /** Per round: on minus off. */
  readonly rounds: readonly Side[]
  /** Medians of the rounds' differences. */
  readonly median: Side
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const m = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2
}

function side(d: readonly ThreadSample[], r: VegetaReport): Side {
  const t = nodeThreads(d)
  const per = (ns: number): number => ns / 1000 / r.requests
  return {
    mainUs: per(t.main.runNs),
    allUs: per(runNs(d)),
    workerUs: per(t.reniced.runNs),
    p50Us: r.p50Ms * 1000,
  }
}

const diff = (on: Side, off: Side): Side => ({
  mainUs: on.mainUs - off.mainUs,
  allUs: on.allUs - off.allUs,
  workerUs: on.workerUs - off.workerUs,
  p50Us: on.p50Us - off.p50Us,
})

function dataPlane(s: PairedSetup, ratio: string | undefined, port: number): Promise<Proc> {
  const args = [
    '--config',
    s.config,
    '--host',
    '127.0.0.1',
    '--port',
    String(port),
    '--no-access-log',
    '--drain-delay',
    '0',
    '--workers',
    '1',
    ...(ratio !== undefined
      ? ['--otlp-endpoint', s.otlp, '--trace-sample-ratio', ratio, ...s.tracingArgs]
      : []),
  ]
  return spawnBundle(s.bundle, args, /data plane listening/)
}

/** Off against `ratio`, side by side, `s.rounds` times. */
export async function pairedRuns(
  s: PairedSetup,
  ratio: string,
  log: (line: string) => void,
): Promise<PairedResult> {
  const rounds: Side[] = []
  for (let round = 0; round < s.rounds; round++) {
    // Odd rounds swap the ports: neither mode always has the first one.
    const [offPort, onPort] = round % 2 === 0 ? s.ports : [s.ports[1], s.ports[0]]
    const off = await dataPlane(s, undefined, offPort)
    let on: Proc | undefined
    try {
      on = await dataPlane(s, ratio, onPort)
      const both = (seconds: number, tag: string) =>
        Promise.all(
          [offPort, onPort].map((port) =>
            attack(s.vegeta, {
              url: `http://127.0.0.1:${port}/v1/chat/completions`,
              bodyFile: s.body,
              rate: s.rate / 2,
              seconds,
              output: join(s.dir, `paired-${ratio}-${round}-${tag}-${port}.bin`),
            }),
          ),
        )
      await both(3, 'warm')
      const pids = [off.child.pid, on.child.pid]
      if (pids[0] === undefined || pids[1] === undefined) throw new Error('data plane has no pid')
      const before = await Promise.all(pids.map((p) => sampleTree(p as number)))
      await both(s.seconds, 'run')
      const after = await Promise.all(pids.map((p) => sampleTree(p as number)))
      const [rOff, rOn] = await Promise.all(
        [offPort, onPort].map((port) =>
          report(s.vegeta, [join(s.dir, `paired-${ratio}-${round}-run-${port}.bin`)]),
        ),
      )
      const offSide = side(threadDeltas(before[0] ?? [], after[0] ?? []), rOff as VegetaReport)
      const onSide = side(threadDeltas(before[1] ?? [], after[1] ?? []), rOn as VegetaReport)
      const d = diff(onSide, offSide)
      rounds.push(d)
      const f = (x: number): string => `${x >= 0 ? '+' : ''}${x.toFixed(1)}`
      log(
        `paired round ${round + 1}, ratio ${ratio} vs off: main thread ${onSide.mainUs.toFixed(1)} vs ${offSide.mainUs.toFixed(1)} µs/request (${f(d.mainUs)}), all threads ${f(d.allUs)}, tracing worker ${onSide.workerUs.toFixed(1)}, p50 ${f(d.p50Us)} µs`,
      )
    } finally {
      await on?.stop()
      await off.stop()
    }
  }
  const m = (k: keyof Side): number => Math.round(median(rounds.map((x) => x[k])) * 10) / 10
  return {
    ratio,
    rounds,
    median: { mainUs: m('mainUs'), allUs: m('allUs'), workerUs: m('workerUs'), p50Us: m('p50Us') },
  }
}

/** The summary lines of paired results. */
export function pairedSummary(results: readonly PairedResult[], s: PairedSetup): string {
  const lines = [
    `Paired runs: tracing off and on side by side, ${s.rate / 2} req/s each, ${s.seconds} s after a 3 s warm-up, ${s.rounds} rounds; medians of the rounds' differences (on − off), per request:`,
  ]
  for (const r of results) {
    const range = (k: keyof Side): string => {
      const xs = r.rounds.map((x) => x[k])
      return `${Math.min(...xs).toFixed(1)}..${Math.max(...xs).toFixed(1)}`
    }
    lines.push(
      `- ratio ${r.ratio}: main thread ${r.median.mainUs} µs (rounds ${range('mainUs')}), all threads ${r.median.allUs} µs (${range('allUs')}), tracing worker ${r.median.workerUs} µs, p50 ${r.median.p50Us} µs (${range('p50Us')})`,
    )
  }
  return lines.join('\n')
}
