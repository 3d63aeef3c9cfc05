// The raw client's pool over real loopback sockets: reuse, the connection cap, resets and aborts
// settling their slot, the stale keep-alive race, and timeouts on an injected clock.
import { afterEach, describe, expect, it } from 'vitest'
import {
  EngineTimeoutError,
  RawPool,
  type RawRequest,
  type RawSink,
  type RawTimeouts,
} from './engine-pool.js'
import { closeEngine, engineServer, listen, nextRequest } from './engine-testkit.js'
import { H1SocketError } from './h1-parser.js'

let pool: RawPool | undefined

afterEach(async () => {
  pool?.close()
  pool = undefined
  await closeEngine()
})

interface Result {
  status: number
  body: string
  error?: Error
}

function send(p: RawPool, body = 'hi', onBody?: (chunk: Buffer) => void): Promise<Result> {
  return new Promise((resolve) => {
    let status = 0
    let text = ''
    const sink: RawSink = {
      onHead: (s) => {
        status = s
      },
      onBody: (c) => {
        text += c.toString()
        onBody?.(c)
      },
      onEnd: () => resolve({ status, body: text }),
      onError: (error) => resolve({ status, body: text, error }),
    }
    p.request('POST', '/echo', 'content-type: text/plain\r\n', Buffer.from(body), sink)
  })
}

