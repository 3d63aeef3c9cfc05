// The many-slow-streams part of `npm run bench:proxy`: thousands of streams held open through one
// gateway while the engine trickles tokens, measuring what they cost the gateway: resident memory
// (from /proc, the whole process tree) and event-loop delay (prom-client's default
// nodejs_eventloop_lag_* gauges on the gateway's /metrics, which report the monitorEventLoopDelay
// histogram since the previous scrape and then reset it).
import { setMaxListeners } from 'node:events'
import { readFile } from 'node:fs/promises'
import { Agent, request } from 'undici'
import { parsePrometheusText } from '../../dataplane/engines/prom-parser.js'
import { treeCpu } from './proc-cpu.js'
import { treeMemory } from './proxy-procfs.js'

export interface EventLoopDelay {
  readonly p50Ms: number
  readonly p99Ms: number
  readonly maxMs: number
}

/** The event-loop delay gauges of one /metrics text; undefined when the exposition has none. */
export function eventLoopDelay(metricsText: string): EventLoopDelay | undefined {
  const fams = parsePrometheusText(metricsText).families
  const gauge = (name: string): number | undefined => {
    const samples = fams.get(name)?.samples ?? []
    // With --workers each process may expose its own sample (label per worker): the worst counts.
    let worst: number | undefined
    for (const s of samples) if (worst === undefined || s.value > worst) worst = s.value
    return worst
  }
  const p99 = gauge('nodejs_eventloop_lag_p99_seconds')
  if (p99 === undefined) return undefined
  return {
    p50Ms: (gauge('nodejs_eventloop_lag_p50_seconds') ?? Number.NaN) * 1000,
    p99Ms: p99 * 1000,
    maxMs: (gauge('nodejs_eventloop_lag_max_seconds') ?? Number.NaN) * 1000,
  }
}

/** A gauge of one /metrics text summed over its samples (NaN when absent). */
export function gaugeSum(metricsText: string, name: string): number {
  const samples = parsePrometheusText(metricsText).families.get(name)?.samples
  if (samples === undefined || samples.length === 0) return Number.NaN
  return samples.reduce((a, s) => a + s.value, 0)
}

/**
 * "status 504 upstream_timeout (upstream timed out: connect to sim-0)": a refused stream's status,
 * error code and message. The message says which of the gateway's timeouts fired (connect,
 * response headers, request deadline), which the code alone does not.
 */
export function failureReason(status: number, body: string): string {
  let code: string | undefined
  let message: string | undefined
  try {
    const err = (JSON.parse(body) as { error?: { code?: unknown; message?: unknown } }).error
    if (typeof err?.code === 'string') code = err.code
    if (typeof err?.message === 'string') message = err.message.slice(0, 80)
  } catch {
    // Not the gateway's JSON error (a proxy's HTML page, a cut body): the status alone.
  }
  return `status ${status}${code ? ` ${code}` : ''}${message ? ` (${message})` : ''}`
}

/** Kernel counters of SYNs dropped because a listener's accept queue was full. */
export interface ListenDrops {
  /** TcpExt ListenOverflows: the accept queue was full. */
  readonly overflows: number
  /** TcpExt ListenDrops: every SYN dropped at a listener (overflows included). */
  readonly drops: number
}

/**
 * ListenOverflows / ListenDrops of a /proc/net/netstat text (header line, value line per group);
 * undefined when the text has no TcpExt group. The counters are the network namespace's, so every
 * listener on the machine counts: the gateway's, the engine's and anything else running.
 */
export function listenDrops(netstat: string): ListenDrops | undefined {
  const lines = netstat.split('\n').filter((l) => l.startsWith('TcpExt:'))
  const names = lines[0]?.split(/\s+/)
  const values = lines[1]?.split(/\s+/)
  if (names === undefined || values === undefined) return undefined
  const at = (name: string): number => {
    const i = names.indexOf(name)
    return i < 0 ? Number.NaN : Number(values[i])
  }
  return { overflows: at('ListenOverflows'), drops: at('ListenDrops') }
}

async function readListenDrops(): Promise<ListenDrops | undefined> {
  try {
    return listenDrops(await readFile('/proc/net/netstat', 'utf8'))
  } catch {
    return undefined // not Linux
  }
}

