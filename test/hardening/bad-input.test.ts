// Bad-input battery (issue 10): hand-made hostile requests, each sent as raw bytes to a real
// data-plane process. Every one must get a 4xx with an OpenAI-shaped body — never a 5xx from the
// gateway — and leave the in-flight gauge at 0. The server rewrites the model name and has fairness
// admission with 2 slots per endpoint, so a request path that leaks its admission slot or its
// in-flight count (deep JSON in the model rewrite or in tool_calls did) shows up as later
// requests queueing into 503s.
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  type GatewayProc,
  isOpenAIError,
  jsonOrUndefined,
  POD_HEADER,
  type RawResponse,
  rawHttp,
  settledInflight,
  spawnGateway,
} from '../../hack/hardening/kit.js'
import { type SimHandle, startSimulator } from '../../hack/sim/index.js'
import { manifests } from '../helpers/config.js'

const GW_HOST = '127.0.10.1'
const SIM_HOST = '127.0.10.2'
const MODEL = 'chat'

let sim: SimHandle
let gw: GatewayProc
let dir: string

beforeAll(async () => {
  sim = await startSimulator({
    name: 'battery-0',
    host: SIM_HOST,
    port: 0,
    model: 'upstream-model',
    metricsFormat: 'vllm',
    zeroLatency: true,
  })
  dir = await mkdtemp(join(tmpdir(), 'igw-battery-'))
  const file = join(dir, 'gateway.yaml')
  await writeFile(
    file,
    manifests(
      [
        {
          name: 'pool',
          // Differs from the route's model name: the gateway re-serialises every body.
          model: 'upstream-model',
          endpoints: [{ name: 'sim-0', address: SIM_HOST, port: sim.port }],
          trafficPolicy: { timeouts: { responseHeader: '5s', idle: '5s' } },
          scheduler: {
            plugins: [
              { name: 'least-pending', weight: 1 },
              { name: 'prefix-cache', weight: 1 },
              { name: 'fairness', args: { maxInFlightPerEndpoint: 2, queueTimeout: '2s' } },
            ],
          },
        },
      ],
      [{ name: 'r', modelName: MODEL, rules: [{ targetModels: [{ modelServerName: 'pool' }] }] }],
    ),
  )
  gw = await spawnGateway(GW_HOST, ['--config', file])
}, 60_000)

afterAll(async () => {
  await gw?.stop()
  await sim?.close()
  if (dir) await rm(dir, { recursive: true, force: true })
})

// ------------------------------------------------------------------------------------------------
// Request builders

interface Req {
  method?: string
  path?: string
  /** Extra header lines, sent as they are (may be malformed on purpose). */
  headers?: string[]
  /** Defaults to `content-type: application/json`; `null` sends none. */
  contentType?: string | null
  /** Content-Length is computed unless `framing` says otherwise. */
  body?: Buffer | string
  framing?: 'length' | 'none'
  /** HTTP version token (default HTTP/1.1). */
  version?: string
  /** Send no Host header. */
  noHost?: boolean
}

function build(r: Req): Buffer {
  const body = r.body === undefined ? Buffer.alloc(0) : Buffer.from(r.body)
  const lines = [
    `${r.method ?? 'POST'} ${r.path ?? '/v1/chat/completions'} ${r.version ?? 'HTTP/1.1'}`,
  ]
  if (!r.noHost) lines.push(`Host: ${GW_HOST}`)
  if (r.contentType !== null) lines.push(`Content-Type: ${r.contentType ?? 'application/json'}`)
  if ((r.framing ?? 'length') === 'length') lines.push(`Content-Length: ${body.length}`)
  lines.push('Connection: close', ...(r.headers ?? []))
  return Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1'), body])
}

const json = (v: unknown): string => JSON.stringify(v)
const msgs = [{ role: 'user', content: 'hello' }]
const chat = (extra: Record<string, unknown>) => json({ model: MODEL, messages: msgs, ...extra })
const deepArray = (n: number) => `${'['.repeat(n)}1${']'.repeat(n)}`
const deepObject = (n: number) => `${'{"a":'.repeat(n)}1${'}'.repeat(n)}`

