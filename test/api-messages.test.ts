// POST /v1/messages (Anthropic's Messages API) end to end with the official @anthropic-ai/sdk as
// the client: translated to OpenAI chat for a simulated vLLM engine, an OpenAI provider simulator
// and an engine answering tool calls, and passed through to an Anthropic provider simulator;
// streamed and not, usage counted, errors in Anthropic's shape.
import Anthropic, { BadRequestError, NotFoundError, RateLimitError } from '@anthropic-ai/sdk'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type SimServer, startAnthropicSim, startOpenAISim } from '../hack/providers-sim/index.js'
import { type SimHandle, startSimulator } from '../hack/sim/index.js'
import { gatewayPolicy, sha256 } from './helpers/filters.js'
import {
  type ProviderGateway,
  providerDoc,
  routeDoc,
  secretEntry,
  serverDocs,
  simpleRoute,
  startProviderGateway,
} from './helpers/providers.js'
import { json, startUpstream, type TestUpstream } from './helpers/upstream.js'

let engine: SimHandle
let openai: SimServer
let claude: SimServer
let tools: TestUpstream
let pg: ProviderGateway
let client: Anthropic
/** The chat requests the tool-calling engine received. */
const toolRequests: Record<string, unknown>[] = []

const TOOL_ARGS = '{"location":"Paris"}'

beforeAll(async () => {
  engine = await startSimulator({
    name: 'msg',
    host: '127.0.0.206',
    port: 0,
    model: 'm',
    metricsFormat: 'vllm',
    timeScale: 0.01,
  })
  openai = await startOpenAISim({ host: '127.0.0.207', flavor: 'openai', name: 'gpt' })
  openai.keys.add('sk-openai-2')
  claude = await startAnthropicSim({ host: '127.0.0.208', name: 'claude' })
  claude.keys.add('sk-ant-2')
  // An engine that answers with a tool call (streamed and not), as vLLM does with tool parsing on.
  tools = await startUpstream('127.0.0.209', (_req, res, body) => {
    const req = JSON.parse(body) as Record<string, unknown>
    toolRequests.push(req)
    const usage = { prompt_tokens: 20, completion_tokens: 9, total_tokens: 29 }
    if (req['stream'] !== true) {
      json(res, 200, {
        id: 'chatcmpl-tool1',
        object: 'chat.completion',
        created: 1,
        model: 'm',
        choices: [
          {
            index: 0,
            message: {
              role: 'assistant',
              content: 'Let me look.',
              tool_calls: [
                {
                  id: 'call_1',
                  type: 'function',
                  function: { name: 'get_weather', arguments: TOOL_ARGS },
                },
              ],
            },
            finish_reason: 'tool_calls',
          },
        ],
        usage,
      })
      return
    }
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    const chunk = (delta: unknown, finish: string | null = null) =>
      `data: ${JSON.stringify({ id: 'chatcmpl-tool2', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`
    res.write(chunk({ role: 'assistant', content: '' }))
    res.write(chunk({ content: 'Checking' }))
    res.write(
      chunk({
        tool_calls: [
          {
            index: 0,
            id: 'call_2',
            type: 'function',
            function: { name: 'get_weather', arguments: '' },
          },
        ],
      }),
    )
    res.write(chunk({ tool_calls: [{ index: 0, function: { arguments: '{"location":' } }] }))
    res.write(chunk({ tool_calls: [{ index: 0, function: { arguments: '"Paris"}' } }] }))
    res.write(chunk({}, 'tool_calls'))
    res.write(
      `data: ${JSON.stringify({ id: 'chatcmpl-tool2', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [], usage })}\n\n`,
    )
    res.end('data: [DONE]\n\n')
  })
  const ep = (s: { host: string; port: number }, name: string) => [
    { name, address: s.host, port: s.port },
  ]
  pg = await startProviderGateway(
    [
      ...serverDocs('vllm', ep(engine, 'pod-msg'), { model: 'm' }),
      ...serverDocs('tools', ep(tools, 'pod-tools'), { model: 'm' }),
      routeDoc('engine', 'engine-model', [{ targetModels: [{ modelServerName: 'vllm' }] }]),
      routeDoc('tools', 'tool-model', [{ targetModels: [{ modelServerName: 'tools' }] }]),
      providerDoc('gpt', {
        providerType: 'OpenAI',
        model: 'gpt-5-mini',
        baseURL: `${openai.url}/v1`,
        auth: { secretRef: { name: 'oa', key: 'k' } },
      }),
      providerDoc('claude', {
        providerType: 'Anthropic',
        model: 'claude-sonnet-4-5',
        baseURL: claude.url,
        auth: { secretRef: { name: 'an', key: 'k' } },
        pricing: { inputPerMillion: '3', outputPerMillion: '15' },
      }),
      simpleRoute('gpt'),
      simpleRoute('claude'),
    ],
    { [secretEntry('oa', 'k')]: 'sk-openai-2', [secretEntry('an', 'k')]: 'sk-ant-2' },
  )
  client = new Anthropic({ baseURL: pg.gw.url, apiKey: 'client-key', maxRetries: 0 })
})

