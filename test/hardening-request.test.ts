// Hardening of the request path (issue 10 items 1, 4, 5, 8, 9): hostile bodies and exceptions
// never leak what a request holds (fairness admission, in-flight gauge, access-log line);
// misbehaving engines (hang, cut, garbage, endless bodies, endless SSE lines, closing on large
// uploads) are reported to the picker with the right failure kind and cost bounded memory; request
// headers reach engines the way a proxy should send them; per-engine connection queueing shows in
// /metrics. Real gateways, the engine simulator and the hardening bad engine on loopback.
import { request as httpRequest } from 'node:http'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { SnapshotEndpoint } from '../api/snapshot.js'
import type { AccessLogEntry } from '../dataplane/access-log.js'
import { type Gateway, startGateway } from '../dataplane/gateway.js'
import {
  type Admission,
  type DispatchOutcome,
  type EndpointPicker,
  type PickContext,
  RoundRobinPicker,
} from '../dataplane/picker.js'
import { type BadEngine, startBadEngine } from '../hack/hardening/bad-engine.js'
import { type SimHandle, startSimulator } from '../hack/sim/index.js'
import { ConfigVolume, manifests, type RouteSpec, type ServerSpec } from './helpers/config.js'
import { gatewayPolicy, yamlDocs } from './helpers/filters.js'
import { until } from './helpers/until.js'
import { startUpstream, type TestUpstream } from './helpers/upstream.js'

type LogLine = AccessLogEntry & Record<string, unknown>

function route(name: string, server: string): RouteSpec {
  return { name, modelName: name, rules: [{ targetModels: [{ modelServerName: server }] }] }
}

async function inflight(gw: Gateway): Promise<number> {
  return (await gw.metrics.inflight.get()).values[0]?.value ?? Number.NaN
}

function post(gw: Gateway, body: string, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body,
  })
}

/**
 * A chat body nesting `levels` arrays deep (10 KB ≈ 5,000 levels) in `tool_calls` (walked by the
 * scheduler's prompt text) or in another field (walked only when the model is rewritten).
 */
function deepBody(model: string, levels: number, where: 'tool_calls' | 'metadata'): string {
  const deep = `${'['.repeat(levels)}${']'.repeat(levels)}`
  return where === 'tool_calls'
    ? `{"model":"${model}","messages":[{"role":"assistant","content":"x","tool_calls":${deep}}],"max_tokens":2}`
    : `{"model":"${model}","messages":[{"role":"user","content":"x"}],"metadata":${deep},"max_tokens":2}`
}

function normal(model: string): string {
  return JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 })
}

// ---------------------------------------------------------------------------------------------

