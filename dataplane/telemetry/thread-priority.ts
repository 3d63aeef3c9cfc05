// The tracing worker's thread runs at a lower OS priority than the thread serving requests
// (issue 15): the OTLP transform and JSON encoding of a batch (tens of ms of CPU per export) then
// yield the core whenever a request is ready, instead of taking turns with it on a busy machine.
// Linux threads each have their own nice value: a thread finds its id in /proc/thread-self and
// renices just itself (setpriority(PRIO_PROCESS, tid) acts on one thread on Linux). Raising one's
// own nice needs no privilege. Where any of this is missing (another OS, no /proc, a sandbox
// refusing the call) the worker keeps its priority and exports all the same.
import { readlinkSync } from 'node:fs'
import { getPriority, setPriority } from 'node:os'

/** The nice value of the tracing worker's thread: the lowest priority there is. */
export const WORKER_NICE = 19

export type ThreadPriority =
  | { readonly tid: number; readonly nice: number }
  | { readonly error: string }

export interface PriorityDeps {
  readonly readlink: (path: string) => string
  readonly setPriority: (pid: number, priority: number) => void
  readonly getPriority: (pid: number) => number
}

const OS: PriorityDeps = { readlink: readlinkSync, setPriority, getPriority }

/**
 * Sets the calling thread's nice value (never raising its priority: a thread already at a higher
 * nice keeps it) and reads it back; an error instead of throwing when it cannot.
 */
export function lowerThreadPriority(nice: number, deps: PriorityDeps = OS): ThreadPriority {
  try {
    if (process.platform !== 'linux')
      return { error: `per-thread priority needs Linux, not ${process.platform}` }
    // "<pid>/task/<tid>"
    const tid = Number(deps.readlink('/proc/thread-self').split('/').pop())
    if (!Number.isInteger(tid) || tid <= 0) return { error: 'no thread id in /proc/thread-self' }
    if (deps.getPriority(tid) < nice) deps.setPriority(tid, nice)
    return { tid, nice: deps.getPriority(tid) }
  } catch (e) {
    return { error: e instanceof Error ? e.message : String(e) }
  }
}
