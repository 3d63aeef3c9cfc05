// Series of prom-client metrics bound once, for the request path. prom-client's labelled children
// (`metric.labels({...})`) still convert, validate and hash the label object on every `inc` and
// `observe` (about 3 % of the gateway's busy CPU at 500 req/s, several series per request). A
// bound series finds its storage once and then only adds numbers to it.
//
// It writes to prom-client's per-series storage (`hashMap` entries, pinned prom-client 15.1): a
// counter entry is `{ value, labels }`, a histogram entry `{ labels, bucketValues, sum, count }`
// with non-cumulative bucket counts keyed by upper bound (cumulated at collect time). When the
// entry it holds is no longer the metric's (after `reset()` or `remove()`), the next call goes
// through prom-client's own path, which recreates the series, and binds to the new entry.
// metrics-bound.test.ts compares the exposition with prom-client's own path.
import type { Counter, Histogram } from 'prom-client'

type Labels = Record<string, string | number>

interface CounterEntry {
  value: number
}

interface HistogramEntry {
  sum: number
  count: number
  bucketValues: Record<string, number>
}

interface Stored<E> {
  hashMap: Record<string, E | undefined>
}

export interface BoundCounter {
  inc(value?: number): void
}

export interface BoundHistogram {
  observe(value: number): void
}

/** The key under which prom-client stores the series with exactly these label values. */
function findKey<E extends { labels?: Labels }>(m: Stored<E>, labels: Labels): string | undefined {
  const names = Object.keys(labels)
  for (const [key, e] of Object.entries(m.hashMap)) {
    const l = e?.labels
    if (l === undefined || Object.keys(l).length !== names.length) continue
    if (names.every((n) => String(l[n]) === String(labels[n]))) return key
  }
  return undefined
}

export function bindCounter(metric: Counter<string>, labels: Labels): BoundCounter {
  const m = metric as unknown as Stored<CounterEntry & { labels?: Labels }>
  let key: string | undefined
  let entry: CounterEntry | undefined
  return {
    inc(value = 1): void {
      if (entry !== undefined && key !== undefined && m.hashMap[key] === entry && value >= 0) {
        // prom-client accepts any finite non-negative number; NaN fails `>= 0` above.
        if (value !== Number.POSITIVE_INFINITY) {
          entry.value += value
          return
        }
      }
      metric.inc(labels, value)
      key ??= findKey(m, labels)
      entry = key !== undefined ? m.hashMap[key] : undefined
    },
  }
}

export function bindHistogram(metric: Histogram<string>, labels: Labels): BoundHistogram {
  const m = metric as unknown as Stored<HistogramEntry & { labels?: Labels }> & {
    upperBounds: readonly number[]
  }
  let key: string | undefined
  let entry: HistogramEntry | undefined
  // prom-client keys bucket counts by the bound as a property name: indexing with the number
  // converts it to a string on every observation (about half the cost of an observe).
  let bounds: readonly number[] = []
  let names: readonly string[] = []
  return {
    observe(value: number): void {
      if (
        entry !== undefined &&
        key !== undefined &&
        m.hashMap[key] === entry &&
        Number.isFinite(value)
      ) {
        if (bounds !== m.upperBounds) {
          bounds = m.upperBounds
          names = bounds.map(String)
        }
        for (let i = 0; i < bounds.length; i++) {
          if (value <= (bounds[i] as number)) {
            const b = names[i] as string
            entry.bucketValues[b] = (entry.bucketValues[b] ?? 0) + 1
            break
          }
        }
        entry.sum += value
        entry.count += 1
        return
      }
      metric.observe(labels, value)
      key ??= findKey(m, labels)
      entry = key !== undefined ? m.hashMap[key] : undefined
    },
  }
}
