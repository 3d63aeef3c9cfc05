// `tsx hack/bench/scheduler-cost-profile.ts [--heap | --cpu]`: where bench:scheduler-cost's
// decision allocates (--heap, the default: V8's sampling heap profiler, collected objects
// included) or spends its time (--cpu: the sampling CPU profiler), attributed to functions and
// counted only in stacks under the scheduler's admit or pick. Same workload, seed and warm-up as
// the bench; requests are sent and completed around the decisions as there, but only the
// decision's share is printed, per decision. Function names only: the source tsx runs is one line
// per module. For line numbers, bundle it first (the profile then names bundle lines; written
// under node_modules so that the packages left out of the bundle resolve):
//   npx esbuild --bundle hack/bench/scheduler-cost-profile.ts --platform=node --format=esm \
//     --packages=external --outfile=node_modules/.cache/prof.mjs && \
//     node node_modules/.cache/prof.mjs --cpu
// Profiles of one build, not an A/B: the sampling itself slows the decision (a heap sample every
// 128 bytes, a CPU sample every 50 µs), and which numbers come back boxed depends on what V8
// inlined in that run: compare two runs before believing a difference under ~100 bytes.
import { writeFileSync } from 'node:fs'
import { Session } from 'node:inspector/promises'
import { parseArgs } from 'node:util'
import type { EngineMetrics } from '../../dataplane/engines/view.js'
import type { DispatchOutcome } from '../../dataplane/picker.js'
import { DEFAULT_PROFILE, Scheduler } from '../../dataplane/scheduler/index.js'
import { seeded, server, snapshot } from '../../dataplane/scheduler/testkit.js'
import { DueQueue } from './due-queue.js'
import { fmt, table } from './report.js'
import { ALL_PLUGINS, CostWorkload } from './scheduler-cost-workload.js'

const { values: opts } = parseArgs({
  options: {
    decisions: { type: 'string', default: '20000' },
    warmup: { type: 'string', default: '3000' },
    heap: { type: 'boolean', default: false },
    cpu: { type: 'boolean', default: false },
    top: { type: 'string', default: '30' },
    // As bench:scheduler-cost: fewer endpoints (1: a one-endpoint server) and the default
    // profile instead of every plugin.
    endpoints: { type: 'string', default: '64' },
    profile: { type: 'string', default: 'all' },
    // Count stacks under onDispatch too (the dispatch record, also on the request path).
    dispatch: { type: 'boolean', default: false },
    // --cpu: the profile written as JSON too (a .cpuprofile: DevTools, or inclusive times).
    save: { type: 'string' },
  },
})
if (opts.profile !== 'all' && opts.profile !== 'default') {
  process.stderr.write(`--profile must be all or default, not ${opts.profile}\n`)
  process.exit(2)
}

interface CallFrame {
  readonly functionName: string
  readonly url: string
}
interface HeapNode {
  readonly callFrame: CallFrame
  readonly selfSize: number
  readonly children: readonly HeapNode[]
}
interface CpuNode {
  readonly id: number
  readonly callFrame: CallFrame
  readonly children?: readonly number[]
  readonly positionTicks?: readonly { readonly line: number; readonly ticks: number }[]
}
interface CpuProfile {
  readonly nodes: readonly CpuNode[]
  readonly samples: readonly number[]
}

