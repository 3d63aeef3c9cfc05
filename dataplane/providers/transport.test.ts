import { execFileSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { createServer as createHttp } from 'node:http'
import { createServer as createHttps, type Server } from 'node:https'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { SnapshotProvider } from '../../api/snapshot.js'
import { DEFAULT_RETRY, DEFAULT_TIMEOUTS } from '../../api/snapshot.js'
import { ProviderSendError, ProviderTransport, readBody } from './transport.js'

function provider(baseURL: string, extra: Partial<SnapshotProvider> = {}): SnapshotProvider {
  return {
    key: 'default/p',
    namespace: 'default',
    name: 'p',
    type: 'OpenAICompatible',
    baseURL,
    insecureSkipVerify: false,
    headers: {},
    trafficPolicy: {
      timeouts: { ...DEFAULT_TIMEOUTS, connectMs: 1000 },
      retry: { ...DEFAULT_RETRY },
    },
    ...extra,
  }
}

const hasOpenssl = (() => {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
})()

const transport = new ProviderTransport()
let tls: Server | undefined
let dir: string | undefined
const servers: { close(): void }[] = []

beforeAll(async () => {
  if (!hasOpenssl) return
  dir = mkdtempSync(join(tmpdir(), 'igw-tls-'))
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      join(dir, 'k.pem'),
      '-out',
      join(dir, 'c.pem'),
      '-days',
      '1',
      '-subj',
      '/CN=127.0.0.1',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
    ],
    { stdio: 'ignore' },
  )
  if (!existsSync(join(dir, 'c.pem'))) return
  tls = createHttps(
    { key: readFileSync(join(dir, 'k.pem')), cert: readFileSync(join(dir, 'c.pem')) },
    (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end('{"ok":true}')
    },
  )
  await new Promise<void>((r) => tls?.listen(0, '127.0.0.1', r))
})

afterAll(async () => {
  tls?.close()
  for (const s of servers) s.close()
  await transport.close()
  if (dir) rmSync(dir, { recursive: true, force: true })
})

const body = { url: '', headers: { 'content-type': 'application/json' }, body: '{}' }
const never = new AbortController().signal

describe('ProviderTransport', () => {
  it.skipIf(!hasOpenssl)('verifies certificates unless the provider opts out', async () => {
    if (tls === undefined) throw new Error('no TLS server')
    const url = `https://127.0.0.1:${(tls.address() as AddressInfo).port}/v1/chat/completions`
    const err = await transport.send(provider(url), { ...body, url }, never).catch((e) => e)
    expect(err).toBeInstanceOf(ProviderSendError)
    expect(err.reason).toBe('connect-failure')
    expect(err.message).toMatch(/^TLS: /)
    const ok = await transport.send(
      provider(url, { insecureSkipVerify: true }),
      { ...body, url },
      never,
    )
    expect(ok.statusCode).toBe(200)
    expect((await readBody(ok.body, 1000)).toString()).toBe('{"ok":true}')
    // The verifying pool was not weakened by the other provider's setting.
    const again = await transport.send(provider(url), { ...body, url }, never).catch((e) => e)
    expect(again).toBeInstanceOf(ProviderSendError)
  })

  it('never follows redirects and retries per the provider policy', async () => {
    let calls = 0
    const s = createHttp((req, res) => {
      calls++
      if (req.url === '/redirect') {
        res.writeHead(302, { location: 'http://169.254.169.254/' })
        res.end()
        return
      }
      res.writeHead(calls < 3 ? 503 : 200)
      res.end(calls < 3 ? 'busy' : 'ok')
    })
    servers.push(s)
    await new Promise<void>((r) => s.listen(0, '127.0.0.91', r))
    const base = `http://127.0.0.91:${(s.address() as AddressInfo).port}`
    const redirected = await transport.send(
      provider(base),
      { ...body, url: `${base}/redirect` },
      never,
    )
    expect(redirected.statusCode).toBe(302)
    redirected.body.dump()
    calls = 0
    const p = provider(base, {
      trafficPolicy: {
        timeouts: DEFAULT_TIMEOUTS,
        retry: { attempts: 3, intervalMs: 1, maxIntervalMs: 2, retryOn: ['5xx'] },
      },
    })
    const r = await transport.send(p, { ...body, url: `${base}/x` }, never)
    expect([r.statusCode, r.attempts, calls]).toEqual([200, 3, 3])
    r.body.dump()
  })

  it('reads bodies up to a limit, truncating only when asked', async () => {
    const { Readable } = await import('node:stream')
    const mk = () => Readable.from([Buffer.from('abc'), Buffer.from('def')]) as never
    expect((await readBody(mk(), 4, true)).toString()).toBe('abcd')
    await expect(readBody(mk(), 4)).rejects.toThrow(/larger than 4/)
  })
})
