// What `npm run bench:proxy` prints and writes to docs/benchmarks.md: one table of every target
// against direct, ours against each peer router, and the issue's targets with pass/fail beside
// them. Pure (numbers in, markdown out) so the verdicts are unit-tested.
import type { SlowStreamsResult } from './proxy-streams.js'
import { fmtShare, type WindowedLatency } from './proxy-windows.js'
import { fmt, table } from './report.js'

export type TargetKey = 'direct' | 'ours' | 'oursN' | 'sglang' | 'vllm'

export interface Measured {
  readonly key: TargetKey
  /** As printed: "direct", "ours (1 worker)", "sglang-router 0.3.2". */
  readonly label: string
  /**
   * vegeta at a fixed rate, non-stream, ms: p50Ms/p99Ms are the medians over the counted windows
   * (proxy-windows.ts), the pooled figures beside them.
   */
  readonly fixed: WindowedLatency
  /** vegeta closed loop, non-stream. */
  readonly max: { readonly rps: number; readonly failed: number }
  /** Stream time to first body byte at a fixed rate, ms; medians over windows as for `fixed`. */
  readonly ttfb: WindowedLatency
  /** Peak resident memory of the target's process tree over the run, MB. */
  readonly peakRssMb: number
  /**
   * CPU (user + system) of the target's process tree per request during the fixed-rate run, µs
   * (/proc/<pid>/stat). Time spent waiting for a core is not CPU used, so other work on the
   * machine disturbs this far less than latency: the robust measure of what a router costs.
   */
  readonly cpuUsPerRequest?: number
}

export interface Skipped {
  readonly key: TargetKey
  readonly label: string
  readonly reason: string
}

export interface ProxyRun {
  readonly command: string
  readonly rate: number
  readonly maxSeconds: number
  readonly connections: number
  readonly streamRate: number
  /** Uncounted warm-up per target before each phase's windows, s (0: none). */
  readonly warmupSeconds: number
  /** Counted non-stream windows per target and the length of each, s. */
  readonly windows: number
  readonly windowSeconds: number
  /** Counted stream windows per target and the length of each, s. */
  readonly streamWindows: number
  readonly streamWindowSeconds: number
  readonly measured: readonly Measured[]
  readonly skipped: readonly Skipped[]
  readonly streams: SlowStreamsResult | { readonly skipped: string }
  readonly streamsSetup: string
  /** Free-text facts about the machine (cores, Node, date). */
  readonly machine: string
  /** Set for short runs: the numbers are only a proof that every part runs. */
  readonly smoke: boolean
}

export type Verdict = 'pass' | 'fail' | 'n/a'

export interface Check {
  readonly target: string
  readonly measured: string
  readonly verdict: Verdict
}

export const TARGETS = {
  streamRssMb: 400,
  streamLagP99Ms: 20,
  addedP99Ms: 1,
  ttfbP99Ms: 4,
  ttfbVsVllm: 1.2,
} as const

function by(run: ProxyRun, key: TargetKey): Measured | undefined {
  return run.measured.find((m) => m.key === key)
}

/** Added latency from the medians of the windows (what the verdicts use). */
function added(m: Measured, d: Measured): { p50: number; p99: number } {
  return { p50: m.fixed.p50Ms - d.fixed.p50Ms, p99: m.fixed.p99Ms - d.fixed.p99Ms }
}

/** Added latency from every counted request pooled (printed beside the medians). */
function addedPooled(m: Measured, d: Measured): { p50: number; p99: number } {
  return {
    p50: m.fixed.pooledP50Ms - d.fixed.pooledP50Ms,
    p99: m.fixed.pooledP99Ms - d.fixed.pooledP99Ms,
  }
}

/** Which figure a verdict reads, said in its target line. */
function windowsOf(w: WindowedLatency, q: 'p50' | 'p99'): string {
  return w.windows.length === 1
    ? `one window's ${q}`
    : `median of ${w.windows.length} windows' ${q}`
}

function ratio(m: Measured, d: Measured): number {
  return m.max.rps / d.max.rps
}

function verdict(ok: boolean | undefined): Verdict {
  return ok === undefined ? 'n/a' : ok ? 'pass' : 'fail'
}

function why(run: ProxyRun, key: TargetKey): string {
  const s = run.skipped.find((x) => x.key === key)
  return s ? `${s.label} skipped` : `${key} not measured`
}

