// An engine's event stream written straight to the client's Node response: real sockets on
// loopback (engine → undici → toClientResponse → Node response → client).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { type AddressInfo, connect } from 'node:net'
import { request } from 'undici'
import { afterEach, describe, expect, it } from 'vitest'
import { endpoint } from '../../test/helpers/snapshot.js'
import { EngineBody } from './engine-body.js'
import { chunkFrame, type ResponseOutcome, type StreamFilter, toClientResponse } from './respond.js'

const servers: Server[] = []
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))))
})

async function listen(
  host: string,
  handler: (req: IncomingMessage, res: ServerResponse) => void,
): Promise<string> {
  const s = createServer(handler)
  servers.push(s)
  await new Promise<void>((r) => s.listen(0, host, r))
  return `http://${host}:${(s.address() as AddressInfo).port}`
}

/** A gateway of one route: upstream response → toClientResponse with the Node response. */
async function gateway(
  engineUrl: string,
  done: ResponseOutcome[],
  streamFilter?: StreamFilter,
): Promise<string> {
  return listen('127.0.0.31', (_req, res) => {
    const ctl = new AbortController()
    res.once('close', () => {
      if (!res.writableFinished) ctl.abort()
    })
    void (async () => {
      const up = await request(engineUrl, { signal: ctl.signal })
      const answer = await toClientResponse(
        {
          endpoint: endpoint('e0', '127.0.0.32', 1),
          attempts: 1,
          statusCode: up.statusCode,
          headers: up.headers,
          body: up.body,
          headersMs: 0,
        },
        {
          startedAt: performance.now(),
          extraHeaders: { 'x-request-id': 'r-1' },
          signal: ctl.signal,
          timedOut: () => false,
          onDone: (o) => done.push(o),
          nodeResponse: res,
          ...(streamFilter !== undefined ? { streamFilter } : {}),
        },
      )
      // The adapter is told the answer went out already: no body, the marker header.
      expect(answer.body).toBeNull()
    })()
  })
}

const sse = (res: ServerResponse): void => {
  res.writeHead(200, { 'content-type': 'text/event-stream' })
}

