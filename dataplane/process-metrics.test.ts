// /metrics must not walk every connection on the event loop (issue 10: a scrape during an idle
// flood stalled real requests). Counted, never timed: the per-handle APIs and the synchronous
// /proc/self/fd listing are not called by a scrape, and the open-fds gauge still counts.
import fs from 'node:fs'
import { createServer, type Server, type Socket } from 'node:net'
import { Registry } from 'prom-client'
import { afterEach, describe, expect, it } from 'vitest'
import { collectProcessMetrics, PER_HANDLE_METRICS } from './process-metrics.js'

const HOST = '127.0.0.173'

interface ProcessInternals {
  _getActiveHandles?: () => unknown[]
  getActiveResourcesInfo?: () => string[]
}

function openFds(text: string): number {
  const m = /^process_open_fds (\d+)$/m.exec(text)
  return m?.[1] === undefined ? Number.NaN : Number(m[1])
}

const restore: (() => void)[] = []
afterEach(() => {
  for (const r of restore.splice(0)) r()
})

/** Counts calls to `obj[key]` (still calling it) until the test ends. */
function count<T extends object>(obj: T, key: keyof T & string): { calls: number } {
  const seen = { calls: 0 }
  const orig = obj[key] as unknown as (...a: unknown[]) => unknown
  if (typeof orig !== 'function') return seen
  ;(obj as Record<string, unknown>)[key] = function (this: unknown, ...a: unknown[]) {
    seen.calls++
    return orig.apply(this, a)
  }
  restore.push(() => {
    ;(obj as Record<string, unknown>)[key] = orig
  })
  return seen
}

describe('process metrics', () => {
  it('a scrape walks no handle list and lists no fds on the event loop; open fds still counted', async () => {
    const registry = new Registry()
    collectProcessMetrics(registry)
    const handles = count(process as ProcessInternals, '_getActiveHandles')
    const resources = count(process as ProcessInternals, 'getActiveResourcesInfo')
    const readdirSync = count(fs, 'readdirSync')

    const before = await registry.metrics()
    // 40 more descriptors: a listener and 20 loopback connections (both ends).
    const server: Server = createServer()
    const accepted: Socket[] = []
    server.on('connection', (s) => accepted.push(s))
    await new Promise<void>((r) => server.listen(0, HOST, r))
    const port = (server.address() as { port: number }).port
    const { connect } = await import('node:net')
    const clients = await Promise.all(
      Array.from(
        { length: 20 },
        () =>
          new Promise<Socket>((r) => {
            const c = connect(port, HOST, () => r(c))
          }),
      ),
    )
    for (let i = 0; i < 100 && accepted.length < 20; i++)
      await new Promise((r) => setTimeout(r, 10))
    const after = await registry.metrics()
    for (const c of clients) c.destroy()
    for (const s of accepted) s.destroy()
    await new Promise<void>((r) => server.close(() => r()))

    expect(handles.calls).toBe(0)
    expect(resources.calls).toBe(0)
    expect(readdirSync.calls).toBe(0)
    if (process.platform === 'linux') {
      expect(openFds(after) - openFds(before)).toBeGreaterThanOrEqual(41)
    }
    for (const name of PER_HANDLE_METRICS) expect(after).not.toContain(`${name} `)
    // The rest of the defaults are still there.
    expect(after).toContain('nodejs_eventloop_lag_max_seconds')
    expect(after).toContain('process_resident_memory_bytes')
  })
})
