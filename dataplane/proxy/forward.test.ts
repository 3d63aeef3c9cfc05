import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { endpoint, server } from '../../test/helpers/snapshot.js'
import { deadPort, json, startUpstream, type TestUpstream } from '../../test/helpers/upstream.js'
import { GatewayError } from '../errors.js'
import { backoffMs } from '../retry.js'
import { forward } from './forward.js'
import { ENGINE_CLIENTS, UpstreamPool } from './upstream-pool.js'

let u1: TestUpstream
let u2: TestUpstream
// The same semantics through either engine client (--engine-client).
const pools = {
  raw: new UpstreamPool({ engineClient: 'raw' }),
  undici: new UpstreamPool({ engineClient: 'undici' }),
}
let pool = pools.raw

beforeAll(async () => {
  u1 = await startUpstream('127.0.0.2', (_q, res) => json(res, 200, { from: 'u1' }))
  u2 = await startUpstream('127.0.0.3', (_q, res) => json(res, 200, { from: 'u2' }))
})
afterEach(() => {
  u1.handler = (_q, res) => json(res, 200, { from: 'u1' })
  u2.handler = (_q, res) => json(res, 200, { from: 'u2' })
})
afterAll(async () => {
  await Promise.all(Object.values(pools).map((p) => p.close()))
  await Promise.all([u1.close(), u2.close()])
})

function send(srv: ReturnType<typeof server>, signal = new AbortController().signal) {
  return forward(
    pool,
    {
      server: srv,
      candidates: srv.endpoints,
      method: 'POST',
      path: '/v1/completions',
      headers: { 'content-type': 'application/json' },
      body: '{}',
      signal,
    },
    () => 0.5,
  )
}

describe.each(ENGINE_CLIENTS)('forward through %s', (client) => {
  beforeAll(() => {
    pool = pools[client]
  })

  it('retries a refused connection on the next endpoint', async () => {
    const dead = await deadPort('127.0.0.4')
    const srv = server(
      's',
      [endpoint('dead', '127.0.0.4', dead), endpoint('u1', '127.0.0.2', u1.port)],
      { retry: { attempts: 2, intervalMs: 1 } },
    )
    const res = await send(srv)
    expect(res.statusCode).toBe(200)
    expect(res.endpoint.name).toBe('u1')
    expect(res.attempts).toBe(2)
    expect(await res.body.json()).toEqual({ from: 'u1' })
  })

  it('fails over a refused connection even with retries off (nothing was sent)', async () => {
    const dead = await deadPort('127.0.0.4')
    const srv = server(
      's',
      [endpoint('dead', '127.0.0.4', dead), endpoint('u1', '127.0.0.2', u1.port)],
      { retry: { attempts: 1 } },
    )
    const res = await send(srv)
    expect([res.statusCode, res.endpoint.name, res.attempts]).toEqual([200, 'u1', 2])
    await res.body.dump()
  })

  it('fails with 502 when every endpoint refuses and retries are off', async () => {
    const d1 = await deadPort('127.0.0.4')
    const d2 = await deadPort('127.0.0.5')
    const srv = server('s', [endpoint('d1', '127.0.0.4', d1), endpoint('d2', '127.0.0.5', d2)], {
      retry: { attempts: 1 },
    })
    await expect(send(srv)).rejects.toMatchObject({ status: 502, code: 'upstream_unavailable' })
  })

  it('retries 5xx and 429 but returns 4xx unchanged without retrying', async () => {
    u1.handler = (_q, res) => json(res, 503, { error: 'busy' })
    const srv = server(
      's',
      [endpoint('u1', '127.0.0.2', u1.port), endpoint('u2', '127.0.0.3', u2.port)],
      { retry: { attempts: 3, intervalMs: 1 } },
    )
    const r1 = await send(srv)
    expect([r1.statusCode, r1.endpoint.name]).toEqual([200, 'u2'])
    await r1.body.dump()

    u1.handler = (_q, res) => json(res, 429, { error: 'slow down' })
    const r2 = await send(srv)
    expect(r2.endpoint.name).toBe('u2')
    await r2.body.dump()

    const before = u2.requests.length
    u1.handler = (_q, res) => json(res, 400, { error: { message: 'context too long' } })
    const r3 = await send(srv)
    expect(r3.statusCode).toBe(400)
    expect(await r3.body.json()).toEqual({ error: { message: 'context too long' } })
    expect(u2.requests.length).toBe(before)
  })

  it('returns the last 5xx unchanged once attempts are used up', async () => {
    u1.handler = (_q, res) => json(res, 500, { n: 1 })
    u2.handler = (_q, res) => json(res, 502, { n: 2 })
    const srv = server(
      's',
      [endpoint('u1', '127.0.0.2', u1.port), endpoint('u2', '127.0.0.3', u2.port)],
      { retry: { attempts: 2, intervalMs: 1 } },
    )
    const r = await send(srv)
    expect(r.statusCode).toBe(502)
    expect(await r.body.json()).toEqual({ n: 2 })
  })

  it('honours retryOn: 429 not listed is returned as is', async () => {
    u1.handler = (_q, res) => json(res, 429, { x: 1 })
    const srv = server(
      's',
      [endpoint('u1', '127.0.0.2', u1.port), endpoint('u2', '127.0.0.3', u2.port)],
      {
        retry: { attempts: 3, intervalMs: 1, retryOn: ['5xx'] },
      },
    )
    const r = await send(srv)
    expect(r.statusCode).toBe(429)
    await r.body.dump()
  })

  it('turns a response-header timeout into a 504 without retrying', async () => {
    // undici's header/body timers tick about every 500 ms, so the upstream stalls well beyond that.
    let answered = false
    u1.handler = (_q, res) => {
      const t = setTimeout(() => {
        answered = true
        json(res, 200, {})
      }, 3000)
      res.on('close', () => clearTimeout(t))
    }
    const before = u2.requests.length
    const srv = server(
      's',
      [endpoint('u1', '127.0.0.2', u1.port), endpoint('u2', '127.0.0.3', u2.port)],
      {
        timeouts: { responseHeaderMs: 100 },
        retry: { attempts: 3, intervalMs: 1 },
      },
    )
    const err = await send(srv).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(GatewayError)
    expect(err).toMatchObject({ status: 504, code: 'upstream_timeout' })
    expect(u2.requests.length).toBe(before)
    // The 504 came while the upstream still stalled, not after its late answer.
    expect(answered).toBe(false)
  })

  it('fails fast with 503 when there are no candidates', async () => {
    await expect(send(server('s', []))).rejects.toMatchObject({
      status: 503,
      code: 'no_ready_endpoint',
    })
  })

  it('backs off exponentially with jitter, capped', () => {
    expect(backoffMs(1, 100, 1000, () => 0)).toBe(50)
    expect(backoffMs(2, 100, 1000, () => 1)).toBe(200)
    expect(backoffMs(10, 100, 1000, () => 1)).toBe(1000)
  })
})
