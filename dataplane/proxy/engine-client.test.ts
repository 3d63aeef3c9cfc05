// The raw client as the engine path uses it, over loopback: headers as undici gives them, the
// request header checks, the client's one sweep, aborts before and after the head, and the body
// (EngineBody) read the ways respond.ts, forward.ts and serve/ read an upstream body.
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import {
  EngineClient,
  EngineHeaderError,
  type EngineRequest,
  type EngineResponse,
} from './engine-client.js'
import { closeEngine, listen, nextRequest } from './engine-testkit.js'

afterEach(closeEngine)

describe('EngineClient and EngineBody', () => {
  let client: EngineClient | undefined
  afterEach(() => {
    client?.close()
    client = undefined
  })
  const signal = (): AbortController => new AbortController()
  const call = (
    port: number,
    over: Partial<EngineRequest> = {},
    host = '127.0.0.181',
  ): Promise<EngineResponse> => {
    client ??= new EngineClient({ connectionsPerOrigin: 2, tickMs: 0 })
    return client.request({
      host,
      port,
      method: 'POST',
      path: '/p',
      headers: { 'content-type': 'application/json' },
      body: '{}',
      signal: signal().signal,
      timeouts: { connectMs: 0, headersMs: 0, idleMs: 0 },
      ...over,
    })
  }

  it('gives headers as undici does (lowercased, repeats in an array) and the body as text', async () => {
    const { port } = await listen((req, res) => {
      req.resume()
      res.setHeader('Set-Cookie', ['a=1', 'b=2'])
      res.setHeader('X-Engine', 'e0')
      res.end(`{"seen":"${req.headers['content-type']}"}`)
    })
    const r = await call(port)
    expect(r.statusCode).toBe(200)
    expect(r.headers['x-engine']).toBe('e0')
    expect(r.headers['set-cookie']).toEqual(['a=1', 'b=2'])
    expect(await r.body.json()).toEqual({ seen: 'application/json' })
  })

  it('refuses a header value that would split the request (typed error), sending nothing', async () => {
    let n = 0
    const { port } = await listen(() => {
      n++
    })
    const e = await call(port, { headers: { 'x-a': 'v\r\nx-injected: 1' } }).catch(
      (err: unknown) => err,
    )
    expect(e).toBeInstanceOf(EngineHeaderError)
    expect(n).toBe(0)
  })

  it("times requests out through the client's one sweep (its pools have no timer)", async () => {
    const { port } = await listen(() => {})
    let t = 0
    client = new EngineClient({ connectionsPerOrigin: 1, tickMs: 0, now: () => t })
    const seen = nextRequest()
    const p = call(port, { timeouts: { connectMs: 0, headersMs: 200, idleMs: 0 } })
    await seen
    t += 201
    client.sweep()
    await expect(p).rejects.toMatchObject({ code: 'UND_ERR_HEADERS_TIMEOUT' })
    expect(client.existing('127.0.0.181', port)?.stats.open).toBe(0)
  })

  it('reaches an IPv6 engine', async () => {
    const s = createServer((req, res) => {
      req.resume()
      res.end(req.headers.host)
    })
    await new Promise<void>((r) => s.listen(0, '::1', () => r()))
    try {
      const port = (s.address() as AddressInfo).port
      const r = await call(port, {}, '::1')
      expect(await r.body.text()).toBe(`[::1]:${port}`)
    } finally {
      s.closeAllConnections()
      await new Promise<void>((r) => s.close(() => r()))
    }
  })

  it('rejects with the signal reason when aborted before the head; the connection is closed', async () => {
    const { port } = await listen(() => {})
    const ctl = signal()
    const seen = nextRequest()
    const p = call(port, { signal: ctl.signal })
    const { req } = await seen
    const closed = new Promise((r) => req.socket.once('close', r))
    const reason = new Error('client left')
    ctl.abort(reason)
    await expect(p).rejects.toBe(reason)
    await closed
    expect(client?.existing('127.0.0.181', port)?.stats.open).toBe(0)
  })

  it('errors the body with the reason when aborted mid-stream, the engine sees the close', async () => {
    const { port } = await listen((req, res) => {
      req.resume()
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      res.write('data: 1\n\n')
    })
    const ctl = signal()
    const seen = nextRequest()
    const r = await call(port, { signal: ctl.signal })
    const { req } = await seen
    const closed = new Promise((res) => req.socket.once('close', res))
    const events: string[] = []
    const errored = new Promise<unknown>((resolve) => r.body.on('error', resolve))
    r.body.on('close', () => events.push('close'))
    ctl.abort(new Error('gone'))
    expect(((await errored) as Error).message).toBe('gone')
    await closed
    expect(events).toEqual(['close'])
    expect(client?.existing('127.0.0.181', port)?.stats).toMatchObject({ open: 0, active: 0 })
  })

  it('tells listeners added after the body ended: readable, then end and close', async () => {
    const { port } = await listen((req, res) => {
      req.resume()
      res.end('whole')
    })
    const r = await call(port)
    // Head and body came in one packet: both are here before anyone listens.
    await new Promise((res) => setImmediate(res))
    const got: string[] = []
    const read = (): void => {
      for (let c = r.body.read(); c !== null; c = r.body.read()) got.push(`data ${c.toString()}`)
    }
    r.body.on('end', () => got.push('end'))
    r.body.on('close', () => got.push('close'))
    r.body.on('readable', read)
    await new Promise((res) => setImmediate(res))
    expect(got).toEqual(['data whole', 'end', 'close'])
  })

  it('hands a body that came whole over at once (takeWhole), then it has ended; not one that has not', async () => {
    const { port, sockets } = await listen((req, res) => {
      req.resume()
      if (req.url === '/slow') {
        res.write('part')
        setTimeout(() => res.end(' rest'), 30)
      } else res.end('whole')
    })
    const r = await call(port)
    // Over the cap asked for: left to be read as a stream.
    expect(r.body.takeWhole(4)).toBeUndefined()
    const chunks = r.body.takeWhole(1024)
    expect(Buffer.concat(chunks ?? []).toString()).toBe('whole')
    expect(r.body.destroyed).toBe(true)
    expect(r.body.read()).toBeNull()
    // Taken once; dump() of an ended body resolves; the connection is reused.
    expect(r.body.takeWhole(1024)).toBeUndefined()
    await r.body.dump()
    const slow = await call(port, { path: '/slow' })
    expect(slow.body.takeWhole(1024)).toBeUndefined()
    expect(await slow.body.text()).toBe('part rest')
    expect(sockets.size).toBe(1)
    // A body someone listens to is theirs.
    const listened = await call(port)
    listened.body.on('end', () => {})
    expect(listened.body.takeWhole(1024)).toBeUndefined()
  })

  it('reads everything kept in one piece: HTTP chunks that piled up come as one', async () => {
    const { port } = await listen((req, res) => {
      req.resume()
      // Three HTTP chunks, sent before anyone reads.
      res.write('data: a\n\n')
      res.write('data: b\n\n')
      res.end('data: c\n\n')
    })
    const r = await call(port)
    await new Promise((res) => setTimeout(res, 20))
    expect(r.body.readableLength).toBe(27)
    expect(r.body.read()?.toString()).toBe('data: a\n\ndata: b\n\ndata: c\n\n')
    expect(r.body.readableLength).toBe(0)
    expect(r.body.read()).toBeNull()
  })

  it('pauses the engine while a data reader is paused, and dump() reuses the connection', async () => {
    const chunks = 40
    const { port, sockets } = await listen((req, res) => {
      req.resume()
      if (req.url === '/small') {
        res.end('small')
        return
      }
      res.writeHead(200, { 'content-length': chunks * 16384 })
      let k = 0
      const more = (): void => {
        while (k < chunks) {
          k++
          if (!res.write(Buffer.alloc(16384, 97))) {
            res.once('drain', more)
            return
          }
        }
        res.end()
      }
      more()
    })
    const r = await call(port)
    let n = 0
    let once = false
    const paused = new Promise<void>((resolve) =>
      r.body.on('data', (c) => {
        n += c.byteLength
        if (!once && n >= 16384 && n < chunks * 16384) {
          once = true
          r.body.pause()
          resolve()
        }
      }),
    )
    await paused
    const at = n
    await new Promise((res) => setTimeout(res, 50))
    // Nothing delivered while paused (what arrived is kept, the socket paused).
    expect(n).toBe(at)
    const ended = new Promise<void>((res) => r.body.on('end', () => res()))
    r.body.resume()
    await ended
    expect(n).toBe(chunks * 16384)
    const small = await call(port, { path: '/small' })
    await small.body.dump()
    expect((await (await call(port, { path: '/small' })).body.text()).length).toBe(5)
    expect(sockets.size).toBe(1)
  })

  it('reads a body through its async iterator', async () => {
    const { port } = await listen((req, res) => {
      req.resume()
      res.write('a')
      setTimeout(() => res.end('b'), 5)
    })
    const r = await call(port)
    const parts: string[] = []
    for await (const c of r.body) parts.push(c.toString())
    expect(parts.join('')).toBe('ab')
  })
})