async function scrape(url: string): Promise<string> {
  const res = await request(url)
  return res.body.text()
}

export interface SlowStreamsOptions {
  /** The gateway's origin (streams and /metrics). */
  readonly origin: string
  /** The gateway's pid, for its memory. */
  readonly pid: number
  readonly body: string
  readonly count: number
  /** How long all streams stay open while memory and event-loop delay are measured. */
  readonly holdMs: number
  /** Streams opened per 50 ms while ramping up (a burst of thousands of SYNs overflows backlogs). */
  readonly openPer50Ms?: number
  /** Give up waiting for the ramp after this long. */
  readonly rampTimeoutMs?: number
  readonly log?: (line: string) => void
}

export interface SlowStreamsResult {
  readonly count: number
  /** Streams whose first event arrived. */
  readonly opened: number
  /** Streams refused or cut before the end of the hold (status ≠ 200 or a socket error). */
  readonly failed: number
  /** Why streams failed, most frequent first ("" when none did). */
  readonly failures: string
  /** Streams that ended on their own during the hold (the engine finished them). */
  readonly endedEarly: number
  readonly rampMs: number
  /** SSE chunks received during the hold, all streams together. */
  readonly holdChunks: number
  readonly holdMs: number
  /** Gateway resident memory: before the ramp, highest sample during the hold, peak (VmHWM). */
  readonly rssIdleMb: number
  readonly rssMaxMb: number
  readonly rssPeakMb: number
  /** Event-loop delay over the ramp and over the hold (undefined: no default metrics exposed). */
  readonly rampLag: EventLoopDelay | undefined
  readonly holdLag: EventLoopDelay | undefined
  /** infer_gateway_inflight_requests at the end of the hold. */
  readonly inflightHeld: number
  /** The same gauge once it reached 0 after the clients went away, or after a minute. */
  readonly inflightAfter: number
  /** How long that took, ms. */
  readonly releaseMs: number
  /**
   * SYNs the kernel dropped at full accept queues during the ramp (whole network namespace;
   * undefined off Linux). A dropped SYN is retried after 1 s, then 3 s: a connect timeout of
   * about 1 s fails on the first one.
   */
  readonly rampListenDrops?: ListenDrops
  /**
   * CPU seconds of the gateway's process tree over the ramp and over the hold (user + system, from
   * /proc; NaN off Linux): what the streams cost it, which the machine's other load disturbs
   * less than the delays do.
   */
  readonly rampCpuS: number
  readonly holdCpuS: number
}

/** CPU seconds used so far by `pid` and its descendants (NaN when /proc has none of them). */
async function cpuSeconds(pid: number): Promise<number> {
  let sum = 0
  const tree = await treeCpu(pid, () => 'gateway')
  for (const p of tree.values()) sum += p.seconds
  return tree.size > 0 ? sum : Number.NaN
}

