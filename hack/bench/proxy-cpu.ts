// CPU per request of a benchmarked router: its process tree's user + system seconds (proc-cpu.ts)
// read before and after a fixed-rate run, divided by the requests sent. Time spent waiting for a
// core is not CPU used, so a busy machine disturbs this far less than latency.
import { treeCpu } from './proc-cpu.js'

/** CPU seconds used so far by `pid` and its living descendants. */
export async function treeCpuSeconds(pid: number): Promise<number> {
  let total = 0
  for (const p of (await treeCpu(pid, () => '')).values()) total += p.seconds
  return total
}

/** Microseconds of CPU per request between two readings (NaN when nothing was served). */
export function cpuUsPerRequest(beforeS: number, afterS: number, requests: number): number {
  return requests > 0 ? ((afterS - beforeS) * 1e6) / requests : Number.NaN
}
