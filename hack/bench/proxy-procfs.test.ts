import { spawn } from 'node:child_process'
import { describe, expect, it } from 'vitest'
import { processTree, statParentPid, statusKb, treeMemory } from './proxy-procfs.js'

const STATUS = `Name:\tnode
VmPeak:\t 1154100 kB
VmHWM:\t  231004 kB
VmRSS:\t  106112 kB
Threads:\t11
`

describe('statusKb', () => {
  it('reads VmRSS and VmHWM, not the similarly named VmPeak', () => {
    expect(statusKb(STATUS, 'VmRSS')).toBe(106112)
    expect(statusKb(STATUS, 'VmHWM')).toBe(231004)
  })
  it('is NaN for a kernel thread without memory fields', () => {
    expect(Number.isNaN(statusKb('Name:\tkthreadd\nState:\tS\n', 'VmRSS'))).toBe(true)
  })
})

describe('statParentPid', () => {
  it('skips a command name with spaces and parentheses', () => {
    expect(statParentPid('4242 (a (weird) name) S 17 4242 4242 0 -1 4194560')).toBe(17)
  })
  it('is NaN for garbage', () => {
    expect(Number.isNaN(statParentPid('nothing here'))).toBe(true)
  })
})

describe('processTree / treeMemory', () => {
  it('finds a child process and sums its memory with the parent', async () => {
    const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 30000)'], {
      stdio: 'ignore',
    })
    try {
      const pid = child.pid
      if (pid === undefined) throw new Error('no pid')
      await new Promise((r) => setTimeout(r, 200))
      const tree = await processTree(process.pid)
      expect(tree[0]).toBe(process.pid)
      expect(tree).toContain(pid)
      const own = await treeMemory(pid)
      const all = await treeMemory(process.pid)
      expect(own.processes).toBe(1)
      expect(own.rssMb).toBeGreaterThan(1)
      expect(all.processes).toBeGreaterThan(own.processes)
      expect(all.rssMb).toBeGreaterThan(own.rssMb)
      expect(own.peakMb).toBeGreaterThanOrEqual(own.rssMb)
    } finally {
      child.kill('SIGKILL')
    }
  })
})
