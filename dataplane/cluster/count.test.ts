import { describe, expect, it } from 'vitest'
import { cgroupCpuLimit, defaultWorkers } from './count.js'

const files =
  (m: Record<string, string>) =>
  (p: string): string | undefined =>
    m[p]

describe('worker count', () => {
  it('reads a cgroup v2 quota, rounding up', () => {
    expect(cgroupCpuLimit(files({ '/sys/fs/cgroup/cpu.max': '150000 100000\n' }))).toBe(2)
    expect(cgroupCpuLimit(files({ '/sys/fs/cgroup/cpu.max': '50000 100000\n' }))).toBe(1)
    expect(cgroupCpuLimit(files({ '/sys/fs/cgroup/cpu.max': 'max 100000\n' }))).toBeUndefined()
  })

  it('reads a cgroup v1 quota; none without files', () => {
    const v1 = {
      '/sys/fs/cgroup/cpu/cpu.cfs_quota_us': '400000\n',
      '/sys/fs/cgroup/cpu/cpu.cfs_period_us': '100000\n',
    }
    expect(cgroupCpuLimit(files(v1))).toBe(4)
    expect(
      cgroupCpuLimit(files({ ...v1, '/sys/fs/cgroup/cpu/cpu.cfs_quota_us': '-1' })),
    ).toBeUndefined()
    expect(cgroupCpuLimit(files({}))).toBeUndefined()
  })

  it('takes the smaller of the CPUs and the quota, at least 1', () => {
    expect(defaultWorkers(64, 2)).toBe(2)
    expect(defaultWorkers(2, 8)).toBe(2)
    expect(defaultWorkers(3, undefined)).toBe(3)
    expect(defaultWorkers(0, undefined)).toBe(1)
  })
})
