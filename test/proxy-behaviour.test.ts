// Data-plane proxy behaviour against scripted upstreams on loopback: exact control over timing
// and failures that an engine simulator would blur.
import { once } from 'node:events'
import { request as httpRequest } from 'node:http'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type Gateway, startGateway } from '../dataplane/gateway.js'
import { ConfigVolume, manifests } from './helpers/config.js'
import { json, startUpstream, type TestUpstream } from './helpers/upstream.js'

let up: TestUpstream
let gw: Gateway
let vol: ConfigVolume
const logLines: Record<string, unknown>[] = []

beforeAll(async () => {
  up = await startUpstream('127.0.0.6', (_q, res) => json(res, 200, { ok: true }))
  vol = await ConfigVolume.create({
    'gateway.yaml': manifests(
      [
        {
          name: 'scripted',
          model: 'upstream-name',
          endpoints: [{ name: 'up-0', address: '127.0.0.6', port: up.port }],
          trafficPolicy: { timeouts: { idle: '300ms', request: '5s' } },
        },
      ],
      [
        {
          name: 'r',
          modelName: 'scripted',
          rules: [{ targetModels: [{ modelServerName: 'scripted' }] }],
        },
      ],
    ),
  })
  gw = await startGateway({
    config: { kind: 'manifests', paths: [vol.dir] },
    port: 0,
    accessLog: (e) => logLines.push({ ...e }),
  })
})
afterAll(async () => {
  await gw.shutdown({ deadlineMs: 1000 })
  await up.close()
  await vol.remove()
})

function post(body: unknown, headers: Record<string, string> = {}) {
  return fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  })
}

