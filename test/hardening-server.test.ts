// Hostile and broken clients against a real gateway (real sockets on loopback): slow headers, slow
// bodies, idle and keep-alive connections are closed by the configured timeouts; a flood of 2,000
// idle connections against a cap of 300 never holds more than the cap, real clients keep being
// served and config keeps reloading meanwhile; a refusal at the cap and everything Node's HTTP
// parser rejects (400, 408, 417, 431) arrives as an OpenAI-shaped JSON error. CI-sized; the
// timeouts are set low here and the checks are about outcomes, not durations.
import { connect, type Socket } from 'node:net'
import { Agent, request } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type Gateway, startGateway } from '../dataplane/gateway.js'
import { RoundRobinPicker } from '../dataplane/picker.js'
import { timeoutCheckInterval } from '../dataplane/server.js'
import { ConfigVolume, manifests } from './helpers/config.js'
import { json, startUpstream, type TestUpstream } from './helpers/upstream.js'

const HOST = '127.0.0.160'
let engine: TestUpstream
let gw: Gateway
let vol: ConfigVolume

function config(models: readonly string[]): string {
  return manifests(
    [{ name: 'engine', endpoints: [{ name: 'e-0', address: engine.host, port: engine.port }] }],
    models.map((m) => ({
      name: m,
      modelName: m,
      rules: [{ targetModels: [{ modelServerName: 'engine' }] }],
    })),
  )
}

beforeAll(async () => {
  engine = await startUpstream(HOST, (_req, res, body) => {
    const parsed = JSON.parse(body || '{}') as { stream?: boolean; model?: string }
    if (parsed.stream) {
      // A long stream: 6 events over ~3 s, longer than the request timeout (which must not cut it).
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      let n = 0
      const t = setInterval(() => {
        if (n === 6) {
          clearInterval(t)
          res.end('data: [DONE]\n\n')
          return
        }
        res.write(`data: {"n":${n++}}\n\n`)
      }, 500)
      res.once('close', () => clearInterval(t))
      return
    }
    if (parsed.model === 'slow') {
      setTimeout(() => json(res, 200, { ok: true }), 1500)
      return
    }
    json(res, 200, { id: 'x', object: 'chat.completion', model: parsed.model, choices: [] })
  })
  vol = await ConfigVolume.create({ 'gateway.yaml': config(['m', 'slow']) })
  gw = await startGateway({
    config: { kind: 'manifests', paths: [vol.dir] },
    host: '127.0.0.1',
    port: 0,
    pollMs: 100,
    picker: new RoundRobinPicker(),
    connections: {
      headersTimeoutMs: 1000,
      requestTimeoutMs: 2000,
      keepAliveTimeoutMs: 1000,
      maxConnections: 300,
      timeoutCheckIntervalMs: 100,
    },
  })
})

afterAll(async () => {
  await gw?.shutdown({ deadlineMs: 500 })
  await engine?.close()
  await vol?.remove()
})

interface RawResult {
  readonly data: string
  readonly closed: boolean
}

/** Opens a raw connection, writes `payload` (if any), collects what comes back until close. */
function raw(
  port: number,
  payload: string | null,
  opts: { waitMs?: number } = {},
): Promise<RawResult> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1')
    let data = ''
    let timer: NodeJS.Timeout | undefined
    s.on('connect', () => {
      if (payload !== null) s.write(payload)
    })
    s.on('data', (d) => {
      data += d.toString()
    })
    s.on('error', () => {})
    s.on('close', () => {
      clearTimeout(timer)
      resolve({ data, closed: true })
    })
    timer = setTimeout(() => {
      s.destroy()
      resolve({ data, closed: false })
    }, opts.waitMs ?? 10_000)
  })
}

function parse(r: RawResult): { status: number; body: { error?: { code?: string } } } {
  const [head = '', body = ''] = r.data.split('\r\n\r\n')
  const status = Number(head.split(' ')[1])
  return { status, body: body === '' ? {} : (JSON.parse(body) as { error?: { code?: string } }) }
}

