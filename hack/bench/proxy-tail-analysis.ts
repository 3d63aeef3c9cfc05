// What the slowest requests of a load run waited for: vegeta's per-request results (start time
// and latency, from `vegeta encode -to=csv`) matched against the data plane's own timelines from
// proxy-tail-probe.ts (GC pauses, event-loop stalls, requests as the server saw them, upstream
// requests) and, when taken, a CPU profile (which code ran during each stall). Pure functions:
// proxy-tail.ts runs the load and prints what these return.
import type { ClockPair, TailRequest, TailUpstream, TailWindow } from './proxy-tail-probe.js'

/** One request as the load tool measured it. */
export interface ClientRecord {
  /** Start, ms (fractional), on the clock `place` is told: wall clock (vegeta) or hrtime. */
  readonly startMs: number
  /** What is summarised: the whole latency (vegeta) or the time to the first byte (streams). */
  readonly latencyMs: number
  /** Until the whole answer was read, when longer than `latencyMs` (streams). */
  readonly totalMs?: number
  readonly code: number
}

export class TailAnalysisError extends Error {
  override readonly name = 'TailAnalysisError'
  readonly code = 'TAIL_BAD_INPUT'
}

/**
 * `vegeta encode -to=csv` lines: `unix-ns,code,latency-ns,…` (the first three fields are numbers,
 * so no quoting reaches them). Lines that are not results are refused, naming the line.
 */
export function parseVegetaCsv(text: string): ClientRecord[] {
  const out: ClientRecord[] = []
  const lines = text.split('\n')
  for (const [i, line] of lines.entries()) {
    if (line === '') continue
    const m = /^(\d+),(\d+),(\d+),/.exec(line)
    if (m === null)
      throw new TailAnalysisError(`vegeta csv line ${i + 1}: not a result: ${line.slice(0, 80)}`)
    const ns = BigInt(m[1] as string)
    out.push({
      // Whole ms and the fraction apart: a Unix time in ns does not fit a double's precision.
      startMs: Number(ns / 1_000_000n) + Number(ns % 1_000_000n) / 1e6,
      code: Number(m[2]),
      latencyMs: Number(m[3]) / 1e6,
    })
  }
  return out
}

/** Which clock a client's start times are on. */
export type ClientClock = 'wall' | 'hr'

/** Maps a client clock's ms to the probe's performance.now() by the line through two pairs. */
export function toProbeClock(
  a: ClockPair,
  b: ClockPair,
  clock: ClientClock,
): (ms: number) => number {
  const a0 = clock === 'wall' ? a.wallMs : a.hrMs
  const b0 = clock === 'wall' ? b.wallMs : b.hrMs
  const span = b0 - a0
  const rate = span > 0 ? (b.perfMs - a.perfMs) / span : 1
  return (ms) => a.perfMs + (ms - a0) * rate
}

/** The value at quantile q (0..1) of ascending `sorted`; NaN when empty. */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))] as number
}

/** What overlapped a request's time (first match wins, in this order). */
export type Cause =
  | 'gc-major'
  | 'gc-minor'
  | 'stall-busy'
  | 'stall-preempted'
  /** Nothing the probe saw: the time went outside our event loop (OS, load tool, engine). */
  | 'none'

export const CAUSES: readonly Cause[] = [
  'gc-major',
  'gc-minor',
  'stall-busy',
  'stall-preempted',
  'none',
]

/** Less than this in GC or stalls (ms) and a request's cause is 'none'. */
const MIN_CAUSE_MS = 0.5

const span = (s0: number, e0: number, s1: number, e1: number): number =>
  Math.max(0, Math.min(e0, e1) - Math.max(s0, s1))

/**
 * ms of [startMs, endMs] inside GC pauses by kind and inside stalls, busy or preempted. A GC
 * pause runs on the loop's thread, so the stall around it holds it: that part counts as GC only.
 */
function overlapMs(
  startMs: number,
  endMs: number,
  gc: TailWindow['gc'],
  stalls: readonly { startMs: number; endMs: number; busy: boolean }[],
): Record<Exclude<Cause, 'none'>, number> {
  const out = { 'gc-major': 0, 'gc-minor': 0, 'stall-busy': 0, 'stall-preempted': 0 }
  for (const g of gc) {
    const ov = span(startMs, endMs, g.startMs, g.startMs + g.durationMs)
    if (ov > 0) out[g.kind === 'minor' ? 'gc-minor' : 'gc-major'] += ov
  }
  for (const s of stalls) {
    const s0 = Math.max(startMs, s.startMs)
    const e0 = Math.min(endMs, s.endMs)
    if (e0 <= s0) continue
    let inGc = 0
    for (const g of gc) inGc += span(s0, e0, g.startMs, g.startMs + g.durationMs)
    out[s.busy ? 'stall-busy' : 'stall-preempted'] += Math.max(0, e0 - s0 - inGc)
  }
  return out
}