describe('deep JSON and exceptions on the request path release everything', () => {
  const MODEL = 'deep-model'
  const CHAIN = 'deep-chain-model'
  let sim: SimHandle
  let vol: ConfigVolume
  const gws: Gateway[] = []
  const logs = new Map<Gateway, LogLine[]>()

  async function gateway(extra: Parameters<typeof startGateway>[0] | object): Promise<Gateway> {
    const lines: LogLine[] = []
    const gw = await startGateway({
      config: { kind: 'manifests', paths: [vol.dir] },
      port: 0,
      scheduler: { scrape: { intervalMs: 100 } },
      accessLog: (e) => lines.push({ ...e }),
      ...extra,
    })
    gws.push(gw)
    logs.set(gw, lines)
    return gw
  }

  beforeAll(async () => {
    sim = await startSimulator({
      name: 'deep-0',
      host: '127.0.0.120',
      port: 0,
      model: 'deep-upstream',
      metricsFormat: 'vllm',
      zeroLatency: true,
    })
    const server: ServerSpec = {
      name: 'deep',
      // A rewrite: the engine's name differs, so the body is re-serialised on the way up.
      model: 'deep-upstream',
      endpoints: [{ name: 'deep-0', address: sim.host, port: sim.port }],
      scheduler: {
        plugins: [
          { name: 'least-pending' },
          {
            name: 'fairness',
            args: { maxInFlightPerEndpoint: 2, queueTimeout: '500ms', headroom: 0 },
          },
        ],
      },
    }
    // The same pool behind a fallback rule: a chain of several targets (serve/chain.ts).
    const chain: RouteSpec = {
      name: CHAIN,
      modelName: CHAIN,
      rules: [
        {
          targetModels: [{ modelServerName: 'deep' }],
          fallback: { targets: [{ modelServerName: 'deep-b' }] },
        } as RouteSpec['rules'][number],
      ],
    }
    vol = await ConfigVolume.create({
      'gateway.yaml': manifests(
        [server, { ...server, name: 'deep-b' }],
        [route(MODEL, 'deep'), chain],
      ),
    })
  })

  afterAll(async () => {
    await Promise.all(gws.map((g) => g.shutdown({ deadlineMs: 500 })))
    await sim?.close()
    await vol?.remove()
  })

  it('refuses nesting past 128 levels with an OpenAI-shaped 400 and keeps serving (fairness at 2 in flight)', async () => {
    const gw = await gateway({})
    for (let i = 0; i < 6; i++) {
      const where = i % 2 === 0 ? 'metadata' : 'tool_calls'
      const res = await post(gw, deepBody(MODEL, 5_000, where), { 'x-request-id': `deep-${i}` })
      expect(res.status).toBe(400)
      const body = (await res.json()) as { error: { type: string; code: string; message: string } }
      expect(body.error).toMatchObject({ type: 'invalid_request_error', code: 'json_too_deep' })
      expect(body.error.message).toContain('128 levels')
    }
    const ok = await post(gw, normal(MODEL))
    expect(ok.status).toBe(200)
    await ok.arrayBuffer()
    await until(async () => (await inflight(gw)) === 0)
    const lines = logs.get(gw) ?? []
    for (let i = 0; i < 6; i++) {
      expect(lines.find((l) => l.request_id === `deep-${i}`)).toMatchObject({
        status: 400,
        error_code: 'json_too_deep',
      })
    }
  })

  it('an exception after admission (re-serialising 20,000 levels) is a 500 that releases admission, gauge and log', async () => {
    // The depth limit lifted: the request reaches the scheduler and the model rewrite, where
    // JSON.stringify overflows its stack. Six of them would hold the 2 places forever if leaked.
    const gw = await gateway({ maxJsonDepth: 1_000_000 })
    for (let i = 0; i < 6; i++) {
      // Both kinds of chain: the plain rule (one target) and the fallback rule (serve/chain.ts).
      const res = await post(gw, deepBody(i % 2 === 0 ? MODEL : CHAIN, 20_000, 'metadata'), {
        'x-request-id': `throw-${i}`,
      })
      expect(res.status).toBe(500)
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('internal_error')
    }
    for (const model of [MODEL, CHAIN]) {
      const ok = await post(gw, normal(model))
      expect(ok.status).toBe(200)
      await ok.arrayBuffer()
    }
    await until(async () => (await inflight(gw)) === 0)
    const lines = logs.get(gw) ?? []
    for (let i = 0; i < 6; i++) {
      expect(lines.find((l) => l.request_id === `throw-${i}`)).toMatchObject({
        status: 500,
        error_code: 'internal_error',
        model: i % 2 === 0 ? MODEL : CHAIN,
      })
    }
  })

  it('a picker whose pick throws: 500, admission released, gauge 0, one access-log line', async () => {
    let admitted = 0
    let released = 0
    const picker: EndpointPicker = {
      admit(): Admission {
        admitted++
        let done = false
        return {
          release() {
            if (done) return
            done = true
            released++
          },
        }
      },
      pick(): readonly SnapshotEndpoint[] {
        throw new Error('injected picker bug')
      },
    }
    const gw = await gateway({ picker })
    for (let i = 0; i < 4; i++) {
      const res = await post(gw, normal(i % 2 === 0 ? MODEL : CHAIN), {
        'x-request-id': `pick-${i}`,
      })
      expect(res.status).toBe(500)
      expect(await res.json()).toMatchObject({
        error: { type: 'server_error', code: 'internal_error' },
      })
    }
    expect(admitted).toBe(4)
    expect(released).toBe(4)
    expect(await inflight(gw)).toBe(0)
    const lines = (logs.get(gw) ?? []).filter((l) => l.request_id.startsWith('pick-'))
    expect(lines.map((l) => l.status)).toEqual([500, 500, 500, 500])
    // The fallback rule's requests were served (and failed) by the chain path.
    expect(lines.map((l) => l['target_kind'])).toEqual([undefined, 'server', undefined, 'server'])
  })
})

