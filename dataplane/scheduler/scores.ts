// Normalisations shared by scorers. Scores are relative to the candidates of one decision: the
// weighted sum only has to rank endpoints, so what matters is each plugin's spread.

/**
 * out[i] = (max − cost_i) / (max − min): the cheapest candidate scores 1, the dearest 0, and all
 * score 1 when they are equal (a plugin with nothing to say must not favour anyone).
 */
export function inverseMinMax(costs: ArrayLike<number>, n: number, out: Float64Array): void {
  let min = Number.POSITIVE_INFINITY
  let max = Number.NEGATIVE_INFINITY
  for (let i = 0; i < n; i++) {
    const c = costs[i] ?? 0
    if (c < min) min = c
    if (c > max) max = c
  }
  const span = max - min
  for (let i = 0; i < n; i++) out[i] = span > 0 ? (max - (costs[i] ?? 0)) / span : 1
}

/**
 * `Plugin.single` of a plugin whose score only writes scores (no state, no draws): with one
 * candidate there is nothing to do.
 */
export function noScoreEffects(): void {}

/** A reusable scratch array of at least `n` doubles (scoring allocates nothing per request). */
export class Scratch {
  #buf = new Float64Array(64)
  get(n: number): Float64Array {
    if (this.#buf.length < n) this.#buf = new Float64Array(Math.max(n, this.#buf.length * 2))
    return this.#buf
  }
}

/**
 * `xs.filter(keep)`, except that `xs` itself comes back when every element is kept: a filter
 * that removes nothing (the usual case) allocates no array per decision.
 */
export function filterKept<T>(xs: readonly T[], keep: (x: T) => boolean): readonly T[] {
  const n = xs.length
  let i = 0
  while (i < n && keep(xs[i] as T)) i++
  if (i === n) return xs
  const out = xs.slice(0, i)
  for (i++; i < n; i++) if (keep(xs[i] as T)) out.push(xs[i] as T)
  return out
}

/**
 * The elements of `xs` whose mark is 1 (`kept` of them), in order: `xs` itself when all are. What
 * filterKept does for a filter that marks its candidates in a loop of its own: no closure, and
 * the array made at its final size in one allocation (a slice of the first `kept`, then
 * overwritten), where filterKept's slice-and-push grew it by copies, most of a kilobyte per
 * decision that filtered 64 candidates. Packed, as filterKept's (scorers read one kind of array).
 */
export function keepMarked<T>(xs: readonly T[], marks: Uint8Array, kept: number): readonly T[] {
  const n = xs.length
  if (kept === n) return xs
  const out = xs.slice(0, kept)
  let j = 0
  for (let i = 0; i < n && j < kept; i++) if (marks[i] === 1) out[j++] = xs[i] as T
  return out
}
