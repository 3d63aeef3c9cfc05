// OpenAI-compatible providers end to end: the official `openai` SDK against the gateway, the
// gateway against loopback simulators of OpenAI, Azure OpenAI, DeepSeek, the Hugging Face router
// and a TGI endpoint (stream and non-stream, completions and embeddings where the provider has
// them), with credentials from a mounted-Secret-like directory.
import OpenAI, { APIError } from 'openai'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type SimServer, startOpenAISim } from '../hack/providers-sim/index.js'
import { parseProm, promSum } from '../hack/sim/testkit.js'
import {
  type ProviderGateway,
  providerDoc,
  secretEntry,
  simpleRoute,
  startProviderGateway,
} from './helpers/providers.js'

const KEYS = {
  openai: 'sk-openai-0123456789abcdef',
  azure: 'azure-key-0123456789',
  deepseek: 'sk-deepseek-0123456789',
  hf: 'hf_router_0123456789',
  tgi: 'hf_tgi_0123456789',
  wrong: 'sk-wrong-9876543210zyxw',
}

let sims: Record<'openai' | 'azure' | 'deepseek' | 'hf' | 'tgi', SimServer>
let pg: ProviderGateway
let client: OpenAI

beforeAll(async () => {
  sims = {
    openai: await startOpenAISim({ host: '127.0.0.40', flavor: 'openai', name: 'openai' }),
    azure: await startOpenAISim({ host: '127.0.0.41', flavor: 'azure', name: 'azure' }),
    deepseek: await startOpenAISim({ host: '127.0.0.42', flavor: 'deepseek', name: 'deepseek' }),
    hf: await startOpenAISim({ host: '127.0.0.43', flavor: 'hf-router', name: 'hf' }),
    tgi: await startOpenAISim({ host: '127.0.0.44', flavor: 'tgi', name: 'tgi' }),
  }
  for (const [k, s] of Object.entries(sims)) s.keys.add(KEYS[k as keyof typeof KEYS])
  const auth = (name: string) => ({ secretRef: { name, key: 'api-key' } })
  pg = await startProviderGateway(
    [
      providerDoc('openai', {
        providerType: 'OpenAI',
        model: 'gpt-4o-mini',
        baseURL: `${sims.openai.url}/v1`,
        auth: auth('openai-cred'),
        headers: { 'OpenAI-Organization': 'org-test' },
        pricing: { inputPerMillion: '0.15', outputPerMillion: '0.60' },
      }),
      providerDoc('openai-badkey', {
        providerType: 'OpenAI',
        baseURL: `${sims.openai.url}/v1`,
        auth: auth('wrong-cred'),
      }),
      providerDoc('azure', {
        providerType: 'AzureOpenAI',
        baseURL: sims.azure.url,
        azure: { deployment: 'gpt-4o-mini-deploy', apiVersion: '2024-10-21' },
        auth: auth('azure-cred'),
      }),
      providerDoc('deepseek', {
        providerType: 'DeepSeek',
        model: 'deepseek-chat',
        baseURL: sims.deepseek.url,
        auth: auth('deepseek-cred'),
        pricing: {
          inputPerMillion: '0.27',
          cachedInputPerMillion: '0.07',
          outputPerMillion: '1.10',
        },
      }),
      providerDoc('hf', {
        providerType: 'HuggingFace',
        model: 'meta-llama/Llama-3.1-8B-Instruct:cerebras',
        baseURL: `${sims.hf.url}/v1`,
        auth: auth('hf-cred'),
      }),
      providerDoc('tgi', {
        providerType: 'HuggingFace',
        huggingFace: { api: 'TGI' },
        model: 'tgi',
        baseURL: `${sims.tgi.url}/v1`,
        auth: auth('tgi-cred'),
      }),
      providerDoc('compat', {
        providerType: 'OpenAICompatible',
        baseURL: `${sims.openai.url}/v1`,
        auth: { scheme: 'Bearer', secretRef: { name: 'openai-cred', key: 'api-key' } },
      }),
      simpleRoute('openai'),
      simpleRoute('openai-badkey'),
      simpleRoute('azure'),
      simpleRoute('deepseek'),
      simpleRoute('hf'),
      simpleRoute('tgi'),
      simpleRoute('compat'),
    ],
    {
      [secretEntry('openai-cred', 'api-key')]: `${KEYS.openai}\n`,
      [secretEntry('wrong-cred', 'api-key')]: KEYS.wrong,
      [secretEntry('azure-cred', 'api-key')]: KEYS.azure,
      [secretEntry('deepseek-cred', 'api-key')]: KEYS.deepseek,
      [secretEntry('hf-cred', 'api-key')]: KEYS.hf,
      [secretEntry('tgi-cred', 'api-key')]: KEYS.tgi,
    },
  )
  // The client's own key must never reach a provider.
  client = new OpenAI({ baseURL: `${pg.gw.url}/v1`, apiKey: 'client-secret-key', maxRetries: 0 })
})

