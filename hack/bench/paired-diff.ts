// How sure a difference of two percentiles is, when both runs served the same requests. The
// routing bench sends every router the same seeded requests at the same planned times, so each
// request has one TTFT per router: pairing them and resampling request indices (a percentile
// bootstrap) gives an interval for "p90 of A − p90 of B" that says whether a 0.6 ms gap on 335 ms
// is more than which requests happened to fall in the top tenth. It covers that sampling only,
// not a second run on another day: the machine's run-to-run drift comes on top.
import { createRng } from '../sim/rng.js'
import { percentile } from './load.js'

export interface PairedDiff {
  /** p(A) − p(B) over the paired requests. */
  readonly diff: number
  /** The interval's ends at `level` (percentile bootstrap). */
  readonly lo: number
  readonly hi: number
  /** Requests answered in both runs. */
  readonly pairs: number
}

/**
 * `a` and `b`: a value per request key (the planned send time), NaN or absent when the request
 * failed; only keys with a finite value in both count. `resamples` draws with a PRNG seeded by
 * `seed`: the same data always gives the same interval.
 */
export function pairedPercentileDiff(
  a: ReadonlyMap<number, number>,
  b: ReadonlyMap<number, number>,
  p: number,
  level = 0.9,
  resamples = 1000,
  seed = 9,
): PairedDiff {
  const xa: number[] = []
  const xb: number[] = []
  for (const [k, va] of a) {
    const vb = b.get(k)
    if (vb === undefined || !Number.isFinite(va) || !Number.isFinite(vb)) continue
    xa.push(va)
    xb.push(vb)
  }
  const n = xa.length
  const at = (xs: number[]): number =>
    percentile(
      xs.sort((x, y) => x - y),
      p,
    )
  const diff = at([...xa]) - at([...xb])
  if (n < 2) return { diff, lo: diff, hi: diff, pairs: n }
  const rng = createRng(seed)
  const da = new Array<number>(n)
  const db = new Array<number>(n)
  const diffs = new Float64Array(resamples)
  for (let r = 0; r < resamples; r++) {
    for (let i = 0; i < n; i++) {
      const j = Math.floor(rng() * n)
      da[i] = xa[j] as number
      db[i] = xb[j] as number
    }
    diffs[r] = at(da) - at(db)
  }
  diffs.sort()
  const tail = (1 - level) / 2
  const q = (f: number): number =>
    diffs[Math.min(resamples - 1, Math.max(0, Math.floor(f * resamples)))] as number
  return { diff, lo: q(tail), hi: q(1 - tail), pairs: n }
}