describe('an exception settles the rate-limit reservation', () => {
  let vol: ConfigVolume
  let gw: Gateway

  beforeAll(async () => {
    vol = await ConfigVolume.create({
      'gateway.yaml': `${manifests(
        [{ name: 'limited', endpoints: [{ name: 'never', address: '127.0.0.132', port: 9 }] }],
        [route('limited-model', 'limited')],
      )}\n---\n${yamlDocs([
        gatewayPolicy({
          anonymous: { tier: 'small' },
          defaults: { authorization: { allowAnonymous: true } },
          // Room for about two requests' reservations (prompt + max_tokens 40) at a time.
          tiers: [{ name: 'small', rate: [{ tokens: 120, per: 'minute' }] }],
        }),
      ])}`,
    })
    const picker: EndpointPicker = {
      pick(): readonly SnapshotEndpoint[] {
        throw new Error('injected picker bug')
      },
    }
    gw = await startGateway({ config: { kind: 'manifests', paths: [vol.dir] }, port: 0, picker })
  })

  afterAll(async () => {
    await gw?.shutdown({ deadlineMs: 500 })
    await vol?.remove()
  })

  it('six failing requests in a row each get their reserved tokens back (no 429 from leaked reservations)', async () => {
    const body = JSON.stringify({
      model: 'limited-model',
      messages: [{ role: 'user', content: 'hi' }],
      max_tokens: 40,
    })
    const statuses: number[] = []
    for (let i = 0; i < 6; i++) {
      const res = await post(gw, body)
      statuses.push(res.status)
      await res.arrayBuffer()
    }
    expect(statuses).toEqual([500, 500, 500, 500, 500, 500])
    expect(await inflight(gw)).toBe(0)
  })
})

// ---------------------------------------------------------------------------------------------

/** Round robin, recording every dispatch outcome by endpoint name. */
class RecordingPicker extends RoundRobinPicker {
  readonly outcomes: { endpoint: string; outcome: DispatchOutcome }[] = []
  onComplete(_ctx: PickContext, endpoint: SnapshotEndpoint, outcome: DispatchOutcome): void {
    this.outcomes.push({ endpoint: endpoint.name, outcome })
  }
  failuresOf(endpoint: string): (string | undefined)[] {
    return this.outcomes.filter((o) => o.endpoint === endpoint).map((o) => o.outcome.failure)
  }
}

