// `tsx hack/bench/scheduler-cost-ab.ts <checkout A> <checkout B>`: bench:scheduler-cost's decision
// timed for two builds in one process, for A/B on a machine others are using. Each checkout (a
// git worktree with node_modules linked) gets its own scheduler, workload and module instances;
// after the same warm-up, their decisions are timed in alternating chunks (A then B, then B then
// A, ...), so both meet the same load, frequency and steal at the same moments. Run as separate
// processes one after the other, the two builds' p50 moved by 20-30 % between runs at a load of
// 4-6 on 2 cores (this session's notes); in one process the order-swapped runs agreed within a few
// percent. Both builds share one heap and one garbage collector, and each one's data is evicted
// from the CPU caches by the other's: figures are higher than bench:scheduler-cost's, for the
// comparison only. Prints p50/p90/p99 (wall and process CPU, µs) and each build's picks digest.
import { resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import type { SnapshotEndpoint } from '../../api/snapshot.js'
import type { EngineMetrics } from '../../dataplane/engines/view.js'
import type { PickContext } from '../../dataplane/picker.js'
import { DueQueue } from './due-queue.js'
import { percentile } from './load.js'
import { fmt, table } from './report.js'
// This checkout's profile for both builds (an older checkout may not export it).
import { ALL_PLUGINS } from './scheduler-cost-workload.js'

type SchedulerModule = typeof import('../../dataplane/scheduler/index.js')
type TestkitModule = typeof import('../../dataplane/scheduler/testkit.js')
type WorkloadModule = typeof import('./scheduler-cost-workload.js')

const { values: opts, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    decisions: { type: 'string', default: '20000' },
    warmup: { type: 'string', default: '3000' },
    chunk: { type: 'string', default: '50' },
  },
})

/** One build's scheduler on its own workload: `step` makes, decides and sends one request. */
interface Side {
  readonly root: string
  readonly wall: number[]
  readonly cpu: number[]
  digest: number
  step(timed: boolean): void
}

async function side(root: string): Promise<Side> {
  const at = (p: string) => pathToFileURL(resolve(root, p)).href
  const { Scheduler } = (await import(at('dataplane/scheduler/index.ts'))) as SchedulerModule
  const { seeded, server, snapshot } = (await import(
    at('dataplane/scheduler/testkit.ts')
  )) as TestkitModule
  const { CostWorkload } = (await import(
    at('hack/bench/scheduler-cost-workload.ts')
  )) as WorkloadModule
  const work = new CostWorkload({ endpoints: 64, promptTokens: 8192, rate: 200, groupEvery: 200 })
  // As bench:scheduler-cost: the workload's virtual clock, the same seed.
  const sched = new Scheduler({ scrape: false, now: () => work.now, random: seeded(42) })
  const ids = work.endpoints.map((e) => `${e.address}:${e.port}`)
  const srv = server(work.endpoints, { scheduler: ALL_PLUGINS, attempts: 3 })
  sched.onSnapshot(snapshot([srv]))
  const scrape = (i: number, m: EngineMetrics): void => {
    const id = ids[i] as string
    sched.scrapeStarted(id)
    sched.ingestScrape(id, { ok: true, metrics: m, durationMs: 1 })
  }
  // Answers and copies in flight.
  const due = new DueQueue()
  const later = (t: number, run: () => void): void => due.later(t, run)
  const signal = new AbortController().signal
  const s: Side = {
    root,
    wall: [],
    cpu: [],
    digest: 0x811c9dc5,
    step(timed: boolean): void {
      const { ctx } = work.next(srv)
      due.runUntil(work, work.now)
      work.scrapeDue(scrape)
      const c0 = process.cpuUsage()
      const t0 = performance.now()
      const a = sched.admit(ctx, signal)
      const picked = sched.pick(ctx)
      const t1 = performance.now()
      const c1 = process.cpuUsage(c0)
      const t = picked[0]
      if (t === undefined) throw new Error(`${root}: no endpoint picked`)
      if (timed) {
        s.wall.push((t1 - t0) * 1000)
        s.cpu.push(c1.user + c1.system)
        for (const e of picked) s.digest = Math.imul(s.digest ^ work.podOf(e), 0x01000193) >>> 0
      }
      send(ctx, t, a)
    },
  }
  const send = (ctx: PickContext, t: SnapshotEndpoint, a: ReturnType<typeof sched.admit>) => {
    const plan = sched.shadow(ctx)
    const finish = plan?.start()
    sched.onDispatch(ctx, t)
    if (plan !== undefined && finish !== undefined) {
      later(work.now + work.copied(ctx, work.podOf(plan.endpoint)), () => finish(true))
    }
    const o = work.answer(ctx, work.podOf(t))
    later(work.now + o.durationMs, () => {
      sched.onComplete(ctx, t, o)
      if (a !== undefined && !(a instanceof Promise)) a.release()
    })
  }
  return s
}

async function main(): Promise<void> {
  const [a, b] = positionals
  if (a === undefined || b === undefined) {
    throw new Error('usage: tsx hack/bench/scheduler-cost-ab.ts <checkout A> <checkout B>')
  }
  const decisions = Number(opts.decisions)
  const chunk = Number(opts.chunk)
  const sides = [await side(a), await side(b)]
  for (let i = 0; i < Number(opts.warmup); i++) for (const s of sides) s.step(false)
  for (let d = 0, k = 0; d < decisions; d += chunk, k++) {
    for (const s of k % 2 === 0 ? sides : [...sides].reverse()) {
      for (let i = 0; i < chunk; i++) s.step(true)
    }
  }
  const rows = sides.map((s, i) => {
    const wall = [...s.wall].sort((x, y) => x - y)
    const cpu = [...s.cpu].sort((x, y) => x - y)
    return [
      `${i === 0 ? 'A' : 'B'} ${s.root}`,
      s.digest.toString(16).padStart(8, '0'),
      `${fmt(percentile(wall, 50), 1)} / ${fmt(percentile(wall, 90), 1)} / ${fmt(percentile(wall, 99), 1)}`,
      `${fmt(percentile(cpu, 50), 0)} / ${fmt(percentile(cpu, 99), 0)}`,
    ]
  })
  process.stdout.write(
    `${decisions} decisions each after ${opts.warmup} warm-up, alternating chunks of ${chunk}, µs\n\n${table(['build', 'picks digest', 'decision p50 / p90 / p99', 'CPU p50 / p99'], rows)}\n`,
  )
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`)
  process.exitCode = 1
})
