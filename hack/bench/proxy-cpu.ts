// CPU time of a benchmarked process tree from /proc (Linux): user + system seconds of a router and
// of every process it started. Read before and after a fixed-rate run and divided by the requests
// served, it gives CPU per request: a number a busy machine disturbs far less than latency (time
// the router waits for a core is not CPU it used).
import { readFile } from 'node:fs/promises'
import { processTree } from './proxy-procfs.js'

/** Clock ticks per second of /proc/<pid>/stat's times (USER_HZ: 100 on every Linux ABI). */
const USER_HZ = 100

/** utime + stime of one /proc/<pid>/stat line in seconds, or NaN when it does not parse. */
export function statCpuSeconds(stat: string): number {
  const close = stat.lastIndexOf(')')
  if (close < 0) return Number.NaN
  // After ") " come: state(3), ppid(4), … utime(14), stime(15): indexes 11 and 12 here.
  const fields = stat.slice(close + 2).split(' ')
  const utime = Number(fields[11])
  const stime = Number(fields[12])
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) return Number.NaN
  return (utime + stime) / USER_HZ
}

/** CPU seconds used so far by `pid` and its living descendants. */
export async function treeCpuSeconds(pid: number): Promise<number> {
  let total = 0
  for (const p of await processTree(pid)) {
    let stat: string
    try {
      stat = await readFile(`/proc/${p}/stat`, 'utf8')
    } catch {
      continue // exited between listing and reading
    }
    const s = statCpuSeconds(stat)
    if (Number.isFinite(s)) total += s
  }
  return total
}

/** Microseconds of CPU per request between two readings (NaN when nothing was served). */
export function cpuUsPerRequest(beforeS: number, afterS: number, requests: number): number {
  return requests > 0 ? ((afterS - beforeS) * 1e6) / requests : Number.NaN
}