/** The issue's targets, each for every applicable target of ours, with the measured values. */
export function checks(run: ProxyRun): Check[] {
  const out: Check[] = []
  const d = by(run, 'direct')
  const vllm = by(run, 'vllm')
  const sglang = by(run, 'sglang')
  const ours = (['ours', 'oursN'] as const)
    .map((k) => by(run, k))
    .filter((m): m is Measured => m !== undefined)
  if (d === undefined) return out
  for (const m of ours) {
    const a = added(m, d)
    const pooled = addedPooled(m, d)
    const p50Target = `${m.label}: added p50 at ${run.rate} req/s ≤ vllm-router's (${windowsOf(m.fixed, 'p50')})`
    if (vllm) {
      const v = added(vllm, d).p50
      out.push({
        target: p50Target,
        measured: `${fmt(a.p50)} vs ${fmt(v)} ms (pooled: ${fmt(pooled.p50)} vs ${fmt(addedPooled(vllm, d).p50)})`,
        verdict: verdict(a.p50 <= v),
      })
    } else {
      out.push({ target: p50Target, measured: why(run, 'vllm'), verdict: 'n/a' })
    }
    out.push({
      target: `${m.label}: added p99 at ${run.rate} req/s ≤ ${TARGETS.addedP99Ms} ms (${windowsOf(m.fixed, 'p99')})`,
      measured: `${fmt(a.p99)} ms (pooled: ${fmt(pooled.p99)})`,
      verdict: verdict(a.p99 <= TARGETS.addedP99Ms),
    })
  }
  const one = by(run, 'ours')
  if (one) {
    out.push(
      sglang
        ? {
            target: `ours (1 worker): max throughput ÷ direct ≥ sglang-router's`,
            measured: `${fmt(ratio(one, d), 2)} vs ${fmt(ratio(sglang, d), 2)}`,
            verdict: verdict(ratio(one, d) >= ratio(sglang, d)),
          }
        : {
            target: `ours (1 worker): max throughput ÷ direct ≥ sglang-router's`,
            measured: why(run, 'sglang'),
            verdict: 'n/a',
          },
    )
  }
  const many = by(run, 'oursN')
  out.push(
    many && vllm
      ? {
          target: `${many.label}: max throughput ÷ direct ≥ vllm-router's (machine with free cores)`,
          measured: `${fmt(ratio(many, d), 2)} vs ${fmt(ratio(vllm, d), 2)}`,
          verdict: verdict(ratio(many, d) >= ratio(vllm, d)),
        }
      : {
          target: `ours (N workers): max throughput ÷ direct ≥ vllm-router's (machine with free cores)`,
          measured: many ? why(run, 'vllm') : why(run, 'oursN'),
          verdict: 'n/a',
        },
  )
  for (const m of ours) {
    const p50Target = `${m.label}: stream TTFB p50 ≤ ${TARGETS.ttfbVsVllm}× vllm-router's (${windowsOf(m.ttfb, 'p50')})`
    out.push(
      vllm
        ? {
            target: p50Target,
            measured: `${fmt(m.ttfb.p50Ms)} vs ${fmt(TARGETS.ttfbVsVllm * vllm.ttfb.p50Ms)} ms (pooled: ${fmt(m.ttfb.pooledP50Ms)} vs ${fmt(TARGETS.ttfbVsVllm * vllm.ttfb.pooledP50Ms)})`,
            verdict: verdict(m.ttfb.p50Ms <= TARGETS.ttfbVsVllm * vllm.ttfb.p50Ms),
          }
        : { target: p50Target, measured: why(run, 'vllm'), verdict: 'n/a' },
    )
    out.push({
      target: `${m.label}: stream TTFB p99 ≤ ${TARGETS.ttfbP99Ms} ms (${windowsOf(m.ttfb, 'p99')})`,
      measured: `${fmt(m.ttfb.p99Ms)} ms (pooled: ${fmt(m.ttfb.pooledP99Ms)})`,
      verdict: verdict(m.ttfb.p99Ms <= TARGETS.ttfbP99Ms),
    })
  }
  const s = run.streams
  if ('skipped' in s) {
    out.push({ target: 'concurrent slow streams', measured: s.skipped, verdict: 'n/a' })
  } else {
    const all = s.opened === s.count && s.failed === 0
    out.push({
      target: `${s.count} concurrent streams: gateway RSS < ${TARGETS.streamRssMb} MB`,
      measured: `peak ${fmt(s.rssPeakMb, 0)} MB${all ? '' : ` (only ${s.opened} opened, ${s.failed} failed)`}`,
      verdict: all ? verdict(s.rssPeakMb < TARGETS.streamRssMb) : 'fail',
    })
    out.push(
      s.holdLag
        ? {
            target: `${s.count} concurrent streams: event-loop delay p99 < ${TARGETS.streamLagP99Ms} ms`,
            measured: `${fmt(s.holdLag.p99Ms, 1)} ms`,
            verdict: all ? verdict(s.holdLag.p99Ms < TARGETS.streamLagP99Ms) : 'fail',
          }
        : {
            target: `${s.count} concurrent streams: event-loop delay p99 < ${TARGETS.streamLagP99Ms} ms`,
            measured: 'the gateway /metrics has no nodejs_eventloop_lag_p99_seconds',
            verdict: 'n/a',
          },
    )
  }
  return out
}

