import { afterEach, describe, expect, it } from 'vitest'
import { compileSnapshot } from '../api/index.js'
import { OperatorMetrics } from './metrics.js'
import { SnapshotPushServer } from './push-server.js'
import { listenOperator, type OperatorServer } from './server.js'

let srv: OperatorServer | undefined
afterEach(async () => {
  await srv?.close()
  srv = undefined
})

describe('operator HTTP server', () => {
  it('serves health, readiness (leader/follower), metrics and the push channel on every port', async () => {
    const health = { synced: false, isLeader: false }
    const push = new SnapshotPushServer()
    const metrics = new OperatorMetrics()
    metrics.leader.set(1)
    srv = await listenOperator({ host: '127.0.0.1', ports: [0, 0], push, metrics, health })
    expect(srv.urls).toHaveLength(2)
    for (const url of srv.urls) {
      expect((await fetch(`${url}/healthz`)).status).toBe(200)
      const notReady = await fetch(`${url}/readyz`)
      expect([notReady.status, await notReady.text()]).toEqual([503, 'informers not synced\n'])
    }
    health.synced = true
    const [a, b] = srv.urls
    expect(await (await fetch(`${a}/readyz`)).text()).toBe('ok (follower)\n')
    health.isLeader = true
    expect(await (await fetch(`${b}/readyz`)).text()).toBe('ok (leader)\n')
    const m = await fetch(`${a}/metrics`)
    expect(m.headers.get('content-type')).toContain('text/plain')
    expect(await m.text()).toMatch(/^infer_gateway_operator_leader 1$/m)
    expect((await fetch(`${a}/v1/snapshot?after=0&timeoutSeconds=0`)).status).toBe(304)
    const { snapshot } = compileSnapshot({ routes: [], servers: [], endpoints: {}, version: 3 })
    push.publish(snapshot)
    const s = await fetch(`${b}/v1/snapshot?after=0`)
    expect(s.headers.get('x-snapshot-version')).toBe('3')
    expect((await fetch(`${a}/nope`)).status).toBe(404)
    srv.drain()
    expect((await fetch(`${a}/readyz`)).status).toBe(503)
    expect((await fetch(`${a}/healthz`)).status).toBe(200)
  })

  it('fails to start on a port in use, and closes what it opened', async () => {
    const push = new SnapshotPushServer()
    const metrics = new OperatorMetrics()
    const health = { synced: true, isLeader: true }
    srv = await listenOperator({ host: '127.0.0.1', ports: [0], push, metrics, health })
    const taken = Number(new URL(srv.urls[0] ?? '').port)
    await expect(
      listenOperator({ host: '127.0.0.1', ports: [0, taken], push, metrics, health }),
    ).rejects.toThrow(/EADDRINUSE/)
  })
})
