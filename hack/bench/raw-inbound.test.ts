// The raw inbound server's parser (strictness, limits, split reads, pipelining) and the server
// over loopback: one answer at a time per connection, in order, streamed answers framed so that
// node:http's client reads them, refusals that close.
import { Agent as HttpAgent, request as httpRequest } from 'node:http'
import { connect, type Socket } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import {
  H1RequestError,
  H1RequestParser,
  type InboundRequest,
  type RawHandler,
  type RawServer,
  startRawServer,
} from './raw-inbound.js'

const b = (s: string): Buffer => Buffer.from(s, 'latin1')

const POST =
  'POST /v1/chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{"a":1}'

function parseAll(p: H1RequestParser): InboundRequest[] {
  const out: InboundRequest[] = []
  for (let r = p.next(); r !== undefined; r = p.next()) out.push(r)
  return out
}

function refusal(head: string, maxHeaderBytes?: number): H1RequestError {
  const p = new H1RequestParser(maxHeaderBytes, 1000)
  p.feed(b(head))
  try {
    p.next()
  } catch (e) {
    if (e instanceof H1RequestError) return e
    throw e
  }
  throw new Error(`accepted: ${JSON.stringify(head)}`)
}

describe('H1RequestParser', () => {
  it('reads a request line, its fields and a Content-Length body', () => {
    const p = new H1RequestParser()
    p.feed(b(POST))
    const r = p.next()
    expect(r).toMatchObject({ method: 'POST', target: '/v1/chat', minor: 1, keepAlive: true })
    expect(r?.rawHeaders).toEqual([
      'Host',
      'x',
      'Content-Type',
      'application/json',
      'Content-Length',
      '7',
    ])
    expect(r?.body?.toString()).toBe('{"a":1}')
    expect(p.next()).toBeUndefined()
    expect(p.buffered).toBe(0)
  })

  it('reads the same request fed one byte at a time', () => {
    const p = new H1RequestParser()
    const bytes = b(POST)
    const got: InboundRequest[] = []
    for (let i = 0; i < bytes.length; i++) {
      p.feed(bytes.subarray(i, i + 1))
      const r = p.next()
      if (r !== undefined) got.push(r)
      // Nothing before the body's last byte.
      if (i < bytes.length - 1) expect(got).toHaveLength(0)
    }
    expect(got).toHaveLength(1)
    expect(got[0]?.body?.toString()).toBe('{"a":1}')
  })

  it('finds a head whose blank line is split across reads', () => {
    const p = new H1RequestParser()
    p.feed(b('GET /a HTTP/1.1\r\nHost: x\r\n\r'))
    expect(p.next()).toBeUndefined()
    p.feed(b('\n'))
    expect(p.next()).toMatchObject({ method: 'GET', target: '/a', body: undefined })
  })

  it('hands out pipelined requests one by one, the next bytes kept for later', () => {
    const p = new H1RequestParser()
    p.feed(b(`${POST}GET /b HTTP/1.1\r\nHost: x\r\n\r\nGET /c HTTP/1.1\r\nHo`))
    expect(p.next()?.target).toBe('/v1/chat')
    expect(p.next()?.target).toBe('/b')
    expect(p.next()).toBeUndefined()
    expect(p.partial).toBe(true)
    p.feed(b('st: x\r\nConnection: close\r\n\r\n'))
    expect(p.next()).toMatchObject({ target: '/c', keepAlive: false })
    expect(p.partial).toBe(false)
  })

  it('ignores empty lines before a request line', () => {
    const p = new H1RequestParser()
    p.feed(b('\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n'))
    expect(parseAll(p).map((r) => r.target)).toEqual(['/'])
  })

  it('keeps HTTP/1.0 connections only when asked, HTTP/1.1 unless closed', () => {
    const p = new H1RequestParser()
    p.feed(
      b(
        'GET /1 HTTP/1.0\r\n\r\nGET /2 HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n' +
          'GET /3 HTTP/1.1\r\nHost: x\r\nConnection: upgrade, close\r\n\r\n',
      ),
    )
    expect(parseAll(p).map((r) => [r.target, r.minor, r.keepAlive])).toEqual([
      ['/1', 0, false],
      ['/2', 0, true],
      ['/3', 1, false],
    ])
  })

  it.each([
    [
      'a method that is not a token',
      'G(T / HTTP/1.1\r\nHost: x\r\n\r\n',
      'HPE_INVALID_METHOD',
      400,
    ],
    ['no target', 'GET HTTP/1.1\r\nHost: x\r\n\r\n', 'HPE_INVALID_URL', 400],
    ['an empty target', 'GET  HTTP/1.1\r\nHost: x\r\n\r\n', 'HPE_INVALID_URL', 400],
    ['absolute-form', 'GET http://a/ HTTP/1.1\r\nHost: x\r\n\r\n', 'HPE_INVALID_URL', 400],
    [
      'a control byte in the target',
      'GET /a\x01 HTTP/1.1\r\nHost: x\r\n\r\n',
      'HPE_INVALID_URL',
      400,
    ],
    ['another protocol', 'GET / HTTX/1.1\r\nHost: x\r\n\r\n', 'HPE_INVALID_VERSION', 400],
    [
      'a trailing space after the version',
      'GET / HTTP/1.1 \r\nHost: x\r\n\r\n',
      'HPE_INVALID_VERSION',
      400,
    ],
    ['HTTP/2.0', 'GET / HTTP/2.0\r\nHost: x\r\n\r\n', 'HPE_INVALID_VERSION', 505],
    [
      'a space before the colon',
      'GET / HTTP/1.1\r\nHost : x\r\n\r\n',
      'HPE_INVALID_HEADER_TOKEN',
      400,
    ],
    [
      'obs-fold',
      'GET / HTTP/1.1\r\nHost: x\r\nA: b\r\n c\r\n\r\n',
      'HPE_INVALID_HEADER_TOKEN',
      400,
    ],
    [
      'a line without a colon',
      'GET / HTTP/1.1\r\nHost: x\r\nnocolon\r\n\r\n',
      'HPE_INVALID_HEADER_TOKEN',
      400,
    ],
    [
      'a bare LF in a value',
      'GET / HTTP/1.1\r\nHost: x\r\nA: b\nB: c\r\n\r\n',
      'HPE_INVALID_HEADER_TOKEN',
      400,
    ],
    [
      'NUL in a value',
      'GET / HTTP/1.1\r\nHost: x\r\nA: b\x00\r\n\r\n',
      'HPE_INVALID_HEADER_TOKEN',
      400,
    ],
    ['HTTP/1.1 without Host', 'GET / HTTP/1.1\r\nA: b\r\n\r\n', 'HPE_MISSING_HOST', 400],
    ['two Hosts', 'GET / HTTP/1.1\r\nHost: x\r\nhost: y\r\n\r\n', 'HPE_MISSING_HOST', 400],
    [
      'a Content-Length that is not a number',
      'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1a\r\n\r\n',
      'HPE_INVALID_CONTENT_LENGTH',
      400,
    ],
    [
      'conflicting Content-Lengths',
      'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n',
      'HPE_UNEXPECTED_CONTENT_LENGTH',
      400,
    ],
    [
      'Content-Length and Transfer-Encoding',
      'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n',
      'HPE_UNEXPECTED_CONTENT_LENGTH',
      400,
    ],
    [
      'a chunked body',
      'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n',
      'HPE_CHUNKED_UNSUPPORTED',
      411,
    ],
    [
      'another transfer coding',
      'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n',
      'HPE_INVALID_TRANSFER_ENCODING',
      501,
    ],
    [
      'a body over the limit',
      'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n',
      'HPE_BODY_OVERFLOW',
      413,
    ],
    [
      'an expectation other than 100-continue',
      'POST / HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\n\r\n',
      'HPE_UNSUPPORTED_EXPECT',
      417,
    ],
  ])('refuses %s', (_what, head, code, status) => {
    expect(refusal(head)).toMatchObject({ code, status })
  })

  it('takes equal Content-Length repeats', () => {
    const p = new H1RequestParser()
    p.feed(b('POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\ncontent-length: 2\r\n\r\nok'))
    expect(p.next()?.body?.toString()).toBe('ok')
  })

  it('refuses a head over the limit before its end arrives', () => {
    const p = new H1RequestParser(64)
    p.feed(b('GET / HTTP/1.1\r\nHost: x\r\n'))
    expect(p.next()).toBeUndefined()
    p.feed(b(`X-Long: ${'a'.repeat(60)}`))
    expect(() => p.next()).toThrow(
      expect.objectContaining({ code: 'HPE_HEADER_OVERFLOW', status: 431 }),
    )
  })

  it('refuses a whole head over the limit, and takes one just under it', () => {
    const head = (n: number) => `GET / HTTP/1.1\r\nHost: x\r\nA: ${'a'.repeat(n)}\r\n\r\n`
    const fits = head(64 - head(0).length)
    expect(fits.length).toBe(64)
    const p = new H1RequestParser(64)
    p.feed(b(fits))
    expect(p.next()?.rawHeaders[3]).toHaveLength(64 - head(0).length)
    expect(refusal(head(65 - head(0).length), 64)).toMatchObject({ status: 431 })
  })

  it('asks for 100 Continue once when the body has not started', () => {
    const p = new H1RequestParser()
    p.feed(b('POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n'))
    expect(p.next()).toBeUndefined()
    expect(p.takeContinue()).toBe(true)
    expect(p.takeContinue()).toBe(false)
    p.feed(b('ok'))
    expect(p.next()?.body?.toString()).toBe('ok')
  })
})

