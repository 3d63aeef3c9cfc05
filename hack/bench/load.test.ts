import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { closedLoop, percentile } from './load.js'

describe('percentile', () => {
  it('uses the nearest-rank definition', () => {
    const xs = Array.from({ length: 100 }, (_, i) => i + 1)
    expect(percentile(xs, 50)).toBe(50)
    expect(percentile(xs, 99)).toBe(99)
    expect(percentile(xs, 100)).toBe(100)
    expect(percentile([7], 99)).toBe(7)
    expect(Number.isNaN(percentile([], 50))).toBe(true)
  })
})

describe('firstByte', () => {
  // Sends one SSE event at once and ends the response 300 ms later: the first byte comes well
  // before the end of the body. The gap is a lower bound set by the server's timer; the assertion
  // leaves half of it for a busy machine to deliver the first chunk late.
  const GAP_MS = 300
  let server: Server
  let origin: string
  beforeAll(async () => {
    server = createServer((req, res) => {
      req.resume()
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'text/event-stream' })
        res.write('data: {"x":1}\n\n')
        setTimeout(() => res.end('data: [DONE]\n\n'), GAP_MS)
      })
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  })
  afterAll(async () => {
    await new Promise((r) => server.close(r))
  })

  it('records the first body byte separately from the whole response', async () => {
    const r = await closedLoop({ origin, path: '/', body: '{}', firstByte: true }, 1, 100)
    expect(r.ok).toBeGreaterThan(0)
    expect(r.firstByte).toHaveLength(r.ok)
    const first = r.firstByte ?? []
    expect(percentile(r.latencies, 50) - percentile(first, 50)).toBeGreaterThan(GAP_MS / 2)
  })

  it('leaves firstByte out unless asked', async () => {
    const r = await closedLoop({ origin, path: '/', body: '{}' }, 1, 100)
    expect(r.ok).toBeGreaterThan(0)
    expect(r.firstByte).toBeUndefined()
  })
})
