// Loaded into the data plane by bench:decision-live --probe (`node --import tsx --import <this>`):
// wraps Scheduler.prototype.pick to tell what a slow decision was. Per decision it keeps the
// wall time and the thread's run-queue wait and switches onto a CPU (Linux
// /proc/thread-self/schedstat, read just outside the timed window: the wait is time the thread
// was ready but another process had the core), and whether a garbage collection (PerformanceObserver 'gc') overlapped it. The
// records go to DECISION_PROBE_OUT as JSON when the process exits. Bench-only: never in a build.
import { closeSync, openSync, readSync, writeFileSync } from 'node:fs'
import { PerformanceObserver } from 'node:perf_hooks'
import type { PickContext } from '../../dataplane/picker.js'
import { Scheduler } from '../../dataplane/scheduler/scheduler.js'

/** One decision as the probe saw it (ms on the performance clock, ns from schedstat). */
export interface ProbeRecord {
  readonly t0: number
  readonly wallUs: number
  /** Run-queue wait inside the window, µs. */
  readonly waitUs: number
  /** Times the thread was put on a CPU inside the window (0: it never left it). */
  readonly switches: number
  /**
   * The process's CPU time across the window (getrusage: exact for the calling thread, and V8's
   * helper threads are mostly idle for so short a window): the decision's cost without the time
   * another process held the core.
   */
  readonly cpuUs: number
}

export interface ProbeDump {
  readonly decisions: ProbeRecord[]
  /** [start, duration] of each collection, ms on the performance clock. */
  readonly gc: [number, number][]
}

/** "run_ns wait_ns slices" → [wait ns, slices] (schedstat). */
export function schedstatWait(text: string): [number, number] {
  const [, wait, slices] = text.trim().split(' ').map(Number)
  return [wait ?? Number.NaN, slices ?? Number.NaN]
}

const out = process.env['DECISION_PROBE_OUT']
if (out !== undefined) {
  const buf = Buffer.alloc(128)
  const fd = openSync('/proc/thread-self/schedstat', 'r')
  const read = (): [number, number] =>
    schedstatWait(buf.toString('latin1', 0, readSync(fd, buf, 0, 128, 0)))
  const decisions: ProbeRecord[] = []
  const gc: [number, number][] = []
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) gc.push([e.startTime, e.duration])
  }).observe({ entryTypes: ['gc'] })
  // Only the data plane's own scheduler: the first to take a snapshot. Its start-up warm-up
  // (warmup.ts) makes a throwaway Scheduler inside that call, whose picks may still run while
  // the first real requests arrive on a busy machine.
  let real: Scheduler | undefined
  const onSnapshot = Scheduler.prototype.onSnapshot
  Scheduler.prototype.onSnapshot = function (this: Scheduler, snapshot) {
    real ??= this
    onSnapshot.call(this, snapshot)
  }
  const pick = Scheduler.prototype.pick
  Scheduler.prototype.pick = function (this: Scheduler, ctx: PickContext) {
    if (this !== real) return pick.call(this, ctx)
    const [w0, s0] = read()
    const c0 = process.cpuUsage()
    const t0 = performance.now()
    const res = pick.call(this, ctx)
    const t1 = performance.now()
    const c1 = process.cpuUsage(c0)
    const [w1, s1] = read()
    decisions.push({
      t0,
      wallUs: (t1 - t0) * 1000,
      waitUs: (w1 - w0) / 1000,
      switches: s1 - s0,
      cpuUs: c1.user + c1.system,
    })
    return res
  }
  process.on('exit', () => {
    closeSync(fd)
    const dump: ProbeDump = { decisions, gc }
    writeFileSync(out, JSON.stringify(dump))
  })
}