/** "status 503 x×2, ECONNRESET×1": counts of failure reasons, most frequent first. */
export function describeReasons(reasons: ReadonlyMap<string, number>): string {
  return [...reasons.entries()]
    .sort((a, b) => b[1] - a[1])
    .map(([why, n]) => `${why}×${n}`)
    .join(', ')
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/**
 * Opens `count` streams (ramped), waits for each first event, holds them `holdMs` while sampling
 * memory every 250 ms, then aborts them all (clients going away) and checks the gateway let go.
 */
export async function slowStreams(o: SlowStreamsOptions): Promise<SlowStreamsResult> {
  const log = o.log ?? (() => {})
  const metricsUrl = `${o.origin}/metrics`
  // A ramp of thousands of connections on a busy machine can take longer than undici's 10 s
  // connect timeout; the gateway's behaviour under that load is what is measured, not the client's.
  const agent = new Agent({
    connections: o.count + 16,
    pipelining: 1,
    bodyTimeout: 0,
    headersTimeout: 0,
    connectTimeout: 120_000,
  })
  const reasons = new Map<string, number>()
  const fail = (why: string): void => {
    failed++
    reasons.set(why, (reasons.get(why) ?? 0) + 1)
  }
  const abort = new AbortController()
  setMaxListeners(0, abort.signal) // one listener per stream, by design
  let opened = 0
  let failed = 0
  let endedEarly = 0
  let chunks = 0
  let holding = false
  const rssIdleMb = (await treeMemory(o.pid)).rssMb
  await scrape(metricsUrl) // resets the event-loop delay histogram: the next scrape covers the ramp

  const one = async (): Promise<void> => {
    let first = true
    try {
      const res = await request(`${o.origin}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: o.body,
        dispatcher: agent,
        signal: abort.signal,
      })
      if (res.statusCode !== 200) {
        fail(failureReason(res.statusCode, await res.body.text()))
        return
      }
      for await (const _chunk of res.body) {
        if (first) {
          opened++
          first = false
        }
        if (holding) chunks++
      }
      if (!abort.signal.aborted) endedEarly++
    } catch (e) {
      if (abort.signal.aborted) return
      const err = e as { code?: string; message?: string }
      fail(`${err.code ?? String(err.message).slice(0, 80)}${first ? '' : ' (mid-stream)'}`)
    }
  }

  const dropsBefore = await readListenDrops()
  const cpuBefore = await cpuSeconds(o.pid)
  const rampStart = performance.now()
  const all: Promise<void>[] = []
  const step = o.openPer50Ms ?? 100
  for (let i = 0; i < o.count; i += step) {
    for (let j = i; j < Math.min(o.count, i + step); j++) all.push(one())
    await sleep(50)
  }
  const rampDeadline = rampStart + (o.rampTimeoutMs ?? 300_000)
  while (opened + failed < o.count) {
    if (performance.now() > rampDeadline) break
    await sleep(50)
  }
  const rampMs = performance.now() - rampStart
  const dropsAfter = await readListenDrops()
  const cpuRamped = await cpuSeconds(o.pid)
  const rampListenDrops =
    dropsBefore !== undefined && dropsAfter !== undefined
      ? {
          overflows: dropsAfter.overflows - dropsBefore.overflows,
          drops: dropsAfter.drops - dropsBefore.drops,
        }
      : undefined
  log(
    `  ${opened} of ${o.count} streams open after ${(rampMs / 1000).toFixed(1)} s (${failed} failed${failed > 0 ? `: ${describeReasons(reasons)}` : ''}); listen-queue overflows during the ramp: ${rampListenDrops?.overflows ?? 'n/a'}`,
  )
  const rampLag = eventLoopDelay(await scrape(metricsUrl))

  holding = true
  let rssMaxMb = 0
  const holdEnd = performance.now() + o.holdMs
  let inflightHeld = Number.NaN
  while (performance.now() < holdEnd) {
    rssMaxMb = Math.max(rssMaxMb, (await treeMemory(o.pid)).rssMb)
    await sleep(250)
  }
  const holdText = await scrape(metricsUrl)
  holding = false
  const cpuHeld = await cpuSeconds(o.pid)
  const holdLag = eventLoopDelay(holdText)
  inflightHeld = gaugeSum(holdText, 'infer_gateway_inflight_requests')
  const mem = await treeMemory(o.pid)
  rssMaxMb = Math.max(rssMaxMb, mem.rssMb)

  abort.abort()
  await Promise.allSettled(all)
  await agent.destroy()
  // The gateway must let go of every stream once its client is gone: wait for the in-flight gauge
  // to reach 0 (slow on a busy machine), up to a minute.
  const leftAt = performance.now()
  let inflightAfter = Number.NaN
  for (;;) {
    inflightAfter = gaugeSum(await scrape(metricsUrl), 'infer_gateway_inflight_requests')
    if (inflightAfter === 0 || performance.now() - leftAt > 60_000) break
    await sleep(500)
  }
  const releaseMs = performance.now() - leftAt
  return {
    count: o.count,
    opened,
    failed,
    failures: describeReasons(reasons),
    endedEarly,
    rampMs,
    holdChunks: chunks,
    holdMs: o.holdMs,
    rssIdleMb,
    rssMaxMb,
    rssPeakMb: mem.peakMb,
    rampLag,
    holdLag,
    inflightHeld,
    inflightAfter,
    releaseMs,
    ...(rampListenDrops !== undefined ? { rampListenDrops } : {}),
    rampCpuS: cpuRamped - cpuBefore,
    holdCpuS: cpuHeld - cpuRamped,
  }
}
