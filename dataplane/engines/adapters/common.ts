// Aggregation over series, shared by the engine adapters. Engines split one signal over several
// series (data-parallel `engine`/`dp_rank`, `is_streaming`, `pid`, `cache_source`, …). Counts and
// histogram totals are SUMMED over them and ratios AVERAGED; no series ever overwrites another
// (the last-series-wins bug of the reference router with data parallelism).

import type { ParsedMetrics, Sample } from '../prom-parser.js'

export type Labels = Readonly<Record<string, string>>
export type LabelFilter = (labels: Labels) => boolean

const SAMPLE_SUFFIXES = ['_bucket', '_sum', '_count', '_total', '_created'] as const

/**
 * Every sample named exactly `sampleName`, wherever the parser filed it: under its own family, or
 * under a base family (`x_sum` under histogram `x`, `x_total` under counter `x`). Looking in both
 * keeps adapters independent of whether the engine wrote `# TYPE` lines.
 */
export function samplesNamed(
  parsed: ParsedMetrics,
  sampleName: string,
  filter?: LabelFilter,
): Sample[] {
  const out: Sample[] = []
  const collect = (familyName: string): void => {
    const family = parsed.families.get(familyName)
    if (family === undefined) return
    for (const s of family.samples) {
      if (s.name === sampleName && (filter === undefined || filter(s.labels))) out.push(s)
    }
  }
  collect(sampleName)
  for (const suffix of SAMPLE_SUFFIXES) {
    if (sampleName.length > suffix.length && sampleName.endsWith(suffix)) {
      collect(sampleName.slice(0, sampleName.length - suffix.length))
      break
    }
  }
  return out
}

function finiteValues(samples: readonly Sample[]): number[] {
  const out: number[] = []
  for (const s of samples) if (Number.isFinite(s.value)) out.push(s.value)
  return out
}

/** Sum over series (counts, counters); undefined when no finite sample exists. */
export function sumOf(
  parsed: ParsedMetrics,
  name: string,
  filter?: LabelFilter,
): number | undefined {
  const values = finiteValues(samplesNamed(parsed, name, filter))
  if (values.length === 0) return undefined
  let total = 0
  for (const v of values) total += v
  return total
}

/** Mean over series (ratios such as KV usage); undefined when no finite sample exists. */
export function meanOf(
  parsed: ParsedMetrics,
  name: string,
  filter?: LabelFilter,
): number | undefined {
  const values = finiteValues(samplesNamed(parsed, name, filter))
  if (values.length === 0) return undefined
  let total = 0
  for (const v of values) total += v
  return total / values.length
}

/** Max over series (configuration gauges that every rank reports alike, e.g. a page size). */
export function maxOf(
  parsed: ParsedMetrics,
  name: string,
  filter?: LabelFilter,
): number | undefined {
  const values = finiteValues(samplesNamed(parsed, name, filter))
  return values.length === 0 ? undefined : Math.max(...values)
}

export interface Totals {
  readonly numerator: number
  readonly denominator: number
}

/** Histogram (or summary) `_sum`/`_count` summed over all series, for an interval mean. */
export function histogramTotals(
  parsed: ParsedMetrics,
  family: string,
  filter?: LabelFilter,
): Totals | undefined {
  const sum = sumOf(parsed, `${family}_sum`, filter)
  const count = sumOf(parsed, `${family}_count`, filter)
  if (sum === undefined || count === undefined) return undefined
  return { numerator: sum, denominator: count }
}

/** The first histogram family of `families` the engine exports (current name before legacy). */
export function firstHistogram(
  parsed: ParsedMetrics,
  families: readonly string[],
): Totals | undefined {
  for (const f of families) {
    const t = histogramTotals(parsed, f)
    if (t !== undefined) return t
  }
  return undefined
}

/** The first of `names` with a value, by `pick` (sumOf/meanOf/maxOf). */
export function firstOf(
  parsed: ParsedMetrics,
  names: readonly string[],
  pick: (parsed: ParsedMetrics, name: string) => number | undefined,
): number | undefined {
  for (const n of names) {
    const v = pick(parsed, n)
    if (v !== undefined) return v
  }
  return undefined
}

/** Counter ratio totals (hits over queries), summed over series; needs both counters. */
export function counterTotals(
  parsed: ParsedMetrics,
  numerator: string,
  denominator: string,
): Totals | undefined {
  const num = sumOf(parsed, numerator)
  const den = sumOf(parsed, denominator)
  if (num === undefined || den === undefined) return undefined
  return { numerator: num, denominator: den }
}

/** `a / b` when both exist and b > 0. */
export function ratioOf(a: number | undefined, b: number | undefined): number | undefined {
  return a !== undefined && b !== undefined && b > 0 ? a / b : undefined
}

export function labelOf(labels: Labels, name: string): string | undefined {
  return labels[name]
}

/** A label holding an integer (`block_size="16"`); undefined for "None", "" or garbage. */
export function intLabel(labels: Labels, name: string): number | undefined {
  const raw = labels[name]
  if (raw === undefined || !/^\s*\d+(?:\.0*)?\s*$/.test(raw)) return undefined
  const v = Number(raw)
  return Number.isSafeInteger(v) ? v : undefined
}

/**
 * A per-rank configuration value from an info series' labels, summed over distinct ranks: each
 * data-parallel rank owns its own KV pool, so the endpoint's capacity is the sum. Series without a
 * rank label count once.
 */
export function sumLabelOverRanks(
  samples: readonly Sample[],
  label: string,
  rankLabels: readonly string[],
): number | undefined {
  const seen = new Map<string, number>()
  for (const s of samples) {
    const v = intLabel(s.labels, label)
    if (v === undefined) continue
    const rank = rankLabels.map((r) => s.labels[r] ?? '').join('\u0000')
    if (!seen.has(rank)) seen.set(rank, v)
  }
  if (seen.size === 0) return undefined
  let total = 0
  for (const v of seen.values()) total += v
  return total
}

/** The first series' integer label (values every rank shares, like block size). */
export function firstIntLabel(samples: readonly Sample[], label: string): number | undefined {
  for (const s of samples) {
    const v = intLabel(s.labels, label)
    if (v !== undefined) return v
  }
  return undefined
}