interface Case {
  readonly name: string
  readonly raw: Buffer
  /** Exact status expected (else any 4xx). */
  readonly status?: number
  /** Expected `error.code`. */
  readonly code?: string
  /** The error message must match (e.g. name the limit). */
  readonly message?: RegExp
  /** The whole response must stay below this many bytes (no echo of huge input). */
  readonly maxResponseBytes?: number
  /**
   * The simulator ignores this field (a real engine may too): 2xx is as acceptable as 4xx. Still
   * never a 5xx, never a leak.
   */
  readonly lenient?: true
}

const c = (name: string, r: Req, expect: Omit<Case, 'name' | 'raw'> = {}): Case => ({
  name,
  raw: build(r),
  ...expect,
})

const DEPTH = { message: /depth|nest/i, status: 400 } as const

const CASES: readonly Case[] = [
  // Deep JSON: parses fine, but every later JSON.stringify (model rewrite, scheduler prompt of
  // tool_calls) throws. Must be a clear 400 naming the limit, with everything released.
  c(
    'deep array in message content (5,000 levels)',
    {
      body: `{"model":"${MODEL}","messages":[{"role":"user","content":${deepArray(5000)}}]}`,
    },
    DEPTH,
  ),
  c(
    'deep object in an unknown field (5,000 levels)',
    {
      body: `{"model":"${MODEL}","messages":[{"role":"user","content":"x"}],"x":${deepObject(5000)}}`,
    },
    DEPTH,
  ),
  c(
    'deep tool_calls (4,000 levels)',
    {
      body: `{"model":"${MODEL}","messages":[{"role":"assistant","content":null,"tool_calls":${deepArray(4000)}}]}`,
    },
    DEPTH,
  ),
  c(
    'deep JSON at 100,000 levels',
    {
      body: `{"model":"${MODEL}","messages":${deepArray(100_000)}}`,
    },
    DEPTH,
  ),
  c(
    'deep stream_options (5,000 levels)',
    {
      body: `{"model":"${MODEL}","messages":[{"role":"user","content":"x"}],"stream":true,"stream_options":${deepObject(5000)}}`,
    },
    DEPTH,
  ),
  c(
    'deep prompt on /v1/completions (5,000 levels)',
    {
      path: '/v1/completions',
      body: `{"model":"${MODEL}","prompt":${deepArray(5000)}}`,
    },
    DEPTH,
  ),
  c(
    'deep input on /v1/embeddings (5,000 levels)',
    {
      path: '/v1/embeddings',
      body: `{"model":"${MODEL}","input":${deepArray(5000)}}`,
    },
    DEPTH,
  ),

  // The model field.
  c(
    'huge model name (5 MB) is not echoed back',
    { body: json({ model: 'm'.repeat(5_000_000), messages: msgs }) },
    {
      status: 404,
      code: 'model_not_found',
      maxResponseBytes: 16 * 1024,
    },
  ),
  c('model is a number', { body: chat({ model: 123 }) }, { status: 400 }),
  c('model is null', { body: chat({ model: null }) }, { status: 400 }),
  c('model is an array', { body: chat({ model: [MODEL] }) }, { status: 400 }),
  c('model is an object', { body: chat({ model: { name: MODEL } }) }, { status: 400 }),
  c('model is true', { body: chat({ model: true }) }, { status: 400 }),
  c('model is empty', { body: chat({ model: '' }) }, { status: 400 }),
  c('model is missing', { body: json({ messages: msgs }) }, { status: 400, code: 'missing_model' }),
  c('model with a NUL character', { body: chat({ model: `${MODEL}\u0000` }) }, { status: 404 }),
  c('model in another case', { body: chat({ model: MODEL.toUpperCase() }) }, { status: 404 }),
  c(
    'model with invalid UTF-8 bytes',
    {
      body: Buffer.concat([
        Buffer.from('{"model":"'),
        Buffer.from([0xff, 0xfe, 0xc0]),
        Buffer.from(`","messages":${json(msgs)}}`),
      ]),
    },
    { status: 404 },
  ),
  c(
    'model only under __proto__',
    { body: `{"__proto__":{"model":"${MODEL}"},"messages":${json(msgs)}}` },
    { status: 400 },
  ),
  c('duplicate model keys, the last one a number', {
    body: `{"model":"${MODEL}","messages":${json(msgs)},"model":7}`,
  }),

  // Wrong types for the fields the gateway or the engine reads.
  c('messages is a string', { body: chat({ messages: 'hello' }) }),
  c('messages is a number', { body: chat({ messages: 42 }) }),
  c('messages is empty', { body: chat({ messages: [] }) }),
  c('messages holds numbers', { body: chat({ messages: [1, 2, 3] }) }),
  c('messages holds null', { body: chat({ messages: [null] }) }),
  c('message role is a number', { body: chat({ messages: [{ role: 5, content: 'x' }] }) }),
  c('message content is an object', { body: chat({ messages: [{ role: 'user', content: {} }] }) }),
  c('message content is a number', { body: chat({ messages: [{ role: 'user', content: 42 }] }) }),
  c('message content parts of unknown type', {
    body: chat({ messages: [{ role: 'user', content: [{ type: 'nope', nope: 1 }] }] }),
  }),
  c('200,000 messages that are not objects', {
    body: chat({ messages: new Array(200_000).fill(1) }),
  }),
  c('stream is a string', { body: chat({ stream: 'yes' }) }),
  c('stream_options is a number', { body: chat({ stream: true, stream_options: 5 }) }),
  c('stream_options without stream', { body: chat({ stream_options: { include_usage: true } }) }),
  c('max_tokens is a string', { body: chat({ max_tokens: '10' }) }),
  c('max_tokens is negative', { body: chat({ max_tokens: -1 }) }),
  c('max_tokens is fractional', { body: chat({ max_tokens: 1.5 }) }),
  c('max_completion_tokens is an object', { body: chat({ max_completion_tokens: {} }) }),
  c('n is 2', { body: chat({ n: 2 }) }),
  c('prompt is an object', { path: '/v1/completions', body: json({ model: MODEL, prompt: {} }) }),
  c('prompt is an empty array', {
    path: '/v1/completions',
    body: json({ model: MODEL, prompt: [] }),
  }),
  c('prompt holds null', { path: '/v1/completions', body: json({ model: MODEL, prompt: [null] }) }),
  c('input is an object', { path: '/v1/embeddings', body: json({ model: MODEL, input: {} }) }),
  c('input is missing', { path: '/v1/embeddings', body: json({ model: MODEL }) }),
  c('encoding_format is a number', {
    path: '/v1/embeddings',
    body: json({ model: MODEL, input: 'x', encoding_format: 5 }),
  }),
  c('dimensions is a string', {
    path: '/v1/embeddings',
    body: json({ model: MODEL, input: 'x', dimensions: 'x' }),
  }),
  c(
    'tool_calls is a string',
    {
      body: chat({ messages: [{ role: 'assistant', content: null, tool_calls: 'x' }] }),
    },
    { lenient: true },
  ),
  c(
    'tool_calls holds null and numbers',
    {
      body: chat({
        messages: [{ role: 'assistant', content: null, tool_calls: [null, 1, { function: 5 }] }],
      }),
    },
    { lenient: true },
  ),
  c('temperature is a string', { body: chat({ temperature: 'hot' }) }, { lenient: true }),
  c('tools is a string', { body: chat({ tools: 'x', tool_choice: 7 }) }, { lenient: true }),
  c('user is an array', { body: chat({ user: [] }) }, { lenient: true }),
  c(
    'max_tokens is 1e400',
    { body: `{"model":"${MODEL}","messages":${json(msgs)},"max_tokens":1e400}` },
    { lenient: true },
  ),

  // Not JSON, or not an object.
  c('empty body', { body: '' }, { status: 400 }),
  c('lone brace', { body: '{' }, { status: 400 }),
  c('missing value', { body: '{"model":}' }, { status: 400 }),
  c('trailing garbage', { body: `${chat({})} trailing` }, { status: 400 }),
  c('two JSON documents', { body: `${chat({})}${chat({})}` }, { status: 400 }),
  c('single quotes', { body: `{'model':'${MODEL}'}` }, { status: 400 }),
  c('body is an array', { body: '[]' }, { status: 400 }),
  c('body is a string', { body: '"chat"' }, { status: 400 }),
  c('body is a number', { body: '1' }, { status: 400 }),
  c('body is null', { body: 'null' }, { status: 400 }),
  c(
    'raw NUL byte inside a string',
    { body: `{"model":"${MODEL}","messages":[{"role":"user","content":"a\u0000b"}]}` },
    { status: 400 },
  ),
  c(
    'invalid UTF-8 outside strings',
    {
      body: Buffer.concat([
        Buffer.from('{"model":"chat",'),
        Buffer.from([0xff, 0xfe]),
        Buffer.from('"messages":[]}'),
      ]),
    },
    { status: 400 },
  ),
  c('only whitespace', { body: ' \r\n\t ' }, { status: 400 }),
  c(
    'form-encoded body',
    { contentType: 'application/x-www-form-urlencoded', body: `model=${MODEL}&messages=hello` },
    { status: 400 },
  ),
  c(
    'multipart body',
    {
      contentType: 'multipart/form-data; boundary=XX',
      body: `--XX\r\nContent-Disposition: form-data; name="model"\r\n\r\n${MODEL}\r\n--XX--\r\n`,
    },
    { status: 400 },
  ),
  c(
    'no content-type and an XML body',
    { contentType: null, body: '<model>chat</model>' },
    { status: 400 },
  ),

  // Methods and paths.
  c('GET on an inference path', { method: 'GET', body: '' }, { status: 405 }),
  c('PUT on an inference path', { method: 'PUT', body: chat({}) }, { status: 405 }),
  c('DELETE on an inference path', { method: 'DELETE', body: '' }, { status: 405 }),
  c(
    'PATCH on /v1/completions',
    { method: 'PATCH', path: '/v1/completions', body: chat({}) },
    { status: 405 },
  ),
  c('unknown method token', { method: 'BREW', body: chat({}) }),
  c('unknown path', { path: '/v1/nope', body: chat({}) }, { status: 404 }),
  c('path with a NUL escape', { path: '/v1/chat/completions%00', body: chat({}) }, { status: 404 }),
  c('path traversal', { path: '/v1/chat/../../../etc/passwd', body: chat({}) }, { status: 404 }),
  c('100 KB URL', { path: `/v1/chat/completions?x=${'a'.repeat(100_000)}` }),

  // Framing and protocol.
  c(
    'chunked with a non-hex chunk size',
    {
      framing: 'none',
      headers: ['Transfer-Encoding: chunked'],
      body: `zz\r\n${chat({})}\r\n0\r\n\r\n`,
    },
    { status: 400 },
  ),
  c(
    'chunked with a wrong chunk length',
    {
      framing: 'none',
      headers: ['Transfer-Encoding: chunked'],
      body: '5\r\n{"model":"chat"}\r\n0\r\n\r\n',
    },
    { status: 400 },
  ),
  c(
    'Content-Length and Transfer-Encoding together',
    {
      headers: ['Transfer-Encoding: chunked'],
      body: '0\r\n\r\n',
    },
    { status: 400 },
  ),
  c(
    'Content-Length is not a number',
    { framing: 'none', headers: ['Content-Length: abc'], body: '' },
    { status: 400 },
  ),
  c(
    'Content-Length is negative',
    { framing: 'none', headers: ['Content-Length: -5'], body: '' },
    { status: 400 },
  ),
  c(
    'two different Content-Lengths',
    { framing: 'none', headers: ['Content-Length: 2', 'Content-Length: 3'], body: '{}' },
    { status: 400 },
  ),
  c(
    'Content-Length over the body limit',
    { framing: 'none', headers: ['Content-Length: 104857600'] },
    { status: 413, code: 'request_too_large' },
  ),
  c('body over the limit', { body: Buffer.alloc(11 * 1024 * 1024, 0x20) }, { status: 413 }),
  c(
    'a 20 KB header',
    { headers: [`X-Big: ${'a'.repeat(20_000)}`], body: chat({}) },
    { status: 431 },
  ),
  c(
    '3,000 headers',
    { headers: Array.from({ length: 3000 }, (_, i) => `X-H${i}: v`), body: chat({}) },
    { status: 431 },
  ),
  c(
    'a NUL byte in a header value',
    { headers: ['X-Bad: a\u0000b'], body: chat({}) },
    { status: 400 },
  ),
  c('a space in a header name', { headers: ['Bad Header: x'], body: chat({}) }, { status: 400 }),
  c(
    'a header line without a colon',
    { headers: ['no-colon-here'], body: chat({}) },
    { status: 400 },
  ),
  c(
    'an unsupported Expect',
    { headers: ['Expect: the-unexpected'], body: chat({}) },
    { status: 417 },
  ),
  c(
    'Expect: 100-continue with a bad body',
    { headers: ['Expect: 100-continue'], body: '{' },
    { status: 400 },
  ),
  c('no Host header', { noHost: true, body: chat({}) }, { status: 400 }),
  c('an unknown HTTP version', { version: 'HTTP/3.7', body: chat({}) }),
  c('an HTTP/2 preface on the HTTP/1 port', {
    method: 'PRI',
    path: '*',
    version: 'HTTP/2.0',
    framing: 'none',
    contentType: null,
    noHost: true,
    body: 'SM\r\n\r\n',
  }),
  c(
    'an 8 KB x-request-id with an unknown model',
    {
      headers: [`X-Request-Id: ${'r'.repeat(8 * 1024)}`],
      body: chat({ model: 'nope' }),
    },
    { status: 404 },
  ),
  c(
    'identity header look-alikes with an unknown model',
    {
      headers: ['x_user_id: admin', 'X-Forwarded-For: 1.2.3.4', 'Connection: x-tenant-id'],
      body: chat({ model: 'nope' }),
    },
    { status: 404 },
  ),
]

