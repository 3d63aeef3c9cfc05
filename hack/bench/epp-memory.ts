// The EPP's memory over time by where it scrapes its pods' engine /metrics (issue 13): one EPP per
// `--scrape` value, all running at once against the same simulated pods, sampled every few
// seconds — the process's resident memory (/proc/<pid>/status) and, from its `--trace-gc` lines,
// each isolate's heap after its collections: the main thread's and the scrape worker's apart
// (a worker thread has its own V8 isolate and heap, and its own young generation).
//
//   npx tsx hack/bench/epp-memory.ts [--minutes 10] [--scrape thread,inline] [--bundle]
//
// What tells a leak from a heap that only settles higher: the worker's heap after its
// mark-compacts (its live set) over the run, against its first minutes. RSS is the whole
// process: the thread EPP's RSS over the inline one's is what the worker costs.
// Idle EPPs (no ext_proc traffic): the worker only ever scrapes, so traffic does not change its
// heap; the main thread's heap under traffic is the soak's business (hack/hardening/soak.ts).

import { mkdtemp, readFile, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { EPP_NODE_OPTIONS } from '../../cdk8s/epp.js'
import { manifests } from '../../test/helpers/config.js'
import { type SimHandle, startSimulator } from '../sim/index.js'
import { GC_MAIN_FIRST_ARGS, type GcPause, watchGc } from './gc-trace.js'
import { statCpuTicks } from './proc-cpu.js'
import { type Proc, spawnCli } from './procs.js'
import { bundleDataplane, spawnBundle } from './proxy-bundle.js'
import { fmt, table } from './report.js'

const { values: opts } = parseArgs({
  options: {
    minutes: { type: 'string', default: '10' },
    pods: { type: 'string', default: '8' },
    /** One EPP per value, all running at once. */
    scrape: { type: 'string', default: 'thread,inline' },
    /** Seconds between samples. */
    every: { type: 'string', default: '15' },
    /** Seconds before the baseline sample (loading, first scrapes, the young generation's growth). */
    settle: { type: 'string', default: '60' },
    bundle: { type: 'boolean', default: false },
    /** Node flags of the EPPs (default: the install manifests' NODE_OPTIONS). */
    'epp-node-args': { type: 'string', default: EPP_NODE_OPTIONS },
    /** Every sample as JSON lines into this file. */
    out: { type: 'string' },
  },
})

/** kB fields of /proc/<pid>/status. */
export function statusKb(status: string, field: string): number | undefined {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)
  return m === null ? undefined : Number(m[1])
}

interface IsolateWindow {
  gcs: number
  markCompacts: number
  /** Lowest heap after a collection in the window, MB. */
  minAfterMb: number | undefined
  /** Heap after the window's last mark-compact, MB (its live set then). */
  lastMarkCompactMb: number | undefined
  committedMb: number | undefined
}

export interface MemorySample {
  readonly scrape: string
  readonly atS: number
  readonly rssMb: number | undefined
  readonly rssAnonMb: number | undefined
  /** The process's user + system CPU so far, s. */
  readonly cpuS: number | undefined
  readonly main: IsolateWindow
  /** Every isolate but the main one (the scrape worker; a new address after a restart). */
  readonly worker: IsolateWindow
  /** Worker isolates seen so far (1 = never restarted). */
  readonly workerIsolates: number
}

export function windowOf(pauses: readonly GcPause[]): IsolateWindow {
  const w: IsolateWindow = {
    gcs: 0,
    markCompacts: 0,
    minAfterMb: undefined,
    lastMarkCompactMb: undefined,
    committedMb: undefined,
  }
  for (const p of pauses) {
    w.gcs++
    w.minAfterMb = Math.min(w.minAfterMb ?? Number.POSITIVE_INFINITY, p.afterMb)
    w.committedMb = p.committedMb
    if (p.kind === 'mark-compact') {
      w.markCompacts++
      w.lastMarkCompactMb = p.afterMb
    }
  }
  return w
}

interface Epp {
  readonly scrape: string
  readonly proc: Proc
  readonly gc: ReturnType<typeof watchGc>
  readonly workers: Set<string>
  /** The last mark-compact's live set per isolate kind, carried across windows without one. */
  lastMc: { main: number | undefined; worker: number | undefined }
}