describe('RawPool', () => {
  it('sends head and body, and reuses one connection for requests in turn', async () => {
    const seen: string[] = []
    const { port, sockets } = await listen((req, res) => {
      let b = ''
      req.on('data', (c: Buffer) => {
        b += c.toString()
      })
      req.on('end', () => {
        seen.push(`${req.method} ${req.url} ${req.headers['content-type']} ${req.headers.host}`)
        res.end(`got ${b}`)
      })
    })
    pool = new RawPool({ host: '127.0.0.181', port, connections: 4 })
    expect(await send(pool, 'one')).toEqual({ status: 200, body: 'got one' })
    expect(await send(pool, 'two')).toEqual({ status: 200, body: 'got two' })
    expect(sockets.size).toBe(1)
    expect(seen).toEqual([
      `POST /echo text/plain 127.0.0.181:${port}`,
      `POST /echo text/plain 127.0.0.181:${port}`,
    ])
    expect(pool.stats).toEqual({ open: 1, idle: 1, waiting: 0, active: 0 })
  })

  it("does not reuse a connection within a second of the engine's Keep-Alive timeout", async () => {
    const { port, sockets } = await listen((_req, res) => res.end('ok'))
    const server = engineServer()
    if (server === undefined) throw new Error('no engine')
    let t = 0
    pool = new RawPool({ host: '127.0.0.181', port, connections: 4, now: () => t, tickMs: 0 })
    // Node's server sends `Keep-Alive: timeout=5`: reused until 4 s after the answer.
    await send(pool)
    t = 3_900
    await send(pool)
    expect(sockets.size).toBe(1)
    t = 7_950
    await send(pool)
    expect(sockets.size).toBe(2)
    // The engine's timeout changes: the new value is read, not the one remembered.
    server.keepAliveTimeout = 2_000
    await send(pool)
    t = 9_100
    await send(pool)
    expect(sockets.size).toBe(3)
  })

  it('reads the timeout of a Keep-Alive value, and none from a value without one', () => {
    pool = new RawPool({ host: '127.0.0.181', port: 1, connections: 1, tickMs: 0 })
    expect(pool.keepAliveOf('timeout=5')).toBe(5_000)
    expect(pool.keepAliveOf('timeout=5')).toBe(5_000)
    expect(pool.keepAliveOf('max=100')).toBe(-1)
    expect(pool.keepAliveOf('timeout=30, max=100')).toBe(30_000)
  })

  it('sends a body larger than the one-write size whole', async () => {
    const { port } = await listen((req, res) => {
      let n = 0
      req.on('data', (c: Buffer) => {
        n += c.length
      })
      req.on('end', () => res.end(String(n)))
    })
    pool = new RawPool({ host: '127.0.0.181', port, connections: 1 })
    expect((await send(pool, 'x'.repeat(100_000))).body).toBe('100000')
  })

  it('holds requests past the cap and serves them in order as connections free', async () => {
    let concurrent = 0
    let most = 0
    const { port, sockets } = await listen((req, res) => {
      concurrent++
      most = Math.max(most, concurrent)
      req.resume()
      req.on('end', () =>
        setImmediate(() => {
          concurrent--
          res.end(req.url)
        }),
      )
    })
    pool = new RawPool({ host: '127.0.0.181', port, connections: 2 })
    const all = await Promise.all([1, 2, 3, 4, 5].map(() => send(pool as RawPool)))
    expect(all.map((r) => r.status)).toEqual([200, 200, 200, 200, 200])
    // Whether both requests overlap at the server is the scheduler's; that none past the cap
    // did, and that exactly the cap's connections were opened, is the pool's.
    expect(most).toBeLessThanOrEqual(2)
    expect(sockets.size).toBe(2)
    expect(pool.stats.waiting).toBe(0)
  })

  it('reports an engine reset mid-body and frees the slot for the next request', async () => {
    let n = 0
    const { port } = await listen((req, res) => {
      req.resume()
      req.on('end', () => {
        if (n++ === 0) {
          res.writeHead(200, { 'content-length': 100 })
          res.write('partial', () => res.socket?.destroy())
        } else res.end('fine')
      })
    })
    pool = new RawPool({ host: '127.0.0.181', port, connections: 1 })
    const broken = await send(pool)
    expect(broken.status).toBe(200)
    expect(broken.body).toBe('partial')
    expect(broken.error).toBeInstanceOf(H1SocketError)
    expect((broken.error as H1SocketError).code).toBe('ECONNRESET')
    expect(await send(pool)).toEqual({ status: 200, body: 'fine' })
  })

  it('closes the connection after Connection: close and opens a new one', async () => {
    const { port, sockets } = await listen((req, res) => {
      req.resume()
      req.on('end', () => {
        res.shouldKeepAlive = false
        res.end('bye')
      })
    })
    pool = new RawPool({ host: '127.0.0.181', port, connections: 1 })
    expect(await send(pool)).toEqual({ status: 200, body: 'bye' })
    expect(await send(pool)).toEqual({ status: 200, body: 'bye' })
    expect(sockets.size).toBe(2)
  })

  it('frees the slot of a request aborted mid-stream', async () => {
    const { port } = await listen((req, res) => {
      req.resume()
      req.on('end', () => {
        if (req.url === '/echo') {
          res.writeHead(200, { 'content-type': 'text/event-stream' })
          res.write('data: 1\n\n')
          // Never ends: only the client's abort can free the connection.
        }
      })
    })
    pool = new RawPool({ host: '127.0.0.181', port, connections: 1 })
    const first = await new Promise<string>((resolve) => {
      const handle = pool?.request('POST', '/echo', '', Buffer.from('x'), {
        onHead: () => {},
        onBody: (c) => {
          handle?.abort()
          resolve(c.toString())
        },
        onEnd: () => resolve('ended'),
        onError: (e) => resolve(`error ${e.message}`),
      })
    })
    expect(first).toBe('data: 1\n\n')
    // The aborted connection is closed, not reused; once closed the slot serves a new one.
    const second = await new Promise<Result>((resolve) => {
      let status = 0
      pool?.request('GET', '/other', '', undefined, {
        onHead: (s) => {
          status = s
        },
        onBody: () => {},
        onEnd: () => resolve({ status, body: '' }),
        onError: (error) => resolve({ status, body: '', error }),
      })
      // /other gets no answer from the handler above: end it from the server side.
      engineServer()?.once('request', (_req, res) => res.end())
    })
    expect(second.error).toBeUndefined()
    expect(second.status).toBe(200)
    expect(pool.stats.open).toBe(1)
  })

  it("passes a refused connection's code on (nothing was sent)", async () => {
    const { port } = await listen(() => {})
    await closeEngine()
    pool = new RawPool({ host: '127.0.0.181', port, connections: 1 })
    const r = await send(pool)
    expect((r.error as NodeJS.ErrnoException).code).toBe('ECONNREFUSED')
    expect(pool.stats).toEqual({ open: 0, idle: 0, waiting: 0, active: 0 })
  })
})

