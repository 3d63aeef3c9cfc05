import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { RawPool } from '../proxy/engine-pool.js'
import { originAddress, RawGet, RawGetTooLargeError } from './raw-get.js'

describe('originAddress', () => {
  it('reads host and port of http origins, IPv6 without brackets, and refuses other schemes', () => {
    expect(originAddress('http://10.0.0.7:8000')).toEqual({ host: '10.0.0.7', port: 8000 })
    expect(originAddress('http://[fd00::5]:9000')).toEqual({ host: 'fd00::5', port: 9000 })
    expect(originAddress('http://engine.local')).toEqual({ host: 'engine.local', port: 80 })
    expect(originAddress('https://10.0.0.7:8443')).toBeUndefined()
    expect(originAddress('not a url')).toBeUndefined()
  })
})

describe('RawGet', () => {
  let server: Server | undefined
  const pools: RawPool[] = []
  afterEach(async () => {
    for (const p of pools.splice(0)) p.destroy()
    await new Promise<void>((r) => (server ? server.close(() => r()) : r()))
    server = undefined
  })

  /** A server answering GET /<status>/<mode> with 100 lines of text, chunked or with a length. */
  async function pool(): Promise<{
    pool: RawPool
    port: number
    seen: string[]
    accepted: () => number
  }> {
    const seen: string[] = []
    let accepted = 0
    server = createServer((req, res) => {
      seen.push(`${req.method} ${req.url} ${req.headers.accept ?? ''}`)
      const [, status, mode] = (req.url ?? '').split('/')
      const body = Array.from({ length: 100 }, (_, i) => `metric_${i} ${i}\n`).join('')
      res.statusCode = Number(status)
      if (mode === 'chunked') {
        // Two writes without a length: chunked framing, the body in more than one piece.
        res.write(body.slice(0, 700))
        res.end(body.slice(700))
      } else {
        res.setHeader('content-length', Buffer.byteLength(body))
        res.end(body)
      }
    })
    server.on('connection', () => accepted++)
    await new Promise<void>((r) => server?.listen(0, '127.0.0.1', r))
    const { port } = server.address() as AddressInfo
    const p = new RawPool({ host: '127.0.0.1', port, connections: 1, tickMs: 0 })
    pools.push(p)
    return { pool: p, port, seen, accepted: () => accepted }
  }

  const BODY_LENGTH = Array.from({ length: 100 }, (_, i) => `metric_${i} ${i}\n`).join('').length

  it('gathers a 200 body sent with a length or chunked, on one kept-alive connection', async () => {
    const { pool: p, seen, accepted } = await pool()
    const a = await new RawGet(p, '/200/length', 'accept: text/plain\r\n', 1 << 20).done
    const b = await new RawGet(p, '/200/chunked', 'accept: text/plain\r\n', 1 << 20).done
    expect(a.status).toBe(200)
    expect(a.text.length).toBe(BODY_LENGTH)
    expect(a.text.endsWith('metric_99 99\n')).toBe(true)
    expect(b.text).toBe(a.text)
    expect(seen).toEqual(['GET /200/length text/plain', 'GET /200/chunked text/plain'])
    // The second GET went over the first one's connection.
    expect(accepted()).toBe(1)
  })

  it('answers a non-200 with its status and no body', async () => {
    const { pool: p } = await pool()
    expect(await new RawGet(p, '/404/length', '', 1 << 20).done).toEqual({ status: 404, text: '' })
  })

  it('fails a body past the cap with a typed error', async () => {
    const { pool: p } = await pool()
    const err = await new RawGet(p, '/200/chunked', '', 500).done.catch((e: unknown) => e)
    expect(err).toBeInstanceOf(RawGetTooLargeError)
    expect(err).toMatchObject({
      code: 'SCRAPE_TOO_LARGE',
      message: 'metrics larger than 500 bytes',
    })
  })

  it('rejects with the abort reason, once, and a refused connection with its code', async () => {
    const { pool: p, port } = await pool()
    const get = new RawGet(p, '/200/length', '', 1 << 20)
    const reason = new Error('stop')
    get.abort(reason)
    get.abort(new Error('again'))
    await expect(get.done).rejects.toBe(reason)
    await new Promise<void>((r) => server?.close(() => r()))
    server = undefined
    const closed = new RawPool({ host: '127.0.0.1', port, connections: 1, tickMs: 0 })
    pools.push(closed)
    await expect(new RawGet(closed, '/200/length', '', 1 << 20).done).rejects.toMatchObject({
      code: 'ECONNREFUSED',
    })
  })
})