afterAll(async () => {
  await pg?.close()
  await engine?.close()
  await openai?.close()
  await claude?.close()
  await tools?.close()
})

async function lineOf(id: string) {
  for (let i = 0; i < 50 && !pg.log.some((l) => l.request_id === id); i++)
    await new Promise((r) => setTimeout(r, 20))
  return pg.log.find((l) => l.request_id === id)
}

describe('POST /v1/messages translated to OpenAI chat', () => {
  it('engine: a message with text, stop reason and usage', async () => {
    const m = await client.messages.create(
      {
        model: 'engine-model',
        max_tokens: 5,
        system: 'be brief',
        messages: [{ role: 'user', content: 'hello engine' }],
      },
      { headers: { 'x-request-id': 'msg-engine-1' } },
    )
    expect(m.type).toBe('message')
    expect(m.role).toBe('assistant')
    expect(m.model).toBe('engine-model')
    expect(m.stop_reason).toBe('max_tokens')
    const block = m.content[0]
    expect(block?.type).toBe('text')
    expect(block?.type === 'text' ? block.text.trim().split(/\s+/) : []).toHaveLength(5)
    expect(m.usage.output_tokens).toBe(5)
    expect(m.usage.input_tokens).toBeGreaterThan(3)
    expect(await lineOf('msg-engine-1')).toMatchObject({
      path: '/v1/messages',
      status: 200,
      server: 'default/vllm',
      completion_tokens: 5,
      prompt_tokens: m.usage.input_tokens,
    })
  })

  it('engine: the stream as Anthropic events (SDK helper finalMessage)', async () => {
    const types: string[] = []
    const stream = client.messages.stream(
      { model: 'engine-model', max_tokens: 4, messages: [{ role: 'user', content: 'stream' }] },
      { headers: { 'x-request-id': 'msg-engine-2' } },
    )
    stream.on('streamEvent', (e) => types.push(e.type))
    const final = await stream.finalMessage()
    expect(types[0]).toBe('message_start')
    expect(types.filter((t) => t === 'content_block_delta')).toHaveLength(4)
    expect(types.slice(-2)).toEqual(['message_delta', 'message_stop'])
    expect(final.stop_reason).toBe('max_tokens')
    expect(final.usage.output_tokens).toBe(4)
    expect(await lineOf('msg-engine-2')).toMatchObject({ stream: true, completion_tokens: 4 })
  })

  it('OpenAI provider: translated both ways, streamed and not', async () => {
    const m = await client.messages.create({
      model: 'gpt',
      max_tokens: 50,
      messages: [{ role: 'user', content: [{ type: 'text', text: 'hi gpt' }] }],
      stop_sequences: ['END'],
    })
    const sent = openai.requests.at(-1)?.body as Record<string, unknown>
    expect(sent).toMatchObject({
      model: 'gpt-5-mini',
      max_tokens: 50,
      stop: ['END'],
      messages: [{ role: 'user', content: 'hi gpt' }],
    })
    expect(m.content).toEqual([{ type: 'text', text: 'Hello from gpt. You said: hi gpt' }])
    expect(m.stop_reason).toBe('end_turn')
    const stream = await client.messages.create({
      model: 'gpt',
      max_tokens: 50,
      messages: [{ role: 'user', content: 'stream gpt' }],
      stream: true,
    })
    let text = ''
    for await (const ev of stream)
      if (ev.type === 'content_block_delta' && ev.delta.type === 'text_delta') text += ev.delta.text
    expect(text).toBe('Hello from gpt. You said: stream gpt')
  })

  it('tool use: tools and tool_result go out as OpenAI tools, tool_calls come back as tool_use', async () => {
    const params = {
      model: 'tool-model',
      max_tokens: 100,
      tools: [
        {
          name: 'get_weather',
          description: 'Weather for a city',
          input_schema: {
            type: 'object' as const,
            properties: { location: { type: 'string' } },
          },
        },
      ],
      tool_choice: { type: 'any' as const, disable_parallel_tool_use: true },
      messages: [
        { role: 'user' as const, content: 'Weather in Paris?' },
        {
          role: 'assistant' as const,
          content: [
            {
              type: 'tool_use' as const,
              id: 'call_0',
              name: 'get_weather',
              input: { location: 'Paris' },
            },
          ],
        },
        {
          role: 'user' as const,
          content: [
            { type: 'tool_result' as const, tool_use_id: 'call_0', content: '18C' },
            { type: 'text' as const, text: 'And again?' },
          ],
        },
      ],
    }
    const m = await client.messages.create(params)
    expect(toolRequests.at(-1)).toMatchObject({
      tool_choice: 'required',
      parallel_tool_calls: false,
      tools: [
        {
          type: 'function',
          function: { name: 'get_weather', parameters: params.tools[0]?.input_schema },
        },
      ],
      messages: [
        { role: 'user', content: 'Weather in Paris?' },
        {
          role: 'assistant',
          content: null,
          tool_calls: [
            {
              id: 'call_0',
              type: 'function',
              function: { name: 'get_weather', arguments: TOOL_ARGS },
            },
          ],
        },
        { role: 'tool', tool_call_id: 'call_0', content: '18C' },
        { role: 'user', content: 'And again?' },
      ],
    })
    expect(m.stop_reason).toBe('tool_use')
    expect(m.content).toEqual([
      { type: 'text', text: 'Let me look.' },
      { type: 'tool_use', id: 'call_1', name: 'get_weather', input: { location: 'Paris' } },
    ])
    expect(m.usage).toMatchObject({ input_tokens: 20, output_tokens: 9 })
    const final = await client.messages.stream({ ...params }).finalMessage()
    expect(final.stop_reason).toBe('tool_use')
    expect(final.content).toEqual([
      { type: 'text', text: 'Checking' },
      { type: 'tool_use', id: 'call_2', name: 'get_weather', input: { location: 'Paris' } },
    ])
    expect(final.usage.output_tokens).toBe(9)
  })
})

