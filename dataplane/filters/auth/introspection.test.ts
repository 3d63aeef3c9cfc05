import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { SnapshotIntrospection } from '../../../api/snapshot.js'
import { memoryLogger } from '../../log.js'
import { Introspector } from './introspection.js'

let server: Server
let url = ''
const answers = new Map<string, Record<string, unknown>>()
let lastAuth = ''

beforeAll(async () => {
  server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      lastAuth = req.headers.authorization ?? ''
      const token = new URLSearchParams(Buffer.concat(chunks).toString()).get('token') ?? ''
      // A slow server: concurrent checks of one token must share this call.
      setTimeout(() => {
        res.writeHead(200, { 'content-type': 'application/json' })
        res.end(JSON.stringify(answers.get(token) ?? { active: false }))
      }, 30)
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/introspect`
})
afterAll(() => new Promise<void>((r) => server.close(() => r())))

const cfg = (extra: Partial<SnapshotIntrospection> = {}): SnapshotIntrospection => ({
  name: 'as',
  url,
  clientId: 'gw:1',
  clientSecretKey: 'e',
  cacheMs: 60_000,
  negativeCacheMs: 60_000,
  // Generous: no case here tests the timeout, and a cold first call on a loaded machine took > 1 s.
  timeoutMs: 10_000,
  claims: { subject: 'sub' },
  ...extra,
})
const tierOf = (t: string | undefined) => t
const now = () => Math.floor(Date.now() / 1000)

describe('Introspector', () => {
  it('authenticates with client_secret_basic (form-encoded id and secret)', async () => {
    answers.set('t-basic', { active: true, sub: 'u' })
    await new Introspector(cfg(), 'p@ss word', memoryLogger()).verify('t-basic', tierOf)
    expect(Buffer.from(lastAuth.replace('Basic ', ''), 'base64').toString()).toBe(
      'gw%3A1:p%40ss%20word',
    )
  })

  it('caches answers by hash and shares concurrent calls', async () => {
    answers.set('t1', { active: true, sub: 'u1', exp: now() + 600 })
    answers.set('t-off', { active: false })
    const i = new Introspector(cfg(), 's', memoryLogger())
    const ids = await Promise.all([1, 2, 3].map(() => i.verify('t1', tierOf)))
    expect(ids.map((x) => x?.subject)).toEqual(['oauth2:as:u1', 'oauth2:as:u1', 'oauth2:as:u1'])
    expect(await i.verify('t-off', tierOf)).toBeUndefined()
    expect(await i.verify('t-off', tierOf)).toBeUndefined()
    expect(i.calls).toBe(2)
  })

  it('never caches past the token expiry', async () => {
    // exp is in whole seconds: +2 leaves at least one second before it passes, wherever in the
    // current second the test starts (+1 could expire before the first call).
    answers.set('t-short', { active: true, sub: 'u', exp: now() + 2 })
    const i = new Introspector(cfg(), 's', memoryLogger())
    expect((await i.verify('t-short', tierOf))?.subject).toBe('oauth2:as:u')
    await new Promise((r) => setTimeout(r, 2_100))
    answers.set('t-short', { active: false })
    expect(await i.verify('t-short', tierOf)).toBeUndefined()
    expect(i.calls).toBe(2)
  })

  it('checks issuer and audience when configured', async () => {
    answers.set('t-aud', { active: true, sub: 'u', iss: 'as', aud: ['other'] })
    const i = new Introspector(cfg({ issuer: 'as', audiences: ['gw'] }), 's', memoryLogger())
    expect(await i.verify('t-aud', tierOf)).toBeUndefined()
    answers.set('t-ok', { active: true, sub: 'u', iss: 'as', aud: 'gw' })
    expect((await i.verify('t-ok', tierOf))?.subject).toBe('oauth2:as:u')
  })

  it('answers 503 when the server fails or the client secret is missing; logs no token', async () => {
    const log = memoryLogger()
    const down = new Introspector(cfg({ url: 'http://127.0.0.1:1/introspect' }), 's', log)
    await expect(down.verify('secret-token-xyz', tierOf)).rejects.toMatchObject({ status: 503 })
    await expect(
      new Introspector(cfg(), undefined, log).verify('t1', tierOf),
    ).rejects.toMatchObject({
      status: 503,
    })
    expect(JSON.stringify(log.records)).not.toContain('secret-token-xyz')
  })
})