afterAll(async () => {
  await pg?.close()
  await Promise.all(Object.values(sims ?? {}).map((s) => s.close()))
})

function last(s: SimServer) {
  const r = s.requests.at(-1)
  if (!r) throw new Error('no request recorded')
  return r
}

const CASES = [
  {
    route: 'openai',
    sim: 'openai',
    path: '/v1/chat/completions',
    header: 'authorization',
    value: `Bearer ${KEYS.openai}`,
    model: 'gpt-4o-mini',
  },
  {
    route: 'azure',
    sim: 'azure',
    path: '/openai/deployments/gpt-4o-mini-deploy/chat/completions',
    header: 'api-key',
    value: KEYS.azure,
    model: 'azure',
  },
  {
    route: 'deepseek',
    sim: 'deepseek',
    path: '/chat/completions',
    header: 'authorization',
    value: `Bearer ${KEYS.deepseek}`,
    model: 'deepseek-chat',
  },
  {
    route: 'hf',
    sim: 'hf',
    path: '/v1/chat/completions',
    header: 'authorization',
    value: `Bearer ${KEYS.hf}`,
    model: 'meta-llama/Llama-3.1-8B-Instruct:cerebras',
  },
  {
    route: 'tgi',
    sim: 'tgi',
    path: '/v1/chat/completions',
    header: 'authorization',
    value: `Bearer ${KEYS.tgi}`,
    model: 'tgi',
  },
  {
    route: 'compat',
    sim: 'openai',
    path: '/v1/chat/completions',
    header: 'authorization',
    value: `Bearer ${KEYS.openai}`,
    model: 'compat',
  },
] as const

describe('OpenAI-compatible providers: chat', () => {
  for (const c of CASES) {
    it(`${c.route}: non-stream answer, provider path, key header, model rewrite, no client credential`, async () => {
      const r = await client.chat.completions.create({
        model: c.route,
        messages: [{ role: 'user', content: 'hi there' }],
      })
      expect(r.choices[0]?.message.content).toBe(`Hello from ${c.sim}. You said: hi there`)
      expect(r.usage?.prompt_tokens).toBe(2)
      const rec = last(sims[c.sim])
      expect(rec.path).toBe(c.path)
      expect(rec.headers[c.header]).toBe(c.value)
      expect(JSON.stringify(rec.headers)).not.toContain('client-secret-key')
      expect((rec.body as { model: string }).model).toBe(c.model)
      expect(rec.headers['x-request-id']).toBe(r._request_id)
    })

    it(`${c.route}: stream passes through; the injected usage chunk is not shown`, async () => {
      const stream = await client.chat.completions.create({
        model: c.route,
        messages: [{ role: 'user', content: 'stream please' }],
        stream: true,
      })
      let text = ''
      let usageChunks = 0
      for await (const chunk of stream) {
        text += chunk.choices[0]?.delta.content ?? ''
        if (chunk.choices.length === 0) usageChunks++
      }
      expect(text).toBe(`Hello from ${c.sim}. You said: stream please`)
      expect(usageChunks).toBe(0)
      // The gateway asked for usage so it can count tokens of streams.
      expect((last(sims[c.sim]).body as { stream_options?: unknown }).stream_options).toEqual({
        include_usage: true,
      })
    })
  }

  it('a client that asks for stream usage gets the usage chunk', async () => {
    const stream = await client.chat.completions.create({
      model: 'openai',
      messages: [{ role: 'user', content: 'count me' }],
      stream: true,
      stream_options: { include_usage: true },
    })
    const usage = []
    for await (const chunk of stream) if (chunk.usage) usage.push(chunk.usage)
    expect(usage).toEqual([{ prompt_tokens: 2, completion_tokens: 7, total_tokens: 9 }])
  })

  it('sends static headers and Azure’s api-version', () => {
    const openaiReq = sims.openai.requests.find((r) => r.headers['openai-organization'])
    expect(openaiReq?.headers['openai-organization']).toBe('org-test')
    expect(last(sims.azure).query.get('api-version')).toBe('2024-10-21')
  })
})

