// Anthropic end to end: the `openai` SDK speaks OpenAI chat completions to the gateway, which
// translates to the Messages API of a loopback simulator (that validates bodies like the real API)
// and translates answers, named-event streams, tool calls, stop reasons, usage and errors back.
import type { MessageCreateParams } from '@anthropic-ai/sdk/resources/messages'
import OpenAI, { APIError } from 'openai'
import type { ChatCompletionMessageParam } from 'openai/resources/chat/completions'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type SimServer, startAnthropicSim } from '../hack/providers-sim/index.js'
import {
  type ProviderGateway,
  providerDoc,
  secretEntry,
  simpleRoute,
  startProviderGateway,
} from './helpers/providers.js'

const KEY = 'sk-ant-api03-test-0123456789'
let sim: SimServer
let pg: ProviderGateway
let client: OpenAI

beforeAll(async () => {
  sim = await startAnthropicSim({ host: '127.0.0.50', name: 'claude' })
  sim.keys.add(KEY)
  const auth = { secretRef: { name: 'anthropic', key: 'api-key' } }
  pg = await startProviderGateway(
    [
      providerDoc('claude', {
        providerType: 'Anthropic',
        model: 'claude-sonnet-4-5',
        baseURL: sim.url,
        auth,
        anthropic: { defaultMaxTokens: 512 },
        pricing: { inputPerMillion: '3', outputPerMillion: '15', cachedInputPerMillion: '0.30' },
      }),
      providerDoc('claude-badkey', {
        providerType: 'Anthropic',
        baseURL: sim.url,
        auth: { secretRef: { name: 'anthropic', key: 'old-key' } },
      }),
      providerDoc('claude-2026', {
        providerType: 'Anthropic',
        baseURL: sim.url,
        auth,
        anthropic: { version: '2026-10-21' },
      }),
      simpleRoute('claude'),
      simpleRoute('claude-badkey'),
      simpleRoute('claude-2026'),
    ],
    {
      [secretEntry('anthropic', 'api-key')]: KEY,
      [secretEntry('anthropic', 'old-key')]: 'sk-ant-revoked-42',
    },
  )
  client = new OpenAI({ baseURL: `${pg.gw.url}/v1`, apiKey: 'client-key', maxRetries: 0 })
})

afterAll(async () => {
  await pg?.close()
  await sim?.close()
})

function sent(): MessageCreateParams {
  const r = sim.requests.at(-1)
  if (!r) throw new Error('no request')
  return r.body as MessageCreateParams
}

const TOOLS = [
  {
    type: 'function' as const,
    function: {
      name: 'get_weather',
      description: 'Weather for a city',
      parameters: {
        type: 'object',
        properties: { location: { type: 'string' } },
        required: ['location'],
      },
    },
  },
]