describe('misbehaving engines are reported with the right failure and cost bounded memory', () => {
  const picker = new RecordingPicker()
  const engines: Record<string, BadEngine> = {}
  let vol: ConfigVolume
  let gw: Gateway
  const lines: LogLine[] = []

  beforeAll(async () => {
    const spec: [string, string, BadEngine['mode'] extends () => infer M ? M : never][] = [
      ['hang', '127.0.0.121', 'hang'],
      ['cut', '127.0.0.122', 'cut'],
      ['garbage', '127.0.0.123', 'garbage'],
      ['endless', '127.0.0.124', 'endless'],
      ['sse', '127.0.0.125', 'sse-no-newlines'],
      ['big-a', '127.0.0.126', 'oversized-close'],
      ['big-b', '127.0.0.127', 'oversized-close'],
    ]
    for (const [name, host, mode] of spec) {
      engines[name] = await startBadEngine({
        name,
        host,
        model: 'bad-upstream',
        mode,
        oversizedBytes: 16 * 1024,
      })
    }
    const ep = (n: string) => {
      const e = engines[n] as BadEngine
      return { name: n, address: e.host, port: e.port }
    }
    const servers: ServerSpec[] = [
      {
        name: 'hang',
        model: 'bad-upstream',
        endpoints: [ep('hang')],
        trafficPolicy: { timeouts: { responseHeader: '300ms' } },
      },
      {
        // The same hanging engine under a total deadline instead of a header timeout.
        name: 'hang-total',
        model: 'bad-upstream',
        endpoints: [ep('hang')],
        trafficPolicy: { timeouts: { request: '300ms' } },
      },
      { name: 'cut', model: 'bad-upstream', endpoints: [ep('cut')] },
      { name: 'garbage', model: 'bad-upstream', endpoints: [ep('garbage')] },
      { name: 'endless', model: 'bad-upstream', endpoints: [ep('endless')] },
      { name: 'sse', model: 'bad-upstream', endpoints: [ep('sse')] },
      {
        name: 'big',
        model: 'bad-upstream',
        endpoints: [ep('big-a'), ep('big-b')],
        trafficPolicy: { retry: { attempts: 3, retryOn: ['connect-failure', '5xx'] } },
      },
    ]
    vol = await ConfigVolume.create({
      'gateway.yaml': manifests(
        servers,
        servers.map((s) => route(`${s.name}-model`, s.name)),
      ),
    })
    gw = await startGateway({
      config: { kind: 'manifests', paths: [vol.dir] },
      port: 0,
      picker,
      maxUpstreamBodyBytes: 1024 * 1024,
      maxSseLineBytes: 64 * 1024,
      accessLog: (e) => lines.push({ ...e }),
    })
  })

  afterAll(async () => {
    await gw?.shutdown({ deadlineMs: 500 })
    await Promise.all(Object.values(engines).map((e) => e.close()))
    await vol?.remove()
  })

  it('an engine that hangs: 504 and failure timeout (header timeout and total deadline)', async () => {
    for (const model of ['hang-model', 'hang-total-model']) {
      const res = await post(gw, normal(model))
      expect(res.status).toBe(504)
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe(
        'upstream_timeout',
      )
    }
    // A total deadline is the engine's slowness, not a client leaving ('aborted' before).
    expect(picker.failuresOf('hang')).toEqual(['timeout', 'timeout'])
  })

  it('a body cut mid-way: failure stream_cut (plain and streamed)', async () => {
    const res = await post(gw, normal('cut-model'))
    expect(res.status).toBe(502)
    await res.arrayBuffer()
    const s = await post(
      gw,
      JSON.stringify({ ...JSON.parse(normal('cut-model')), stream: true, max_tokens: 20 }),
    )
    const text = await s.text()
    expect(text).toContain('upstream_stream_cut')
    expect(text).not.toContain('[DONE]')
    await until(() => picker.failuresOf('cut').length === 2)
    expect(picker.failuresOf('cut')).toEqual(['stream_cut', 'stream_cut'])
  })

  it('malformed HTTP: 502 and failure protocol, for every kind of garbage', async () => {
    for (let i = 0; i < 6; i++) {
      const res = await post(gw, normal('garbage-model'))
      expect(res.status).toBe(502)
      await res.arrayBuffer()
    }
    await until(() => picker.failuresOf('garbage').length === 6)
    expect(picker.failuresOf('garbage')).toEqual(Array(6).fill('protocol'))
  })

  it('an endless body: 502 upstream_body_too_large at the cap, failure body_too_large, engine no longer read', async () => {
    const res = await post(gw, normal('endless-model'), { 'x-request-id': 'endless-1' })
    expect(res.status).toBe(502)
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe(
      'upstream_body_too_large',
    )
    expect(picker.failuresOf('endless')).toEqual(['body_too_large'])
    const engine = engines['endless'] as BadEngine
    const sent = engine.stats().endlessBytes
    await new Promise((r) => setTimeout(r, 200))
    // The engine stopped: its socket was closed, not left flowing (a socket buffer at most).
    expect(engine.stats().endlessBytes - sent).toBeLessThanOrEqual(256 * 1024)
    expect(sent).toBeLessThan(8 * 1024 * 1024)
    expect(lines.find((l) => l.request_id === 'endless-1')?.error_code).toBe('body_too_large')
  })

  it('an endless SSE line: the stream ends with an error event, failure body_too_large', async () => {
    const res = await post(gw, JSON.stringify({ model: 'sse-model', stream: true, messages: [] }))
    expect(res.status).toBe(200)
    const text = await res.text()
    expect(text).toContain('upstream_body_too_large')
    expect(text).not.toContain('[DONE]')
    await until(() => picker.failuresOf('sse').length === 1)
    expect(picker.failuresOf('sse')).toEqual(['body_too_large'])
    expect(text.length).toBeLessThan(256 * 1024)
  })

  it('an engine closing on an oversized upload is not a connect failure, and the body goes to one engine only', async () => {
    const a = engines['big-a'] as BadEngine
    const b = engines['big-b'] as BadEngine
    const before = a.stats().requests + b.stats().requests
    const big = JSON.stringify({
      model: 'big-model',
      messages: [{ role: 'user', content: 'x'.repeat(200 * 1024) }],
    })
    const res = await post(gw, big)
    expect(res.status).toBe(502)
    await res.arrayBuffer()
    expect(a.stats().requests + b.stats().requests - before).toBe(1)
    const failures = [...picker.failuresOf('big-a'), ...picker.failuresOf('big-b')]
    expect(failures).toHaveLength(1)
    expect(failures[0]).not.toBe('connect')
    const m = await gw.metrics.upstreamFailures.get()
    expect(
      m.values.find(
        (v) => v.labels['server'] === 'default/big' && v.labels['reason'] === 'connect-failure',
      ),
    ).toBeUndefined()
  })
})

