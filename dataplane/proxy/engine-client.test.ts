// The raw upstream client's parser against responses split at every byte boundary (a parser that
// only works on whole chunks passes loopback benchmarks and fails on a real network), the framing
// rules a proxy depends on, and the pool over real loopback sockets: reuse, the connection cap,
// resets and aborts settling their slot.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import {
  EngineClient,
  EngineHeaderError,
  type EngineRequest,
  type EngineResponse,
  EngineTimeoutError,
  H1ProtocolError,
  H1ResponseParser,
  H1SocketError,
  RawPool,
  type RawRequest,
  type RawSink,
  type RawTimeouts,
  type ResponseSink,
} from './engine-client.js'

type Event = ['head', number, string[]] | ['body', string] | ['end', boolean]

/** A sink that records events, body chunks merged (their split is the input's, not a result). */
function recorder(): { sink: ResponseSink; events: Event[] } {
  const events: Event[] = []
  return {
    events,
    sink: {
      onHead: (status, raw) => events.push(['head', status, raw]),
      onBody: (chunk) => {
        const last = events[events.length - 1]
        if (last?.[0] === 'body') last[1] += chunk.toString('latin1')
        else events.push(['body', chunk.toString('latin1')])
      },
      onEnd: (reusable) => events.push(['end', reusable]),
    },
  }
}

/** Feeds `parts` to a fresh parser expecting `method`; returns its events. */
function parse(parts: readonly string[], method = 'POST', finish = false): Event[] {
  const { sink, events } = recorder()
  const p = new H1ResponseParser(sink)
  p.expect(method)
  for (const part of parts) p.execute(Buffer.from(part, 'latin1'))
  if (finish) p.finish()
  return events
}

/** Every split of `text` into two pieces and into single bytes gives `expected`. */
function everySplit(text: string, expected: Event[], method = 'POST'): void {
  for (let k = 0; k <= text.length; k++)
    expect(parse([text.slice(0, k), text.slice(k)], method), `split at ${k}`).toEqual(expected)
  expect(parse([...text], method), 'byte by byte').toEqual(expected)
}

