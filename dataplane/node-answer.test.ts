// writeAnswer: a fetch Response written to a real Node response on loopback, as the inference
// routes served without Hono need it; and nodeListener's dispatch between the direct handler and
// Hono.
import { once } from 'node:events'
import { createServer, request, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response'
import { Hono } from 'hono'
import { afterEach, describe, expect, it } from 'vitest'
import { nodeListener } from './app.js'
import { writeAnswer } from './node-answer.js'

let server: Server | undefined
afterEach(async () => {
  server?.closeAllConnections()
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()))
  server = undefined
})

/** A loopback server answering every request with `answer(res)`; returns its URL. */
async function serve(answer: (res: ServerResponse) => Promise<void>): Promise<string> {
  server = createServer((_req, res) => {
    void answer(res)
  })
  server.listen(0, '127.0.0.7')
  await once(server, 'listening')
  return `http://127.0.0.7:${(server.address() as AddressInfo).port}`
}

/** Raw response: status, headers and body bytes as text. */
function get(
  url: string,
): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  return new Promise((resolve, reject) => {
    request(url, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => {
        body += c
      })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }))
    })
      .on('error', reject)
      .end()
  })
}

describe('writeAnswer', () => {
  it('a JSON error: status, headers and a content-length', async () => {
    const url = await serve((res) =>
      writeAnswer(
        new Response('{"error":{"code":"x"}}', {
          status: 404,
          headers: { 'content-type': 'application/json', 'x-request-id': 'r1' },
        }),
        res,
      ),
    )
    const r = await get(url)
    expect(r.status).toBe(404)
    expect(r.headers['content-type']).toBe('application/json')
    expect(r.headers['x-request-id']).toBe('r1')
    expect(r.headers['content-length']).toBe('22')
    expect(r.headers['transfer-encoding']).toBeUndefined()
    expect(r.body).toBe('{"error":{"code":"x"}}')
  })

  it('no body: the status alone', async () => {
    const url = await serve((res) => writeAnswer(new Response(null, { status: 204 }), res))
    const r = await get(url)
    expect(r.status).toBe(204)
    expect(r.body).toBe('')
  })

  it('an answer already written is left alone', async () => {
    const url = await serve(async (res) => {
      res.writeHead(201, { 'content-type': 'text/plain' })
      res.end('mine')
      await writeAnswer(RESPONSE_ALREADY_SENT, res)
    })
    const r = await get(url)
    expect(r.status).toBe(201)
    expect(r.body).toBe('mine')
  })

  it('a body in many chunks is chunked and arrives whole', async () => {
    const parts = Array.from({ length: 50 }, (_, i) => `part-${i};`)
    const url = await serve((res) => {
      let i = 0
      const body = new ReadableStream<Uint8Array>({
        async pull(c) {
          await new Promise((r) => setImmediate(r))
          const p = parts[i++]
          if (p === undefined) c.close()
          else c.enqueue(new TextEncoder().encode(p))
        },
      })
      return writeAnswer(new Response(body, { status: 200 }), res)
    })
    const r = await get(url)
    expect(r.status).toBe(200)
    expect(r.headers['transfer-encoding']).toBe('chunked')
    expect(r.body).toBe(parts.join(''))
  })

  it('a client that leaves cancels the stream', async () => {
    let cancelled: () => void = () => {}
    const wasCancelled = new Promise<void>((r) => {
      cancelled = r
    })
    const url = await serve((res) => {
      const body = new ReadableStream<Uint8Array>({
        // Endless: only a cancel stops it.
        async pull(c) {
          await new Promise((r) => setTimeout(r, 5))
          c.enqueue(new TextEncoder().encode('x'.repeat(1024)))
        },
        cancel() {
          cancelled()
        },
      })
      return writeAnswer(new Response(body, { status: 200 }), res)
    })
    await new Promise<void>((resolve, reject) => {
      const req = request(url, (res) => {
        res.once('data', () => {
          req.destroy()
          resolve()
        })
      })
      req.on('error', () => {})
      req.on('close', resolve)
      req.end()
      setTimeout(() => reject(new Error('no data')), 10_000)
    })
    await wasCancelled
  })

  it('a body that breaks before anything was sent is a clean 500', async () => {
    const url = await serve((res) => {
      const body = new ReadableStream<Uint8Array>({
        pull(c) {
          c.error(new Error('upstream gone'))
        },
      })
      return writeAnswer(new Response(body, { status: 200 }), res)
    })
    const r = await get(url)
    expect(r.status).toBe(500)
    expect(JSON.parse(r.body)).toMatchObject({ error: { code: 'internal_error' } })
  })
})

describe('nodeListener', () => {
  it('an app createApp did not make goes all through Hono', async () => {
    const app = new Hono()
    app.post('/v1/chat/completions', (c) => c.text('hono'))
    let viaHono = 0
    const listener = nodeListener(app, (_req, res) => {
      viaHono++
      res.end('fallback')
    })
    server = createServer(listener)
    server.listen(0, '127.0.0.7')
    await once(server, 'listening')
    const port = (server.address() as AddressInfo).port
    const res = await fetch(`http://127.0.0.7:${port}/v1/chat/completions`, {
      method: 'POST',
      body: '{}',
    })
    expect(await res.text()).toBe('fallback')
    expect(viaHono).toBe(1)
  })
})
