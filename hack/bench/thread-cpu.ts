// Per-thread CPU and run-queue wait of benchmarked processes from /proc (Linux): where a cost lands
// (the thread serving requests, a helper thread such as the tracing worker, V8's GC helpers) and
// how long the serving thread was ready to run but had no core — on a shared two-core machine the
// part of added latency that is another thread's or process's CPU, not this thread's own work.
// schedstat is in nanoseconds (utime/stime are 10 ms ticks): a few seconds at 500 req/s resolve
// well below a microsecond per request.
import { readdir, readFile } from 'node:fs/promises'
import { processTree } from './proxy-procfs.js'

export interface ThreadSample {
  readonly pid: number
  readonly tid: number
  /** The thread's own nice value (Linux threads have one each). */
  readonly nice: number
  /** On a CPU so far (ns). */
  readonly runNs: number
  /** Ready to run but waiting for a CPU so far (ns). */
  readonly waitNs: number
  /** Times it was scheduled onto a CPU so far. */
  readonly slices: number
}

/** The nice value from a /proc/<pid>/task/<tid>/stat line (field 19; the name may hold spaces). */
export function statNice(stat: string): number {
  const close = stat.lastIndexOf(')')
  if (close < 0) return Number.NaN
  // After ") " come: state(3) … priority(18), nice(19): index 16 of what follows the name.
  return Number(stat.slice(close + 2).split(' ')[16])
}

/** "run_ns wait_ns slices" of /proc/<pid>/task/<tid>/schedstat. */
export function parseSchedstat(s: string): { runNs: number; waitNs: number; slices: number } {
  const [run, wait, slices] = s.trim().split(' ').map(Number)
  return { runNs: run ?? Number.NaN, waitNs: wait ?? Number.NaN, slices: slices ?? Number.NaN }
}

/** Every thread of `pids` alive now. */
export async function sampleThreads(pids: readonly number[]): Promise<ThreadSample[]> {
  const out: ThreadSample[] = []
  for (const pid of pids) {
    let tids: string[]
    try {
      tids = await readdir(`/proc/${pid}/task`)
    } catch {
      continue // exited
    }
    for (const t of tids) {
      try {
        const dir = `/proc/${pid}/task/${t}`
        const nice = statNice(await readFile(`${dir}/stat`, 'utf8'))
        const s = parseSchedstat(await readFile(`${dir}/schedstat`, 'utf8'))
        out.push({ pid, tid: Number(t), nice, ...s })
      } catch {
        // the thread ended between listing and reading
      }
    }
  }
  return out
}

/** Every thread of `root` and its descendants. */
export async function sampleTree(root: number): Promise<ThreadSample[]> {
  return sampleThreads(await processTree(root))
}

/** What each thread did between two samples (threads started in between count from 0). */
export function threadDeltas(
  before: readonly ThreadSample[],
  after: readonly ThreadSample[],
): ThreadSample[] {
  const b = new Map(before.map((s) => [s.tid, s]))
  return after.map((a) => {
    const p = b.get(a.tid)
    return p === undefined
      ? a
      : {
          ...a,
          runNs: a.runNs - p.runNs,
          waitNs: a.waitNs - p.waitNs,
          slices: a.slices - p.slices,
        }
  })
}

/** The threads of a Node process by role: its main thread, threads set to another nice, the rest. */
export interface NodeThreads {
  /** The main threads (tid = pid): the event loops serving requests. */
  readonly main: { readonly runNs: number; readonly waitNs: number; readonly slices: number }
  /** Threads whose nice differs from their main thread's (the tracing worker lowers its own). */
  readonly reniced: { readonly runNs: number; readonly count: number }
  /** Every other thread (V8's platform/GC helpers, libuv's pool, worker threads left at nice 0). */
  readonly otherRunNs: number
}

export function nodeThreads(deltas: readonly ThreadSample[]): NodeThreads {
  const mainNice = new Map<number, number>()
  for (const d of deltas) if (d.tid === d.pid) mainNice.set(d.pid, d.nice)
  const main = { runNs: 0, waitNs: 0, slices: 0 }
  const reniced = { runNs: 0, count: 0 }
  let otherRunNs = 0
  for (const d of deltas) {
    if (d.tid === d.pid) {
      main.runNs += d.runNs
      main.waitNs += d.waitNs
      main.slices += d.slices
    } else if (d.nice !== mainNice.get(d.pid)) {
      reniced.runNs += d.runNs
      reniced.count++
    } else otherRunNs += d.runNs
  }
  return { main, reniced, otherRunNs }
}

/** Sum of the threads' CPU (ns). */
export function runNs(deltas: readonly ThreadSample[]): number {
  return deltas.reduce((a, d) => a + d.runNs, 0)
}
