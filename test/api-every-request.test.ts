// Every request gets an `x-request-id` (a valid client id echoed) and exactly one access-log line:
// unknown paths (404), wrong methods (405), errors of every filter (authentication, parse, resolve,
// authorization/limits), model listing and retrieval — health, readiness and metrics excepted.
// Also `GET /v1/models/{id}` with the official OpenAI SDK and `created` times.
import OpenAI, { NotFoundError } from 'openai'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import type { AccessLogEntry } from '../dataplane/access-log.js'
import { type SimHandle, startSimulator } from '../hack/sim/index.js'
import { gatewayPolicy, sha256 } from './helpers/filters.js'
import {
  type ProviderGateway,
  routeDoc,
  serverDocs,
  startProviderGateway,
} from './helpers/providers.js'

let sim: SimHandle
let pg: ProviderGateway
const CREATED = '2025-03-04T05:06:07Z'

beforeAll(async () => {
  sim = await startSimulator({
    name: 'e',
    host: '127.0.0.200',
    port: 0,
    model: 'm',
    metricsFormat: 'vllm',
    timeScale: 0.01,
  })
  const ep = [{ name: 'pod-e', address: sim.host, port: sim.port }]
  const dated = routeDoc('dated', 'dated-model', [{ targetModels: [{ modelServerName: 'pool' }] }])
  ;(dated['metadata'] as Record<string, unknown>)['creationTimestamp'] = CREATED
  pg = await startProviderGateway(
    [
      ...serverDocs('pool', ep, { model: 'm' }),
      routeDoc('chat', 'chat-model', [{ targetModels: [{ modelServerName: 'pool' }] }]),
      routeDoc('org', 'org/model-1', [{ targetModels: [{ modelServerName: 'pool' }] }]),
      routeDoc('hdr', 'hdr-model', [
        {
          modelMatch: { headers: { 'x-lane': { exact: 'a' } } },
          targetModels: [{ modelServerName: 'pool' }],
        },
      ]),
      dated,
    ],
    {},
  )
})

afterAll(async () => {
  await pg?.close()
  await sim?.close()
})

async function call(
  method: string,
  path: string,
  body?: string,
  headers: Record<string, string> = {},
): Promise<{ res: Response; line: AccessLogEntry; lines: number }> {
  const before = pg.log.length
  const res = await fetch(`${pg.gw.url}${path}`, {
    method,
    headers: { 'content-type': 'application/json', ...headers },
    ...(body !== undefined ? { body } : {}),
  })
  await res.arrayBuffer()
  // The line is written before the answer ends; a streamed one when its body ends.
  const lines = pg.log.slice(before)
  const line = lines[0]
  if (line === undefined) throw new Error(`no access-log line for ${method} ${path}`)
  return { res, line, lines: lines.length }
}