describe('event streams to the Node response', () => {
  it('passes every chunk in order, reads usage, records once', async () => {
    const engine = await listen('127.0.0.32', (_req, res) => {
      sse(res)
      res.write('data: {"n":1}\n\n')
      setTimeout(() => {
        res.write('data: {"n":2,"usage":{"prompt_tokens":5,"completion_tokens":2}}\n\n')
        res.end('data: [DONE]\n\n')
      }, 5)
    })
    const done: ResponseOutcome[] = []
    const gw = await gateway(engine, done)
    const res = await fetch(gw)
    expect(res.status).toBe(200)
    expect(res.headers.get('x-request-id')).toBe('r-1')
    expect(res.headers.get('cache-control')).toBe('no-cache')
    expect(res.headers.get('content-type')).toBe('text/event-stream')
    const text = await res.text()
    expect(text).toBe(
      'data: {"n":1}\n\ndata: {"n":2,"usage":{"prompt_tokens":5,"completion_tokens":2}}\n\ndata: [DONE]\n\n',
    )
    await expect.poll(() => done.length).toBe(1)
    expect(done[0]).toMatchObject({
      status: 200,
      stream: true,
      bytes: Buffer.byteLength(text),
      usage: { promptTokens: 5, completionTokens: 2 },
    })
    expect(done[0]?.error).toBeUndefined()
  })

  it('the status line reaches the client before the first token', async () => {
    let release: () => void = () => {}
    const released = new Promise<void>((r) => {
      release = r
    })
    const engine = await listen('127.0.0.32', (_req, res) => {
      sse(res)
      res.flushHeaders()
      void released.then(() => res.end('data: {"n":1}\n\ndata: [DONE]\n\n'))
    })
    const done: ResponseOutcome[] = []
    // Resolves on the response headers: the engine sends no token until they have arrived.
    const res = await fetch(await gateway(engine, done))
    expect(res.status).toBe(200)
    release()
    expect(await res.text()).toBe('data: {"n":1}\n\ndata: [DONE]\n\n')
    await expect.poll(() => done.length).toBe(1)
  })

  it('first bytes that came with the headers go out at once, later ones as they come', async () => {
    let release: () => void = () => {}
    const released = new Promise<void>((r) => {
      release = r
    })
    const engine = await listen('127.0.0.32', (_req, res) => {
      sse(res)
      // Written with the headers (no flush in between): the gateway finds them buffered.
      res.write('data: {"n":1}\n\n')
      void released.then(() => res.end('data: {"n":2}\n\ndata: [DONE]\n\n'))
    })
    const done: ResponseOutcome[] = []
    const res = await fetch(await gateway(engine, done))
    const reader = res.body?.getReader()
    const dec = new TextDecoder()
    const first = await reader?.read()
    expect(dec.decode(first?.value)).toBe('data: {"n":1}\n\n')
    release()
    let rest = ''
    for (let r = await reader?.read(); r !== undefined && !r.done; r = await reader?.read())
      rest += dec.decode(r.value)
    expect(rest).toBe('data: {"n":2}\n\ndata: [DONE]\n\n')
    await expect.poll(() => done.length).toBe(1)
    expect(done[0]?.error).toBeUndefined()
  })

  it('an asynchronous filter holding the last chunk when the engine ends: nothing is lost', async () => {
    // The whole stream arrives in one read, so the body has ended while the filter still holds
    // it ('end' and 'close' come on the next tick, before the filter answers).
    const engine = await listen('127.0.0.32', (_req, res) => {
      sse(res)
      res.end('data: {"n":1}\n\ndata: {"n":2}\n\ndata: [DONE]\n\n')
    })
    let held = 0
    const filter: StreamFilter = {
      transform: (chunk) => {
        held++
        return new Promise((resolve) => setTimeout(() => resolve({ out: chunk }), 20))
      },
      flush: () => undefined,
    }
    const done: ResponseOutcome[] = []
    const text = await (await fetch(await gateway(engine, done, filter))).text()
    expect(held).toBeGreaterThan(0)
    expect(text).toBe('data: {"n":1}\n\ndata: {"n":2}\n\ndata: [DONE]\n\n')
    await expect.poll(() => done.length).toBe(1)
    expect(done[0]?.error).toBeUndefined()
  })

  it('an engine that cuts the stream: an error event, never [DONE]; outcome upstream_cut', async () => {
    const engine = await listen('127.0.0.32', (_req, res) => {
      sse(res)
      res.write('data: {"n":1}\n\n')
      setTimeout(() => res.socket?.destroy(), 5)
    })
    const done: ResponseOutcome[] = []
    const text = await (await fetch(await gateway(engine, done))).text()
    expect(text.startsWith('data: {"n":1}\n\n')).toBe(true)
    expect(text).toContain('"code":"upstream_stream_cut"')
    expect(text).not.toContain('[DONE]')
    await expect.poll(() => done.length).toBe(1)
    expect(done[0]?.error).toBe('upstream_cut')
  })

  it('a client that leaves stops the engine: outcome client_closed', async () => {
    let engineClosed = false
    const engine = await listen('127.0.0.32', (_req, res) => {
      sse(res)
      const t = setInterval(() => res.write('data: {"n":1}\n\n'), 2)
      res.once('close', () => {
        clearInterval(t)
        engineClosed = true
      })
    })
    const done: ResponseOutcome[] = []
    const gw = await gateway(engine, done)
    const ctl = new AbortController()
    const res = await fetch(gw, { signal: ctl.signal })
    const reader = res.body?.getReader()
    await reader?.read()
    ctl.abort()
    await expect.poll(() => done.length).toBe(1)
    expect(done[0]?.error).toBe('client_closed')
    await expect.poll(() => engineClosed).toBe(true)
  })
})

/** A raw request to `url`; resolves with every byte the server sent until it closed. */
function rawGet(
  url: string,
  head: string,
  /** Not read for this long first (the gateway's writes back up). */
  stallMs = 0,
): Promise<string> {
  const u = new URL(url)
  return new Promise((resolve, reject) => {
    const s = connect({ host: u.hostname, port: Number(u.port) })
    const parts: Buffer[] = []
    s.on('data', (c: Buffer) => parts.push(c))
    s.on('end', () => resolve(Buffer.concat(parts).toString('latin1')))
    s.on('error', reject)
    if (stallMs > 0) {
      s.pause()
      setTimeout(() => s.resume(), stallMs)
    }
    s.write(head)
  })
}

/** The body of a chunked HTTP/1.1 message (`text`: the whole response), framing checked. */
function dechunk(text: string): string {
  let rest = text.slice(text.indexOf('\r\n\r\n') + 4)
  let body = ''
  for (;;) {
    const eol = rest.indexOf('\r\n')
    const size = Number.parseInt(rest.slice(0, eol), 16)
    if (!Number.isFinite(size)) throw new Error(`bad chunk size line: ${rest.slice(0, 20)}`)
    if (size === 0) return body
    body += rest.slice(eol + 2, eol + 2 + size)
    if (rest.slice(eol + 2 + size, eol + 4 + size) !== '\r\n') throw new Error('no CRLF after data')
    rest = rest.slice(eol + 4 + size)
  }
}