describe('POST /v1/messages passed through to Anthropic', () => {
  it('non-streamed: the provider model and body as sent, usage and cost counted', async () => {
    const m = await client.messages.create(
      { model: 'claude', max_tokens: 64, messages: [{ role: 'user', content: 'hi claude' }] },
      { headers: { 'x-request-id': 'msg-claude-1' } },
    )
    const rec = claude.requests.at(-1)
    expect(rec?.body).toEqual({
      model: 'claude-sonnet-4-5',
      max_tokens: 64,
      messages: [{ role: 'user', content: 'hi claude' }],
    })
    expect(rec?.headers['x-api-key']).toBe('sk-ant-2')
    expect(m.content[0]).toMatchObject({
      type: 'text',
      text: 'Hello from claude. You said: hi claude',
    })
    const line = await lineOf('msg-claude-1')
    expect(line).toMatchObject({
      provider: 'default/claude',
      prompt_tokens: m.usage.input_tokens,
      completion_tokens: m.usage.output_tokens,
    })
  })

  it('streamed: the named events as the provider sent them', async () => {
    const stream = client.messages.stream(
      { model: 'claude', max_tokens: 64, messages: [{ role: 'user', content: 'stream claude' }] },
      { headers: { 'x-request-id': 'msg-claude-2' } },
    )
    const types: string[] = []
    stream.on('streamEvent', (e) => types.push(e.type))
    const final = await stream.finalMessage()
    expect(types).toContain('content_block_start')
    expect(types.at(-1)).toBe('message_stop')
    expect(final.content[0]).toMatchObject({ text: 'Hello from claude. You said: stream claude' })
    expect(await lineOf('msg-claude-2')).toMatchObject({
      stream: true,
      completion_tokens: final.usage.output_tokens,
    })
  })
})