describe('proxy behaviour', () => {
  it('rewrites the model to ModelServer.spec.model and forwards x-request-id', async () => {
    up.handler = (_q, res, body) => json(res, 200, { seen: JSON.parse(body) as unknown })
    const res = await post({ model: 'scripted', messages: [] }, { 'x-request-id': 'req-123' })
    expect(res.status).toBe(200)
    expect(res.headers.get('x-request-id')).toBe('req-123')
    expect(await res.json()).toEqual({ seen: { model: 'upstream-name', messages: [] } })
    expect(up.requests.at(-1)?.headers['x-request-id']).toBe('req-123')
    const line = logLines.find((l) => l['request_id'] === 'req-123')
    expect(line).toMatchObject({
      status: 200,
      route: 'default/r',
      server: 'default/scripted',
      endpoint: `127.0.0.6:${up.port}`,
    })
  })

  it('generates a request id when the client sends none', async () => {
    up.handler = (_q, res) => json(res, 200, {})
    const res = await post({ model: 'scripted' })
    const id = res.headers.get('x-request-id')
    expect(id).toMatch(/^[0-9a-f-]{36}$/)
    expect(up.requests.at(-1)?.headers['x-request-id']).toBe(id)
  })

  it('streams SSE chunk by chunk without buffering', async () => {
    let release: () => void = () => {}
    const gate = new Promise<void>((r) => {
      release = r
    })
    up.handler = (_q, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      res.write('data: {"n":1}\n\n')
      void gate.then(() => {
        res.write('data: {"n":2,"usage":{"prompt_tokens":3,"completion_tokens":2}}\n\n')
        res.end('data: [DONE]\n\n')
      })
    }
    const res = await post({ model: 'scripted', stream: true }, { 'x-request-id': 'sse-1' })
    expect(res.headers.get('content-type')).toContain('text/event-stream')
    const reader = res.body!.getReader()
    const first = await reader.read()
    // The first event arrived while the upstream is still holding the rest back.
    expect(new TextDecoder().decode(first.value)).toBe('data: {"n":1}\n\n')
    release()
    let rest = ''
    for (;;) {
      const { value, done } = await reader.read()
      if (done) break
      rest += new TextDecoder().decode(value)
    }
    expect(rest).toContain('[DONE]')
    await new Promise((r) => setTimeout(r, 20))
    expect(logLines.find((l) => l['request_id'] === 'sse-1')).toMatchObject({
      stream: true,
      prompt_tokens: 3,
      completion_tokens: 2,
    })
  })

  it('ends a stream cut by the upstream with an error event, never [DONE]', async () => {
    up.handler = (_q, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      res.write('data: {"n":1}\n\n')
      setTimeout(() => res.socket?.destroy(), 30)
    }
    const res = await post({ model: 'scripted', stream: true })
    const text = await res.text()
    expect(text.startsWith('data: {"n":1}\n\n')).toBe(true)
    expect(text).not.toContain('[DONE]')
    const last = text.trim().split('\n\n').at(-1) ?? ''
    expect(JSON.parse(last.slice('data: '.length))).toMatchObject({
      error: { code: 'upstream_stream_cut', type: 'server_error' },
    })
  })

  it('ends a stream that goes idle longer than the idle timeout with an error event', async () => {
    let finished = false
    up.handler = (_q, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      res.write('data: {"n":1}\n\n')
      const t = setTimeout(() => {
        finished = true
        res.end('data: [DONE]\n\n')
      }, 4000)
      res.on('close', () => clearTimeout(t))
    }
    const text = await (await post({ model: 'scripted', stream: true })).text()
    // Ended by the gateway while the upstream was still idle (its 4 s end never came).
    expect(finished).toBe(false)
    expect(text).not.toContain('[DONE]')
    expect(text).toContain('"code":"upstream_timeout"')
  })

  it('passes upstream 4xx through unchanged', async () => {
    up.handler = (_q, res) =>
      json(res, 400, {
        error: {
          message: 'This model maximum context length is 8 tokens',
          type: 'BadRequestError',
          code: 400,
        },
      })
    const res = await post({ model: 'scripted' })
    expect(res.status).toBe(400)
    expect(await res.json()).toEqual({
      error: {
        message: 'This model maximum context length is 8 tokens',
        type: 'BadRequestError',
        code: 400,
      },
    })
  })

  it('aborts the upstream request when the client disconnects', async () => {
    let upstreamClosed: () => void = () => {}
    const closed = new Promise<void>((r) => {
      upstreamClosed = r
    })
    up.handler = (_q, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      res.write('data: {"n":1}\n\n')
      const t = setInterval(() => res.write('data: {"n":2}\n\n'), 20)
      res.on('close', () => {
        clearInterval(t)
        upstreamClosed()
      })
    }
    const u = new URL(gw.url)
    const req = httpRequest({
      host: u.hostname,
      port: u.port,
      path: '/v1/chat/completions',
      method: 'POST',
      headers: { 'content-type': 'application/json' },
    })
    req.end(JSON.stringify({ model: 'scripted', stream: true }))
    const [res] = (await once(req, 'response')) as [import('node:http').IncomingMessage]
    await once(res, 'data')
    req.destroy()
    await expect(
      Promise.race([
        closed.then(() => 'closed'),
        new Promise((r) => setTimeout(() => r('timeout'), 2000)),
      ]),
    ).resolves.toBe('closed')
  })

  it('lets in-flight requests finish during graceful shutdown while readiness fails', async () => {
    const vol2 = await ConfigVolume.create({
      'g.yaml': manifests(
        [{ name: 's', endpoints: [{ name: 'up-0', address: '127.0.0.6', port: up.port }] }],
        [{ name: 'r', modelName: 's', rules: [{ targetModels: [{ modelServerName: 's' }] }] }],
      ),
    })
    const gw2 = await startGateway({ config: { kind: 'manifests', paths: [vol2.dir] }, port: 0 })
    up.handler = (_q, res) => setTimeout(() => json(res, 200, { slow: true }), 300)
    const inflight = fetch(`${gw2.url}/v1/chat/completions`, {
      method: 'POST',
      body: JSON.stringify({ model: 's' }),
    })
    await new Promise((r) => setTimeout(r, 50))
    const shutdown = gw2.shutdown({ drainDelayMs: 100, deadlineMs: 5000 })
    await new Promise((r) => setTimeout(r, 20))
    const ready = await fetch(`${gw2.url}/readyz`)
    expect(ready.status).toBe(503)
    const res = await inflight
    expect(res.status).toBe(200)
    expect(await res.json()).toEqual({ slow: true })
    expect((await shutdown).forced).toBe(0)
    await vol2.remove()
  })
})
