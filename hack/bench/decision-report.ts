// What bench:decision-live reads and prints: a decision's cost from the explain header, and the
// probe's records (decision-probe.ts) sorted by what else happened inside each decision.
import type { ProbeDump } from './decision-probe.js'
import type { CpuProfile } from './proxy-cost-profile.js'

/** The last field of an explain line (`… | 12.3us`): that decision's cost in µs. */
export function explainUs(line: string | undefined): number | undefined {
  const m = line === undefined ? null : /\| ([\d.]+)us$/.exec(line)
  return m === null ? undefined : Number(m[1])
}

/** Nearest-rank percentile of ascending values (NaN when empty). */
export function pct(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN
  return sorted[
    Math.max(0, Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1))
  ] as number
}

export function summary(xs: readonly number[]): string {
  const s = [...xs].sort((a, b) => a - b)
  const f = (v: number): string => v.toFixed(1)
  return `n ${s.length} p50 ${f(pct(s, 0.5))} p90 ${f(pct(s, 0.9))} p99 ${f(pct(s, 0.99))} max ${f(s[s.length - 1] ?? Number.NaN)}`
}

export interface ProbeClasses {
  /** Wall µs of decisions a garbage collection overlapped. */
  readonly gc: number[]
  /** Of the rest, those whose thread waited for a CPU or was switched out inside. */
  readonly preempted: number[]
  /** Neither: the decision's own work (cold or warm code and caches). */
  readonly neither: number[]
  /** Every decision's wall µs less the GC and the run-queue wait inside it. */
  readonly own: number[]
  /** Every decision's process CPU µs (the probe's cpuUs). */
  readonly cpu: number[]
  /** Decisions over 1 ms: how many, with GC inside, preempted. */
  readonly slow: { readonly n: number; readonly gc: number; readonly preempted: number }
}

/** The last `last` decisions of a probe dump, by what else happened in them. */
export function classifyProbe(d: ProbeDump, last: number): ProbeClasses {
  const rows = last > 0 ? d.decisions.slice(-last) : []
  const gcUs = (t0: number, us: number): number => {
    let ms = 0
    for (const [s, dur] of d.gc) {
      const a = Math.max(s, t0)
      const b = Math.min(s + dur, t0 + us / 1000)
      if (b > a) ms += b - a
    }
    return ms * 1000
  }
  const out = {
    gc: [] as number[],
    preempted: [] as number[],
    neither: [] as number[],
    own: [] as number[],
    cpu: [] as number[],
    slow: { n: 0, gc: 0, preempted: 0 },
  }
  for (const r of rows) {
    const g = gcUs(r.t0, r.wallUs)
    const pre = r.waitUs > 0 || r.switches > 0
    if (g > 0) out.gc.push(r.wallUs)
    else if (pre) out.preempted.push(r.wallUs)
    else out.neither.push(r.wallUs)
    out.own.push(Math.max(0, r.wallUs - g - r.waitUs))
    out.cpu.push(r.cpuUs)
    if (r.wallUs > 1000) {
      out.slow.n++
      if (g > 0) out.slow.gc++
      if (pre) out.slow.preempted++
    }
  }
  return out
}

export function probeText(c: ProbeClasses): string {
  return [
    `  probe (${c.own.length} decisions of the measured phase, wall us):`,
    `    GC inside: ${summary(c.gc)}`,
    `    preempted (run-queue wait or a switch inside): ${summary(c.preempted)}`,
    `    neither: ${summary(c.neither)}`,
    `    wall less GC and run-queue wait: ${summary(c.own)}`,
    `    process CPU (us): ${summary(c.cpu)}`,
    `    over 1 ms: ${c.slow.n} (${c.slow.gc} with GC, ${c.slow.preempted} preempted)`,
  ].join('\n')
}

/** Inside `fn` (the outermost frame of that name in a file matching `file`): time by callee. */
export interface UnderFunction {
  /** µs per decision in `fn`, inclusive. */
  readonly totalUs: number
  /** µs per decision by `fn`'s direct callee (`(self)`: `fn`'s own code), largest first. */
  readonly children: readonly (readonly [string, number])[]
  /** µs per decision by the function on top of the stack, largest first. */
  readonly leaves: readonly (readonly [string, number])[]
}

/**
 * Where a data plane's CPU profile spent its time inside `fn` (Scheduler.pick), per decision.
 * Samples are the profiler's interval of the thread's time, preempted or not: read the split as
 * shares, the probe's figures as the cost.
 */
export function underFunction(
  prof: CpuProfile,
  decisions: number,
  fn = 'pick',
  file = /scheduler\/scheduler\.ts/,
): UnderFunction {
  const total = prof.nodes.reduce((a, n) => a + (n.hitCount ?? 0), 0)
  const usPerSample = total > 0 ? (prof.endTime - prof.startTime) / total : 0
  const byId = new Map(prof.nodes.map((n) => [n.id, n]))
  const parent = new Map<number, number>()
  for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
  // `score predicted-latency.ts`: plugins' methods share names.
  const name = (id: number): string => {
    const f = byId.get(id)?.callFrame
    const file = f?.url.split('/').pop() ?? ''
    return `${f?.functionName || '(anonymous)'}${file !== '' ? ` ${file}` : ''}`
  }
  const children = new Map<string, number>()
  const leaves = new Map<string, number>()
  let inside = 0
  for (const n of prof.nodes) {
    const hits = n.hitCount ?? 0
    if (hits === 0) continue
    // Root-first chain; the outermost frame of `fn`.
    const chain: number[] = []
    for (let id: number | undefined = n.id; id !== undefined; id = parent.get(id)) chain.unshift(id)
    const at = chain.findIndex((id) => {
      const f = byId.get(id)?.callFrame
      return f !== undefined && f.functionName === fn && file.test(f.url)
    })
    if (at < 0) continue
    inside += hits
    const child = chain[at + 1]
    const c = child === undefined ? '(self)' : name(child)
    children.set(c, (children.get(c) ?? 0) + hits)
    const l = name(n.id)
    leaves.set(l, (leaves.get(l) ?? 0) + hits)
  }
  const per = (m: Map<string, number>): [string, number][] =>
    [...m.entries()]
      .map(([k, v]): [string, number] => [k, (v * usPerSample) / decisions])
      .sort((a, b) => b[1] - a[1])
  return {
    totalUs: (inside * usPerSample) / decisions,
    children: per(children),
    leaves: per(leaves),
  }
}

/** `u` from underFunction(prof, 1): total ms in pick and each callee's share of it. */
export function underFunctionText(u: UnderFunction, top = 8): string {
  const row = ([k, v]: readonly [string, number]): string =>
    `${k} ${((v / u.totalUs) * 100).toFixed(0)} %`
  return [
    `  CPU profile: ${(u.totalUs / 1000).toFixed(1)} ms sampled in Scheduler.pick (warm-up decisions included)`,
    `    by callee: ${u.children.slice(0, top).map(row).join(', ')}`,
    `    by function on top: ${u.leaves.slice(0, top).map(row).join(', ')}`,
  ].join('\n')
}
