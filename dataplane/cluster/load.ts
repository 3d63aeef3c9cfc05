// In-flight load across the worker processes of one data plane (`--workers N`). Each worker
// reports what it has in flight per endpoint; the primary keeps the latest report of every worker
// and tells each one what the OTHERS have in flight, which the worker adds to its blended load
// (scheduler/state.ts `peerInFlight`). Pure and synchronous: the IPC lives in primary.ts/worker.ts.

/** `[endpoint id (address:port), requests in flight, tokens in flight]`. */
export type LoadEntry = readonly [id: string, requests: number, tokens: number]

export class LoadAggregator {
  readonly #byWorker = new Map<number, ReadonlyMap<string, readonly [number, number]>>()

  /** The latest full report of `worker` (endpoints it does not list have nothing in flight). */
  report(worker: number, entries: readonly LoadEntry[]): void {
    const m = new Map<string, readonly [number, number]>()
    for (const [id, n, t] of entries) {
      if (n > 0 || t > 0) m.set(id, [Math.max(0, n), Math.max(0, t)])
    }
    this.#byWorker.set(worker, m)
  }

  /** A worker that exited: its requests died with it. */
  remove(worker: number): void {
    this.#byWorker.delete(worker)
  }

  /** Sum over every worker except `worker`, by endpoint id (sorted, so equal views compare equal). */
  othersOf(worker: number): LoadEntry[] {
    const sum = new Map<string, [number, number]>()
    for (const [w, m] of this.#byWorker) {
      if (w === worker) continue
      for (const [id, [n, t]] of m) {
        const s = sum.get(id)
        if (s === undefined) sum.set(id, [n, t])
        else {
          s[0] += n
          s[1] += t
        }
      }
    }
    return [...sum.entries()]
      .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
      .map(([id, [n, t]]) => [id, n, t] as const)
  }
}

/** A stable string of a load view, to send only when it changed. */
export function loadKey(entries: readonly LoadEntry[]): string {
  return entries.map((e) => `${e[0]}=${e[1]}/${e[2]}`).join(',')
}
