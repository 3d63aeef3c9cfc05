// The authentication suite, end to end: a real gateway (standalone YAML + a secrets dir, hot
// reloaded), the engine simulator and a recording upstream behind it, a local identity provider
// (JWKS, OIDC discovery, RFC 7662 introspection) on 127.0.0.x, and the official `openai` SDK as
// the client. Every forgery is rejected; the secrets used never show up in logs or metrics.
import { mkdtemp, rm, unlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import OpenAI, { AuthenticationError, PermissionDeniedError } from 'openai'
import { Agent, request } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type Gateway, startGateway } from '../dataplane/gateway.js'
import { memoryLogger } from '../dataplane/log.js'
import { RoundRobinPicker } from '../dataplane/picker.js'
import { type SimHandle, startSimulator } from '../hack/sim/index.js'
import { ConfigVolume } from './helpers/config.js'
import {
  confusedJwt,
  endpoints,
  gatewayPolicy,
  type Idp,
  modelRoute,
  modelServer,
  type SigningKey,
  sha256,
  signingKey,
  signJwt,
  startIdp,
  unsignedJwt,
  yamlDocs,
} from './helpers/filters.js'
import { json, startUpstream, type TestUpstream } from './helpers/upstream.js'

const ALICE_KEY = 'sk-alice-7f3a9c1e5b2d4f6a8c0e'
const BOB_KEY = 'sk-bob-1d2e3f4a5b6c7d8e9f00'
const CLIENT_SECRET = 'introspection-secret-a8f2/+='
const PROXY_SECRET = 'proxy-shared-secret-93c1d7'
const AUD = 'infer-gateway'

let sim: SimHandle
let echo: TestUpstream
let idp: Idp
let rsa: SigningKey
let ec: SigningKey
let rotated: SigningKey
let gw: Gateway
let vol: ConfigVolume
let secretsDir: string
const accessLog: string[] = []
const log = memoryLogger()
const secretsUsed: string[] = [ALICE_KEY, BOB_KEY, CLIENT_SECRET, PROXY_SECRET]

function policy(extraKeys: Record<string, unknown>[] = []) {
  return gatewayPolicy({
    authentication: {
      apiKeys: [
        { name: 'alice', secretKey: 'key.alice', tenant: 'team-a', tier: 'gold' },
        {
          name: 'bob',
          secretKey: 'key.bob',
          tenant: 'team-b',
          tier: 'free',
          models: ['sec-model'],
        },
        ...extraKeys,
      ],
      jwt: [
        {
          name: 'corp',
          issuer: 'https://idp.corp.test',
          audiences: [AUD],
          jwksUri: `${idp.url}/jwks`,
          algorithms: ['RS256', 'ES256'],
          clockSkew: '5s',
          jwksRefetchCooldown: '1s',
          claims: { tenant: 'org.id', tier: 'plan', roles: 'roles' },
        },
        {
          name: 'oidc',
          issuer: idp.oidcIssuer,
          audiences: [AUD],
          discovery: true,
          algorithms: ['RS256'],
        },
      ],
      oauth2: [
        {
          name: 'as',
          introspectionUrl: `${idp.url}/introspect`,
          clientId: idp.clientId,
          clientSecretKey: 'oauth.client-secret',
          cacheDuration: '1m',
          claims: { tenant: 'tenant', tier: 'tier' },
        },
      ],
      trustedHeaders: {
        sourceAddresses: ['127.0.0.5/32'],
        sharedSecret: { header: 'x-proxy-secret', secretKey: 'proxy.secret' },
      },
    },
    defaultTier: 'free',
    tiers: [{ name: 'free' }, { name: 'gold' }],
  })
}

function config(extraKeys: Record<string, unknown>[] = []): string {
  return yamlDocs([
    modelServer('sim', 'sim-model', sim.port),
    endpoints('sim', sim.host, sim.port),
    modelServer('echo', 'echo-model', echo.port),
    endpoints('echo', echo.host, echo.port),
    modelRoute('sec', 'sec-model', 'sim'),
    modelRoute('other', 'other-model', 'sim'),
    modelRoute('gold', 'gold-model', 'sim', { authorization: { tiers: ['gold'] } }),
    modelRoute('open', 'open-model', 'echo', { authorization: { allowAnonymous: true } }),
    modelRoute('echo', 'echo-model', 'echo'),
    policy(extraKeys),
  ])
}