describe('x-request-id and one access-log line for every request', () => {
  const cases: [string, string, string | undefined, number, string][] = [
    ['GET', '/nope', undefined, 404, 'unknown_url'],
    ['POST', '/v1/nothing/here', '{}', 404, 'unknown_url'],
    ['GET', '/v1/chat/completions', undefined, 405, 'method_not_allowed'],
    ['DELETE', '/v1/models', undefined, 405, 'method_not_allowed'],
    ['POST', '/v1/chat/completions', '{not json', 400, 'invalid_json'],
    ['POST', '/v1/chat/completions', '{"messages":[]}', 400, 'missing_model'],
    ['POST', '/v1/chat/completions', '{"model":"ghost","messages":[]}', 404, 'model_not_found'],
    ['POST', '/v1/chat/completions', '{"model":"hdr-model","messages":[]}', 404, 'route_not_found'],
    ['GET', '/v1/models/ghost', undefined, 404, 'model_not_found'],
  ]
  for (const [method, path, body, status, code] of cases) {
    it(`${method} ${path} → ${status} ${code}`, async () => {
      const id = `every-${status}-${code}`
      const { res, line, lines } = await call(method, path, body, { 'x-request-id': id })
      expect(res.status).toBe(status)
      expect(res.headers.get('x-request-id')).toBe(id)
      expect(lines).toBe(1)
      expect(line).toMatchObject({ request_id: id, method, path, status, error_code: code })
    })
  }

  it('a successful chat request and the model list each write one line', async () => {
    const ok = await call(
      'POST',
      '/v1/chat/completions',
      JSON.stringify({ model: 'chat-model', messages: [{ role: 'user', content: 'hi' }] }),
      { 'x-request-id': 'every-chat' },
    )
    expect(ok.res.status).toBe(200)
    expect(ok.lines).toBe(1)
    expect(ok.line).toMatchObject({ request_id: 'every-chat', status: 200, model: 'chat-model' })
    const list = await call('GET', '/v1/models', undefined, { 'x-request-id': 'every-list' })
    expect(list.res.status).toBe(200)
    expect(list.line).toMatchObject({ request_id: 'every-list', method: 'GET', path: '/v1/models' })
    expect(list.line.error_code).toBeUndefined()
  })

  it('generates an id when the client sends none or an unsafe one', async () => {
    const none = await call('GET', '/nope')
    const gen = none.res.headers.get('x-request-id') ?? ''
    expect(gen).toMatch(/^[0-9a-f-]{36}$/)
    expect(none.line.request_id).toBe(gen)
    const bad = await call('GET', '/nope', undefined, { 'x-request-id': 'x'.repeat(300) })
    expect(bad.res.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/)
    const chat = await call('POST', '/v1/chat/completions', '{}', { 'x-request-id': 'a b' })
    expect(chat.res.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/)
    expect(chat.line.request_id).toBe(chat.res.headers.get('x-request-id'))
  })

  it('health, readiness and metrics write no line', async () => {
    const before = pg.log.length
    for (const p of ['/healthz', '/readyz', '/metrics']) {
      const r = await fetch(`${pg.gw.url}${p}`)
      expect(r.status).toBe(200)
      await r.arrayBuffer()
    }
    expect(pg.log.length).toBe(before)
  })
})

describe('GET /v1/models/{id}', () => {
  const client = (): OpenAI =>
    new OpenAI({ baseURL: `${pg.gw.url}/v1`, apiKey: 'unused', maxRetries: 0 })

  it('retrieves a model with the SDK, including ids with a slash', async () => {
    const m = await client().models.retrieve('chat-model')
    expect(m).toMatchObject({ id: 'chat-model', object: 'model', owned_by: 'infer-gateway' })
    const org = await client().models.retrieve('org/model-1')
    expect(org.id).toBe('org/model-1')
  })

  it('answers an unknown model with 404 model_not_found', async () => {
    const e = await client()
      .models.retrieve('ghost-model')
      .catch((x: unknown) => x)
    expect(e).toBeInstanceOf(NotFoundError)
    expect((e as NotFoundError).code).toBe('model_not_found')
  })

  it('created: the route creationTimestamp when set, else first seen — stable across reloads', async () => {
    const dated = await client().models.retrieve('dated-model')
    expect(dated.created).toBe(Date.parse(CREATED) / 1000)
    const first = await client().models.retrieve('chat-model')
    // A real first-seen time (whole Unix seconds, after the dated route's creation), not 0.
    expect(Number.isInteger(first.created)).toBe(true)
    expect(first.created).toBeGreaterThan(Date.parse(CREATED) / 1000)
    // Reload with one more route: the first-seen time of the old ones does not move.
    const list1 = await client().models.list()
    expect(list1.data.map((m) => m.id).sort()).toEqual([
      'chat-model',
      'dated-model',
      'hdr-model',
      'org/model-1',
    ])
    const v = pg.gw.store.snapshot?.version
    const ep = [{ name: 'pod-e', address: sim.host, port: sim.port }]
    const dated2 = routeDoc('dated', 'dated-model', [
      { targetModels: [{ modelServerName: 'pool' }] },
    ])
    ;(dated2['metadata'] as Record<string, unknown>)['creationTimestamp'] = CREATED
    await new Promise((r) => setTimeout(r, 1100))
    const { yaml } = await import('./helpers/providers.js')
    await pg.config.update({
      'gateway.yaml': yaml([
        ...serverDocs('pool', ep, { model: 'm' }),
        routeDoc('chat', 'chat-model', [{ targetModels: [{ modelServerName: 'pool' }] }]),
        routeDoc('org', 'org/model-1', [{ targetModels: [{ modelServerName: 'pool' }] }]),
        routeDoc('hdr', 'hdr-model', [
          {
            modelMatch: { headers: { 'x-lane': { exact: 'a' } } },
            targetModels: [{ modelServerName: 'pool' }],
          },
        ]),
        routeDoc('late', 'late-model', [{ targetModels: [{ modelServerName: 'pool' }] }]),
        dated2,
      ]),
    })
    await vi.waitFor(() => expect(pg.gw.store.snapshot?.version).not.toBe(v), {
      timeout: 15_000,
      interval: 50,
    })
    const again = await client().models.retrieve('chat-model')
    expect(again.created).toBe(first.created)
    const late = await client().models.retrieve('late-model')
    expect(late.created).toBeGreaterThan(first.created)
  })
})

