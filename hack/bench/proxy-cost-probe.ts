// The in-process half of `hack/bench/proxy-cost.ts`: loaded into our data plane with
// `node --import`, it measures a window the benchmark opens and closes with SIGUSR2 — CPU
// (process.cpuUsage), garbage collections (count and pauses), event-loop delay, and, when asked,
// bytes allocated by function (V8's sampling heap profiler, counting objects already collected,
// so it reports allocation, not what is live). Numbers from inside the process are not disturbed
// by other work on a shared machine as much as latency is: a run on a busy machine still tells
// whether a change made each request cheaper.
//
// The source is written to a file and loaded by path (PROBE_SOURCE), so the data plane's bundle
// needs nothing of it.

/** What the probe writes to $IGW_COST_OUT when a window closes. */
export interface ProbeWindow {
  readonly elapsedMs: number
  readonly cpuUserUs: number
  readonly cpuSystemUs: number
  readonly gc: {
    readonly minor: number
    readonly major: number
    readonly pauseMs: number
    readonly maxPauseMs: number
  }
  readonly eventLoopDelay: {
    readonly p50Ms: number
    readonly p99Ms: number
    readonly maxMs: number
  }
  /** Present when the window sampled allocations: estimated bytes allocated in it. */
  readonly allocatedBytes?: number
  /** Top allocating functions (self), bytes. */
  readonly topAllocations?: readonly (readonly [string, number])[]
}

/** Per-syscall call counts from `strace -c` output. */
export function straceCounts(text: string): Map<string, number> {
  const counts = new Map<string, number>()
  for (const line of text.split('\n')) {
    // % time  seconds  usecs/call  calls  [errors]  syscall
    const m = /^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?([a-z_0-9]+)\s*$/.exec(line)
    if (m?.[1] !== undefined && m[2] !== undefined && m[2] !== 'total')
      counts.set(m[2], Number(m[1]))
  }
  return counts
}

/** ES module source of the probe (plain JS: it runs in the data plane's Node, untranspiled). */
export const PROBE_SOURCE = `
import { existsSync, renameSync, writeFileSync } from 'node:fs'
import { Session } from 'node:inspector'
import { monitorEventLoopDelay, PerformanceObserver, constants } from 'node:perf_hooks'

const outFile = process.env.IGW_COST_OUT
let win

function post(session, method, params) {
  return new Promise((resolve, reject) =>
    session.post(method, params, (err, res) => (err ? reject(err) : resolve(res))),
  )
}

async function open() {
  // proxy-cost-warmup.ts --gc-before-window (node --expose-gc): a full, non-memory-reducing
  // collection before the window, outside what it counts, to see what optimized code a
  // mark-compact throws away after the previous window's client connections have closed.
  if (process.env.IGW_COST_GC_BEFORE === '1' && typeof globalThis.gc === 'function') globalThis.gc()
  const gc = { minor: 0, major: 0, pauseMs: 0, maxPauseMs: 0 }
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const kind = e.detail?.kind ?? e.kind
      if (kind === constants.NODE_PERFORMANCE_GC_MINOR) gc.minor++
      else gc.major++
      gc.pauseMs += e.duration
      if (e.duration > gc.maxPauseMs) gc.maxPauseMs = e.duration
    }
  })
  obs.observe({ entryTypes: ['gc'] })
  const eld = monitorEventLoopDelay({ resolution: 1 })
  eld.enable()
  let session
  // The benchmark asks for allocation sampling per window (it costs CPU of its own).
  if (existsSync(outFile + '.heap')) {
    session = new Session()
    session.connect()
    await post(session, 'HeapProfiler.startSampling', {
      samplingInterval: 8192,
      includeObjectsCollectedByMajorGC: true,
      includeObjectsCollectedByMinorGC: true,
    })
  }
  // And for a CPU profile of the window alone (no start-up, no warm-up).
  if (existsSync(outFile + '.cpu')) {
    if (session === undefined) {
      session = new Session()
      session.connect()
    }
    await post(session, 'Profiler.enable', {})
    await post(session, 'Profiler.setSamplingInterval', { interval: 200 })
    await post(session, 'Profiler.start', {})
  }
  win = { gc, obs, eld, session, cpu: process.cpuUsage(), t0: performance.now() }
  writeFileSync(outFile + '.opened', '')
}

function walk(node, totals, caller) {
  const f = node.callFrame
  const url = f.url.replace(/^.*node_modules\\//, '').replace(/^.*\\//, '')
  const own = (f.functionName || '(anonymous)') + ' ' + url + ':' + (f.lineNumber + 1)
  // A built-in without a script (Map, subarray, an iterator's next) says little alone: it is
  // named with the function that called it.
  const key = url === '' && caller !== undefined ? own + ' <- ' + caller : own
  if (node.selfSize > 0) totals.set(key, (totals.get(key) ?? 0) + node.selfSize)
  for (const c of node.children) walk(c, totals, url === '' && caller !== undefined ? caller : own)
}

async function close() {
  const w = win
  win = undefined
  const cpu = process.cpuUsage(w.cpu)
  const elapsedMs = performance.now() - w.t0
  const result = {
    elapsedMs,
    cpuUserUs: cpu.user,
    cpuSystemUs: cpu.system,
    gc: w.gc,
    eventLoopDelay: {
      p50Ms: w.eld.percentile(50) / 1e6,
      p99Ms: w.eld.percentile(99) / 1e6,
      maxMs: w.eld.max / 1e6,
    },
  }
  w.eld.disable()
  w.obs.disconnect()
  if (w.session && existsSync(outFile + '.cpu')) {
    const { profile } = await post(w.session, 'Profiler.stop', {})
    writeFileSync(outFile + '.cpuprofile', JSON.stringify(profile))
  }
  if (w.session && existsSync(outFile + '.heap')) {
    const { profile } = await post(w.session, 'HeapProfiler.getSamplingProfile', {})
    await post(w.session, 'HeapProfiler.stopSampling', {})
    const totals = new Map()
    walk(profile.head, totals)
    let all = 0
    for (const v of totals.values()) all += v
    result.allocatedBytes = all
    result.topAllocations = [...totals.entries()].sort((a, b) => b[1] - a[1]).slice(0, 60)
  }
  w.session?.disconnect()
  // Renamed into place: the benchmark reads the file as soon as it exists.
  writeFileSync(outFile + '.tmp', JSON.stringify(result))
  renameSync(outFile + '.tmp', outFile)
}

process.on('SIGUSR2', () => {
  ;(win === undefined ? open() : close()).catch((e) =>
    process.stdout.write('IGW-COST error ' + e + '\\n'),
  )
})
`
