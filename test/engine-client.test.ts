// The engine path through either engine client (--engine-client raw|undici), end to end: an engine
// that breaks mid-body, a client that leaves mid-stream. Each must settle the request (the
// in-flight gauge back to 0) and free the connection (no active one left in the pool gauges).
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type Gateway, startGateway } from '../dataplane/gateway.js'
import { ENGINE_CLIENTS } from '../dataplane/proxy/upstream-pool.js'
import { ConfigVolume, manifests } from './helpers/config.js'
import { until } from './helpers/until.js'
import { json, startUpstream, type TestUpstream } from './helpers/upstream.js'

async function inflight(gw: Gateway): Promise<number> {
  return (await gw.metrics.inflight.get()).values[0]?.value ?? Number.NaN
}

async function activeConnections(gw: Gateway): Promise<number> {
  // The whole scrape: the pool gauges are filled by one collect for both.
  const text = await gw.metrics.registry.metrics()
  const m = /infer_gateway_upstream_connections\{[^}]*state="active"[^}]*\} (\d+)/.exec(text)
  return m === null ? Number.NaN : Number(m[1])
}

describe.each(ENGINE_CLIENTS)('the engine path through %s', (engineClient) => {
  let up: TestUpstream
  let gw: Gateway
  let vol: ConfigVolume
  const host = engineClient === 'raw' ? '127.0.0.236' : '127.0.0.237'

  beforeAll(async () => {
    up = await startUpstream(host, (_q, res) => json(res, 200, { ok: true }))
    vol = await ConfigVolume.create({
      'gateway.yaml': manifests(
        [{ name: 's', model: 'm', endpoints: [{ name: 'e0', address: host, port: up.port }] }],
        [{ name: 'r', modelName: 's', rules: [{ targetModels: [{ modelServerName: 's' }] }] }],
      ),
    })
    gw = await startGateway({
      config: { kind: 'manifests', paths: [vol.dir] },
      port: 0,
      engineClient,
    })
  })
  afterAll(async () => {
    await gw.shutdown({ deadlineMs: 1000 })
    await up.close()
    await vol.remove()
  })

  const post = (stream: boolean, signal?: AbortSignal): Promise<Response> =>
    fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 's', messages: [], stream }),
      ...(signal !== undefined ? { signal } : {}),
    })

  it('an engine reset mid-body: 502, the request settled, the connection freed', async () => {
    up.handler = (_q, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': 1000 })
      res.write('{"partial":', () => res.socket?.destroy())
    }
    const res = await post(false)
    expect(res.status).toBe(502)
    await res.arrayBuffer()
    await until(async () => (await inflight(gw)) === 0)
    expect(await activeConnections(gw)).toBe(0)
  })

  it('an engine reset mid-stream: the stream ends with the cut event, the request settled', async () => {
    up.handler = (_q, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      res.write('data: {"choices":[{"delta":{"content":"a"}}]}\n\n', () => res.socket?.destroy())
    }
    const text = await (await post(true)).text()
    expect(text).toContain('"content":"a"')
    expect(text).toContain('upstream_stream_cut')
    await until(async () => (await inflight(gw)) === 0)
    expect(await activeConnections(gw)).toBe(0)
  })

  it('a client leaving mid-stream closes the engine connection and settles the request', async () => {
    let engineClosed!: () => void
    const closed = new Promise<void>((r) => {
      engineClosed = r
    })
    up.handler = (_q, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      res.write('data: {"choices":[{"delta":{"content":"a"}}]}\n\n')
      // Never ends: only the gateway giving the request up closes it.
      res.on('close', () => engineClosed())
    }
    const ctl = new AbortController()
    const res = await post(true, ctl.signal)
    const reader = (res.body as ReadableStream<Uint8Array>).getReader()
    await reader.read()
    ctl.abort()
    await closed
    await until(async () => (await inflight(gw)) === 0)
    await until(async () => (await activeConnections(gw)) === 0)
  })

  it('a plain answer after all that comes back whole on a kept connection', async () => {
    up.handler = (_q, res) => json(res, 200, { ok: true })
    const res = await post(false)
    expect(res.status).toBe(200)
    expect(await res.json()).toEqual({ ok: true })
  })
})