/** A stall counts as busy when the process used at least this share of its length in CPU. */
const BUSY_SHARE = 0.5

/** One request placed on the probe's clock, with what overlapped it. */
export interface Placed {
  readonly startMs: number
  readonly endMs: number
  readonly latencyMs: number
  /** What took the most of its time (at least MIN_CAUSE_MS), else 'none'. */
  readonly cause: Cause
  /** ms of its time inside GC pauses and stalls by kind (a stall's GC time counts as GC). */
  readonly during: Readonly<Record<Exclude<Cause, 'none'>, number>>
  /** The server's view of it, when one matched: queue before our handler, in it, after. */
  readonly split?: {
    readonly beforeMs: number
    readonly handlerMs: number
    readonly afterMs: number
    /** Upstream (undici created → response headers) inside the handler, when one matched. */
    readonly upstreamMs?: number
  }
}

/** Sorted start times → index of the first element ≥ t. */
function lowerBound(xs: readonly { startMs: number }[], t: number): number {
  let lo = 0
  let hi = xs.length
  while (lo < hi) {
    const mid = (lo + hi) >> 1
    if ((xs[mid] as { startMs: number }).startMs < t) lo = mid + 1
    else hi = mid
  }
  return lo
}

/**
 * The server request that is this client request: it starts after the client sent (less `slackMs`
 * of clock error) and ends before the client had the answer; of those, the one whose end is
 * closest to the client's. Each server request is used once.
 */
function matchServer(
  sorted: readonly TailRequest[],
  used: Set<number>,
  startMs: number,
  endMs: number,
  slackMs: number,
): TailRequest | undefined {
  let best: number | undefined
  let bestGap = Number.POSITIVE_INFINITY
  for (let i = lowerBound(sorted, startMs - slackMs); i < sorted.length; i++) {
    const r = sorted[i] as TailRequest
    if (r.startMs > endMs + slackMs) break
    if (used.has(i) || r.endMs > endMs + slackMs) continue
    const gap = Math.abs(endMs - r.endMs)
    if (gap < bestGap) {
      bestGap = gap
      best = i
    }
  }
  if (best === undefined) return undefined
  used.add(best)
  return sorted[best]
}

function upstreamWithin(sorted: readonly TailUpstream[], r: TailRequest): number | undefined {
  for (let i = lowerBound(sorted, r.startMs); i < sorted.length; i++) {
    const u = sorted[i] as TailUpstream
    if (u.startMs > r.endMs) break
    if (u.headersMs <= r.endMs) return u.headersMs - u.startMs
  }
  return undefined
}

/** Places every vegeta record on the probe's clock and finds what overlapped it. */
export function place(
  records: readonly ClientRecord[],
  w: TailWindow,
  clock: ClientClock,
  slackMs = 0.5,
): Placed[] {
  const toPerf = toProbeClock(w.anchor, w.anchorEnd, clock)
  const servers = [...w.requests].sort((a, b) => a.startMs - b.startMs)
  const ups = [...w.upstream].sort((a, b) => a.startMs - b.startMs)
  const used = new Set<number>()
  const stalls = w.stalls.map((s) => ({
    startMs: s.endMs - s.gapMs,
    endMs: s.endMs,
    busy: s.cpuMs >= s.gapMs * BUSY_SHARE,
  }))
  const out: Placed[] = []
  for (const r of [...records].sort((a, b) => a.startMs - b.startMs)) {
    const startMs = toPerf(r.startMs)
    const endMs = startMs + r.latencyMs
    const during = overlapMs(startMs, endMs, w.gc, stalls)
    let cause: Cause = 'none'
    let most = MIN_CAUSE_MS
    for (const c of CAUSES)
      if (c !== 'none' && during[c] >= most) {
        most = during[c]
        cause = c
      }
    const srv = matchServer(servers, used, startMs, startMs + (r.totalMs ?? r.latencyMs), slackMs)
    const p: Placed = { startMs, endMs, latencyMs: r.latencyMs, cause, during }
    if (srv === undefined) {
      out.push(p)
      continue
    }
    const upstreamMs = upstreamWithin(ups, srv)
    out.push({
      ...p,
      split: {
        beforeMs: srv.startMs - startMs,
        handlerMs: srv.endMs - srv.startMs,
        afterMs: endMs - srv.endMs,
        ...(upstreamMs === undefined ? {} : { upstreamMs }),
      },
    })
  }
  return out
}