async function main(): Promise<void> {
  const sims: SimHandle[] = []
  const epps: Epp[] = []
  const stop = async (): Promise<void> => {
    for (const e of epps.splice(0)) await e.proc.stop()
    await Promise.all(sims.splice(0).map((s) => s.close()))
  }
  try {
    for (let i = 0; i < Number(opts.pods); i++)
      sims.push(
        await startSimulator({
          name: `mem-epp-${i}`,
          host: `127.0.0.${140 + i}`,
          port: 0,
          model: 'bench-model',
          metricsFormat: 'vllm',
          zeroLatency: true,
        }),
      )
    const dir = await mkdtemp(join(tmpdir(), 'bench-epp-memory-'))
    const config = join(dir, 'pool.yaml')
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
    const bundle = opts.bundle
      ? join(await bundleDataplane(join(dir, 'bundle')), '..', 'infer-gateway.mjs')
      : undefined
    const nodeArgs = [
      '--trace-gc',
      ...GC_MAIN_FIRST_ARGS,
      ...opts['epp-node-args'].split(' ').filter((a) => a !== ''),
    ]
    for (const scrape of opts.scrape.split(',')) {
      const args = [
        'epp',
        '--server',
        'default/pool',
        '--config',
        config,
        '--host',
        '127.0.0.1',
        '--grpc-port',
        '0',
        '--metrics-port',
        'off',
        '--scrape',
        scrape,
      ]
      const ready = /"msg":"epp listening"/
      const proc =
        bundle !== undefined
          ? await spawnBundle(bundle, args, ready, nodeArgs)
          : await spawnCli(args, ready, nodeArgs)
      if (proc.child.stdout === null)
        throw new Error('the EPP has no stdout to read --trace-gc from')
      epps.push({
        scrape,
        proc,
        gc: watchGc(proc.child.stdout),
        workers: new Set(),
        lastMc: { main: undefined, worker: undefined },
      })
    }
    const samples: MemorySample[] = []
    const t0 = performance.now()
    const endS = Number(opts.settle) + Number(opts.minutes) * 60
    const every = Number(opts.every) * 1000
    for (;;) {
      await new Promise((r) => setTimeout(r, every))
      const atS = Math.round((performance.now() - t0) / 1000)
      for (const e of epps) {
        const pid = e.proc.child.pid
        const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '')
        const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '')
        const all = e.gc.takeAll()
        const mainId = e.gc.main()
        const mine = all.filter((p) => p.isolate === mainId)
        const theirs = all.filter((p) => p.isolate !== mainId)
        for (const p of theirs) e.workers.add(p.isolate)
        const rss = statusKb(status, 'VmRSS')
        const anon = statusKb(status, 'RssAnon')
        const s: MemorySample = {
          scrape: e.scrape,
          atS,
          rssMb: rss !== undefined ? rss / 1024 : undefined,
          rssAnonMb: anon !== undefined ? anon / 1024 : undefined,
          // Clock ticks, 100 per second (proc-cpu.ts).
          cpuS: stat !== '' ? statCpuTicks(stat) / 100 : undefined,
          main: windowOf(mine),
          worker: windowOf(theirs),
          workerIsolates: e.workers.size,
        }
        // A window without a mark-compact keeps the last one's live set.
        e.lastMc.main = s.main.lastMarkCompactMb ?? e.lastMc.main
        e.lastMc.worker = s.worker.lastMarkCompactMb ?? e.lastMc.worker
        s.main.lastMarkCompactMb = e.lastMc.main
        s.worker.lastMarkCompactMb = e.lastMc.worker
        samples.push(s)
        process.stderr.write(`${JSON.stringify(s)}\n`)
        if (opts.out !== undefined)
          await writeFile(opts.out, `${JSON.stringify(s)}\n`, { flag: 'a' })
      }
      if (atS >= endS) break
    }
    process.stdout.write(`${report(samples, Number(opts.settle))}\n`)
  } finally {
    await stop()
  }
}

const mb = (v: number | undefined): string => (v === undefined ? '—' : fmt(v, 1))

/** Baseline (first sample at or after `settleS`) against the last sample, per EPP. */
export function report(samples: readonly MemorySample[], settleS: number): string {
  const rows: (string | number)[][] = []
  for (const scrape of [...new Set(samples.map((s) => s.scrape))]) {
    const mine = samples.filter((s) => s.scrape === scrape)
    const base = mine.find((s) => s.atS >= settleS) ?? mine[0]
    const last = mine[mine.length - 1]
    if (base === undefined || last === undefined) continue
    const gcs = mine.filter((s) => s.atS > base.atS)
    for (const [label, s] of [
      ['baseline', base],
      ['end', last],
    ] as const)
      rows.push([
        scrape,
        `${label} (${s.atS} s)`,
        mb(s.rssMb),
        mb(s.rssAnonMb),
        mb(s.main.minAfterMb),
        mb(s.main.lastMarkCompactMb),
        mb(s.worker.minAfterMb),
        mb(s.worker.lastMarkCompactMb),
        mb(s.worker.committedMb),
        label === 'end'
          ? `${gcs.reduce((a, g) => a + g.worker.gcs, 0)} / ${gcs.reduce((a, g) => a + g.worker.markCompacts, 0)}`
          : '',
        label === 'end' && s.cpuS !== undefined && base.cpuS !== undefined && s.atS > base.atS
          ? fmt(((s.cpuS - base.cpuS) * 1000) / (s.atS - base.atS), 1)
          : '',
        s.workerIsolates,
      ])
  }
  return [
    `EPP memory, idle, ${opts.pods} simulated pods scraped every 200 ms, ${opts.minutes} min after a ${settleS} s settle (${opts.bundle ? 'bundle' : 'sources through tsx'}; Node flags: \`${opts['epp-node-args'] || 'none'}\`). Heap after GC = the lowest heap in use after a collection in the sample's window; live set = after the last mark-compact so far.`,
    '',
    table(
      [
        'scrape',
        'sample',
        'RSS MB',
        'RSS anon MB',
        'main heap after GC MB',
        'main live set MB',
        'worker heap after GC MB',
        'worker live set MB',
        'worker committed MB',
        'worker GCs / mark-compacts',
        'process CPU ms/s',
        'worker isolates',
      ],
      rows,
    ),
  ].join('\n')
}

if (import.meta.url === `file://${process.argv[1]}`)
  main().catch((e: unknown) => {
    process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`)
    process.exitCode = 1
  })