describe('RawPool: the stale keep-alive race and timeouts', () => {
  it('sends again, once, on a fresh connection when a reused one closes before its first response byte', async () => {
    let n = 0
    const { port, sockets } = await listen((req, res) => {
      req.resume()
      // The second request arrives on the kept connection, which the engine closes unanswered
      // (its keep-alive timer fired as the request crossed it).
      if (++n === 2) req.socket.destroy()
      else req.on('end', () => res.end(`answer ${n}`))
    })
    pool = new RawPool({ host: '127.0.0.181', port, connections: 1 })
    expect(await send(pool)).toEqual({ status: 200, body: 'answer 1' })
    expect(await send(pool)).toEqual({ status: 200, body: 'answer 3' })
    expect(n).toBe(3)
    expect(sockets.size).toBe(2)
    expect(pool.stats).toEqual({ open: 1, idle: 1, waiting: 0, active: 0 })
  })

  it('does not send again when a fresh connection closes, or a reused one after answering', async () => {
    let n = 0
    const { port } = await listen((req, res) => {
      req.resume()
      n++
      if (req.url === '/fresh') req.socket.destroy()
      else if (req.url === '/partial') {
        res.writeHead(200, { 'content-length': 10 })
        res.write('abc', () => req.socket.destroy())
      } else req.on('end', () => res.end('ok'))
    })
    pool = new RawPool({ host: '127.0.0.181', port, connections: 1 })
    const call = (path: string): Promise<Result> =>
      new Promise((resolve) => {
        let status = 0
        let body = ''
        ;(pool as RawPool).request('GET', path, '', undefined, {
          onHead: (s) => {
            status = s
          },
          onBody: (c) => {
            body += c.toString()
          },
          onEnd: () => resolve({ status, body }),
          onError: (error) => resolve({ status, body, error }),
        })
      })
    const fresh = await call('/fresh')
    expect(fresh.error).toBeInstanceOf(H1SocketError)
    expect(n).toBe(1)
    expect((await call('/ok')).body).toBe('ok')
    // On the reused connection, but bytes of the answer came: the request was read.
    const partial = await call('/partial')
    expect(partial).toMatchObject({ status: 200, body: 'abc' })
    expect(partial.error).toBeInstanceOf(H1SocketError)
    expect(n).toBe(3)
    expect(pool.stats.open).toBe(0)
  })

  function clocked(port: number): { pool: RawPool; advance: (ms: number) => void } {
    let t = 1_000
    const p = new RawPool({ host: '127.0.0.181', port, connections: 2, now: () => t, tickMs: 0 })
    return {
      pool: p,
      advance: (ms) => {
        t += ms
        p.sweep()
      },
    }
  }

  function errorOf(p: RawPool, timeouts: RawTimeouts, onBody?: () => void): Promise<Error> {
    return new Promise((resolve) =>
      p.request(
        'POST',
        '/t',
        '',
        Buffer.from('x'),
        {
          onHead: () => {},
          onBody: () => onBody?.(),
          onEnd: () => resolve(new Error('ended')),
          onError: resolve,
        },
        timeouts,
      ),
    )
  }

  it('body pieces kept past their read stay intact (every connection reads into one buffer)', async () => {
    const { port } = await listen((req, res) => {
      req.resume()
      // A head split over two reads, then body pieces in reads of their own, on two responses at
      // once: each read overwrites the shared buffer the parser was given.
      res.socket?.write('HTTP/1.1 200 OK\r\ncontent-')
      setTimeout(() => res.socket?.write('length: 12\r\n\r\n'), 10)
      setTimeout(() => res.socket?.write('first-'), 20)
      setTimeout(() => res.socket?.write('second'), 30)
    })
    pool = new RawPool({ host: '127.0.0.181', port, connections: 2 })
    const call = (): Promise<{ status: number; body: string }> =>
      new Promise((resolve, reject) => {
        let status = 0
        // The pieces themselves, read only at the end.
        const kept: Buffer[] = []
        pool?.request('GET', '/kept', '', undefined, {
          onHead: (s) => {
            status = s
          },
          onBody: (c) => kept.push(c),
          onEnd: () => resolve({ status, body: Buffer.concat(kept).toString() }),
          onError: reject,
        })
      })
    expect(await Promise.all([call(), call()])).toEqual([
      { status: 200, body: 'first-second' },
      { status: 200, body: 'first-second' },
    ])
  })

  it('fails a request with no response head past headersMs (one sweep, injected clock)', async () => {
    const { port } = await listen(() => {})
    const c = clocked(port)
    pool = c.pool
    const seen = nextRequest()
    const err = errorOf(c.pool, { connectMs: 0, headersMs: 1000, idleMs: 0 })
    await seen
    c.advance(999)
    expect(c.pool.stats.active).toBe(1)
    c.advance(2)
    const e = await err
    expect(e).toBeInstanceOf(EngineTimeoutError)
    expect((e as EngineTimeoutError).code).toBe('UND_ERR_HEADERS_TIMEOUT')
    expect(c.pool.stats).toEqual({ open: 0, idle: 0, waiting: 0, active: 0 })
  })

  it('fails a body that stalls past idleMs, each piece restarting the wait', async () => {
    const { port } = await listen((req, res) => {
      req.resume()
      res.writeHead(200, { 'content-length': 100 })
      res.write('part')
    })
    const c = clocked(port)
    pool = c.pool
    let gotBody!: () => void
    const body = new Promise<void>((r) => {
      gotBody = r
    })
    const err = errorOf(c.pool, { connectMs: 0, headersMs: 50, idleMs: 500 }, () => gotBody())
    await body
    // The header timeout no longer applies once the head is here.
    c.advance(499)
    expect(c.pool.stats.active).toBe(1)
    c.advance(2)
    expect(((await err) as EngineTimeoutError).code).toBe('UND_ERR_BODY_TIMEOUT')
    expect(c.pool.stats.open).toBe(0)
  })

  it('holds the body timeout while the reader pauses, and restarts it on resume', async () => {
    const { port } = await listen((req, res) => {
      req.resume()
      res.writeHead(200, { 'content-length': 100 })
      res.write('part')
    })
    const c = clocked(port)
    pool = c.pool
    let gotBody!: () => void
    const body = new Promise<void>((r) => {
      gotBody = r
    })
    let handle: RawRequest | undefined
    const err = new Promise<Error>((resolve) => {
      handle = c.pool.request(
        'POST',
        '/t',
        '',
        undefined,
        {
          onHead: () => {},
          onBody: () => gotBody(),
          onEnd: () => resolve(new Error('ended')),
          onError: resolve,
        },
        { connectMs: 0, headersMs: 0, idleMs: 500 },
      )
    })
    await body
    handle?.pause()
    // A slow client's pause is not the engine stalling.
    c.advance(10_000)
    expect(c.pool.stats.active).toBe(1)
    handle?.resume()
    c.advance(499)
    expect(c.pool.stats.active).toBe(1)
    c.advance(2)
    expect(((await err) as EngineTimeoutError).code).toBe('UND_ERR_BODY_TIMEOUT')
  })

  it('fails a connection not made within connectMs as a connect timeout', async () => {
    const { port } = await listen(() => {})
    const c = clocked(port)
    pool = c.pool
    const err = errorOf(c.pool, { connectMs: 100, headersMs: 0, idleMs: 0 })
    // Swept before the socket's connect event (it comes on a later turn).
    c.advance(101)
    expect(((await err) as EngineTimeoutError).code).toBe('UND_ERR_CONNECT_TIMEOUT')
    expect(c.pool.stats.open).toBe(0)
  })
})