// ---------------------------------------------------------------------------------------------

describe('large non-streamed bodies pass through with bounded memory', () => {
  let endless: BadEngine
  let big: TestUpstream
  let vol: ConfigVolume
  let gw: Gateway
  const picker = new RecordingPicker()
  const lines: LogLine[] = []
  /** 6 MiB of embedding-like JSON (past HOLD_WHOLE_BYTES), usage at the end. */
  const bigBody = `{"object":"list","data":[{"embedding":[${'0.123456,'.repeat((6 * 1024 * 1024) / 9)}0]}],"usage":{"prompt_tokens":321,"total_tokens":321}}`

  beforeAll(async () => {
    endless = await startBadEngine({
      name: 'endless-2',
      host: '127.0.0.130',
      model: 'bad-upstream',
      mode: 'endless',
    })
    big = await startUpstream('127.0.0.131', (_q, res) => {
      res.writeHead(200, { 'content-type': 'application/json' })
      // In pieces, as an engine writes a large body.
      for (let i = 0; i < bigBody.length; i += 256 * 1024)
        res.write(bigBody.slice(i, i + 256 * 1024))
      res.end()
    })
    vol = await ConfigVolume.create({
      'gateway.yaml': manifests(
        [
          {
            name: 'endless2',
            model: 'bad-upstream',
            endpoints: [{ name: 'endless-2', address: endless.host, port: endless.port }],
          },
          { name: 'big', endpoints: [{ name: 'big-0', address: big.host, port: big.port }] },
        ],
        [route('endless2-model', 'endless2'), route('big-model', 'big')],
      ),
    })
    gw = await startGateway({
      config: { kind: 'manifests', paths: [vol.dir] },
      port: 0,
      picker,
      maxUpstreamBodyBytes: 16 * 1024 * 1024,
      accessLog: (e) => lines.push({ ...e }),
    })
  })

  afterAll(async () => {
    await gw?.shutdown({ deadlineMs: 500 })
    await endless?.close()
    await big?.close()
    await vol?.remove()
  })

  it('a 6 MiB body arrives whole, with its usage read from the tail', async () => {
    const res = await post(gw, normal('big-model'), { 'x-request-id': 'big-1' })
    expect(res.status).toBe(200)
    expect(await res.text()).toBe(bigBody)
    await until(() => lines.some((l) => l.request_id === 'big-1'))
    expect(lines.find((l) => l.request_id === 'big-1')).toMatchObject({
      status: 200,
      prompt_tokens: 321,
      bytes: Buffer.byteLength(bigBody),
    })
    expect(picker.failuresOf('big-0')).toEqual([undefined])
  })

  it('a client that stops reading holds the engine back; leaving stops it (failure aborted)', async () => {
    const u = new URL(gw.url)
    const before = endless.stats().endlessBytes
    const req = httpRequest({
      host: u.hostname,
      port: u.port,
      method: 'POST',
      path: '/v1/chat/completions',
      headers: { 'content-type': 'application/json' },
    })
    const got = new Promise<void>((resolve) =>
      req.on('response', (res) => {
        // Never read: only backpressure keeps the engine's bytes out of the gateway.
        res.pause()
        resolve()
      }),
    )
    req.on('error', () => {})
    req.end(normal('endless2-model'))
    await got
    // Wait until the engine is blocked (its byte count stops moving).
    let last = -1
    await until(async () => {
      const now = endless.stats().endlessBytes
      const still = now === last
      last = now
      await new Promise((r) => setTimeout(r, 100))
      return still
    })
    // Held back well below the 16 MiB cap: socket buffers plus the 4 MiB held whole, no more.
    expect(last - before).toBeLessThan(16 * 1024 * 1024)
    expect(picker.failuresOf('endless-2')).toEqual([])
    req.destroy()
    await until(() => picker.failuresOf('endless-2').length === 1)
    expect(picker.failuresOf('endless-2')).toEqual(['aborted'])
    const sent = endless.stats().endlessBytes
    await new Promise((r) => setTimeout(r, 200))
    expect(endless.stats().endlessBytes - sent).toBeLessThanOrEqual(256 * 1024)
    await until(async () => (await inflight(gw)) === 0)
  })

  it('an endless body past the cap: the response is aborted, failure body_too_large, engine stopped', async () => {
    const before = endless.stats().endlessBytes
    const res = await post(gw, normal('endless2-model'))
    expect(res.status).toBe(200)
    // The status went out before the cap was reached: the body breaks off instead.
    await expect(res.arrayBuffer()).rejects.toThrow()
    await until(() => picker.failuresOf('endless-2').length === 2)
    expect(picker.failuresOf('endless-2')[1]).toBe('body_too_large')
    const sent = endless.stats().endlessBytes
    // The 16 MiB cap, plus what sat in socket buffers when the engine was cut off.
    expect(sent - before).toBeLessThan(24 * 1024 * 1024)
    await new Promise((r) => setTimeout(r, 200))
    expect(endless.stats().endlessBytes - sent).toBeLessThanOrEqual(256 * 1024)
    expect(await inflight(gw)).toBe(0)
  })
})