async function chat(model: string, dispatcher?: Agent) {
  const r = await request(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] }),
    ...(dispatcher ? { dispatcher } : {}),
  })
  const text = await r.body.text()
  return { status: r.statusCode, text }
}

describe('protocol-level errors are OpenAI-shaped', () => {
  it('malformed request line → 400 invalid_http_request', async () => {
    const r = parse(await raw(gw.port, 'GARBAGE\r\n\r\n'))
    expect(r.status).toBe(400)
    expect(r.body.error?.code).toBe('invalid_http_request')
  })

  it('headers over the limit → 431 request_header_too_large', async () => {
    const big = `GET /healthz HTTP/1.1\r\nHost: a\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`
    const r = parse(await raw(gw.port, big))
    expect(r.status).toBe(431)
    expect(r.body.error?.code).toBe('request_header_too_large')
  })

  it('HTTP/1.1 without Host → 400 missing_host_header (RFC 9112 §3.2); HTTP/1.0 without Host is served', async () => {
    const body = JSON.stringify({ model: 'm', messages: [] })
    const head = (v: string) =>
      `POST /v1/chat/completions HTTP/${v}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`
    const r11 = await raw(gw.port, head('1.1'))
    const p11 = parse(r11)
    expect(p11.status).toBe(400)
    expect(p11.body.error?.code).toBe('missing_host_header')
    expect(r11.data.toLowerCase()).toContain('connection: close')
    expect(parse(await raw(gw.port, head('1.0'))).status).toBe(200)
    // A Host no URL can be made of: refused by the adapter, still in the gateway's shape.
    const badRaw = await raw(gw.port, 'GET /healthz HTTP/1.1\r\nHost: a@b\r\n\r\n')
    expect(badRaw.data.toLowerCase()).toContain('connection: close')
    const bad = parse(badRaw)
    expect(bad.status).toBe(400)
    expect(bad.body.error?.code).toBe('invalid_http_request')
  })

  it('an Expect other than 100-continue → 417 expectation_failed', async () => {
    const req =
      'POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nExpect: teapot\r\nContent-Length: 0\r\n\r\n'
    const r = parse(await raw(gw.port, req))
    expect(r.status).toBe(417)
    expect(r.body.error?.code).toBe('expectation_failed')
  })
})

describe('client timeouts', () => {
  it('deadlines are swept at a quarter of the shorter one, between 100 ms and 1 s', () => {
    expect(timeoutCheckInterval(10_000, 60_000)).toBe(1000)
    expect(timeoutCheckInterval(2000, 5000)).toBe(500)
    expect(timeoutCheckInterval(2000, 1000)).toBe(250)
    expect(timeoutCheckInterval(2000, 0)).toBe(500)
    expect(timeoutCheckInterval(200, 0)).toBe(100)
  })

  it('slow headers, a slow body and a silent connection are answered 408 and closed', async () => {
    const [headers, body, silent] = await Promise.all([
      raw(gw.port, 'POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\n'),
      raw(
        gw.port,
        'POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"model":',
      ),
      raw(gw.port, null),
    ])
    for (const r of [headers, body, silent]) {
      expect(r.closed).toBe(true)
      const p = parse(r)
      expect(p.status).toBe(408)
      expect(p.body.error?.code).toBe('request_timeout')
    }
  })

  it('an idle keep-alive connection is closed; a stream longer than the request timeout is not cut', async () => {
    const idle = raw(gw.port, 'GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n')
    const stream = await request(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'm', stream: true, messages: [] }),
    })
    const text = await stream.body.text()
    expect(stream.statusCode).toBe(200)
    expect(text.match(/data: \{"n":\d\}/g)?.length).toBe(6)
    expect(text).toContain('[DONE]')
    const r = await idle
    expect(r.closed).toBe(true)
    expect(r.data).toMatch(/^HTTP\/1\.1 200/)
  })
})