describe('H1ResponseParser', () => {
  it('reads a content-length body at every split', () => {
    everySplit(
      'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"ok":true}',
      [
        ['head', 200, ['Content-Type', 'application/json', 'Content-Length', '11']],
        ['body', '{"ok":true}'],
        ['end', true],
      ],
    )
  })

  it('reads a chunked body with extensions and trailers at every split', () => {
    everySplit(
      'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n' +
        '5;name=value\r\nhello\r\n' +
        'A ; x\r\n, world!\r\n\r\n' +
        '0\r\nx-trailer: 1\r\nx-other: two\r\n\r\n',
      [
        ['head', 200, ['transfer-encoding', 'chunked']],
        ['body', 'hello, world!\r\n'],
        ['end', true],
      ],
    )
  })

  it('passes chunk data through as is (SSE events spanning chunks)', () => {
    const events = parse([
      'HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n',
      '6\r\ndata: \r\n',
      '3\r\n{}\n\r\n1\r\n\n\r\n',
      '0\r\n\r\n',
    ])
    expect(events).toEqual([
      ['head', 200, ['Content-Type', 'text/event-stream', 'Transfer-Encoding', 'chunked']],
      ['body', 'data: {}\n\n'],
      ['end', true],
    ])
  })

  it('says a Connection: close response ends the connection', () => {
    expect(parse(['HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok'])).toEqual([
      ['head', 200, ['Connection', 'close', 'Content-Length', '2']],
      ['body', 'ok'],
      ['end', false],
    ])
  })

  it('keeps an HTTP/1.0 connection only with keep-alive', () => {
    expect(parse(['HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n']).at(-1)).toEqual(['end', false])
    expect(
      parse(['HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n']).at(-1),
    ).toEqual(['end', true])
  })

  it('reads a body delimited by the connection end', () => {
    expect(parse(['HTTP/1.1 200 OK\r\n\r\nsome', ' bytes'], 'POST', true)).toEqual([
      ['head', 200, []],
      ['body', 'some bytes'],
      ['end', false],
    ])
  })

  it('skips 1xx answers before the final one, at every split', () => {
    everySplit(
      'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n' +
        'HTTP/1.1 201 Created\r\nContent-Length: 1\r\n\r\nx',
      [
        ['head', 201, ['Content-Length', '1']],
        ['body', 'x'],
        ['end', true],
      ],
    )
  })

  it('reads no body for HEAD, 204 and 304, and the next response after them', () => {
    const { sink, events } = recorder()
    const p = new H1ResponseParser(sink)
    p.expect('HEAD')
    p.execute(Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n'))
    p.expect('POST')
    p.execute(Buffer.from('HTTP/1.1 204 No Content\r\n\r\n'))
    p.expect('GET')
    p.execute(Buffer.from('HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n'))
    p.expect('GET')
    p.execute(Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc'))
    expect(events).toEqual([
      ['head', 200, ['Content-Length', '99']],
      ['end', true],
      ['head', 204, []],
      ['end', true],
      ['head', 304, ['Content-Length', '5']],
      ['end', true],
      ['head', 200, ['Content-Length', '3']],
      ['body', 'abc'],
      ['end', true],
    ])
  })

  it('refuses a head larger than its limit, split or whole, with a typed error', () => {
    const big = `HTTP/1.1 200 OK\r\nx-big: ${'a'.repeat(20_000)}\r\nContent-Length: 0\r\n\r\n`
    for (const parts of [[big], [big.slice(0, 9000), big.slice(9000)]]) {
      const p = new H1ResponseParser(recorder().sink)
      p.expect('POST')
      let err: unknown
      try {
        for (const part of parts) p.execute(Buffer.from(part))
      } catch (e) {
        err = e
      }
      expect(err).toBeInstanceOf(H1ProtocolError)
      expect((err as H1ProtocolError).code).toBe('HPE_HEADER_OVERFLOW')
    }
  })

  it('refuses oversized trailers', () => {
    const trailer = `0\r\nx-t: ${'b'.repeat(20_000)}\r\n\r\n`
    expect(() => parse(['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n', trailer])).toThrow(
      expect.objectContaining({ code: 'HPE_HEADER_OVERFLOW' }),
    )
  })

  it.each([
    ['a bad status line', 'HTTP/2 200 OK\r\n\r\n', 'HPE_INVALID_STATUS'],
    ['a missing status code', 'HTTP/1.1 OK\r\n\r\n', 'HPE_INVALID_STATUS'],
    ['101 nobody asked for', 'HTTP/1.1 101 Switching\r\n\r\n', 'HPE_INVALID_STATUS'],
    ['a header without a colon', 'HTTP/1.1 200 OK\r\nbroken\r\n\r\n', 'HPE_INVALID_HEADER_TOKEN'],
    ['obs-fold', 'HTTP/1.1 200 OK\r\na: b\r\n c\r\n\r\n', 'HPE_INVALID_HEADER_TOKEN'],
    ['a space in a name', 'HTTP/1.1 200 OK\r\nx y: 1\r\n\r\n', 'HPE_INVALID_HEADER_TOKEN'],
    ['a bare LF in a value', 'HTTP/1.1 200 OK\r\na: b\nc: d\r\n\r\n', 'HPE_INVALID_HEADER_TOKEN'],
    [
      'a signed content-length',
      'HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n',
      'HPE_INVALID_CONTENT_LENGTH',
    ],
    [
      'conflicting content-lengths',
      'HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n',
      'HPE_UNEXPECTED_CONTENT_LENGTH',
    ],
    [
      'content-length with chunked',
      'HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n',
      'HPE_UNEXPECTED_CONTENT_LENGTH',
    ],
    [
      'a chunk size that is not hex',
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n',
      'HPE_INVALID_CHUNK_SIZE',
    ],
    [
      'a chunk size past 2^48',
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1000000000000\r\n',
      'HPE_INVALID_CHUNK_SIZE',
    ],
    [
      'chunk data longer than its size',
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n',
      'HPE_STRICT',
    ],
  ])('refuses %s', (_what, text, code) => {
    expect(() => parse([text])).toThrow(expect.objectContaining({ code }))
  })

  it('refuses bytes the engine sends with no request outstanding', () => {
    expect(() => parse(['HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxy'])).toThrow(
      expect.objectContaining({ code: 'HPE_INVALID_CONSTANT' }),
    )
  })

  it('reports a connection that ends mid-body or before the head as a reset', () => {
    for (const parts of [
      ['HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc'],
      ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab'],
      ['HTTP/1.1 200 OK\r\nContent-'],
      [],
    ]) {
      let err: unknown
      try {
        parse(parts, 'POST', true)
      } catch (e) {
        err = e
      }
      expect(err, JSON.stringify(parts)).toBeInstanceOf(H1SocketError)
      expect((err as H1SocketError).code).toBe('ECONNRESET')
    }
  })

  it('stops reading once the sink kills it mid-body', () => {
    const events: string[] = []
    const p: H1ResponseParser = new H1ResponseParser({
      onHead: () => events.push('head'),
      onBody: () => {
        events.push('body')
        p.kill()
      },
      onEnd: () => events.push('end'),
    })
    p.expect('POST')
    p.execute(Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc'))
    expect(events).toEqual(['head', 'body'])
    expect(p.busy).toBe(false)
  })
})

// ---- the pool over loopback ----

let server: Server | undefined
let pool: RawPool | undefined

afterEach(async () => {
  pool?.close()
  pool = undefined
  if (server !== undefined) {
    const s = server
    server = undefined
    s.closeAllConnections()
    await new Promise<void>((r) => s.close(() => r()))
  }
})

async function listen(
  handler: Parameters<typeof createServer>[1],
): Promise<{ port: number; sockets: Set<Socket> }> {
  const sockets = new Set<Socket>()
  server = createServer(handler)
  server.on('connection', (s: Socket) => sockets.add(s))
  await new Promise<void>((r) => server?.listen(0, '127.0.0.181', () => r()))
  return { port: (server.address() as AddressInfo).port, sockets }
}

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
      server?.once('request', (_req, res) => res.end())
    })
    expect(second.error).toBeUndefined()
    expect(second.status).toBe(200)
    expect(pool.stats.open).toBe(1)
  })

  it("passes a refused connection's code on (nothing was sent)", async () => {
    const { port } = await listen(() => {})
    const s = server as Server
    server = undefined
    await new Promise<void>((r) => s.close(() => r()))
    pool = new RawPool({ host: '127.0.0.181', port, connections: 1 })
    const r = await send(pool)
    expect((r.error as NodeJS.ErrnoException).code).toBe('ECONNREFUSED')
    expect(pool.stats).toEqual({ open: 0, idle: 0, waiting: 0, active: 0 })
  })
})

/** Resolves with the next request the server gets (its socket too). */
function nextRequest(): Promise<{ req: IncomingMessage; res: ServerResponse }> {
  return new Promise((resolve) => server?.once('request', (req, res) => resolve({ req, res })))
}

describe('RawPool: the stale keep-alive race and timeouts', () => {
  it('sends again, once, on a fresh connection when a reused one closes before any byte', async () => {
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
