import { Writable } from 'node:stream'
import { describe, expect, it } from 'vitest'
import { type AccessLogEntry, jsonLineLogger } from './access-log.js'

/** A Writable that records each call to the underlying sink (what a pipe turns into syscalls). */
function sink() {
  const calls: string[][] = []
  const out = new Writable({
    write(chunk: Buffer, _enc, cb) {
      calls.push([chunk.toString()])
      cb()
    },
    writev(chunks, cb) {
      calls.push(chunks.map((c) => String(c.chunk)))
      cb()
    },
  })
  return { out, calls }
}

const entry = (n: number): AccessLogEntry => ({
  time: '2026-12-02T00:00:00.000Z',
  request_id: `r${n}`,
  method: 'POST',
  path: '/v1/chat/completions',
  status: 200,
  duration_ms: n,
})

describe('jsonLineLogger', () => {
  it('writes the lines of one event-loop turn in one call, in order, and later turns again', async () => {
    const { out, calls } = sink()
    const log = jsonLineLogger(out)
    log(entry(1))
    log(entry(2))
    log(entry(3))
    expect(calls).toEqual([])
    await new Promise((r) => setImmediate(r))
    expect(calls).toHaveLength(1)
    expect(calls[0]?.map((l) => JSON.parse(l).request_id)).toEqual(['r1', 'r2', 'r3'])
    expect(calls[0]?.every((l) => l.endsWith('}\n'))).toBe(true)
    log(entry(4))
    await new Promise((r) => setImmediate(r))
    expect(calls).toHaveLength(2)
    expect(JSON.parse(calls[1]?.[0] ?? '')).toMatchObject({ request_id: 'r4', duration_ms: 4 })
  })
})
