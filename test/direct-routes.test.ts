// The inference routes are served without Hono (app.ts nodeListener); a request with a query
// string still goes through Hono's adapter. Both must answer alike: same statuses, bodies and
// headers for an engine's answer (plain and streamed), the gateway's own errors, and a body
// larger than the gateway holds whole (streamed through a WHATWG stream to the client).
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type Gateway, startGateway } from '../dataplane/gateway.js'
import { HOLD_WHOLE_BYTES } from '../dataplane/proxy/respond.js'
import { ConfigVolume, manifests } from './helpers/config.js'
import { json, startUpstream, type TestUpstream } from './helpers/upstream.js'

let up: TestUpstream
let gw: Gateway
let vol: ConfigVolume
const lines: Record<string, unknown>[] = []

beforeAll(async () => {
  up = await startUpstream('127.0.0.9', (_q, res, body) => {
    const b = JSON.parse(body) as { stream?: boolean; big?: boolean }
    if (b.big) {
      json(res, 200, { pad: 'y'.repeat(HOLD_WHOLE_BYTES + 1024), usage: { prompt_tokens: 3 } })
      return
    }
    if (b.stream) {
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      res.write('data: {"choices":[{"delta":{"content":"hi"}}]}\n\n')
      res.end('data: [DONE]\n\n')
      return
    }
    json(res, 200, { ok: true, usage: { prompt_tokens: 3, completion_tokens: 1 } })
  })
  vol = await ConfigVolume.create({
    'gateway.yaml': manifests(
      [{ name: 'm', endpoints: [{ name: 'up-0', address: '127.0.0.9', port: up.port }] }],
      [{ name: 'r', modelName: 'm', rules: [{ targetModels: [{ modelServerName: 'm' }] }] }],
    ),
  })
  gw = await startGateway({
    config: { kind: 'manifests', paths: [vol.dir] },
    port: 0,
    accessLog: (e) => lines.push({ ...e }),
  })
})
afterAll(async () => {
  await gw.shutdown({ deadlineMs: 1000 })
  await up.close()
  await vol.remove()
})

async function both(
  body: string,
  id: string,
): Promise<{ status: number; type: string | null; text: string }[]> {
  const out = []
  for (const query of ['', '?via=hono']) {
    const res = await fetch(`${gw.url}/v1/chat/completions${query}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-request-id': `${id}${query}` },
      body,
    })
    expect(res.headers.get('x-request-id')).toBe(`${id}${query}`)
    out.push({ status: res.status, type: res.headers.get('content-type'), text: await res.text() })
  }
  return out
}

describe('inference routes with and without Hono', () => {
  it('an engine answer, plain and streamed', async () => {
    const [d, h] = await both(JSON.stringify({ model: 'm', messages: [] }), 'plain')
    expect(d).toEqual(h)
    expect(d?.status).toBe(200)
    expect(JSON.parse(d?.text ?? '')).toMatchObject({ ok: true })
    const [ds, hs] = await both(JSON.stringify({ model: 'm', messages: [], stream: true }), 's')
    expect(ds).toEqual(hs)
    expect(ds?.type).toBe('text/event-stream')
    expect(ds?.text).toContain('data: [DONE]')
  })

  it("the gateway's errors: bad JSON, no model, unknown model", async () => {
    for (const [body, status, code] of [
      ['{nope', 400, 'invalid_json'],
      ['{}', 400, 'missing_model'],
      [JSON.stringify({ model: 'nobody' }), 404, 'model_not_found'],
    ] as const) {
      const [d, h] = await both(body, `err-${status}-${code}`)
      expect(d).toEqual(h)
      expect(d?.status).toBe(status)
      expect(d?.type).toBe('application/json')
      expect(JSON.parse(d?.text ?? '')).toMatchObject({ error: { code } })
    }
  })

  it('a body past what the gateway holds whole arrives complete, and is logged once', async () => {
    const [d, h] = await both(JSON.stringify({ model: 'm', messages: [], big: true }), 'big')
    expect(d?.status).toBe(200)
    expect(d?.text.length).toBeGreaterThan(HOLD_WHOLE_BYTES)
    expect(d).toEqual(h)
    expect(JSON.parse(d?.text ?? '')).toMatchObject({ usage: { prompt_tokens: 3 } })
    expect(lines.filter((l) => l['request_id'] === 'big')).toHaveLength(1)
  })

  it('other methods on an inference path are still answered by Hono (405 with Allow)', async () => {
    const res = await fetch(`${gw.url}/v1/chat/completions`)
    expect(res.status).toBe(405)
    expect(res.headers.get('allow')).toBe('POST')
  })
})