/** A frame as `function file` (the file relative to the checkout). */
function frameName(f: CallFrame): string {
  const file =
    f.url === '' ? '(builtin)' : f.url.replace(/^.*?\/(dataplane|hack|node_modules)\//, '$1/')
  return `${f.functionName === '' ? '(anonymous)' : f.functionName} ${file}`
}

/**
 * The steps counted: the scheduler's admit and pick (the decision), and with --dispatch its
 * onDispatch too (a bundle's frames name the .mjs file).
 */
const STEPS = new RegExp(
  `^(admit|pick${opts.dispatch ? '|onDispatch' : ''}) (dataplane\\/scheduler\\/scheduler\\.ts|\\S*\\.mjs)`,
)

/** A stack (innermost first) runs inside the counted steps (STEPS). */
function inDecision(stack: readonly string[]): boolean {
  return stack.some((f) => STEPS.test(f))
}

/** Self counts by innermost frame, largest first, the top `k` as rows (per decision). */
function rows(self: Map<string, number>, per: number, digits: number, k: number): string[][] {
  return [...self]
    .sort((a, b) => b[1] - a[1])
    .slice(0, k)
    .map(([name, v]) => [name, fmt(v / per, digits)])
}

async function main(): Promise<void> {
  const decisions = Number(opts.decisions)
  const work = new CostWorkload({
    endpoints: Number(opts.endpoints),
    promptTokens: 8192,
    rate: 200,
    groupEvery: 200,
  })
  const sched = new Scheduler({ scrape: false, now: () => work.now, random: seeded(42) })
  const ids = work.endpoints.map((e) => `${e.address}:${e.port}`)
  const srv = server(work.endpoints, {
    scheduler: opts.profile === 'default' ? DEFAULT_PROFILE : ALL_PLUGINS,
    attempts: 3,
  })
  sched.onSnapshot(snapshot([srv]))
  const scrape = (i: number, m: EngineMetrics): void => {
    const id = ids[i] as string
    sched.scrapeStarted(id)
    sched.ingestScrape(id, { ok: true, metrics: m, durationMs: 1 })
  }
  // Answers and copies in flight (as bench:scheduler-cost).
  const due = new DueQueue()
  const later = (t: number, run: () => void): void => due.later(t, run)
  const signal = new AbortController().signal
  const step = (): void => {
    const { ctx } = work.next(srv)
    due.runUntil(work, work.now)
    work.scrapeDue(scrape)
    const a = sched.admit(ctx, signal)
    const t = sched.pick(ctx)[0]
    if (t === undefined) throw new Error('no endpoint picked')
    const plan = sched.shadow(ctx)
    const finish = plan?.start()
    sched.onDispatch(ctx, t)
    if (plan !== undefined && finish !== undefined) {
      later(work.now + work.copied(ctx, work.podOf(plan.endpoint)), () => finish(true))
    }
    const o: DispatchOutcome = work.answer(ctx, work.podOf(t))
    later(work.now + o.durationMs, () => {
      sched.onComplete(ctx, t, o)
      if (a !== undefined && !(a instanceof Promise)) a.release()
    })
  }
  for (let i = 0; i < Number(opts.warmup); i++) step()
  const session = new Session()
  session.connect()
  const top = Number(opts.top)
  if (opts.cpu === true) {
    await session.post('Profiler.enable')
    await session.post('Profiler.setSamplingInterval', { interval: 50 })
    await session.post('Profiler.start')
    for (let i = 0; i < decisions; i++) step()
    const { profile } = (await session.post('Profiler.stop')) as unknown as { profile: CpuProfile }
    if (opts.save !== undefined) writeFileSync(opts.save, JSON.stringify(profile))
    const byId = new Map<number, CpuNode>()
    const parent = new Map<number, number>()
    for (const n of profile.nodes) {
      byId.set(n.id, n)
      for (const c of n.children ?? []) parent.set(c, n.id)
    }
    const hits = new Map<number, number>()
    for (const id of profile.samples) hits.set(id, (hits.get(id) ?? 0) + 1)
    const self = new Map<string, number>()
    const lines = new Map<string, number>()
    let total = 0
    for (const [id, c] of hits) {
      const stack: string[] = []
      for (let x: number | undefined = id; x !== undefined; x = parent.get(x)) {
        const n = byId.get(x)
        if (n !== undefined) stack.push(frameName(n.callFrame))
      }
      if (!inDecision(stack)) continue
      total += c
      self.set(stack[0] as string, (self.get(stack[0] as string) ?? 0) + c)
      for (const t of byId.get(id)?.positionTicks ?? []) {
        const at = `${stack[0] as string}:${t.line}`
        lines.set(at, (lines.get(at) ?? 0) + t.ticks)
      }
    }
    // Lines mean something only in a bundle (tsx's modules are one line each).
    const lineRows =
      [...lines.keys()].some((k) => !k.endsWith(':1')) && lines.size > 0
        ? `\n\n${table(['innermost function:line', '% of the decision'], rows(lines, total / 100, 1, top))}`
        : ''
    process.stdout.write(
      `CPU samples (every 50 µs) inside admit + pick${opts.dispatch ? ' + onDispatch' : ''}: ${total}, ~${fmt((total * 50) / decisions, 1)} µs per decision (sampled, so slower than the bench)\n\n${table(
        ['innermost function', '% of the decision'],
        rows(self, total / 100, 1, top),
      )}${lineRows}\n`,
    )
    return
  }
  await session.post('HeapProfiler.startSampling', {
    samplingInterval: 128,
    includeObjectsCollectedByMajorGC: true,
    includeObjectsCollectedByMinorGC: true,
  })
  for (let i = 0; i < decisions; i++) step()
  const { profile } = (await session.post('HeapProfiler.stopSampling')) as unknown as {
    profile: { head: HeapNode }
  }
  const self = new Map<string, number>()
  let total = 0
  const walk = (n: HeapNode, stack: string[]): void => {
    stack.unshift(frameName(n.callFrame))
    if (n.selfSize > 0 && inDecision(stack)) {
      total += n.selfSize
      self.set(stack[0] as string, (self.get(stack[0] as string) ?? 0) + n.selfSize)
    }
    for (const c of n.children) walk(c, stack)
    stack.shift()
  }
  walk(profile.head, [])
  process.stdout.write(
    `Bytes allocated inside admit + pick${opts.dispatch ? ' + onDispatch' : ''} (sampled every 128 bytes, collected objects included): ${fmt(total / decisions, 0)} per decision\n\n${table(
      ['innermost function', 'bytes per decision'],
      rows(self, decisions, 0, top),
    )}\n`,
  )
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`)
  process.exitCode = 1
})