// ---------------------------------------------------------------------------------------------

describe('what reaches the engine, and how the gateway answers odd requests', () => {
  let up: TestUpstream
  let vol: ConfigVolume
  let gw: Gateway

  beforeAll(async () => {
    up = await startUpstream('127.0.0.128', (_q, res) => {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}')
    })
    vol = await ConfigVolume.create({
      'gateway.yaml': `${manifests(
        [{ name: 'echo', endpoints: [{ name: 'echo-0', address: up.host, port: up.port }] }],
        [route('echo-model', 'echo')],
      )}\n---\n${yamlDocs([
        gatewayPolicy({
          // Identity headers count only from a proxy we are not: from this client they are
          // untrusted, so the caller is anonymous and the headers must never reach the engine.
          authentication: { trustedHeaders: { sourceAddresses: ['10.255.255.0/24'] } },
          defaults: { authorization: { allowAnonymous: true } },
        }),
      ])}`,
    })
    gw = await startGateway({ config: { kind: 'manifests', paths: [vol.dir] }, port: 0 })
  })

  afterAll(async () => {
    await gw?.shutdown({ deadlineMs: 500 })
    await up?.close()
    await vol?.remove()
  })

  /** Raw HTTP: header names fetch would normalise or refuse are sent as written. */
  function raw(
    method: string,
    path: string,
    headers: Record<string, string>,
    body?: string,
  ): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
    const u = new URL(gw.url)
    return new Promise((resolve, reject) => {
      const req = httpRequest({ host: u.hostname, port: u.port, method, path, headers }, (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks).toString('utf8'),
          }),
        )
      })
      req.on('error', reject)
      req.end(body)
    })
  }

  it('strips identity headers in underscore spelling and Connection-named headers; appends the peer to X-Forwarded-For', async () => {
    const res = await raw(
      'POST',
      '/v1/chat/completions',
      {
        'content-type': 'application/json',
        connection: 'keep-alive, x-hop-secret',
        'x-hop-secret': 'do-not-forward',
        x_user_id: 'mallory',
        x_tenant_id: 'team-a',
        'x-user-id': 'mallory',
        'x-forwarded-for': '203.0.113.9',
        'x-request-id': 'hdr-1',
      },
      normal('echo-model'),
    )
    expect(res.status).toBe(200)
    const seen = up.requests.at(-1)?.headers ?? {}
    expect(seen['x-request-id']).toBe('hdr-1')
    expect(seen['x_user_id']).toBeUndefined()
    expect(seen['x_tenant_id']).toBeUndefined()
    expect(seen['x-user-id']).toBeUndefined()
    expect(seen['x-hop-secret']).toBeUndefined()
    expect(seen['x-forwarded-for']).toBe('203.0.113.9, 127.0.0.1')
  })

  it('unknown methods on known paths: 405 OpenAI-shaped with Allow; unknown paths stay 404', async () => {
    const get = await raw('GET', '/v1/chat/completions', {})
    expect(get.status).toBe(405)
    expect(get.headers['allow']).toBe('POST')
    expect(JSON.parse(get.body)).toMatchObject({
      error: { type: 'invalid_request_error', code: 'method_not_allowed' },
    })
    const del = await raw('DELETE', '/v1/models', {})
    expect(del.status).toBe(405)
    expect(del.headers['allow']).toBe('GET, HEAD')
    expect((await raw('GET', '/v1/nothing-here', {})).status).toBe(404)
  })

  it('a 5 MB model name is not echoed back in the 404', async () => {
    const name = 'm'.repeat(5 * 1024 * 1024)
    const res = await post(gw, JSON.stringify({ model: name, messages: [] }))
    expect(res.status).toBe(404)
    const text = await res.text()
    expect(text.length).toBeLessThan(1024)
    expect(JSON.parse(text)).toMatchObject({ error: { code: 'model_not_found', param: 'model' } })
  })
})

