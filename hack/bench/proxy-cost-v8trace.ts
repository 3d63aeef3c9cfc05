// Counts V8's `--trace-opt --trace-deopt` (and `--trace-gc` Mark-Compact) lines (Node 20, V8 11.3) for proxy-cost-warmup.ts: how
// many functions were marked for optimization, compiled (and to which tier, OSR apart), and
// deoptimized (eager, lazy or soft, with V8's reason), and how many compiled functions lost their
// code through a dependency (a map or a field's representation changing under them). Function
// names are V8's: the bundle's names, `(anonymous)` where V8 has none.

/** One deoptimization: the function, V8's kind (deopt-eager, deopt-lazy, deopt-soft) and reason. */
export interface Deopt {
  readonly fn: string
  readonly kind: string
  readonly reason: string
}

/** What a slice of V8's trace output holds. */
export interface V8TraceCounts {
  /** `[marking … for optimization to TIER …]` lines. */
  readonly marked: number
  /** Completed optimizing compiles by target tier (TURBOFAN, MAGLEV; `… OSR` counted apart). */
  readonly compiled: ReadonlyMap<string, number>
  /** Compiled function names (a function compiled twice appears twice). */
  readonly compiledFns: readonly string[]
  readonly deopts: readonly Deopt[]
  /** `[marking dependent code …]`: optimized code thrown away because an assumption broke. */
  readonly dependentCode: readonly { readonly fn: string; readonly reason: string }[]
  /**
   * With `--trace-gc`: V8's reason for each Mark-Compact (e.g. `finalize incremental marking via
   * task`, `allocation failure`), those outside a probe's window (an idle process's memory
   * reducer) included.
   */
  readonly markCompacts: readonly string[]
}

const FN = /<JSFunction ([^ >]*) ?\(sfi/
const fnName = (line: string): string => {
  const m = FN.exec(line)
  const name = m?.[1] ?? ''
  return name === '' ? '(anonymous)' : name
}

/** Parses trace lines (any other output in between is ignored). */
export function countV8Trace(text: string): V8TraceCounts {
  let marked = 0
  const compiled = new Map<string, number>()
  const compiledFns: string[] = []
  const deopts: Deopt[] = []
  const dependentCode: { fn: string; reason: string }[] = []
  const markCompacts: string[] = []
  for (const line of text.split('\n')) {
    const gc = /^\[\d+:0x[0-9a-f]+\]\s+\d+ ms: Mark-Compact .* current mu = [\d.]+\) (.*?);/.exec(
      line,
    )
    if (gc !== null) markCompacts.push(gc[1] ?? '?')
    else if (line.startsWith('[marking dependent code')) {
      const m = /<SharedFunctionInfo ?([^>]*)>.*reason: (.*)\]$/.exec(line)
      dependentCode.push({ fn: m?.[1] || '(anonymous)', reason: m?.[2] ?? '?' })
    } else if (line.startsWith('[marking ')) marked++
    else if (line.startsWith('[completed optimizing ')) {
      const m = /\(target (\w+)\)( OSR)?/.exec(line)
      const tier = `${m?.[1] ?? '?'}${m?.[2] ?? ''}`
      compiled.set(tier, (compiled.get(tier) ?? 0) + 1)
      compiledFns.push(fnName(line))
    } else if (line.startsWith('[bailout (kind: ')) {
      const m = /^\[bailout \(kind: ([^,]+), reason: (.*)\): begin/.exec(line)
      deopts.push({ fn: fnName(line), kind: m?.[1] ?? '?', reason: m?.[2] ?? '?' })
    }
  }
  return { marked, compiled, compiledFns, deopts, dependentCode, markCompacts }
}

/** `key count` pairs, most frequent first. */
export function tally(keys: readonly string[]): [string, number][] {
  const m = new Map<string, number>()
  for (const k of keys) m.set(k, (m.get(k) ?? 0) + 1)
  return [...m.entries()].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
}
