// The in-process half of `hack/bench/proxy-tail.ts`: loaded into our data plane with
// `node --import`, it records a window the benchmark opens and closes with SIGUSR2, as timelines
// rather than totals, so that the slowest requests of a load run can be matched with what the
// process was doing at that moment:
// - garbage collections: start, duration and kind of each pause (PerformanceObserver 'gc');
// - event-loop stalls: every gap of at least $IGW_TAIL_STALL_MS (default 3) between two ticks of
//   a 1 ms interval, with the process CPU used across the gap (a busy thread used about the gap;
//   a preempted one much less);
// - each HTTP request the server handled (diagnostics_channel `http.server.request.start` to
//   `http.server.response.finish`) and each upstream request undici made (`undici:request:create`
//   to `undici:request:headers`), so a slow request splits into "before our handler saw it",
//   "our handler", "waiting for the engine" and "after";
// - optionally ($IGW_TAIL_OUT.cpu exists) a CPU profile sampled every $IGW_TAIL_CPU_US µs (250), written
//   beside the window: the samples that fall inside a stall say what ran.
// Times are performance.now() of the data plane; `anchor` maps them to wall-clock time (vegeta's
// timestamps). A busy function `igwTailMarker` runs right after the profiler starts so the
// profile's clock can be checked against performance.now() (proxy-tail-analysis.ts).

export interface ClockPair {
  readonly perfMs: number
  readonly wallMs: number
  /** process.hrtime() in ms at the same instant (the same clock in every process). */
  readonly hrMs: number
}

/** One garbage-collection pause. */
export interface TailGc {
  readonly startMs: number
  readonly durationMs: number
  readonly kind: 'minor' | 'major' | 'incremental' | 'weak' | 'other'
}

/** One gap between two ticks of the 1 ms interval at least the stall threshold long. */
export interface TailStall {
  /** When the late tick ran (the end of the stall). */
  readonly endMs: number
  readonly gapMs: number
  /** CPU time (user + system) the process used across the gap. */
  readonly cpuMs: number
}

/** One request as the server saw it. */
export interface TailRequest {
  readonly startMs: number
  readonly endMs: number
}

/** One upstream request as undici saw it (created → response headers). */
export interface TailUpstream {
  readonly startMs: number
  readonly headersMs: number
}

/** What the probe writes to $IGW_TAIL_OUT when a window closes. */
export interface TailWindow {
  /** The same instant on both clocks (performance.now(), wall-clock ms) when the window opened. */
  readonly anchor: ClockPair
  /** And when it closed: wall-clock times map to performance.now() by a line through both. */
  readonly anchorEnd: ClockPair
  readonly openMs: number
  readonly closeMs: number
  readonly stallThresholdMs: number
  readonly gc: readonly TailGc[]
  readonly stalls: readonly TailStall[]
  readonly requests: readonly TailRequest[]
  readonly upstream: readonly TailUpstream[]
  readonly eventLoopDelay: {
    readonly p50Ms: number
    readonly p99Ms: number
    readonly maxMs: number
  }
  /** Event-loop utilisation over the window (0..1). */
  readonly utilisation: number
  /** Present when a CPU profile was taken: its file, and when the marker ran (performance.now()). */
  readonly profile?: {
    readonly file: string
    readonly markerStartMs: number
    readonly markerEndMs: number
  }
}

