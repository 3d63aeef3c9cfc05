// The OpenAI-family simulator read by the official `openai` SDK (bodies, SSE, errors), per flavor.
import OpenAI from 'openai'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { SimServer } from './common.js'
import { startOpenAISim } from './openai.js'

let openai: SimServer
let azure: SimServer
let tgi: SimServer

beforeAll(async () => {
  openai = await startOpenAISim({ host: '127.0.0.96', flavor: 'openai' })
  azure = await startOpenAISim({ host: '127.0.0.97', flavor: 'azure', deployment: 'd1' })
  tgi = await startOpenAISim({ host: '127.0.0.98', flavor: 'tgi' })
  for (const s of [openai, azure, tgi]) s.keys.add('k')
})
afterAll(async () => {
  await Promise.all([openai, azure, tgi].map((s) => s.close()))
})

describe('OpenAI simulator', () => {
  it('serves chat, streams with usage and embeddings to the SDK', async () => {
    const c = new OpenAI({ baseURL: `${openai.url}/v1`, apiKey: 'k', maxRetries: 0 })
    const r = await c.chat.completions.create({
      model: 'm',
      messages: [{ role: 'user', content: 'hi' }],
    })
    expect(r.choices[0]?.message.content).toBe('Hello from openai. You said: hi')
    const s = await c.chat.completions.create({
      model: 'm',
      messages: [{ role: 'user', content: 'hi' }],
      stream: true,
      stream_options: { include_usage: true },
    })
    let usage: unknown
    for await (const chunk of s) usage = chunk.usage ?? usage
    expect(usage).toEqual({ prompt_tokens: 1, completion_tokens: 6, total_tokens: 7 })
    const e = await c.embeddings.create({ model: 'e', input: 'abc', dimensions: 3 })
    expect(e.data[0]?.embedding).toHaveLength(3)
  })

  it('quotes the masked key in its 401, as OpenAI does', async () => {
    const c = new OpenAI({ baseURL: `${openai.url}/v1`, apiKey: 'sk-wrongkey99', maxRetries: 0 })
    const err = await c.chat.completions
      .create({ model: 'm', messages: [{ role: 'user', content: 'x' }] })
      .catch((x) => x)
    expect(err).toBeInstanceOf(OpenAI.AuthenticationError)
    expect(err.message).toContain('sk-***99')
  })

  it('Azure: deployment path, api-version and api-key header; TGI: string errors', async () => {
    const c = new OpenAI({
      baseURL: `${azure.url}/openai/deployments/d1`,
      apiKey: 'unused',
      defaultHeaders: { 'api-key': 'k' },
      defaultQuery: { 'api-version': '2024-10-21' },
      maxRetries: 0,
    })
    const r = await c.chat.completions.create({
      model: 'x',
      messages: [{ role: 'user', content: 'a' }],
    })
    expect(r.choices[0]?.message.content).toContain('You said: a')
    const noVersion = await fetch(`${azure.url}/openai/deployments/d1/chat/completions`, {
      method: 'POST',
      headers: { 'api-key': 'k' },
      body: '{}',
    })
    expect(noVersion.status).toBe(404)
    tgi.failNext(429)
    const t = await fetch(`${tgi.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: 'Bearer k' },
      body: '{}',
    })
    expect([t.status, await t.json()]).toEqual([
      429,
      { error: 'Rate limit reached for requests', error_type: 'overloaded' },
    ])
  })
})