beforeAll(async () => {
  ;[rsa, ec, rotated] = await Promise.all([
    signingKey('rsa-1', 'RS256'),
    signingKey('ec-1', 'ES256'),
    signingKey('rsa-2', 'RS256'),
  ])
  sim = await startSimulator({
    name: 'sec',
    host: '127.0.0.30',
    port: 0,
    model: 'sim-model',
    metricsFormat: 'vllm',
    timeScale: 0.01,
  })
  echo = await startUpstream('127.0.0.31', (_req, res) =>
    json(res, 200, {
      id: 'x',
      object: 'chat.completion',
      created: 1,
      model: 'echo-model',
      choices: [{ index: 0, message: { role: 'assistant', content: 'hi' }, finish_reason: 'stop' }],
      usage: { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 },
    }),
  )
  idp = await startIdp('127.0.0.32', CLIENT_SECRET)
  idp.keys.push(rsa, ec)
  secretsDir = await mkdtemp(join(tmpdir(), 'igw-secrets-'))
  await writeFile(join(secretsDir, 'key.alice'), `${sha256(ALICE_KEY)}\n`)
  await writeFile(join(secretsDir, 'key.bob'), `sha256:${sha256(BOB_KEY)}`)
  await writeFile(join(secretsDir, 'oauth.client-secret'), CLIENT_SECRET)
  await writeFile(join(secretsDir, 'proxy.secret'), PROXY_SECRET)
  vol = await ConfigVolume.create({ 'gateway.yaml': config() })
  gw = await startGateway({
    config: { kind: 'manifests', paths: [vol.dir] },
    port: 0,
    pollMs: 50,
    secretsDir,
    secretsPollMs: 50,
    picker: new RoundRobinPicker(),
    log,
    accessLog: (e) => accessLog.push(JSON.stringify(e)),
  })
})

afterAll(async () => {
  await gw?.shutdown({ deadlineMs: 1000 })
  await sim?.close()
  await echo?.close()
  await idp?.close()
  await vol?.remove()
  if (secretsDir) await rm(secretsDir, { recursive: true, force: true })
})

const client = (apiKey: string) =>
  new OpenAI({ baseURL: `${gw.url}/v1`, apiKey, maxRetries: 0, timeout: 5_000 })

const chat = (model = 'sec-model') => ({
  model,
  messages: [{ role: 'user' as const, content: 'hello there' }],
  max_tokens: 4,
})

async function post(
  headers: Record<string, string>,
  model = 'sec-model',
  dispatcher?: Agent,
): Promise<{ status: number; body: { error?: { code: string; type: string; message: string } } }> {
  const r = await request(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(chat(model)),
    ...(dispatcher ? { dispatcher } : {}),
  })
  const body = (await r.body.json()) as { error?: { code: string; type: string; message: string } }
  return { status: r.statusCode, body }
}

const now = () => Math.floor(Date.now() / 1000)
const claims = (extra: Record<string, unknown> = {}) => ({
  iss: 'https://idp.corp.test',
  aud: AUD,
  sub: 'alice@corp',
  exp: now() + 300,
  iat: now(),
  org: { id: 'corp-eng' },
  plan: 'gold',
  ...extra,
})

async function bearer(token: string, model = 'sec-model') {
  secretsUsed.push(token)
  return post({ authorization: `Bearer ${token}` }, model)
}

