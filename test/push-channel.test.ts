// Push channel end to end: operator-side publisher and data-plane long-poll subscriber over real
// HTTP, plus the combination with the durable snapshot file.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { RoutingSnapshot } from '../api/snapshot.js'
import { type Gateway, startGateway } from '../dataplane/gateway.js'
import { listenPushServer, SnapshotPushServer } from '../operator/push-server.js'
import { endpoint, route, server, snapshot } from './helpers/snapshot.js'
import { until } from './helpers/until.js'
import { json, startUpstream, type TestUpstream } from './helpers/upstream.js'

let up: TestUpstream
const push = new SnapshotPushServer()
let pushSrv: Awaited<ReturnType<typeof listenPushServer>>
let gw: Gateway

function snap(model: string, version: number): RoutingSnapshot {
  const s = server('s', [endpoint('up', '127.0.0.21', up.port)], { model })
  return snapshot(
    [
      route('r', {
        modelName: 'm',
        rules: [{ name: 'all', targets: [{ server: s.key, weight: 1 }] }],
      }),
    ],
    [s],
    version,
  )
}

beforeAll(async () => {
  up = await startUpstream('127.0.0.21', (_q, res, body) =>
    json(res, 200, { model: (JSON.parse(body) as { model: string }).model }),
  )
  pushSrv = await listenPushServer(push, '127.0.0.22', 0)
})
afterAll(async () => {
  await gw?.shutdown({ deadlineMs: 500 })
  await pushSrv.close()
  await up.close()
})

describe('push channel', () => {
  it('a data plane started before the first publish gets it from its waiting poll, at once', async () => {
    gw = await startGateway({ pushUrl: pushSrv.url, port: 0 })
    expect(gw.store.snapshot).toBeUndefined()
    expect((await fetch(`${gw.url}/readyz`)).status).toBe(503)
    await until(() => push.waiting === 1)
    push.publish(snap('v1', 1))
    // The publish itself answered the waiting poll (not its hold timer, nor a later poll).
    expect(push.waiting).toBe(0)
    await until(() => gw.store.snapshot?.version === 1)
    const r = await fetch(`${gw.url}/v1/completions`, {
      method: 'POST',
      body: JSON.stringify({ model: 'm', prompt: 'x' }),
    })
    expect(await r.json()).toEqual({ model: 'v1' })
  })

  it('follows every newer version and ignores older ones', async () => {
    push.publish(snap('v2', 2))
    await until(() => gw.store.snapshot?.version === 2)
    push.publish(snap('old', 1))
    expect(push.version).toBe(2)
    push.publish(snap('v5', 5))
    await until(() => gw.store.snapshot?.version === 5)
  })

  it('keeps serving the last snapshot while the operator is down, then resumes', async () => {
    const port = Number(new URL(pushSrv.url).port)
    await pushSrv.close()
    const r = await fetch(`${gw.url}/v1/completions`, {
      method: 'POST',
      body: JSON.stringify({ model: 'm', prompt: 'x' }),
    })
    expect(await r.json()).toEqual({ model: 'v5' })
    // A new operator replica on the same address with a newer snapshot.
    const push2 = new SnapshotPushServer()
    push2.publish(snap('v6', 6))
    pushSrv = await listenPushServer(push2, '127.0.0.22', port)
    await until(() => gw.store.snapshot?.version === 6, 8000)
  })
})
