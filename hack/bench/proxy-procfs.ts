// Memory of a benchmarked process tree from /proc (Linux): the resident set of a router and of
// every process it started (a data plane with --workers, the Python launcher of sglang-router),
// read from outside so no target needs a metrics endpoint of its own.
import { readdir, readFile } from 'node:fs/promises'

/** A `Vm*:` field of /proc/<pid>/status in kB, or NaN when absent. */
export function statusKb(status: string, field: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+)\\s+kB$`, 'm').exec(status)
  return m?.[1] === undefined ? Number.NaN : Number(m[1])
}

/** The parent pid from /proc/<pid>/stat (the command name may hold spaces and parentheses). */
export function statParentPid(stat: string): number {
  const close = stat.lastIndexOf(')')
  if (close < 0) return Number.NaN
  // After ") " come: state, ppid, …
  const fields = stat.slice(close + 2).split(' ')
  return Number(fields[1])
}

async function readOrEmpty(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8')
  } catch {
    return '' // the process exited between listing and reading
  }
}

/** `pid` and all its descendants that are alive now. */
export async function processTree(pid: number): Promise<number[]> {
  const children = new Map<number, number[]>()
  for (const name of await readdir('/proc')) {
    const p = Number(name)
    if (!Number.isInteger(p)) continue
    const ppid = statParentPid(await readOrEmpty(`/proc/${p}/stat`))
    if (!Number.isInteger(ppid)) continue
    const list = children.get(ppid)
    if (list === undefined) children.set(ppid, [p])
    else list.push(p)
  }
  const out: number[] = []
  const todo = [pid]
  for (let p = todo.pop(); p !== undefined; p = todo.pop()) {
    out.push(p)
    todo.push(...(children.get(p) ?? []))
  }
  return out
}

export interface TreeMemory {
  /** Resident set now, summed over the tree, MB (MiB). */
  readonly rssMb: number
  /** Peak resident set (VmHWM) summed over the tree, MB: an upper bound on the tree's real peak. */
  readonly peakMb: number
  readonly processes: number
}

export async function treeMemory(pid: number): Promise<TreeMemory> {
  let rss = 0
  let peak = 0
  let processes = 0
  for (const p of await processTree(pid)) {
    const status = await readOrEmpty(`/proc/${p}/status`)
    const r = statusKb(status, 'VmRSS')
    if (!Number.isFinite(r)) continue
    processes++
    rss += r
    const h = statusKb(status, 'VmHWM')
    peak += Number.isFinite(h) ? h : r
  }
  return { rssMb: rss / 1024, peakMb: peak / 1024, processes }
}