describe('API keys', () => {
  it('rejects a request without credentials: 401 with WWW-Authenticate', async () => {
    const r = await request(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(chat()),
    })
    expect(r.statusCode).toBe(401)
    expect(r.headers['www-authenticate']).toMatch(/^Bearer realm="infer-gateway"/)
    const body = (await r.body.json()) as { error: { code: string; type: string } }
    expect(body.error).toMatchObject({ code: 'missing_credentials', type: 'authentication_error' })
  })

  it('accepts a valid key as Bearer (SDK) and as x-api-key, and never forwards it', async () => {
    const r = await client(ALICE_KEY).chat.completions.create(chat())
    expect(r.choices[0]?.message.content).toBeTruthy()
    const before = echo.requests.length
    expect((await post({ 'x-api-key': ALICE_KEY }, 'echo-model')).status).toBe(200)
    const up = echo.requests[before]
    expect(up?.headers.authorization).toBeUndefined()
    expect(up?.headers['x-api-key']).toBeUndefined()
    expect(JSON.stringify(up?.headers)).not.toContain(ALICE_KEY)
  })

  it('answers a wrong key with AuthenticationError (invalid_api_key)', async () => {
    const e = await client('sk-wrong-key-000000')
      .chat.completions.create(chat())
      .catch((x: unknown) => x)
    expect(e).toBeInstanceOf(AuthenticationError)
    const a = e as AuthenticationError
    expect(a.status).toBe(401)
    expect(a.code).toBe('invalid_api_key')
    expect(a.type).toBe('authentication_error')
  })

  it('rejects a malformed Authorization header', async () => {
    const r = await post({ authorization: 'Basic YWxpY2U6cGFzcw==' })
    expect(r.status).toBe(401)
    expect(r.body.error?.code).toBe('invalid_authorization_header')
  })

  it('answers a key used on a model it may not call with PermissionDeniedError (403)', async () => {
    const e = await client(BOB_KEY)
      .chat.completions.create(chat('other-model'))
      .catch((x: unknown) => x)
    expect(e).toBeInstanceOf(PermissionDeniedError)
    const p = e as PermissionDeniedError
    expect(p.status).toBe(403)
    expect(p.code).toBe('model_not_allowed')
    expect(p.type).toBe('permission_error')
    expect((await client(BOB_KEY).chat.completions.create(chat())).id).toBeTruthy()
  })

  it('enforces route authorization by tier (403 for the free tier on a gold-only model)', async () => {
    expect((await client(ALICE_KEY).chat.completions.create(chat('gold-model'))).id).toBeTruthy()
    const e = await client(BOB_KEY)
      .chat.completions.create(chat('gold-model'))
      .catch((x: unknown) => x)
    expect(e).toBeInstanceOf(PermissionDeniedError)
  })

  it('scopes /v1/models to what the caller may call', async () => {
    const ids = async (key?: string) => {
      const r = await request(`${gw.url}/v1/models`, {
        headers: key ? { authorization: `Bearer ${key}` } : {},
      })
      return ((await r.body.json()) as { data: { id: string }[] }).data.map((m) => m.id).sort()
    }
    expect(await ids(ALICE_KEY)).toEqual([
      'echo-model',
      'gold-model',
      'open-model',
      'other-model',
      'sec-model',
    ])
    expect(await ids(BOB_KEY)).toEqual(['sec-model'])
    expect(await ids()).toEqual(['open-model'])
  })
})