// ---------------------------------------------------------------------------------------------

describe('per-engine connection limit', () => {
  let up: TestUpstream
  let vol: ConfigVolume
  let gw: Gateway
  let release: () => void = () => {}
  let gate = new Promise<void>((r) => {
    release = r
  })

  beforeAll(async () => {
    up = await startUpstream('127.0.0.129', (_q, res) => {
      // Held until the test lets go: each request occupies its connection meanwhile.
      void gate.then(() =>
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}'),
      )
    })
    vol = await ConfigVolume.create({
      'gateway.yaml': manifests(
        [{ name: 'narrow', endpoints: [{ name: 'narrow-0', address: up.host, port: up.port }] }],
        [route('narrow-model', 'narrow')],
      ),
    })
    gw = await startGateway({
      config: { kind: 'manifests', paths: [vol.dir] },
      port: 0,
      upstreamConnections: 2,
      picker: new RoundRobinPicker(),
    })
  })

  afterAll(async () => {
    release()
    await gw?.shutdown({ deadlineMs: 500 })
    await up?.close()
    await vol?.remove()
  })

  async function scrape(): Promise<string> {
    return (await fetch(`${gw.url}/metrics`)).text()
  }

  it('is configurable, and requests waiting for a connection show in /metrics by server', async () => {
    gate = new Promise<void>((r) => {
      release = r
    })
    const all = Array.from({ length: 5 }, () => post(gw, normal('narrow-model')))
    // Two connections carry two requests; the other three wait for one of them.
    await until(() => up.requests.length >= 2)
    await until(async () =>
      (await scrape()).includes(
        'infer_gateway_upstream_waiting_requests{server="default/narrow"} 3',
      ),
    )
    const text = await scrape()
    expect(text).toContain(
      'infer_gateway_upstream_connections{server="default/narrow",state="active"} 2',
    )
    expect(up.requests.length).toBe(2)
    release()
    const results = await Promise.all(all)
    expect(results.map((r) => r.status)).toEqual([200, 200, 200, 200, 200])
    await until(async () =>
      (await scrape()).includes(
        'infer_gateway_upstream_waiting_requests{server="default/narrow"} 0',
      ),
    )
  })
})