export interface TailSummary {
  readonly requests: number
  readonly p50Ms: number
  readonly p99Ms: number
  /** The requests at or above p99. */
  readonly slow: number
  /** Share of slow requests and of all requests by cause (0..1). */
  readonly slowByCause: Readonly<Record<Cause, number>>
  readonly allByCause: Readonly<Record<Cause, number>>
  /** Medians of the split parts, ms: of the slow requests and of all (matched ones only). */
  /** Mean ms per request inside GC pauses / stalls by kind: of the slow requests and of all. */
  readonly slowDuring: Readonly<Record<Exclude<Cause, 'none'>, number>>
  readonly allDuring: Readonly<Record<Exclude<Cause, 'none'>, number>>
  readonly slowSplit: SplitMedians
  readonly allSplit: SplitMedians
}

export interface SplitMedians {
  readonly matched: number
  readonly beforeMs: number
  readonly handlerMs: number
  readonly upstreamMs: number
  readonly afterMs: number
}

function splitMedians(ps: readonly Placed[]): SplitMedians {
  const sp = ps.flatMap((p) => (p.split === undefined ? [] : [p.split]))
  const med = (xs: number[]): number =>
    quantile(
      xs.sort((a, b) => a - b),
      0.5,
    )
  return {
    matched: sp.length,
    beforeMs: med(sp.map((s) => s.beforeMs)),
    handlerMs: med(sp.map((s) => s.handlerMs)),
    upstreamMs: med(sp.flatMap((s) => (s.upstreamMs === undefined ? [] : [s.upstreamMs]))),
    afterMs: med(sp.map((s) => s.afterMs)),
  }
}

function shares(ps: readonly Placed[]): Record<Cause, number> {
  const out = Object.fromEntries(CAUSES.map((c) => [c, 0])) as Record<Cause, number>
  for (const p of ps) out[p.cause]++
  if (ps.length > 0) for (const c of CAUSES) out[c] /= ps.length
  return out
}

function meanDuring(ps: readonly Placed[]): Record<Exclude<Cause, 'none'>, number> {
  const out = { 'gc-major': 0, 'gc-minor': 0, 'stall-busy': 0, 'stall-preempted': 0 }
  for (const p of ps)
    for (const k of Object.keys(out) as (keyof typeof out)[]) out[k] += p.during[k]
  if (ps.length > 0) for (const k of Object.keys(out) as (keyof typeof out)[]) out[k] /= ps.length
  return out
}

/** Latency quantiles, causes and splits of the slowest 1 % against all requests. */
export function summarise(placed: readonly Placed[]): TailSummary {
  const lat = placed.map((p) => p.latencyMs).sort((a, b) => a - b)
  const p99 = quantile(lat, 0.99)
  const slow = placed.filter((p) => p.latencyMs >= p99)
  return {
    requests: placed.length,
    p50Ms: quantile(lat, 0.5),
    p99Ms: p99,
    slow: slow.length,
    slowByCause: shares(slow),
    allByCause: shares(placed),
    slowDuring: meanDuring(slow),
    allDuring: meanDuring(placed),
    slowSplit: splitMedians(slow),
    allSplit: splitMedians(placed),
  }
}

/** A V8 CPU profile (`Profiler.stop`), the parts read here. */
export interface CpuProfile {
  readonly nodes: readonly {
    readonly id: number
    readonly callFrame: {
      readonly functionName: string
      readonly url: string
      readonly lineNumber: number
    }
    readonly children?: readonly number[]
  }[]
  readonly startTime: number
  readonly samples: readonly number[]
  readonly timeDeltas: readonly number[]
}

interface Frame {
  readonly name: string
  readonly parent: number | undefined
  readonly ours: boolean
}

