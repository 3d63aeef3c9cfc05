// lowerThreadPriority's decisions and failures. The real thing (a tracing worker thread reniced,
// read back from /proc) is in tracing-worker.test.ts.
import { describe, expect, it } from 'vitest'
import { lowerThreadPriority, type PriorityDeps, WORKER_NICE } from './thread-priority.js'

/** A thread table standing in for the OS: what was set is what reads back. */
function threads(start: number, over: Partial<PriorityDeps> = {}) {
  const nice = new Map<number, number>([[4242, start]])
  const set: [number, number][] = []
  const deps: PriorityDeps = {
    readlink: () => '4200/task/4242',
    getPriority: (tid) => nice.get(tid) ?? Number.NaN,
    setPriority: (tid, n) => {
      set.push([tid, n])
      nice.set(tid, n)
    },
    ...over,
  }
  return { deps, set }
}

describe.runIf(process.platform === 'linux')('lowerThreadPriority', () => {
  it('renices the calling thread (its id from /proc/thread-self), not the process', () => {
    const { deps, set } = threads(0)
    expect(lowerThreadPriority(WORKER_NICE, deps)).toEqual({ tid: 4242, nice: 19 })
    expect(set).toEqual([[4242, 19]])
  })

  it('never raises a priority: a thread already nicer keeps its value', () => {
    const { deps, set } = threads(19)
    expect(lowerThreadPriority(10, deps)).toEqual({ tid: 4242, nice: 19 })
    expect(set).toEqual([])
  })

  it('reports why instead of throwing: no /proc, refused call, no thread id', () => {
    const noProc = threads(0, {
      readlink: () => {
        throw new Error("ENOENT: no such file or directory, readlink '/proc/thread-self'")
      },
    })
    expect(lowerThreadPriority(19, noProc.deps)).toEqual({
      error: "ENOENT: no such file or directory, readlink '/proc/thread-self'",
    })
    const refused = threads(0, {
      setPriority: () => {
        throw new Error('EACCES: permission denied')
      },
    })
    expect(lowerThreadPriority(19, refused.deps)).toEqual({ error: 'EACCES: permission denied' })
    const odd = threads(0, { readlink: () => 'self' })
    expect(lowerThreadPriority(19, odd.deps)).toEqual({
      error: 'no thread id in /proc/thread-self',
    })
  })
})