describe('errors of the authentication and limit filters are logged too', () => {
  const KEY = 'sk-every-request-000001'
  let gated: ProviderGateway

  beforeAll(async () => {
    const ep = [{ name: 'pod-e', address: sim.host, port: sim.port }]
    gated = await startProviderGateway(
      [
        ...serverDocs('pool', ep, { model: 'm' }),
        routeDoc('chat', 'chat-model', [{ targetModels: [{ modelServerName: 'pool' }] }]),
        {
          ...routeDoc('locked', 'locked-model', [{ targetModels: [{ modelServerName: 'pool' }] }]),
          spec: {
            modelName: 'locked-model',
            rules: [{ targetModels: [{ modelServerName: 'pool' }] }],
            authorization: { tenants: ['someone-else'] },
          },
        },
        gatewayPolicy({
          authentication: {
            apiKeys: [{ name: 'one', secretKey: 'key.one', tenant: 't-one', tier: 'one' }],
          },
          tiers: [{ name: 'one', rate: [{ requests: 1, per: 'minute' }] }],
        }),
      ],
      { 'key.one': sha256(KEY) },
    )
  })
  afterAll(async () => {
    await gated?.close()
  })

  async function gatedCall(
    method: string,
    path: string,
    headers: Record<string, string>,
    model = 'chat-model',
  ) {
    const before = gated.log.length
    const res = await fetch(`${gated.gw.url}${path}`, {
      method,
      headers: { 'content-type': 'application/json', ...headers },
      ...(method === 'POST'
        ? {
            body: JSON.stringify({
              model,
              messages: [{ role: 'user', content: 'hi' }],
              max_tokens: 4,
            }),
          }
        : {}),
    })
    await res.arrayBuffer()
    return { res, lines: gated.log.slice(before) }
  }

  it('401 on the model list and on chat, 403 off the route, then 200 and 429 with a key', async () => {
    for (const [method, path] of [
      ['GET', '/v1/models'],
      ['GET', '/v1/models/chat-model'],
      ['POST', '/v1/chat/completions'],
    ] as const) {
      const { res, lines } = await gatedCall(method, path, { 'x-request-id': `noauth-${method}` })
      expect(res.status).toBe(401)
      expect(res.headers.get('x-request-id')).toBe(`noauth-${method}`)
      expect(lines).toHaveLength(1)
      expect(lines[0]).toMatchObject({ request_id: `noauth-${method}`, status: 401, path })
    }
    const auth = { authorization: `Bearer ${KEY}` }
    // Authorization (the route admits another tenant): 403, logged with who asked.
    const denied = await gatedCall(
      'POST',
      '/v1/chat/completions',
      { ...auth, 'x-request-id': 'authz-1' },
      'locked-model',
    )
    expect(denied.res.status).toBe(403)
    expect(denied.res.headers.get('x-request-id')).toBe('authz-1')
    expect(denied.lines).toHaveLength(1)
    expect(denied.lines[0]).toMatchObject({ request_id: 'authz-1', status: 403, tenant: 't-one' })
    const ok = await gatedCall('POST', '/v1/chat/completions', { ...auth, 'x-request-id': 'rl-1' })
    expect(ok.res.status).toBe(200)
    const limited = await gatedCall('POST', '/v1/chat/completions', {
      ...auth,
      'x-request-id': 'rl-2',
    })
    expect(limited.res.status).toBe(429)
    expect(limited.res.headers.get('x-request-id')).toBe('rl-2')
    expect(limited.lines).toHaveLength(1)
    expect(limited.lines[0]).toMatchObject({ request_id: 'rl-2', status: 429, tier: 'one' })
  })
})