interface Seen {
  readonly res: RawResponse
  readonly parsed: unknown
}

async function send(k: Case): Promise<Seen> {
  const res = await rawHttp(GW_HOST, gw.port, k.raw, 15_000)
  return { res, parsed: jsonOrUndefined(res.body) }
}

describe('bad-input battery', () => {
  it('has a real gateway in front of a real engine', async () => {
    const { res } = await send(c('valid', { body: chat({ max_tokens: 2 }) }))
    expect(res.status).toBe(200)
    expect(res.headers[POD_HEADER]).toBe('battery-0')
  })

  for (const k of CASES) {
    it(k.name, async () => {
      const { res, parsed } = await send(k)
      const what = `${res.status} ${res.ended} ${res.body.subarray(0, 300).toString('latin1')}`
      // Never a gateway-made 5xx; never a silent close.
      expect(res.status, what).not.toBe(0)
      if (res.status >= 500) expect(res.headers[POD_HEADER], `gateway-made ${what}`).toMatch(/./)
      if (k.lenient) {
        expect(res.status, what).toBeLessThan(500)
      } else {
        expect(res.status, what).toBeGreaterThanOrEqual(400)
        expect(res.status, what).toBeLessThan(500)
        if (k.status !== undefined) expect(res.status, what).toBe(k.status)
      }
      if (res.status >= 400) {
        expect(isOpenAIError(parsed), `not OpenAI-shaped: ${what}`).toBe(true)
        const err = (parsed as { error: { code: unknown; message: string } }).error
        if (k.code !== undefined) expect(err.code, what).toBe(k.code)
        if (k.message !== undefined) expect(err.message, what).toMatch(k.message)
      }
      if (k.maxResponseBytes !== undefined) expect(res.received).toBeLessThan(k.maxResponseBytes)
      expect(await settledInflight(gw.url)).toBe(0)
    }, 30_000)
  }

  it('left no admission slot, reservation or in-flight count behind', async () => {
    // Fairness allows 2 in flight per endpoint with a 2 s queue timeout: a leaked slot per bad
    // request would have filled them, and these would queue into 503 queue_timeout.
    const results = await Promise.all(
      Array.from({ length: 8 }, (_, i) => send(c(`after ${i}`, { body: chat({ max_tokens: 2 }) }))),
    )
    expect(results.map((r) => r.res.status)).toEqual(new Array(8).fill(200))
    expect(await settledInflight(gw.url)).toBe(0)
    expect(gw.exited()).toBe(false)
  }, 30_000)
})