let server: RawServer | undefined
afterEach(async () => {
  await server?.close()
  server = undefined
})

async function serve(handler: RawHandler): Promise<RawServer> {
  server = await startRawServer({ host: '127.0.0.173', port: 0, handler })
  return server
}

/** Writes `bytes` on a new connection and collects what comes back until the server closes. */
function exchange(port: number, bytes: string, keepOpen = false): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.173', port })
    let got = ''
    s.setEncoding('latin1')
    s.on('data', (d: string) => {
      got += d
    })
    s.on('error', reject)
    s.on('close', () => resolve(got))
    s.write(bytes, 'latin1')
    if (!keepOpen) s.end()
  })
}

function text(res: import('node:http').IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let s = ''
    res.setEncoding('utf8')
    res.on('data', (d: string) => {
      s += d
    })
    res.on('end', () => resolve(s))
    res.on('error', reject)
  })
}

describe('startRawServer', () => {
  it('answers pipelined requests in order, the next one read only after the answer', async () => {
    const seen: string[] = []
    const pending: (() => void)[] = []
    const srv = await serve((req, res) => {
      seen.push(req.target)
      // The first answer waits for the test; the others come at once.
      const answer = () => res.end(200, ['content-type', 'text/plain'], `answer ${req.target}`)
      if (req.target === '/1') pending.push(answer)
      else answer()
    })
    const s = connect({ host: '127.0.0.173', port: srv.port })
    let got = ''
    s.setEncoding('latin1')
    s.on('data', (d: string) => {
      got += d
    })
    const closed = new Promise((r) => s.on('close', r))
    s.write(
      'GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n' +
        'GET /3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
    )
    await new Promise<void>((r) => {
      const check = () => (pending.length > 0 ? r() : setImmediate(check))
      check()
    })
    expect(seen).toEqual(['/1'])
    pending[0]?.()
    await closed
    expect(seen).toEqual(['/1', '/2', '/3'])
    const bodies = got.split('\r\n\r\n').filter((x) => x.startsWith('answer'))
    expect(bodies.map((x) => x.slice(0, 9))).toEqual(['answer /1', 'answer /2', 'answer /3'])
    expect(got.match(/HTTP\/1\.1 200 OK\r\n/g)).toHaveLength(3)
    expect(got).toContain('content-length: 9\r\nconnection: close\r\n\r\nanswer /3')
  })

  it('answers a malformed request 400 and closes, reading nothing after it', async () => {
    let calls = 0
    const srv = await serve((_req, res) => {
      calls++
      res.end(200, [], 'no')
    })
    const got = await exchange(
      srv.port,
      'GET / HTTP/1.1\r\nBad Name: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n',
    )
    expect(got).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/)
    expect(got).toContain('connection: close')
    expect(got).toContain('"code":"HPE_INVALID_HEADER_TOKEN"')
    expect(calls).toBe(0)
  })

  it('answers a chunked request body 411', async () => {
    const srv = await serve((_req, res) => res.end(200, [], 'no'))
    const got = await exchange(
      srv.port,
      'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n',
    )
    expect(got).toMatch(/^HTTP\/1\.1 411 Length Required\r\n/)
  })

  it("streams chunked frames that node:http's client reads, over a kept connection", async () => {
    const srv = await serve((req, res) => {
      if (req.target === '/whole') {
        res.end(200, ['content-type', 'application/json'], req.body ?? '')
        return
      }
      res.writeHead(200, ['content-type', 'text/event-stream'])
      res.write(b('data: 1\n\n'))
      res.write(b(''))
      res.write(b('data: 2\n\n'), true)
      res.finish()
    })
    const agent = new HttpAgent({ keepAlive: true, maxSockets: 1 })
    const get = (path: string, body?: string) =>
      new Promise<{ text: string; te: string | undefined; socket: unknown }>((resolve, reject) => {
        const r = httpRequest(
          { host: '127.0.0.173', port: srv.port, path, method: 'POST', agent },
          (res) => {
            const te = res.headers['transfer-encoding']
            text(res).then((t) => resolve({ text: t, te, socket: res.socket }), reject)
          },
        )
        r.on('error', reject)
        r.end(body)
      })
    const a = await get('/stream')
    expect(a).toMatchObject({ text: 'data: 1\n\ndata: 2\n\n', te: 'chunked' })
    const c = await get('/whole', '{"x":2}')
    expect(c.text).toBe('{"x":2}')
    expect(c.socket).toBe(a.socket)
    expect(srv.connections).toBe(1)
    agent.destroy()
  })

  it('streams to an HTTP/1.0 client unframed and closes after', async () => {
    const srv = await serve((_req, res) => {
      res.writeHead(200, ['content-type', 'text/event-stream'])
      res.write(b('data: 1\n\n'))
      res.finish()
    })
    const got = await exchange(srv.port, 'GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n', true)
    expect(got).toBe(
      'HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\ndata: 1\n\n',
    )
  })

  it('sends 100 Continue before the body of a request that expects it', async () => {
    const srv = await serve((req, res) => res.end(200, [], req.body ?? ''))
    const s: Socket = connect({ host: '127.0.0.173', port: srv.port })
    s.setEncoding('latin1')
    let got = ''
    const firstData = new Promise<void>((r) => s.once('data', () => r()))
    s.on('data', (d: string) => {
      got += d
    })
    const closed = new Promise((r) => s.on('close', r))
    s.write(
      'POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\nConnection: close\r\n\r\n',
    )
    await firstData
    expect(got).toBe('HTTP/1.1 100 Continue\r\n\r\n')
    s.write('ok')
    await closed
    expect(got).toMatch(
      /\r\n\r\nHTTP\/1\.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok$/,
    )
  })

  it('tells the handler when the client leaves mid-answer', async () => {
    let aborted = 0
    let started: () => void = () => {}
    const streaming = new Promise<void>((r) => {
      started = r
    })
    const srv = await serve((_req, res) => {
      res.onAbort = () => {
        aborted++
      }
      res.writeHead(200, ['content-type', 'text/event-stream'])
      res.write(b('data: 1\n\n'))
      started()
    })
    const s = connect({ host: '127.0.0.173', port: srv.port })
    s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n')
    s.once('data', () => s.destroy())
    await streaming
    await new Promise<void>((r) => {
      const check = () => (srv.connections === 0 ? r() : setImmediate(check))
      check()
    })
    expect(aborted).toBe(1)
  })
})