/** ES module source of the probe (plain JS: it runs in the data plane's Node, untranspiled). */
export const TAIL_PROBE_SOURCE = `
import { existsSync, renameSync, writeFileSync } from 'node:fs'
import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import { Session } from 'node:inspector'
import { monitorEventLoopDelay, PerformanceObserver, constants, performance } from 'node:perf_hooks'

const outFile = process.env.IGW_TAIL_OUT
const stallMs = Number(process.env.IGW_TAIL_STALL_MS || '3')
const cpuIntervalUs = Number(process.env.IGW_TAIL_CPU_US || '250')
let win

function post(session, method, params) {
  return new Promise((resolve, reject) =>
    session.post(method, params, (err, res) => (err ? reject(err) : resolve(res))),
  )
}

const KINDS = {
  [constants.NODE_PERFORMANCE_GC_MINOR]: 'minor',
  [constants.NODE_PERFORMANCE_GC_MAJOR]: 'major',
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
  [constants.NODE_PERFORMANCE_GC_WEAKCB]: 'weak',
}

// A named busy loop the profile can be found by: its first sample fixes the profile's clock.
function igwTailMarker(ms) {
  const end = performance.now() + ms
  let x = 0
  while (performance.now() < end) x += Math.sqrt(x + 1)
  return x
}

// process.hrtime() (CLOCK_MONOTONIC, the same in every process on the machine) less
// performance.now(): a client's hrtime stamps map onto this process's clock.
const hrOffsetMs = Number(process.hrtime.bigint() / 1000n) / 1000 - performance.now()

// performance.now() at the moment Date.now() turns to a new millisecond: the two clocks paired to
// within microseconds (timeOrigin + now() drifts from the wall clock over a long-running process).
function clockPair() {
  const d0 = Date.now()
  let d = d0
  let p = performance.now()
  while (d === d0) {
    p = performance.now()
    d = Date.now()
  }
  return { perfMs: p, wallMs: d, hrMs: p + hrOffsetMs }
}

async function open() {
  // The profiler and its marker first: their own stall is not one of the window's.
  let session
  let profile
  if (existsSync(outFile + '.cpu')) {
    session = new Session()
    session.connect()
    await post(session, 'Profiler.enable', {})
    await post(session, 'Profiler.setSamplingInterval', { interval: cpuIntervalUs })
    await post(session, 'Profiler.start', {})
    const markerStartMs = performance.now()
    igwTailMarker(20)
    profile = { file: outFile + '.cpuprofile', markerStartMs, markerEndMs: performance.now() }
  }
  const gc = []
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const kind = e.detail?.kind ?? e.kind
      gc.push({ startMs: e.startTime, durationMs: e.duration, kind: KINDS[kind] ?? 'other' })
    }
  })
  obs.observe({ entryTypes: ['gc'] })
  const eld = monitorEventLoopDelay({ resolution: 1 })
  eld.enable()
  const stalls = []
  let last = performance.now()
  let lastCpu = process.cpuUsage()
  const tick = setInterval(() => {
    const now = performance.now()
    const gap = now - last
    if (gap >= stallMs) {
      const cpu = process.cpuUsage()
      stalls.push({ endMs: now, gapMs: gap, cpuMs: (cpu.user - lastCpu.user + cpu.system - lastCpu.system) / 1000 })
      lastCpu = cpu
    } else if (gap >= 1) lastCpu = process.cpuUsage()
    last = now
  }, 1)
  const requests = []
  const started = new WeakMap()
  const onStart = (m) => started.set(m.request, performance.now())
  const onFinish = (m) => {
    const t0 = started.get(m.request)
    if (t0 !== undefined) requests.push({ startMs: t0, endMs: performance.now() })
  }
  subscribe('http.server.request.start', onStart)
  subscribe('http.server.response.finish', onFinish)
  const upstream = []
  const created = new WeakMap()
  // Inference requests only: the engine scrapes (GET /metrics) go through undici too.
  const onCreate = (m) => {
    if (m.request.method === 'POST') created.set(m.request, performance.now())
  }
  const onHeaders = (m) => {
    const t0 = created.get(m.request)
    if (t0 !== undefined) upstream.push({ startMs: t0, headersMs: performance.now() })
  }
  subscribe('undici:request:create', onCreate)
  subscribe('undici:request:headers', onHeaders)
  const elu = performance.eventLoopUtilization()
  const anchor = clockPair()
  win = {
    anchor,
    openMs: anchor.perfMs,
    gc, obs, eld, tick, stalls, requests, upstream, session, profile, elu,
    unsubscribe() {
      unsubscribe('http.server.request.start', onStart)
      unsubscribe('http.server.response.finish', onFinish)
      unsubscribe('undici:request:create', onCreate)
      unsubscribe('undici:request:headers', onHeaders)
    },
  }
  writeFileSync(outFile + '.opened', '')
}

async function close() {
  const w = win
  win = undefined
  const closeMs = performance.now()
  clearInterval(w.tick)
  w.unsubscribe()
  w.eld.disable()
  // Entries of the last collections are delivered asynchronously: take what is queued.
  for (const e of w.obs.takeRecords?.() ?? []) {
    const kind = e.detail?.kind ?? e.kind
    w.gc.push({ startMs: e.startTime, durationMs: e.duration, kind: KINDS[kind] ?? 'other' })
  }
  w.obs.disconnect()
  const result = {
    anchor: w.anchor,
    anchorEnd: clockPair(),
    openMs: w.openMs,
    closeMs,
    stallThresholdMs: stallMs,
    gc: w.gc,
    stalls: w.stalls,
    requests: w.requests,
    upstream: w.upstream,
    eventLoopDelay: {
      p50Ms: w.eld.percentile(50) / 1e6,
      p99Ms: w.eld.percentile(99) / 1e6,
      maxMs: w.eld.max / 1e6,
    },
    utilisation: performance.eventLoopUtilization(w.elu).utilization,
  }
  if (w.session) {
    const { profile } = await post(w.session, 'Profiler.stop', {})
    w.session.disconnect()
    writeFileSync(w.profile.file, JSON.stringify(profile))
    result.profile = w.profile
  }
  // Renamed into place: the benchmark reads the file as soon as it exists.
  writeFileSync(outFile + '.tmp', JSON.stringify(result))
  renameSync(outFile + '.tmp', outFile)
}

process.on('SIGUSR2', () => {
  ;(win === undefined ? open() : close()).catch((e) =>
    process.stdout.write('IGW-TAIL error ' + e + '\\n'),
  )
})
`
