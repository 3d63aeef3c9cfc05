import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { runOpenLoop } from './routing-load.js'

// A server answering each request with the stream its `user` field names: whole, cut (the
// response ends without [DONE], as a gateway may end it when its engine dies mid-stream), or
// carrying an error event before the end.
const STREAMS: Record<string, string> = {
  whole: 'data: {"choices":[{"delta":{"content":"a"}}]}\n\ndata: [DONE]\n\n',
  cut: 'data: {"choices":[{"delta":{"content":"a"}}]}\n\n',
  error:
    'data: {"choices":[{"delta":{"content":"a"}}]}\n\ndata: {"error":{"message":"upstream closed","type":"upstream_error"}}\n\ndata: [DONE]\n\n',
}

describe('runOpenLoop', () => {
  let server: Server
  let origin: string
  beforeAll(async () => {
    server = createServer((req, res) => {
      let body = ''
      req.on('data', (c: Buffer) => {
        body += c.toString()
      })
      req.on('end', () => {
        const kind = (JSON.parse(body) as { user: string }).user
        res.writeHead(200, { 'content-type': 'text/event-stream', 'x-inference-pod': 'p' })
        res.end(STREAMS[kind])
      })
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  })
  afterAll(async () => {
    await new Promise((r) => server.close(r))
  })

  it('counts a stream that ends without [DONE] or carries an error event as failed', async () => {
    const plan = ['whole', 'cut', 'error'].map((user, i) => ({
      at: i,
      tag: user,
      outputTokens: 1,
      body: JSON.stringify({ model: 'm', messages: [], user, stream: true }),
    }))
    const results = await runOpenLoop(origin, plan)
    const byTag = new Map(results.map((r) => [r.tag, r]))
    expect(byTag.get('whole')?.status).toBe(200)
    expect(byTag.get('whole')?.error).toBeUndefined()
    expect(byTag.get('cut')?.error).toBe('stream ended without [DONE]')
    expect(byTag.get('error')?.error).toBe('error event in the stream')
    // Failed or not, the first chunk came: TTFT is measured for all three.
    for (const r of results) expect(Number.isFinite(r.ttftMs)).toBe(true)
  })
})