describe('Anthropic: requests and answers', () => {
  it('translates system prompts, turns, max_tokens and headers; maps usage with cache reads', async () => {
    const r = await client.chat.completions.create({
      model: 'claude',
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'developer', content: 'Answer in English.' },
        { role: 'user', content: 'first' },
        { role: 'assistant', content: 'ok' },
        {
          role: 'user',
          content: [
            { type: 'text', text: 'hello' },
            { type: 'text', text: 'world' },
          ],
        },
      ],
      user: 'alice',
    })
    expect(r.choices[0]?.message.content).toBe('Hello from claude. You said: hello world')
    expect(r.choices[0]?.finish_reason).toBe('stop')
    const body = sent()
    expect(body.system).toEqual([
      { type: 'text', text: 'Be brief.' },
      { type: 'text', text: 'Answer in English.' },
    ])
    expect(body.model).toBe('claude-sonnet-4-5')
    expect(body.max_tokens).toBe(512)
    expect(body.metadata).toEqual({ user_id: 'alice' })
    expect(body.messages.map((m) => m.role)).toEqual(['user', 'assistant', 'user'])
    const rec = sim.requests.at(-1)
    expect(rec?.headers['x-api-key']).toBe(KEY)
    expect(rec?.headers['anthropic-version']).toBe('2023-06-01')
    expect(rec?.headers.authorization).toBeUndefined()
    // input_tokens 4 (the turns) + cache_read 5 (the system prompt) → prompt_tokens 9, 5 cached.
    expect(r.usage).toMatchObject({ prompt_tokens: 9, prompt_tokens_details: { cached_tokens: 5 } })
  })

  it('maps stop reasons: stop sequence → stop, max_tokens → length', async () => {
    const a = await client.chat.completions.create({
      model: 'claude',
      messages: [{ role: 'user', content: 'abc' }],
      stop: ['You said'],
    })
    expect(a.choices[0]?.message.content).toBe('Hello from claude. ')
    expect(a.choices[0]?.finish_reason).toBe('stop')
    expect(sent().stop_sequences).toEqual(['You said'])
    const b = await client.chat.completions.create({
      model: 'claude',
      messages: [{ role: 'user', content: 'abc' }],
      max_completion_tokens: 2,
    })
    expect(b.choices[0]?.finish_reason).toBe('length')
    expect(sent().max_tokens).toBe(2)
  })

  it('tool calls round trip (tool_use → tool_calls, tool messages → tool_result)', async () => {
    const messages: ChatCompletionMessageParam[] = [{ role: 'user', content: 'weather in Paris?' }]
    const first = await client.chat.completions.create({
      model: 'claude',
      messages,
      tools: TOOLS,
      tool_choice: 'required',
      parallel_tool_calls: false,
    })
    const choice = first.choices[0]
    expect(choice?.finish_reason).toBe('tool_calls')
    expect(choice?.message.content).toBeNull()
    const call = choice?.message.tool_calls?.[0]
    expect(call).toEqual({
      id: 'toolu_sim01',
      type: 'function',
      function: { name: 'get_weather', arguments: '{"location":"Paris"}' },
    })
    expect(sent().tool_choice).toEqual({ type: 'any', disable_parallel_tool_use: true })
    expect(sent().tools).toEqual([
      {
        name: 'get_weather',
        description: 'Weather for a city',
        input_schema: {
          type: 'object',
          properties: { location: { type: 'string' } },
          required: ['location'],
        },
      },
    ])
    if (!choice || !call) throw new Error('no tool call')
    messages.push(choice.message, { role: 'tool', tool_call_id: call.id, content: '18C and sunny' })
    const second = await client.chat.completions.create({ model: 'claude', messages, tools: TOOLS })
    expect(second.choices[0]?.message.content).toBe('The tool said: 18C and sunny')
    expect(sent().messages.at(-1)).toEqual({
      role: 'user',
      content: [{ type: 'tool_result', tool_use_id: 'toolu_sim01', content: '18C and sunny' }],
    })
  })
})

describe('Anthropic: streams', () => {
  it('named events become OpenAI chunks; usage only when asked', async () => {
    for (const includeUsage of [false, true]) {
      const stream = await client.chat.completions.create({
        model: 'claude',
        messages: [{ role: 'user', content: 'stream it' }],
        stream: true,
        ...(includeUsage ? { stream_options: { include_usage: true } } : {}),
      })
      let text = ''
      const finishes: string[] = []
      const usage: unknown[] = []
      let role: string | undefined
      for await (const chunk of stream) {
        const c = chunk.choices[0]
        role ??= c?.delta.role
        text += c?.delta.content ?? ''
        if (c?.finish_reason) finishes.push(c.finish_reason)
        if (chunk.usage) usage.push(chunk.usage)
      }
      expect(role).toBe('assistant')
      expect(text).toBe('Hello from claude. You said: stream it')
      expect(finishes).toEqual(['stop'])
      expect(usage).toEqual(
        includeUsage ? [{ prompt_tokens: 2, completion_tokens: 7, total_tokens: 9 }] : [],
      )
      expect(sent().stream).toBe(true)
    }
  })

  it('streams tool calls: id and name first, arguments in pieces', async () => {
    const stream = await client.chat.completions.create({
      model: 'claude',
      messages: [{ role: 'user', content: 'weather?' }],
      tools: TOOLS,
      stream: true,
    })
    let args = ''
    let name = ''
    let id = ''
    let finish = ''
    for await (const chunk of stream) {
      const c = chunk.choices[0]
      for (const tc of c?.delta.tool_calls ?? []) {
        expect(tc.index).toBe(0)
        id ||= tc.id ?? ''
        name ||= tc.function?.name ?? ''
        args += tc.function?.arguments ?? ''
      }
      if (c?.finish_reason) finish = c.finish_reason
    }
    expect({ id, name, args: JSON.parse(args), finish }).toEqual({
      id: 'toolu_sim01',
      name: 'get_weather',
      args: { location: 'Paris' },
      finish: 'tool_calls',
    })
  })

  it('an error event mid-stream ends the stream with an OpenAI error, not [DONE]', async () => {
    sim.errorAfter = 5
    try {
      const stream = await client.chat.completions.create({
        model: 'claude',
        messages: [{ role: 'user', content: 'long answer please' }],
        stream: true,
      })
      let text = ''
      const err = await (async () => {
        for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? ''
      })().catch((e) => e)
      expect(err).toBeInstanceOf(APIError)
      expect(String(err.message)).toContain('overloaded_error')
      expect(text.length).toBeGreaterThan(0)
    } finally {
      sim.errorAfter = null
    }
    expect(pg.log.at(-1)).toMatchObject({ error_code: 'provider_overloaded', stream: true })
  })
})