const frameName = (f: CpuProfile['nodes'][number]['callFrame']): string => {
  const file = f.url.replace(/^.*\//, '')
  return `${f.functionName || '(anonymous)'}${file === '' ? '' : ` ${file}:${f.lineNumber + 1}`}`
}

/** Samples of a profile on the probe's clock, each with its leaf and outermost-own frame. */
export interface ProfileSamples {
  readonly timesMs: Float64Array
  /** Leaf frame name per sample. */
  readonly leaf: readonly string[]
  /**
   * The outermost frame of the bundle itself (`ours` url match) per sample: the task the loop
   * was running (a timer callback, the request handler); the leaf when none is ours.
   */
  readonly task: readonly string[]
  /** The profile's clock minus performance.now(), ms. */
  readonly offsetMs: number
}

/**
 * Reads a CPU profile onto the probe's clock. The first sample inside `igwTailMarker` is taken to
 * be `markerStartMs` (the probe ran the marker right after starting the profiler); sampling
 * every 100-250 µs, that fixes the clock to a fraction of a ms. Without such a sample,
 * `hrOffsetMs` (hrtime less performance.now(), from the probe's clock pair) does. `ours` tells the bundle's frames
 * from Node's and dependencies' (for a bundle, its file name).
 */
export function profileSamples(
  p: CpuProfile,
  markerStartMs: number,
  ours: (url: string) => boolean,
  hrOffsetMs?: number,
): ProfileSamples {
  const frames = new Map<number, Frame>()
  for (const n of p.nodes)
    frames.set(n.id, {
      name: frameName(n.callFrame),
      parent: undefined,
      ours: ours(n.callFrame.url),
    })
  for (const n of p.nodes)
    for (const c of n.children ?? []) {
      const f = frames.get(c)
      if (f !== undefined) frames.set(c, { ...f, parent: n.id })
    }
  const times = new Float64Array(p.samples.length)
  let t = p.startTime
  let markerUs: number | undefined
  const leaf: string[] = []
  const task: string[] = []
  for (let i = 0; i < p.samples.length; i++) {
    t += p.timeDeltas[i] ?? 0
    times[i] = t / 1000
    const id = p.samples[i] as number
    const f = frames.get(id)
    leaf.push(f?.name ?? '?')
    let outer: string | undefined
    let inMarker = false
    for (
      let cur = f;
      cur !== undefined;
      cur = cur.parent === undefined ? undefined : frames.get(cur.parent)
    ) {
      if (cur.ours) outer = cur.name
      if (cur.name.startsWith('igwTailMarker ')) inMarker = true
    }
    if (inMarker && markerUs === undefined) markerUs = t
    task.push(outer ?? f?.name ?? '?')
  }
  let offsetMs: number
  if (markerUs !== undefined) offsetMs = markerUs / 1000 - markerStartMs
  // V8's profile clock is CLOCK_MONOTONIC, as hrtime is: without a marker sample (a loaded
  // machine may not sample a 20 ms loop), the probe's clock pair aligns it.
  else if (hrOffsetMs !== undefined) offsetMs = hrOffsetMs
  else
    throw new TailAnalysisError(
      'the CPU profile has no sample in igwTailMarker and no clock offset: cannot align its clock',
    )
  for (let i = 0; i < times.length; i++) times[i] = (times[i] as number) - offsetMs
  return { timesMs: times, leaf, task, offsetMs }
}

/** Sample counts by name over the samples that fall inside any of `spans` (probe clock). */
export function samplesWithin(
  s: ProfileSamples,
  spans: readonly { startMs: number; endMs: number }[],
  by: 'leaf' | 'task',
): Map<string, number> {
  const out = new Map<string, number>()
  const names = by === 'leaf' ? s.leaf : s.task
  const sorted = [...spans].sort((a, b) => a.startMs - b.startMs)
  let j = 0
  for (let i = 0; i < s.timesMs.length; i++) {
    const t = s.timesMs[i] as number
    while (j < sorted.length && (sorted[j] as { endMs: number }).endMs < t) j++
    const span = sorted[j]
    if (span === undefined) break
    if (t < span.startMs) continue
    const k = names[i] as string
    out.set(k, (out.get(k) ?? 0) + 1)
  }
  return out
}

/** The machine-wide `cpu` line of /proc/stat: steal and total ticks (USER_HZ). */
export interface CpuTicks {
  readonly steal: number
  readonly total: number
}

/**
 * Steal and total ticks from /proc/stat's first line (`cpu user nice system idle iowait irq
 * softirq steal …`). Steal is time the hypervisor ran something else while a vCPU wanted to run:
 * on the two-vCPU bench VM the slowest streams sat in "preempted" stalls with nothing else on the
 * machine, so each window says how much steal it had. Guest columns are already inside user/nice
 * and are not added again.
 */
export function parseProcStatCpu(stat: string): CpuTicks {
  const line = stat.split('\n', 1)[0] ?? ''
  const f = line.trim().split(/\s+/)
  if (f[0] !== 'cpu' || f.length < 9)
    throw new TailAnalysisError(`not a /proc/stat cpu line: ${line}`)
  const n = f.slice(1, 9).map(Number)
  if (n.some((x) => !Number.isFinite(x)))
    throw new TailAnalysisError(`not a /proc/stat cpu line: ${line}`)
  return { steal: n[7] ?? 0, total: n.reduce((a, b) => a + b, 0) }
}

/** Share of all CPU time between two readings that was stolen (NaN when no ticks passed). */
export function stealShare(before: CpuTicks, after: CpuTicks): number {
  const total = after.total - before.total
  return total > 0 ? (after.steal - before.steal) / total : Number.NaN
}