function pair(a: number, b: number, digits = 3): string {
  return `${fmt(a, digits)} / ${fmt(b, digits)}`
}

function quotient(a: number, b: number): string {
  return b > 0 && Number.isFinite(a) ? `${fmt(a / b, 2)}×` : 'n/a'
}

/**
 * Each target's windows in the order they ran: p99, the machine's steal and CPU-wait shares in
 * each, then the median of the windows and the pooled figures.
 */
export function windowTable(
  measured: readonly Measured[],
  pick: (m: Measured) => WindowedLatency,
): string {
  const k = Math.max(0, ...measured.map((m) => pick(m).windows.length))
  const rows = measured.map((m) => {
    const w = pick(m)
    const cells = Array.from({ length: k }, (_, i) => {
      const x = w.windows[i]
      return x ? `${fmt(x.p99Ms, 2)} (${fmtShare(x.steal)} / ${fmtShare(x.cpuWait, 0)})` : '—'
    })
    return [
      m.label,
      ...cells,
      pair(w.p50Ms, w.p99Ms),
      pair(w.pooledP50Ms, w.pooledP99Ms),
      String(w.failed),
    ]
  })
  return table(
    [
      'target',
      ...Array.from({ length: k }, (_, i) => `window ${i + 1} p99 (steal / CPU wait)`),
      'median of windows p50 / p99',
      'pooled p50 / p99',
      'failed',
    ],
    rows,
  )
}