describe('Anthropic: what cannot be translated, and errors', () => {
  const cases: [string, Record<string, unknown>][] = [
    ['temperature', { temperature: 1.5 }],
    ['n', { n: 2 }],
    ['logprobs', { logprobs: true }],
    ['seed', { seed: 7 }],
    ['response_format', { response_format: { type: 'json_object' } }],
    ['frequency_penalty', { frequency_penalty: 0.5 }],
  ]
  for (const [param, extra] of cases) {
    it(`${param} is a 400 naming it`, async () => {
      const n = sim.requests.length
      const err = await client.chat.completions
        .create({ model: 'claude', messages: [{ role: 'user', content: 'x' }], ...extra })
        .catch((e) => e)
      expect(err.status).toBe(400)
      expect(err.code).toBe('unsupported_parameter')
      expect(err.param).toBe(param)
      expect(sim.requests.length).toBe(n)
    })
  }

  it('sampling parameters: forwarded under 2023-06-01, a 400 under 2026-10-21', async () => {
    await client.chat.completions.create({
      model: 'claude',
      messages: [{ role: 'user', content: 'x' }],
      temperature: 0.2,
      top_p: 0.9,
    })
    expect(sent()).toMatchObject({ temperature: 0.2, top_p: 0.9 })
    const err = await client.chat.completions
      .create({
        model: 'claude-2026',
        messages: [{ role: 'user', content: 'x' }],
        temperature: 0.2,
      })
      .catch((e) => e)
    expect([err.status, err.code, err.param]).toEqual([400, 'unsupported_parameter', 'temperature'])
    const ok = await client.chat.completions.create({
      model: 'claude-2026',
      messages: [{ role: 'user', content: 'x' }],
      temperature: 1,
    })
    expect(ok.choices[0]?.message.content).toContain('You said: x')
    expect(sim.requests.at(-1)?.headers['anthropic-version']).toBe('2026-10-21')
  })

  it('OpenAI defaults that change nothing pass (temperature 1, n 1)', async () => {
    const r = await client.chat.completions.create({
      model: 'claude',
      messages: [{ role: 'user', content: 'ok' }],
      temperature: 1,
      n: 1,
    })
    expect(r.choices).toHaveLength(1)
  })

  it('completions and embeddings are not Messages API calls: 400', async () => {
    const err = await client.completions.create({ model: 'claude', prompt: 'x' }).catch((e) => e)
    expect(err.status).toBe(400)
    expect(err.code).toBe('unsupported_api')
  })

  it('429 keeps Retry-After; 529 overloaded becomes 503; a rejected key becomes 502', async () => {
    sim.failNext(429, 1, '3')
    const a = await client.chat.completions
      .create({ model: 'claude', messages: [{ role: 'user', content: 'x' }] })
      .catch((e) => e)
    expect([a.status, a.headers.get('retry-after')]).toEqual([429, '3'])
    sim.failNext(529)
    const b = await client.chat.completions
      .create({ model: 'claude', messages: [{ role: 'user', content: 'x' }] })
      .catch((e) => e)
    expect([b.status, b.code]).toEqual([503, 'provider_overloaded'])
    const c = await client.chat.completions
      .create({ model: 'claude-badkey', messages: [{ role: 'user', content: 'x' }] })
      .catch((e) => e)
    expect([c.status, c.code]).toEqual([502, 'provider_credentials_rejected'])
    expect(JSON.stringify(c.error)).not.toContain('revoked')
  })
})
