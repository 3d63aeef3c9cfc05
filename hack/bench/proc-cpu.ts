// CPU time of the benchmark's process tree from /proc (Linux), read at the start and the end of a
// run's load: on a shared two-core machine it tells whether the router's figures measure routing
// or CPU starvation (three gateway replicas, the engine fleet, the balancer and the load
// generator compete for the same cores). Ticks are clock ticks (USER_HZ, 100 per second).
import { readFile } from 'node:fs/promises'
import { processTree } from './proxy-procfs.js'

const TICKS_PER_SECOND = 100

/** utime + stime from a /proc/<pid>/stat line (the command name may hold spaces and parentheses). */
export function statCpuTicks(stat: string): number {
  const close = stat.lastIndexOf(')')
  if (close < 0) return Number.NaN
  // After ") " come: state, ppid, pgrp, session, tty_nr, tpgid, flags, minflt, cminflt, majflt,
  // cmajflt, utime, stime.
  const f = stat.slice(close + 2).split(' ')
  return Number(f[11]) + Number(f[12])
}

/** CPU seconds used so far by `root` and each of its descendants, keyed by pid, with their role. */
export async function treeCpu(
  root: number,
  roleOf: (cmdline: string, pid: number) => string,
): Promise<Map<number, { readonly role: string; readonly seconds: number }>> {
  const out = new Map<number, { role: string; seconds: number }>()
  for (const pid of await processTree(root)) {
    try {
      const ticks = statCpuTicks(await readFile(`/proc/${pid}/stat`, 'utf8'))
      const cmd = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).replace(/\0/g, ' ')
      if (Number.isFinite(ticks))
        out.set(pid, { role: roleOf(cmd, pid), seconds: ticks / TICKS_PER_SECOND })
    } catch {
      // exited between listing and reading
    }
  }
  return out
}

/** CPU seconds per role between two readings (processes that started in between count from 0). */
export function cpuBetween(
  before: ReadonlyMap<number, { readonly seconds: number }>,
  after: ReadonlyMap<number, { readonly role: string; readonly seconds: number }>,
): Map<string, number> {
  const out = new Map<string, number>()
  for (const [pid, a] of after) {
    const d = a.seconds - (before.get(pid)?.seconds ?? 0)
    out.set(a.role, (out.get(a.role) ?? 0) + d)
  }
  return out
}

/**
 * The role of one process of the routing benches from its command line, for their CPU lines: on
 * two shared cores, whether a run measured routing or starvation (gateways, engines, balancer,
 * peer routers and the load generator share them).
 */
export function benchRoleOf(cmd: string, pid: number): string {
  if (pid === process.pid) return 'load generator'
  const port = /dataplane .*--port (\d+)/.exec(cmd)?.[1]
  if (port !== undefined) return `gateway :${port}`
  if (cmd.includes('routing-fleet')) return 'engines'
  if (cmd.includes('routing-balancer')) return 'balancer'
  if (cmd.includes('python') || cmd.includes('router')) return 'peer router'
  return 'other'
}
