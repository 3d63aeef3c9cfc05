// An engine's event stream written straight to the client's Node response: real sockets on
// loopback (engine → undici → toClientResponse → Node response → client).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { request } from 'undici'
import { afterEach, describe, expect, it } from 'vitest'
import { endpoint } from '../../test/helpers/snapshot.js'
import { type ResponseOutcome, type StreamFilter, toClientResponse } from './respond.js'

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
