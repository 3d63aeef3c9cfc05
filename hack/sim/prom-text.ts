// Number and label formatting of the two Prometheus client libraries the simulated engines use:
// Python prometheus_client (vLLM, SGLang) and Rust metrics-exporter-prometheus (TGI). Scrapers
// must cope with both, so the simulator reproduces each exactly enough to exercise parsers.

/** Python prometheus_client `floatToGoString`: 3.0, 0.41, 1.843712e+06, +Inf. */
export function pyFloat(d: number): string {
  if (d === Number.POSITIVE_INFINITY) return '+Inf'
  if (d === Number.NEGATIVE_INFINITY) return '-Inf'
  if (Number.isNaN(d)) return 'NaN'
  let s = String(d)
  // Python's repr keeps a trailing ".0" on integral floats; JS drops it.
  if (Number.isInteger(d) && !s.includes('e')) s = `${s}.0`
  const dot = s.indexOf('.')
  // Go (and hence prometheus_client) switches to exponent form from 1e6 on.
  if (d > 0 && dot > 6 && !s.includes('e')) {
    const digits = `${s.slice(0, dot)}${s.slice(dot + 1)}`
    const mantissa = `${digits[0]}.${digits.slice(1)}`.replace(/\.?0+$/, '')
    return `${mantissa}e+0${dot - 1}`
  }
  return s
}

/** Rust `Display` for f64 as metrics-exporter-prometheus prints: 3, 0.41, never exponent form. */
export function rustFloat(d: number): string {
  if (d === Number.POSITIVE_INFINITY) return '+Inf'
  if (d === Number.NEGATIVE_INFINITY) return '-Inf'
  if (Number.isNaN(d)) return 'NaN'
  const s = String(d)
  if (!s.includes('e')) return s
  // Tiny values: JS uses exponent form below 1e-6, Rust prints the plain decimal.
  return d.toFixed(20).replace(/0+$/, '').replace(/\.$/, '')
}

export type Labels = ReadonlyArray<readonly [string, string]>

function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"')
}

export function labelText(labels: Labels): string {
  if (labels.length === 0) return ''
  return `{${labels.map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(',')}}`
}

/** Python multiprocess mode and vLLM's exposition sort label names (including `le`). */
export function sortedLabels(labels: Labels): Labels {
  return [...labels].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
}

/** A cumulative histogram with fixed upper bounds. */
export class Histogram {
  readonly bounds: readonly number[]
  readonly counts: number[]
  sum = 0
  count = 0

  constructor(bounds: readonly number[]) {
    this.bounds = bounds
    this.counts = bounds.map(() => 0)
  }

  observe(v: number): void {
    this.sum += v
    this.count++
    for (let i = 0; i < this.bounds.length; i++) {
      if (v <= (this.bounds[i] ?? Number.POSITIVE_INFINITY))
        this.counts[i] = (this.counts[i] ?? 0) + 1
    }
  }

  /** Cumulative [le, count] pairs ending with +Inf. */
  buckets(): Array<[number, number]> {
    const out: Array<[number, number]> = this.bounds.map((b, i) => [b, this.counts[i] ?? 0])
    out.push([Number.POSITIVE_INFINITY, this.count])
    return out
  }
}