describe('OpenAI-compatible providers: other APIs', () => {
  it('completions on OpenAI, Azure and TGI', async () => {
    for (const [route, sim] of [
      ['openai', 'openai'],
      ['azure', 'azure'],
      ['tgi', 'tgi'],
    ] as const) {
      const r = await client.completions.create({ model: route, prompt: 'complete this' })
      expect(r.choices[0]?.text).toBe(`Hello from ${sim}. You said: complete this`)
    }
    expect(last(sims.azure).path).toBe('/openai/deployments/gpt-4o-mini-deploy/completions')
  })

  it('embeddings (the SDK asks for base64) on OpenAI and Azure', async () => {
    for (const route of ['openai', 'azure']) {
      const r = await client.embeddings.create({ model: route, input: ['a b', 'c'], dimensions: 4 })
      expect(r.data).toHaveLength(2)
      expect(r.data[0]?.embedding).toHaveLength(4)
      expect(r.data[0]?.embedding[0]).toBeCloseTo(0.3, 5)
    }
  })

  it('an API the provider does not have is a 400 naming it', async () => {
    const err = await client.embeddings.create({ model: 'deepseek', input: 'x' }).catch((e) => e)
    expect(err).toBeInstanceOf(APIError)
    expect(err.status).toBe(400)
    expect(err.code).toBe('unsupported_api')
    expect(err.message).toContain('/v1/embeddings')
  })
})

describe('OpenAI-compatible providers: errors, usage and cost', () => {
  it('a provider 429 stays a 429 with Retry-After', async () => {
    sims.openai.failNext(429, 1, '7')
    const err = await client.chat.completions
      .create({ model: 'openai', messages: [{ role: 'user', content: 'x' }] })
      .catch((e) => e)
    expect(err.status).toBe(429)
    expect(err.headers.get('retry-after')).toBe('7')
    expect(err.code).toBe('rate_limit_exceeded')
  })

  it('a provider 5xx stays a 5xx', async () => {
    sims.deepseek.failNext(503)
    const err = await client.chat.completions
      .create({ model: 'deepseek', messages: [{ role: 'user', content: 'x' }] })
      .catch((e) => e)
    expect(err.status).toBe(503)
  })

  it("the provider rejecting the gateway's key is a 502 that leaks no part of it", async () => {
    const err = await client.chat.completions
      .create({ model: 'openai-badkey', messages: [{ role: 'user', content: 'x' }] })
      .catch((e) => e)
    expect(err.status).toBe(502)
    expect(err.code).toBe('provider_credentials_rejected')
    expect(err.message).toContain("rejected the gateway's credential")
    // The simulator's 401 quotes the key masked, like OpenAI's: none of it may reach the client.
    const text = JSON.stringify(err.error)
    for (const part of [KEYS.wrong, KEYS.wrong.slice(0, 3), KEYS.wrong.slice(-2)]) {
      expect(text).not.toContain(part)
    }
  })

  it('counts tokens and estimated cost per provider, model and tier', async () => {
    const before = await pg.gw.metrics.registry.metrics()
    const labels = { provider: 'default/deepseek', model: 'deepseek-chat', tier: 'none' }
    const costBefore = promSum(parseProm(before), 'infer_gateway_provider_cost_total', {
      ...labels,
      currency: 'USD',
    })
    await client.chat.completions.create({
      model: 'deepseek',
      messages: [{ role: 'user', content: 'one two three four' }],
    })
    const text = await pg.gw.metrics.registry.metrics()
    expect(
      promSum(parseProm(text), 'infer_gateway_provider_tokens_total', {
        ...labels,
        type: 'cached_input',
      }),
    ).toBeGreaterThan(0)
    // 4 prompt tokens (2 cached at 0.07, 2 at 0.27) + 9 output at 1.10 per 1M.
    const cost = promSum(parseProm(text), 'infer_gateway_provider_cost_total', {
      ...labels,
      currency: 'USD',
    })
    expect(cost - costBefore).toBeCloseTo((2 * 0.27 + 2 * 0.07 + 9 * 1.1) / 1e6, 12)
    const entry = pg.log.findLast(
      (e) => (e as { provider?: string }).provider === 'default/deepseek',
    )
    expect(entry).toMatchObject({
      status: 200,
      route: 'default/deepseek',
      target_kind: 'provider',
      provider_type: 'DeepSeek',
      upstream_model: 'deepseek-chat',
      prompt_tokens: 4,
      cached_prompt_tokens: 2,
      currency: 'USD',
    })
  })
})