describe('errors on /v1/messages are Anthropic-shaped', () => {
  it('unknown model → 404 not_found_error', async () => {
    const e = await client.messages
      .create({ model: 'ghost', max_tokens: 5, messages: [{ role: 'user', content: 'x' }] })
      .catch((x: unknown) => x)
    expect(e).toBeInstanceOf(NotFoundError)
    const body = (e as NotFoundError).error as {
      type: string
      error: { type: string; code: string }
    }
    expect(body.type).toBe('error')
    expect(body.error).toMatchObject({ type: 'not_found_error', code: 'model_not_found' })
  })

  it('what does not translate → 400 naming the field (only where a translation is needed)', async () => {
    const e = await client.messages
      .create({
        model: 'engine-model',
        max_tokens: 5,
        messages: [
          {
            role: 'user',
            content: [
              { type: 'document', source: { type: 'text', media_type: 'text/plain', data: 'd' } },
            ],
          },
        ],
      })
      .catch((x: unknown) => x)
    expect(e).toBeInstanceOf(BadRequestError)
    expect((e as BadRequestError).error).toMatchObject({
      type: 'error',
      error: {
        type: 'invalid_request_error',
        message: expect.stringContaining('messages[0].content[0].type'),
      },
    })
  })
})

describe('POST /v1/messages under rate limits', () => {
  const KEY = 'sk-messages-client-0001'
  let limited: ProviderGateway
  beforeAll(async () => {
    limited = await startProviderGateway(
      [
        ...serverDocs('vllm', [{ name: 'pod-msg', address: engine.host, port: engine.port }], {
          model: 'm',
        }),
        routeDoc('engine', 'engine-model', [{ targetModels: [{ modelServerName: 'vllm' }] }]),
        gatewayPolicy({
          authentication: {
            apiKeys: [{ name: 'c', secretKey: 'key.c', tenant: 't', tier: 'small' }],
          },
          tiers: [{ name: 'small', rate: [{ outputTokens: 10, per: 'hour' }] }],
        }),
      ],
      { 'key.c': sha256(KEY) },
    )
  })
  afterAll(async () => {
    await limited?.close()
  })

  it('output tokens used count against the tier; the refusal is Anthropic-shaped', async () => {
    const c = new Anthropic({ baseURL: limited.gw.url, apiKey: KEY, maxRetries: 0 })
    const msg = { role: 'user' as const, content: 'a' }
    const a = await c.messages.create({ model: 'engine-model', max_tokens: 6, messages: [msg] })
    expect(a.usage.output_tokens).toBe(6)
    const e = await c.messages
      .create({ model: 'engine-model', max_tokens: 6, messages: [msg] })
      .catch((x: unknown) => x)
    expect(e).toBeInstanceOf(RateLimitError)
    expect((e as RateLimitError).error).toMatchObject({ error: { type: 'rate_limit_error' } })
    const ok = await c.messages.create({ model: 'engine-model', max_tokens: 3, messages: [msg] })
    expect(ok.usage.output_tokens).toBe(3)
  })
})