describe('JWT', () => {
  it('accepts RS256 and ES256 tokens from the JWKS and maps claims to tenant and tier', async () => {
    expect((await bearer(await signJwt(rsa, claims()))).status).toBe(200)
    expect((await bearer(await signJwt(ec, claims({ sub: 'bob@corp' })))).status).toBe(200)
    const line = accessLog
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .findLast((e) => e['auth'] === 'jwt')
    expect(line).toMatchObject({ subject: 'jwt:corp:bob@corp', tenant: 'corp-eng', tier: 'gold' })
  })

  const rejected: [string, () => Promise<string>, string][] = [
    ['expired', () => signJwt(rsa, claims({ exp: now() - 60 })), 'token_expired'],
    [
      'not yet valid (nbf)',
      () => signJwt(rsa, claims({ nbf: now() + 120 })),
      'token_not_yet_valid',
    ],
    [
      'issued in the future (iat)',
      () => signJwt(rsa, claims({ iat: now() + 120 })),
      'token_not_yet_valid',
    ],
    ['wrong audience', () => signJwt(rsa, claims({ aud: 'someone-else' })), 'invalid_token_claims'],
    ['without exp', () => signJwt(rsa, { ...claims(), exp: undefined }), 'invalid_token_claims'],
    ['alg: none', async () => unsignedJwt(claims()), 'invalid_token'],
    ['HS256 signed with the RSA public key', () => confusedJwt(rsa, claims()), 'invalid_token'],
    [
      'signed by an unknown key id',
      async () => signJwt(await signingKey('rsa-x'), claims()),
      'invalid_token',
    ],
    [
      'signed by a key that claims a known kid',
      async () => signJwt({ ...(await signingKey('x')), kid: 'rsa-1' }, claims()),
      'invalid_token',
    ],
  ]
  for (const [name, make, code] of rejected) {
    it(`rejects a token ${name}`, async () => {
      const r = await bearer(await make())
      expect(r.status).toBe(401)
      expect(r.body.error?.type).toBe('authentication_error')
      expect(r.body.error?.code).toBe(code)
    })
  }

  it('rejects a wrong issuer and malformed tokens', async () => {
    expect((await bearer(await signJwt(rsa, claims({ iss: 'https://evil.test' })))).status).toBe(
      401,
    )
    expect((await bearer('eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.c2ln')).status).toBe(401)
    expect((await bearer('a.b.c')).status).toBe(401)
  })

  it('re-fetches the JWKS for an unknown kid at most once per cooldown, and picks up a rotated key', async () => {
    const stranger = await signingKey('never-published')
    const before = idp.counts.jwks
    const tokens = await Promise.all(Array.from({ length: 5 }, () => signJwt(stranger, claims())))
    for (const t of tokens) expect((await bearer(t)).status).toBe(401)
    expect(idp.counts.jwks - before).toBeLessThanOrEqual(1)
    idp.keys.push(rotated)
    await new Promise((r) => setTimeout(r, 1_100))
    expect((await bearer(await signJwt(rotated, claims()))).status).toBe(200)
  })

  it('verifies tokens of an issuer found through OIDC discovery', async () => {
    const t = await signJwt(rsa, claims({ iss: idp.oidcIssuer }))
    expect((await bearer(t)).status).toBe(200)
    expect(idp.counts.discovery).toBe(1)
    expect(
      (await bearer(await signJwt(rsa, claims({ iss: idp.oidcIssuer, sub: 'x' })))).status,
    ).toBe(200)
    expect(idp.counts.discovery).toBe(1)
  })
})

describe('OAuth2 introspection', () => {
  it('accepts an active opaque token, caches the answer by hash and maps claims', async () => {
    const token = 'opaque-token-6b1f0e2d9c'
    idp.tokens.set(token, {
      active: true,
      sub: 'svc-1',
      tenant: 'team-c',
      tier: 'gold',
      exp: now() + 600,
    })
    const before = idp.counts.introspect
    expect((await bearer(token)).status).toBe(200)
    expect((await bearer(token)).status).toBe(200)
    expect(idp.counts.introspect - before).toBe(1)
    expect(idp.counts.badClient).toBe(0)
    const line = accessLog
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .findLast((e) => e['auth'] === 'oauth2')
    expect(line).toMatchObject({ subject: 'oauth2:as:svc-1', tenant: 'team-c', tier: 'gold' })
  })

  it('rejects inactive, unknown and expired tokens', async () => {
    idp.tokens.set('opaque-revoked', { active: false })
    idp.tokens.set('opaque-expired', { active: true, sub: 'x', exp: now() - 5 })
    for (const t of ['opaque-revoked', 'opaque-unknown', 'opaque-expired']) {
      const r = await bearer(t)
      expect(r.status).toBe(401)
      expect(r.body.error?.code).toBe('invalid_api_key')
    }
  })
})

