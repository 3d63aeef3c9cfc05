// Garbage-collection pauses of a child Node process, read from its `--trace-gc` lines, e.g.
//   [1234:0x5f1c2a0]     6303 ms: Scavenge 45.2 (66.3) -> 30.4 (66.3) MB, 5.62 / 0.02 ms  (…
//   [1234:0x5f1c2a0]    90210 ms: Mark-Compact 61.0 (80.1) -> 40.2 (79.9) MB, 12.3 / 0.0 ms  (…
// The first time after "MB," is the pause on the main thread; the sizes are the isolate's heap in
// use before -> after (committed in brackets). A benchmark counts the pauses that
// fell inside one measured run: with one request at a time, each pause lands on (at most) one
// request, so pauses per 1,000 requests against the share above p99 tell whether GC is the tail.
// `--trace-gc` covers every isolate of the process: a worker thread's pauses (the EPP's scrape
// worker) come with their own isolate address and stop only that thread, so a benchmark counts
// the main isolate's — the first to print. Node flags that make sure of that (GC_MAIN_FIRST_ARGS):
// a worker with a small heap (the scrape worker's, SCRAPE_WORKER_LIMITS) can otherwise collect
// before the main thread has, while the main thread is still loading.
import type { Readable } from 'node:stream'

/** Node flags for a traced child: one full collection of the main isolate before anything runs. */
export const GC_MAIN_FIRST_ARGS: readonly string[] = [
  '--expose-gc',
  '--import=data:text/javascript,globalThis.gc()',
]

export interface GcPause {
  readonly kind: 'scavenge' | 'mark-compact' | 'other'
  readonly pauseMs: number
  /** The isolate's address (`0x…`): one per thread running JavaScript. */
  readonly isolate: string
  /** Time since the isolate started, ms (the line's own clock). */
  readonly atMs: number
  /** The isolate's heap in use after this collection, MB: after a mark-compact, its live set. */
  readonly afterMb: number
  /** The heap the isolate holds from the system after it (committed), MB. */
  readonly committedMb: number
}

// Node 24's V8 adds `pooled: N MB,` (pages held in its pool) before the pause.
const LINE =
  /^\[\d+:(0x[0-9a-f]+)\] +([\d.]+) ms: ([A-Za-z-]+)(?: \([^)]*\))? [\d.]+ \([\d.]+\) -> ([\d.]+) \(([\d.]+)\) MB,(?: pooled: [\d.]+ MB,)? ([\d.]+) \//

/** One `--trace-gc` line; undefined for anything else. */
export function parseTraceGc(line: string): GcPause | undefined {
  const m = LINE.exec(line)
  if (m === null) return undefined
  const name = (m[3] as string).toLowerCase()
  return {
    kind: name === 'scavenge' ? 'scavenge' : name.startsWith('mark') ? 'mark-compact' : 'other',
    pauseMs: Number(m[6]),
    isolate: m[1] as string,
    atMs: Number(m[2]),
    afterMb: Number(m[4]),
    committedMb: Number(m[5]),
  }
}

export interface GcSummary {
  readonly pauses: number
  readonly scavenges: number
  readonly markCompacts: number
  readonly totalMs: number
  readonly medianMs: number
  readonly maxMs: number
}

export function summariseGc(pauses: readonly GcPause[]): GcSummary {
  const ms = pauses.map((p) => p.pauseMs).sort((a, b) => a - b)
  return {
    pauses: ms.length,
    scavenges: pauses.filter((p) => p.kind === 'scavenge').length,
    markCompacts: pauses.filter((p) => p.kind === 'mark-compact').length,
    totalMs: ms.reduce((a, b) => a + b, 0),
    medianMs: ms.length > 0 ? (ms[Math.floor(ms.length / 2)] as number) : 0,
    maxMs: ms.length > 0 ? (ms[ms.length - 1] as number) : 0,
  }
}

/**
 * Collects the pauses a child prints on `out`; `take()` returns the main isolate's since the last
 * take (`takeAll()` every isolate's).
 */
export function watchGc(out: Readable): {
  take(): GcPause[]
  takeAll(): GcPause[]
  /** The main isolate's address, once it has collected. */
  main(): string | undefined
} {
  let pending = ''
  let seen: GcPause[] = []
  let main: string | undefined
  out.on('data', (b: Buffer) => {
    const text = pending + b.toString()
    const lines = text.split('\n')
    pending = lines.pop() ?? ''
    for (const l of lines) {
      const p = parseTraceGc(l)
      if (p === undefined) continue
      main ??= p.isolate
      seen.push(p)
    }
  })
  const takeAll = (): GcPause[] => {
    const out = seen
    seen = []
    return out
  }
  return {
    take: () => takeAll().filter((p) => p.isolate === main),
    takeAll,
    main: () => main,
  }
}