export function render(run: ProxyRun): string {
  const d = by(run, 'direct')
  const rows = run.measured.map((m) => {
    const a = d && m !== d ? added(m, d) : undefined
    return [
      m.label,
      pair(m.fixed.p50Ms, m.fixed.p99Ms),
      a ? `**${pair(a.p50, a.p99)}**` : '—',
      fmt(m.max.rps, 0),
      d ? `**${fmt(ratio(m, d), 2)}**` : 'n/a',
      pair(m.ttfb.p50Ms, m.ttfb.p99Ms),
      m.cpuUsPerRequest !== undefined ? fmt(m.cpuUsPerRequest, 0) : 'n/a',
      fmt(m.peakRssMb, 0),
      `${m.fixed.failed} / ${m.max.failed} / ${m.ttfb.failed}`,
    ]
  })
  const parts: string[] = []
  parts.push(`## Proxy overhead (\`npm run bench:proxy\`)`)
  if (run.smoke) {
    parts.push(
      '**Smoke run** (short durations on a shared, busy machine): it shows that every part runs, the numbers are not a measurement.',
    )
  }
  parts.push(`Reproduce: \`${run.command}\``)
  const warm =
    run.warmupSeconds > 0
      ? `after a warm-up of ${run.warmupSeconds} s per target at the same rate that is not counted (a fresh process's first seconds are the slowest of the run for every target, the engine alone too; our Node data plane compiles its hot path over its first 6,000-8,000 requests, docs/proxy-cost.md "Warm-up: the first windows", so the default is 16 s: 8,000 requests at 500 req/s)`
      : 'with no warm-up (`--warmup-seconds 0`: the first window of each target includes its cold start)'
  parts.push(
    `One simulated engine (\`infer-gateway sim --zero-latency\`) answers instantly; every router sits in front of the same engine and the load tools run in their own processes. Each latency phase measures every target in several short windows, the targets in turn window by window (the order rotated each round) so that a slow moment of the shared machine falls on all of them alike, ${warm}. Non-stream: vegeta at ${run.rate} req/s, ${run.windows} windows of ${run.windowSeconds} s per target; then a vegeta closed loop with ${run.connections} connections for ${run.maxSeconds} s per target. Streams: time to the first SSE byte at ${run.streamRate} req/s, ${run.streamWindows} windows of ${run.streamWindowSeconds} s per target (our undici client, the same for every target; vegeta cannot time the first byte of a stream). Latency in ms (p50 / p99) is the median over a target's windows of each window's p50 / p99, the figure the verdicts use: one window in which the machine stalled (the hypervisor took the vCPUs away, or other work burst) moves it less than it moves the p99 of all requests pooled, which the window tables below give beside it with each window's p99, the share of the machine's CPU time the hypervisor stole during that window (/proc/stat; windows with more steal read higher p99s, docs/proxy-cost.md "The tail") and the share of its wall time in which some task on the machine waited for a CPU (/proc/pressure/cpu "some": other work in this VM, which steal does not show; the benchmark's own load tool, router and engine compete for the cores too, so it is never 0: compare windows and runs with each other, not with 0). Added = target − direct, from those medians; CPU = user + system time of the target's process tree over its counted ${run.rate} req/s windows per request sent, in µs (the measure other work on the machine disturbs least; direct is the engine's own cost, which every router adds to); peak RSS = VmHWM of the target's process tree.`,
  )
  parts.push(
    table(
      [
        'target',
        `${run.rate} req/s p50 / p99 (median of windows)`,
        'added p50 / p99',
        `max req/s (${run.connections} conns)`,
        '÷ direct',
        'stream TTFB p50 / p99 (median of windows)',
        'CPU µs/req',
        'peak RSS MB',
        'errors (rate / max / stream)',
      ],
      rows,
    ),
  )
  for (const s of run.skipped) parts.push(`- ${s.label}: skipped — ${s.reason}`)
  parts.push(`Non-stream at ${run.rate} req/s, by window:`)
  parts.push(windowTable(run.measured, (m) => m.fixed))
  parts.push(`Stream time to first byte at ${run.streamRate} req/s, by window:`)
  parts.push(windowTable(run.measured, (m) => m.ttfb))
  const ours = run.measured.filter((m) => m.key === 'ours' || m.key === 'oursN')
  const peers = run.measured.filter((m) => m.key === 'sglang' || m.key === 'vllm')
  if (d && ours.length > 0 && peers.length > 0) {
    const prow: string[][] = []
    for (const o of ours) {
      for (const p of peers) {
        const ao = added(o, d)
        const ap = added(p, d)
        prow.push([
          `${o.label} ÷ ${p.label}`,
          `${quotient(ao.p50, ap.p50)} / ${quotient(ao.p99, ap.p99)}`,
          quotient(ratio(o, d), ratio(p, d)),
          `${quotient(o.ttfb.p50Ms, p.ttfb.p50Ms)} / ${quotient(o.ttfb.p99Ms, p.ttfb.p99Ms)}`,
          quotient(o.cpuUsPerRequest ?? Number.NaN, p.cpuUsPerRequest ?? Number.NaN),
          quotient(o.peakRssMb, p.peakRssMb),
        ])
      }
    }
    parts.push(
      'Ours against each peer (below 1× is better for latency, CPU and memory, above 1× for throughput):',
    )
    parts.push(
      table(
        [
          '',
          'added p50 / p99',
          'throughput',
          'stream TTFB p50 / p99',
          'CPU per request',
          'peak RSS',
        ],
        prow,
      ),
    )
  }
  const s = run.streams
  if ('skipped' in s) {
    parts.push(`Concurrent slow streams: skipped — ${s.skipped}`)
  } else {
    const lag = (l: SlowStreamsResult['holdLag']) =>
      l ? `p50 ${fmt(l.p50Ms, 1)} / p99 ${fmt(l.p99Ms, 1)} / max ${fmt(l.maxMs, 1)} ms` : 'n/a'
    parts.push(
      `Concurrent slow streams through ours (1 worker): ${run.streamsSetup} ${s.opened} of ${s.count} streams open after ${fmt(s.rampMs / 1000, 1)} s (${s.failed} failed${s.failed > 0 ? `: ${s.failures}` : ''}, ${s.endedEarly} ended early${s.rampListenDrops !== undefined ? `; ${s.rampListenDrops.overflows} SYNs dropped at full accept queues on the machine while ramping` : ''}), held ${fmt(s.holdMs / 1000, 0)} s (${s.holdChunks} chunks delivered in the hold). Gateway RSS: ${fmt(s.rssIdleMb, 0)} MB idle, ${fmt(s.rssMaxMb, 0)} MB highest sample in the hold, ${fmt(s.rssPeakMb, 0)} MB peak (VmHWM). Event-loop delay while ramping: ${lag(s.rampLag)}; while holding: ${lag(s.holdLag)}.${Number.isFinite(s.rampCpuS) ? ` Gateway CPU: ${fmt(s.rampCpuS, 1)} s over the ramp (${fmt((s.rampCpuS * 1000) / Math.max(1, s.opened), 2)} ms per stream opened, the chunks of those already open included), ${fmt(s.holdCpuS, 1)} s over the hold (${fmt((s.holdCpuS * 1e6) / Math.max(1, s.holdChunks), 0)} µs per chunk delivered).` : ''} In-flight gauge: ${fmt(s.inflightHeld, 0)} while held, ${fmt(s.inflightAfter, 0)} ${fmt(s.releaseMs / 1000, 1)} s after the clients left.`,
    )
  }
  parts.push(
    table(
      ['target (issue 11)', 'measured', 'verdict'],
      checks(run).map((c) => [
        c.target,
        c.measured,
        c.verdict === 'pass' ? 'pass' : c.verdict === 'fail' ? '**fail**' : 'n/a',
      ]),
    ),
  )
  parts.push(run.machine)
  return parts.join('\n\n')
}
