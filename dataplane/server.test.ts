// The listener hands a connection to Node's HTTP server only on its first bytes (issue 10: an idle
// flood's per-connection parser state was what every young-generation GC copied). Checked by
// counting Node's per-connection set-ups (its HTTPINCOMINGMESSAGE async resource), never by time,
// and that every way a first packet can look is still served as before.
import { createHook } from 'node:async_hooks'
import { connect, type Socket } from 'node:net'
import { Hono } from 'hono'
import { afterEach, describe, expect, it } from 'vitest'
import { listen, type RunningServer } from './server.js'

const HOST = '127.0.0.172'

function app(): Hono {
  const a = new Hono()
  a.get('/n/:n', (c) => c.text(`n=${c.req.param('n')}`))
  a.post('/echo', async (c) => c.text(`echo:${await c.req.text()}`))
  return a
}

async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !cond(); i++) await new Promise((r) => setTimeout(r, 10))
  expect(cond()).toBe(true)
}

/** Opens a raw connection; `data()` is what came back, `closed` settles when it closes. */
function rawConn(port: number) {
  const s = connect(port, HOST)
  let data = ''
  s.on('data', (d) => {
    data += d.toString()
  })
  s.on('error', () => {})
  const closed = new Promise<void>((r) => s.once('close', () => r()))
  const connected = new Promise<void>((r) => s.once('connect', () => r()))
  return { s, closed, connected, data: () => data }
}

/** Writes `parts` as separate TCP segments (each flushed and given time to arrive alone). */
async function writeApart(s: Socket, parts: readonly string[]): Promise<void> {
  for (const p of parts) {
    await new Promise<void>((r) => s.write(p, () => r()))
    await new Promise((r) => setTimeout(r, 30))
  }
}

let srv: RunningServer | undefined
afterEach(async () => {
  await srv?.shutdown({ deadlineMs: 200 })
  srv = undefined
})

async function start(limits: { headersTimeoutMs?: number } = {}): Promise<RunningServer> {
  srv = await listen(app(), {
    host: HOST,
    port: 0,
    lifecycle: { draining: false },
    headersTimeoutMs: limits.headersTimeoutMs ?? 30_000,
    requestTimeoutMs: 60_000,
    maxConnections: 1000,
  })
  return srv
}

describe('listener: connections are handed to Node on their first bytes', () => {
  it('200 silent connections get no HTTP parser set-up; once they send a request, each gets one', async () => {
    let setUps = 0
    const hook = createHook({
      init(_id, type) {
        if (type === 'HTTPINCOMINGMESSAGE') setUps++
      },
    }).enable()
    try {
      const s = await start()
      const conns = Array.from({ length: 200 }, () => rawConn(s.port))
      await Promise.all(conns.map((c) => c.connected))
      await until(() => s.connections() === 200)
      // Before the fix Node set each one up on accept: 200 here.
      expect(setUps).toBe(0)
      for (const [i, c] of conns.entries()) {
        c.s.write(`GET /n/${i} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n`)
      }
      await Promise.all(conns.map((c) => c.closed))
      expect(conns.filter((c, i) => c.data().endsWith(`n=${i}`))).toHaveLength(200)
      expect(setUps).toBe(200)
    } finally {
      hook.disable()
    }
  })

  it('a request split after its first byte, pipelined requests and a body in the first packet are served in order', async () => {
    const s = await start()
    const split = rawConn(s.port)
    await split.connected
    await writeApart(split.s, ['G', 'ET /n/1 HTTP/1.1\r\nHo', 'st: a\r\nConnection: close\r\n\r\n'])
    await split.closed
    expect(split.data()).toMatch(/^HTTP\/1\.1 200 [\s\S]*n=1$/)

    const piped = rawConn(s.port)
    await piped.connected
    piped.s.write(
      'GET /n/1 HTTP/1.1\r\nHost: a\r\n\r\nGET /n/2 HTTP/1.1\r\nHost: a\r\n\r\nGET /n/3 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n',
    )
    await piped.closed
    expect(piped.data().match(/n=\d/g)).toEqual(['n=1', 'n=2', 'n=3'])

    // The body starts in the first packet and ends in a later one.
    const body = rawConn(s.port)
    await body.connected
    await writeApart(body.s, [
      'POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\nConnection: close\r\n\r\nhello',
      'world',
    ])
    await body.closed
    expect(body.data()).toMatch(/echo:helloworld$/)
  })

  it('a connection that closes or resets before its first byte is let go (no error, not counted open)', async () => {
    const s = await start()
    const fin = rawConn(s.port)
    const rst = rawConn(s.port)
    await Promise.all([fin.connected, rst.connected])
    await until(() => s.connections() === 2)
    fin.s.end()
    rst.s.resetAndDestroy()
    await fin.closed
    await until(() => s.connections() === 0)
    // Still serving.
    const ok = rawConn(s.port)
    ok.s.write('GET /n/7 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n')
    await ok.closed
    expect(ok.data()).toMatch(/n=7$/)
  })

  it('a connection silent past the headers timeout is answered 408 by the listener; shutdown closes silent ones at once', async () => {
    const s = await start({ headersTimeoutMs: 300 })
    const silent = rawConn(s.port)
    await silent.closed
    expect(silent.data()).toMatch(/^HTTP\/1\.1 408 [\s\S]*"code":"request_timeout"/)
    await srv?.shutdown({ deadlineMs: 200 })
    srv = undefined

    // A long headers timeout: only shutdown can close these (Node does not know them yet).
    const s2 = await start({ headersTimeoutMs: 60_000 })
    const waiting = Array.from({ length: 5 }, () => rawConn(s2.port))
    await Promise.all(waiting.map((c) => c.connected))
    await until(() => s2.connections() === 5)
    await s2.shutdown({ deadlineMs: 200 })
    srv = undefined
    await Promise.all(waiting.map((c) => c.closed))
    await until(() => s2.connections() === 0)
  })
})