describe('chunks written to the client socket', () => {
  it('chunkFrame: size in hex, CRLF, the bytes, CRLF', () => {
    expect(chunkFrame(Buffer.from('a')).toString('latin1')).toBe('1\r\na\r\n')
    expect(chunkFrame(Buffer.alloc(15, 120)).toString('latin1')).toBe(`f\r\n${'x'.repeat(15)}\r\n`)
    expect(chunkFrame(Buffer.alloc(16, 120)).toString('latin1')).toBe(`10\r\n${'x'.repeat(16)}\r\n`)
    const big = chunkFrame(new Uint8Array(0x1ab).fill(121))
    expect(big.toString('latin1')).toBe(`1ab\r\n${'y'.repeat(0x1ab)}\r\n`)
  })

  it('a client that reads late gets every event in order (the socket drains, the engine waits)', async () => {
    // 4 MiB in 1 KiB events: far past what the sockets between hold while the client stalls.
    const event = (k: number) => `data: ${String(k).padStart(8, '0')}${'x'.repeat(1000)}\n\n`
    const n = 4096
    const engine = await listen('127.0.0.32', (_req, res) => {
      sse(res)
      let k = 0
      const more = (): void => {
        while (k < n) if (!res.write(event(k++))) return void res.once('drain', more)
        res.end()
      }
      more()
    })
    const done: ResponseOutcome[] = []
    const gw = await gateway(engine, done)
    const text = await rawGet(gw, 'GET / HTTP/1.1\r\nhost: gw\r\nconnection: close\r\n\r\n', 300)
    expect(text.startsWith('HTTP/1.1 200')).toBe(true)
    const body = dechunk(text)
    expect(body.length).toBe(n * event(0).length)
    expect(body).toBe(Array.from({ length: n }, (_, k) => event(k)).join(''))
    await expect.poll(() => done.length).toBe(1)
    expect(done[0]?.error).toBeUndefined()
  })

  it('an HTTP/1.0 client (no chunked encoding) gets the events as they are, then the close', async () => {
    const engine = await listen('127.0.0.32', (_req, res) => {
      sse(res)
      res.write('data: {"n":1}\n\n')
      setTimeout(() => res.end('data: [DONE]\n\n'), 5)
    })
    const done: ResponseOutcome[] = []
    const text = await rawGet(await gateway(engine, done), 'GET / HTTP/1.0\r\n\r\n')
    expect(text.startsWith('HTTP/1.1 200')).toBe(true)
    expect(text.toLowerCase()).not.toContain('transfer-encoding')
    expect(text.slice(text.indexOf('\r\n\r\n') + 4)).toBe('data: {"n":1}\n\ndata: [DONE]\n\n')
    await expect.poll(() => done.length).toBe(1)
  })
})

describe('the end of a stream from the raw client', () => {
  it("the engine's last event and the response's end go out in one write", async () => {
    // The raw client's body, fed by hand as its parser feeds it.
    const body = new EngineBody()
    let writes = 0
    let lastFed = (): void => {}
    const fed = new Promise<void>((r) => {
      lastFed = r
    })
    const done: ResponseOutcome[] = []
    const gw = await listen('127.0.0.31', (_req, res) => {
      const socket = res.socket as unknown as {
        _write: (...a: unknown[]) => void
        _writev: (...a: unknown[]) => void
      }
      // Every write that reaches the socket's handle, one system call each.
      const w = socket._write.bind(socket)
      const wv = socket._writev.bind(socket)
      socket._write = (...a) => {
        writes++
        w(...a)
      }
      socket._writev = (...a) => {
        writes++
        wv(...a)
      }
      const ctl = new AbortController()
      void toClientResponse(
        {
          endpoint: endpoint('e0', '127.0.0.32', 1),
          attempts: 1,
          statusCode: 200,
          headers: { 'content-type': 'text/event-stream' },
          body,
          headersMs: 0,
        },
        {
          startedAt: performance.now(),
          extraHeaders: {},
          signal: ctl.signal,
          timedOut: () => false,
          onDone: (o) => done.push(o),
          nodeResponse: res,
        },
      )
      setTimeout(() => {
        body.onBody(Buffer.from('data: {"n":1}\n\n'), false)
        setTimeout(() => {
          writes = 0
          // The parser saw the zero-size chunk after these bytes: the end follows now.
          body.onBody(Buffer.from('data: [DONE]\n\n'), true)
          body.onEnd()
          lastFed()
        }, 10)
      }, 10)
    })
    const text = await (await fetch(gw)).text()
    await fed
    expect(text).toBe('data: {"n":1}\n\ndata: [DONE]\n\n')
    expect(writes).toBe(1)
    await expect.poll(() => done.length).toBe(1)
    expect(done[0]?.error).toBeUndefined()
  })
})