describe('trusted headers', () => {
  const viaProxy = new Agent({ localAddress: '127.0.0.5' })
  const spoofer = new Agent({ localAddress: '127.0.0.6' })
  afterAll(async () => {
    await viaProxy.close()
    await spoofer.close()
  })
  const identity = { 'x-user-id': 'mallory', 'x-tier': 'gold', 'x-tenant-id': 'team-a' }

  it('ignores and strips identity headers from an untrusted source', async () => {
    const before = echo.requests.length
    // On a route that allows anonymous callers the request passes — as anonymous.
    expect((await post(identity, 'open-model', spoofer)).status).toBe(200)
    const up = echo.requests[before]
    expect(up?.headers['x-user-id']).toBeUndefined()
    expect(up?.headers['x-tier']).toBeUndefined()
    const line = JSON.parse(accessLog.at(-1) ?? '{}') as Record<string, unknown>
    expect(line).toMatchObject({ auth: 'anonymous', subject: 'anonymous:127.0.0.6' })
    // Elsewhere it needs real credentials.
    expect((await post(identity, 'echo-model', spoofer)).status).toBe(401)
    // The right address without the shared secret is not enough either.
    expect((await post(identity, 'echo-model', viaProxy)).status).toBe(401)
    expect(
      (await post({ ...identity, 'x-proxy-secret': 'guess' }, 'echo-model', viaProxy)).status,
    ).toBe(401)
    const metrics = await (await request(`${gw.url}/metrics`)).body.text()
    expect(metrics).toMatch(/infer_gateway_auth_untrusted_identity_headers_total [1-9]/)
  })

  it('accepts them from the trusted proxy (address and shared secret)', async () => {
    const before = echo.requests.length
    const r = await post(
      { ...identity, 'x-user-id': 'carol', 'x-proxy-secret': PROXY_SECRET },
      'gold-model',
      viaProxy,
    )
    expect(r.status).toBe(200)
    const r2 = await post(
      { ...identity, 'x-user-id': 'carol', 'x-proxy-secret': PROXY_SECRET },
      'echo-model',
      viaProxy,
    )
    expect(r2.status).toBe(200)
    const up = echo.requests[before]
    expect(up?.headers['x-proxy-secret']).toBeUndefined()
    expect(up?.headers['x-user-id']).toBeUndefined()
    const line = JSON.parse(accessLog.at(-1) ?? '{}') as Record<string, unknown>
    expect(line).toMatchObject({
      auth: 'trusted-header',
      subject: 'header:carol',
      tier: 'gold',
      tenant: 'team-a',
    })
  })
})

describe('revocation and reload', () => {
  it('revokes a key when its secret entry disappears, without a restart', async () => {
    expect((await post({ 'x-api-key': BOB_KEY })).status).toBe(200)
    await unlink(join(secretsDir, 'key.bob'))
    await expect
      .poll(async () => (await post({ 'x-api-key': BOB_KEY })).status, { timeout: 5_000 })
      .toBe(401)
    expect(log.records.some((r) => r.msg === 'API key unusable' && r.fields['key'] === 'bob')).toBe(
      true,
    )
  })

  it('adds and then disables a key by editing the policy', async () => {
    const key = 'sk-dave-44aa55bb66cc77dd'
    secretsUsed.push(key)
    await writeFile(join(secretsDir, 'key.dave'), sha256(key))
    await vol.update({
      'gateway.yaml': config([{ name: 'dave', secretKey: 'key.dave', tenant: 'd' }]),
    })
    await expect
      .poll(async () => (await post({ 'x-api-key': key })).status, { timeout: 5_000 })
      .toBe(200)
    await vol.update({
      'gateway.yaml': config([
        { name: 'dave', secretKey: 'key.dave', tenant: 'd', disabled: true },
      ]),
    })
    await expect
      .poll(async () => (await post({ 'x-api-key': key })).status, { timeout: 5_000 })
      .toBe(401)
  })
})

describe('secrets stay secret', () => {
  it('appear in no access-log line, operational log record, metric or snapshot', async () => {
    const metrics = await (await request(`${gw.url}/metrics`)).body.text()
    const haystacks = {
      accessLog: accessLog.join('\n'),
      log: JSON.stringify(log.records),
      metrics,
      snapshot: JSON.stringify(gw.store.snapshot),
    }
    expect(accessLog.length).toBeGreaterThan(20)
    expect(metrics).toContain('infer_gateway_auth_total')
    for (const secret of secretsUsed) {
      for (const [where, text] of Object.entries(haystacks)) {
        expect(text.includes(secret), `${where} contains a secret`).toBe(false)
      }
    }
  })
})
