// Each mode of the misbehaving engine, seen by a real HTTP client (undici, as the gateway uses).
import { request } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type BadEngine, startBadEngine } from './bad-engine.js'

let e: BadEngine
const chat = (extra: Record<string, unknown> = {}) =>
  JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hi' }], ...extra })

async function post(body: string, signal?: AbortSignal) {
  return request(`${e.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body,
    ...(signal ? { signal } : {}),
  })
}

/** Reads the body until `limit` bytes or its end; returns the text read and how it ended. */
async function readUpTo(
  body: AsyncIterable<Buffer>,
  limit: number,
): Promise<{ text: string; ended: 'end' | 'limit' | 'error' }> {
  let text = ''
  try {
    for await (const c of body) {
      text += c.toString('utf8')
      if (text.length >= limit) return { text, ended: 'limit' }
    }
    return { text, ended: 'end' }
  } catch {
    return { text, ended: 'error' }
  }
}

beforeAll(async () => {
  e = await startBadEngine({ name: 'bad-0', host: '127.0.0.231', model: 'm' })
})
afterAll(async () => {
  await e.close()
})

describe('bad engine', () => {
  it('ok: answers like the simulator', async () => {
    e.setMode('ok')
    const r = await post(chat())
    expect(r.statusCode).toBe(200)
    expect(r.headers['x-inference-pod']).toBe('bad-0')
    expect(await r.body.json()).toMatchObject({ object: 'chat.completion' })
  })

  it('hang: reads the request and never sends headers', async () => {
    e.setMode('hang')
    const before = e.sim.stats()
    await expect(post(chat(), AbortSignal.timeout(300))).rejects.toThrow()
    expect(e.sim.stats().requests).toBe(before.requests + 1)
    expect(e.sim.stats().completed).toBe(before.completed)
  })

  it('hang-after-headers: 200 and headers, then no body byte', async () => {
    e.setMode('hang-after-headers')
    const ac = new AbortController()
    const r = await post(chat({ stream: true }), ac.signal)
    expect(r.statusCode).toBe(200)
    expect(r.headers['content-type']).toBe('text/event-stream')
    setTimeout(() => ac.abort(), 300)
    expect(await readUpTo(r.body, 1)).toEqual({ text: '', ended: 'error' })
  })

  it('cut: a non-stream body ends half-way, a stream after one event', async () => {
    e.setMode('cut')
    const r = await post(chat())
    expect(r.statusCode).toBe(200)
    const plain = await readUpTo(r.body, 1 << 20)
    expect(plain.ended).toBe('error')
    expect(() => JSON.parse(plain.text)).toThrow()
    const s = await post(chat({ stream: true }))
    const sse = await readUpTo(s.body, 1 << 20)
    expect(sse.ended).toBe('error')
    expect(sse.text.split('\n\n').filter((f) => f.startsWith('data: '))).toHaveLength(1)
    expect(sse.text).not.toContain('[DONE]')
  })

  it('garbage: every reply is rejected by the HTTP parser', async () => {
    e.setMode('garbage')
    for (let i = 0; i < 6; i++) {
      // Some forms fail at the headers, some (bad chunk framing) only in the body.
      const err = await post(chat())
        .then(
          (r) => r.body.text().then(() => undefined),
          (x: unknown) => x,
        )
        .catch((x: unknown) => x)
      expect(err, `garbage reply ${i}`).toBeInstanceOf(Error)
    }
  })

  it('endless: a JSON body that does not end', async () => {
    e.setMode('endless')
    const ac = new AbortController()
    const r = await post(chat(), ac.signal)
    expect(r.statusCode).toBe(200)
    const got = await readUpTo(r.body, 4 << 20)
    ac.abort()
    expect(got.ended).toBe('limit')
    expect(got.text.startsWith('{"id":"endless"')).toBe(true)
    expect(e.stats().endlessBytes).toBeGreaterThanOrEqual(4 << 20)
  })

  it('sse-no-newlines: one data line that never ends', async () => {
    e.setMode('sse-no-newlines')
    const ac = new AbortController()
    const r = await post(chat({ stream: true }), ac.signal)
    expect(r.headers['content-type']).toBe('text/event-stream')
    const got = await readUpTo(r.body, 2 << 20)
    ac.abort()
    expect(got.ended).toBe('limit')
    expect(got.text.includes('\n')).toBe(false)
  })

  it('oversized-close: small bodies are served, a large one gets the connection closed', async () => {
    e.setMode('oversized-close')
    expect((await post(chat())).statusCode).toBe(200)
    await expect(post(chat({ pad: 'x'.repeat(256 * 1024) }))).rejects.toThrow()
  })

  it('error-500: OpenAI-shaped 500 from the simulator', async () => {
    e.setMode('error-500')
    const r = await post(chat())
    expect(r.statusCode).toBe(500)
    expect(await r.body.json()).toMatchObject({ error: { code: 'internal_server_error' } })
  })

  it('keeps /metrics healthy in every mode and counts requests by mode', async () => {
    e.setMode('hang')
    const m = await request(`${e.url}/metrics`)
    expect(m.statusCode).toBe(200)
    expect(await m.body.text()).toContain('vllm:num_requests_running')
    const s = e.stats()
    expect(s.byMode.garbage).toBe(6)
    expect(s.byMode.cut).toBe(2)
    expect(s.requests).toBe(Object.values(s.byMode).reduce((a, b) => a + b, 0))
  })

  it('refuses a max_tokens beyond the context before generating it (fuzz bodies send 1e308)', async () => {
    e.setMode('ok')
    const r = await post(chat({ max_tokens: 1e308 }))
    expect(r.statusCode).toBe(400)
    expect(await r.body.json()).toMatchObject({ error: { code: 'context_length_exceeded' } })
  })

  it('switches mode over HTTP and refuses unknown modes', async () => {
    const ok = await request(`${e.url}/bad/mode`, { method: 'POST', body: '{"mode":"ok"}' })
    expect(ok.statusCode).toBe(200)
    expect(e.mode()).toBe('ok')
    const bad = await request(`${e.url}/bad/mode`, { method: 'POST', body: '{"mode":"nope"}' })
    expect(bad.statusCode).toBe(400)
    expect(await bad.body.json()).toMatchObject({ error: { code: 'invalid_mode' } })
    expect((await post(chat())).statusCode).toBe(200)
  })
})
