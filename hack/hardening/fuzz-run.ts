// Sends seeded fuzz bodies (fuzz-bodies.ts) through a gateway with bounded concurrency and sorts
// the answers: gateway-made 5xx (the bug class), engine 5xx, connection errors, error bodies that
// are not OpenAI-shaped. Used by the CI-sized test and by `npm run hardening:fuzz`.
import { fuzzCase } from './fuzz-bodies.js'
import { type LoadResult, runLoad } from './kit.js'

export interface FuzzRunOptions {
  readonly url: string
  readonly model: string
  readonly seed: number
  readonly count: number
  readonly concurrency: number
  /** Start at this case index (to reproduce a slice of a long run). */
  readonly from?: number
  readonly maxStringBytes?: number
}

export interface FuzzRunResult extends LoadResult {
  readonly seed: number
  readonly from: number
  readonly count: number
  /** Bytes of request bodies sent. */
  readonly bodyBytes: number
}

export async function runFuzz(o: FuzzRunOptions): Promise<FuzzRunResult> {
  const from = o.from ?? 0
  let bodyBytes = 0
  const kinds = new Map<number, string>()
  const res = await runLoad({
    url: o.url,
    concurrency: o.concurrency,
    next: (i) => {
      if (i >= o.count) return undefined
      const c = fuzzCase(o.seed, from + i, {
        model: o.model,
        ...(o.maxStringBytes !== undefined ? { maxStringBytes: o.maxStringBytes } : {}),
      })
      bodyBytes += c.body.length
      kinds.set(i, c.kinds.join(' '))
      return { path: c.path, body: c.body }
    },
    label: (i) => {
      const k = kinds.get(i) ?? ''
      kinds.delete(i)
      return `case ${from + i} [${k}]`
    },
  })
  return { ...res, seed: o.seed, from, count: o.count, bodyBytes }
}
