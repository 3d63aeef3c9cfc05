// The Gemini simulator against the REST shapes the gateway relies on: paths, key header, CRLF SSE
// frames without a sentinel, Google error bodies.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { SimServer } from './common.js'
import { startGeminiSim } from './gemini.js'

let sim: SimServer
const post = (path: string, body: unknown, key = 'k') =>
  fetch(`${sim.url}${path}`, {
    method: 'POST',
    headers: { 'x-goog-api-key': key, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  })

beforeAll(async () => {
  sim = await startGeminiSim({ host: '127.0.0.99' })
  sim.keys.add('k')
})
afterAll(() => sim.close())

describe('Gemini simulator', () => {
  it('generateContent and the SSE stream', async () => {
    const body = { contents: [{ role: 'user', parts: [{ text: 'hi' }] }] }
    const r = (await (await post('/v1beta/models/gemini-x:generateContent', body)).json()) as {
      candidates: { finishReason: string }[]
    }
    expect(r.candidates[0]?.finishReason).toBe('STOP')
    const s = await post('/v1beta/models/gemini-x:streamGenerateContent?alt=sse', body)
    const text = await s.text()
    expect(s.headers.get('content-type')).toBe('text/event-stream')
    const frames = text.split('\r\n\r\n').filter((f) => f !== '')
    expect(frames.every((f) => f.startsWith('data: '))).toBe(true)
    expect(JSON.parse(frames.at(-1)?.slice(6) ?? '{}').candidates[0].finishReason).toBe('STOP')
  })

  it('Google error bodies: invalid key is a 400 with API_KEY_INVALID; unknown fields rejected', async () => {
    const bad = await post('/v1beta/models/g:generateContent', { contents: [] }, 'wrong')
    expect(bad.status).toBe(400)
    expect(await bad.json()).toMatchObject({
      error: { code: 400, status: 'INVALID_ARGUMENT', details: [{ reason: 'API_KEY_INVALID' }] },
    })
    const unknown = await post('/v1beta/models/g:generateContent', {
      contents: [{ role: 'user', parts: [{ text: 'x' }] }],
      temperature: 1,
    })
    expect(unknown.status).toBe(400)
  })
})