describe('connection cap', () => {
  it('2,000 idle connections: at most the cap held, real clients served, config reloads, all closed by the timeout', async () => {
    const sockets: Socket[] = []
    const results: Promise<RawResult>[] = []
    const open = (): Promise<void> =>
      new Promise((resolve) => {
        const s = connect(gw.port, '127.0.0.1')
        sockets.push(s)
        let data = ''
        results.push(
          new Promise((done) => {
            s.on('data', (d) => {
              data += d.toString()
            })
            s.on('close', () => done({ data, closed: true }))
          }),
        )
        s.on('error', () => {})
        s.once('connect', () => resolve())
        s.once('close', () => resolve())
      })
    // What the gateway holds, sampled while the flood is accepted (the kernel's accept queue
    // completes handshakes before the gateway sees them).
    let held = 0
    const sampler = setInterval(() => {
      held = Math.max(held, gw.server.connections())
    }, 5)
    for (let i = 0; i < 2000; i += 100) {
      await Promise.all(Array.from({ length: 100 }, open))
    }
    for (let i = 0; i < 250 && gw.server.refusedConnections() === 0; i++) {
      await new Promise((r) => setTimeout(r, 20))
    }
    expect(gw.server.refusedConnections()).toBeGreaterThan(0)

    // Real clients, each on a new connection, while the idle ones are held.
    const fresh = new Agent({ pipelining: 0 })
    const real = await Promise.all(Array.from({ length: 20 }, () => chat('m', fresh)))
    await fresh.close()
    expect(real.map((r) => r.status)).toEqual(Array(20).fill(200))

    // A reload while the flood is held: a new model appears.
    await vol.update({ 'gateway.yaml': config(['m', 'slow', 'm2']) })
    for (let i = 0; i < 100 && !gw.store.table?.hasModel('m2'); i++) {
      await new Promise((r) => setTimeout(r, 50))
    }
    expect((await chat('m2')).status).toBe(200)

    // Every idle socket is closed: evicted at the cap with a 503, or by the headers timeout (408).
    const all = (await Promise.all(results)).map(parse)
    clearInterval(sampler)
    expect(held).toBeGreaterThan(0)
    expect(held).toBeLessThanOrEqual(300)
    const codes = new Map<string, number>()
    for (const p of all) {
      const k = `${p.status} ${p.body.error?.code}`
      codes.set(k, (codes.get(k) ?? 0) + 1)
    }
    expect([...codes.keys()].sort()).toEqual(['408 request_timeout', '503 too_many_connections'])
    expect(
      (codes.get('408 request_timeout') ?? 0) + (codes.get('503 too_many_connections') ?? 0),
    ).toBe(2000)
    expect(gw.server.connections()).toBeLessThanOrEqual(1)
    const m = await gw.metrics.registry.getSingleMetricAsString(
      'infer_gateway_client_connections_refused_total',
    )
    expect(m).toMatch(/reason="at_cap_evicted"} [1-9]/)
    expect(m).toMatch(/reason="timeout"} [1-9]/)
    for (const s of sockets) s.destroy()
  }, 60_000)

  it('at the cap with no idle connection to evict, a new one gets a 503 too_many_connections', async () => {
    const small = await startGateway({
      config: { kind: 'manifests', paths: [vol.dir] },
      host: '127.0.0.1',
      port: 0,
      picker: new RoundRobinPicker(),
      connections: { maxConnections: 3, timeoutCheckIntervalMs: 100 },
    })
    try {
      const agent = new Agent({ pipelining: 0, connections: 3 })
      const busy = Array.from({ length: 3 }, () =>
        request(`${small.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'slow', messages: [] }),
          dispatcher: agent,
        }).then(async (r) => {
          await r.body.text()
          return r.statusCode
        }),
      )
      for (let i = 0; i < 100 && small.server.inflight() < 3; i++) {
        await new Promise((r) => setTimeout(r, 20))
      }
      expect(small.server.inflight()).toBe(3)
      const refused = parse(await raw(small.port, 'GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n'))
      expect(refused.status).toBe(503)
      expect(refused.body.error?.code).toBe('too_many_connections')
      expect(await Promise.all(busy)).toEqual([200, 200, 200])
      await agent.close()
    } finally {
      await small.shutdown({ deadlineMs: 500 })
    }
  })
})
