// The simulator's /v1/responses against the official openai SDK (what the gateway's tests rely on).
import OpenAI, { BadRequestError } from 'openai'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type SimHandle, startSimulator } from './server.js'

let sim: SimHandle
let client: OpenAI

beforeAll(async () => {
  sim = await startSimulator({
    name: 'resp',
    host: '127.0.0.201',
    port: 0,
    model: 'm',
    metricsFormat: 'vllm',
    timeScale: 0.01,
  })
  client = new OpenAI({ baseURL: `${sim.url}/v1`, apiKey: 'x', maxRetries: 0 })
})
afterAll(async () => {
  await sim?.close()
})

describe('sim /v1/responses', () => {
  it('answers a non-streamed request with one output_text message and usage', async () => {
    const r = await client.responses.create({
      model: 'm',
      instructions: 'be brief',
      input: 'hello there',
      max_output_tokens: 5,
    })
    expect(r.object).toBe('response')
    expect(r.status).toBe('incomplete')
    expect(r.incomplete_details?.reason).toBe('max_output_tokens')
    expect(r.output_text.split(' ').filter((w) => w !== '').length).toBe(5)
    expect(r.usage?.output_tokens).toBe(5)
    expect(r.usage?.input_tokens).toBeGreaterThan(3)
  })

  it('streams the named events, ending with response.completed', async () => {
    const stream = await client.responses.create({
      model: 'm',
      input: [{ role: 'user', content: [{ type: 'input_text', text: 'stream me' }] }],
      stream: true,
    })
    const types: string[] = []
    let text = ''
    let final: OpenAI.Responses.Response | undefined
    for await (const ev of stream) {
      types.push(ev.type)
      if (ev.type === 'response.output_text.delta') text += ev.delta
      if (ev.type === 'response.completed') final = ev.response
    }
    expect(types.slice(0, 4)).toEqual([
      'response.created',
      'response.in_progress',
      'response.output_item.added',
      'response.content_part.added',
    ])
    expect(types.at(-1)).toBe('response.completed')
    expect(final?.output_text ?? final?.output[0]).toBeTruthy()
    expect(final?.usage?.output_tokens).toBe(types.filter((t) => t.endsWith('.delta')).length)
    expect(text.length).toBeGreaterThan(0)
  })

  it('refuses what it does not simulate, naming the field', async () => {
    const e = await client.responses
      .create({ model: 'm', input: 'x', tools: [{ type: 'web_search' }] })
      .catch((x: unknown) => x)
    expect(e).toBeInstanceOf(BadRequestError)
    expect((e as BadRequestError).param).toBe('tools')
  })
})
