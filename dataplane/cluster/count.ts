// How many worker processes `--workers` defaults to: the CPUs this container may use. Node's
// `os.availableParallelism()` follows the CPU affinity mask (cpusets, `taskset`) but not a CFS
// quota (`resources.limits.cpu` in Kubernetes), which lives in the cgroup's `cpu.max` (v2) or
// `cpu.cfs_quota_us`/`cpu.cfs_period_us` (v1): a pod limited to 2 CPUs on a 64-core node must not
// start 64 workers that the kernel then throttles.
import { readFileSync } from 'node:fs'
import { availableParallelism } from 'node:os'

/** CPUs allowed by a cgroup quota, rounded up; undefined without a quota. */
export function cgroupCpuLimit(
  read: (path: string) => string | undefined = readOrUndefined,
): number | undefined {
  const v2 = read('/sys/fs/cgroup/cpu.max')
  if (v2 !== undefined) return quotaCpus(v2.trim().split(/\s+/))
  const q = read('/sys/fs/cgroup/cpu/cpu.cfs_quota_us')
  const p = read('/sys/fs/cgroup/cpu/cpu.cfs_period_us')
  if (q !== undefined && p !== undefined) return quotaCpus([q.trim(), p.trim()])
  return undefined
}

function quotaCpus([quota, period]: string[]): number | undefined {
  if (quota === undefined || quota === 'max' || quota === '-1') return undefined
  const q = Number(quota)
  const p = Number(period ?? 100_000)
  if (!Number.isFinite(q) || !Number.isFinite(p) || q <= 0 || p <= 0) return undefined
  return Math.max(1, Math.ceil(q / p))
}

function readOrUndefined(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8')
  } catch {
    return undefined
  }
}

/** The default worker count: available CPUs, capped by the cgroup quota; at least 1. */
export function defaultWorkers(
  cpus: number = availableParallelism(),
  limit: number | undefined = cgroupCpuLimit(),
): number {
  return Math.max(1, Math.min(cpus, limit ?? cpus))
}
