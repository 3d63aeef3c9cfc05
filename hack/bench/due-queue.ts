// What the scheduler-cost benches run on their virtual clock between requests: engine answers and
// copies' ends, each due at a time. One queue for bench:scheduler-cost, its A/B and its profile, so
// the three drive the scheduler identically. Harness code: the A/B imports it from this tree, not
// from the checkouts it compares.

/** A clock the queue moves: the workload's virtual `now` (ms). */
export interface VirtualClock {
  now: number
}

export class DueQueue {
  /** Soonest first; equal times in the order they were added. */
  readonly #due: { readonly at: number; readonly run: () => void }[] = []

  get size(): number {
    return this.#due.length
  }

  /** Runs `run` when the clock passes `at` (runUntil). */
  later(at: number, run: () => void): void {
    const due = this.#due
    let lo = 0
    let hi = due.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if ((due[mid]?.at ?? 0) <= at) lo = mid + 1
      else hi = mid
    }
    due.splice(lo, 0, { at, run })
  }

  /** Runs everything due by `t`, each with the clock at its own time, then sets the clock to `t`. */
  runUntil(clock: VirtualClock, t: number): void {
    const due = this.#due
    for (let d = due[0]; d !== undefined && d.at <= t; d = due[0]) {
      due.shift()
      clock.now = d.at
      d.run()
    }
    clock.now = t
  }
}
