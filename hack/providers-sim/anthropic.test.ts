// The simulator against the official Anthropic SDK: if the SDK parses its bodies, named-event
// streams and errors, the gateway's translation is tested against the real wire format.
import Anthropic from '@anthropic-ai/sdk'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startAnthropicSim } from './anthropic.js'
import type { SimServer } from './common.js'

let sim: SimServer
let client: Anthropic

beforeAll(async () => {
  sim = await startAnthropicSim({ host: '127.0.0.95' })
  sim.keys.add('k')
  client = new Anthropic({ baseURL: sim.url, apiKey: 'k', maxRetries: 0 })
})
afterAll(() => sim.close())

describe('Anthropic simulator, read by the official SDK', () => {
  it('answers messages and streams them as the SDK expects', async () => {
    const m = await client.messages.create({
      model: 'claude-x',
      max_tokens: 50,
      messages: [{ role: 'user', content: 'hi' }],
    })
    expect(m.content[0]).toMatchObject({ type: 'text', text: 'Hello from anthropic. You said: hi' })
    const stream = client.messages.stream({
      model: 'claude-x',
      max_tokens: 50,
      messages: [{ role: 'user', content: 'yo' }],
    })
    const final = await stream.finalMessage()
    expect(final.content[0]).toMatchObject({ text: 'Hello from anthropic. You said: yo' })
    expect(final.stop_reason).toBe('end_turn')
    expect(final.usage.output_tokens).toBe(6)
  })

  it('streams tool use with partial JSON the SDK assembles', async () => {
    const stream = client.messages.stream({
      model: 'claude-x',
      max_tokens: 50,
      tools: [{ name: 'w', input_schema: { type: 'object' } }],
      messages: [{ role: 'user', content: 'weather' }],
    })
    const final = await stream.finalMessage()
    expect(final.content[0]).toMatchObject({
      type: 'tool_use',
      name: 'w',
      input: { location: 'Paris' },
    })
  })

  it('errors as the API does: bad key, missing max_tokens, 429 and 529', async () => {
    const bad = new Anthropic({ baseURL: sim.url, apiKey: 'nope', maxRetries: 0 })
    await expect(
      bad.messages.create({
        model: 'x',
        max_tokens: 1,
        messages: [{ role: 'user', content: 'x' }],
      }),
    ).rejects.toBeInstanceOf(Anthropic.AuthenticationError)
    const r = await fetch(`${sim.url}/v1/messages`, {
      method: 'POST',
      headers: {
        'x-api-key': 'k',
        'anthropic-version': '2026-10-21',
        'content-type': 'application/json',
      },
      body: JSON.stringify({
        model: 'x',
        messages: [{ role: 'user', content: 'x' }],
        temperature: 0.5,
      }),
    })
    expect(r.status).toBe(400)
    expect(await r.json()).toMatchObject({
      type: 'error',
      error: { type: 'invalid_request_error' },
    })
    sim.failNext(429, 1, '2')
    const e429 = await client.messages
      .create({ model: 'x', max_tokens: 1, messages: [{ role: 'user', content: 'x' }] })
      .catch((e) => e)
    expect(e429).toBeInstanceOf(Anthropic.RateLimitError)
    expect(e429.headers.get('retry-after')).toBe('2')
    sim.failNext(529)
    const e529 = await client.messages
      .create({ model: 'x', max_tokens: 1, messages: [{ role: 'user', content: 'x' }] })
      .catch((e) => e)
    expect(e529.status).toBe(529)
    expect(e529.error).toMatchObject({ error: { type: 'overloaded_error' } })
  })
})
