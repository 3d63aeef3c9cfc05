// Leader election against a REAL kube-apiserver: one leader among candidates, hand-over on
// release, take-over after a leader goes silent (and the silent one steps down first), and a
// restart with the same identity resuming without a transition.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CoordinationV1Api, KubeConfig } from '@kubernetes/client-node'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { proxiedKubeconfig, startTcpProxy } from '../hack/bench/control-plane-proxy.js'
import { type ControlPlane, startControlPlane } from '../hack/cluster/control-plane.js'
import { until } from '../test/helpers/until.js'
import { LeaderElector } from './leader.js'

const NS = 'leader-test'
let cp: ControlPlane
let kc: KubeConfig
let dir: string
const electors: LeaderElector[] = []

interface Log {
  readonly events: string[]
}

/** A Lease no candidate waits out within a test: a take-over before it is one "at once". */
const LONG_LEASE_MS = 120_000

function candidate(
  identity: string,
  log: Log,
  client = kc,
  name = 'lease-a',
  leaseDurationMs = 2000,
): LeaderElector {
  const e = new LeaderElector({
    kc: client,
    namespace: NS,
    name,
    identity,
    leaseDurationMs,
    renewDeadlineMs: leaseDurationMs * 0.75,
    retryPeriodMs: 200,
    onStartedLeading: () => log.events.push(`${identity}:start`),
    onStoppedLeading: () => log.events.push(`${identity}:stop`),
  })
  electors.push(e)
  return e
}

async function lease(name = 'lease-a') {
  return kc.makeApiClient(CoordinationV1Api).readNamespacedLease({ name, namespace: NS })
}

beforeAll(async () => {
  cp = await startControlPlane()
  kc = new KubeConfig()
  kc.loadFromFile(cp.kubeconfigPath)
  dir = await mkdtemp(join(tmpdir(), 'leader-test-'))
  await cp.kubectl(['create', 'namespace', NS])
}, 180_000)

afterAll(async () => {
  await Promise.all(electors.map((e) => e.stop(1000)))
  await cp?.stop()
  if (dir) await rm(dir, { recursive: true, force: true })
}, 60_000)

describe('LeaderElector (real API server)', () => {
  it('elects exactly one of two candidates and hands over at once on release', async () => {
    const log: Log = { events: [] }
    // A Lease longer than the test: the follower can only lead within it if the leader released.
    const a = candidate('a', log, kc, 'lease-a', LONG_LEASE_MS)
    const b = candidate('b', log, kc, 'lease-a', LONG_LEASE_MS)
    a.start()
    b.start()
    await until(() => a.isLeader || b.isLeader)
    await new Promise((r) => setTimeout(r, 600))
    expect([a.isLeader, b.isLeader].filter(Boolean)).toHaveLength(1)
    const [leader, follower] = a.isLeader ? [a, b] : [b, a]
    const holder = (await lease()).spec?.holderIdentity
    expect(holder).toBe(a.isLeader ? 'a' : 'b')
    const transitions = (await lease()).spec?.leaseTransitions ?? 0

    await leader.stop()
    // Released (holder cleared): the follower leads without waiting out the Lease.
    await until(() => follower.isLeader, 15_000)
    const after = await lease()
    expect(after.spec?.holderIdentity).toBe(holder === 'a' ? 'b' : 'a')
    expect(after.spec?.leaseTransitions).toBe(transitions + 1)
    await follower.stop()
    expect(log.events.filter((e) => e.endsWith(':start'))).toHaveLength(2)
  }, 20_000)

  it('a leader cut off from the API server steps down before a candidate takes over', async () => {
    const proxy = await startTcpProxy(Number(new URL(cp.server).port))
    try {
      const pkc = new KubeConfig()
      pkc.loadFromFile(await proxiedKubeconfig(cp.kubeconfigPath, join(dir, 'proxied'), proxy.port))
      const log: Log = { events: [] }
      const cut = candidate('cut', log, pkc, 'lease-b')
      cut.start()
      await until(() => cut.isLeader)
      const other = candidate('other', log, kc, 'lease-b')
      other.start()
      await new Promise((r) => setTimeout(r, 500))
      expect(other.isLeader).toBe(false)
      proxy.freeze()
      await until(() => other.isLeader, 8000)
      // Never two leaders at once: the cut-off one stopped (renew deadline 1.5 s) before the other
      // could take the Lease (2 s after it last saw it change).
      const order = log.events.filter((e) => e === 'cut:stop' || e === 'other:start')
      expect(order).toEqual(['cut:stop', 'other:start'])
      expect((await lease('lease-b')).spec?.holderIdentity).toBe('other')
      proxy.thaw()
      await new Promise((r) => setTimeout(r, 600))
      expect(cut.isLeader).toBe(false)
    } finally {
      await proxy.close()
    }
  }, 30_000)

  it('a restarted process with the same identity resumes leadership at once, without a transition', async () => {
    const log: Log = { events: [] }
    const first = candidate('same', log, kc, 'lease-c', LONG_LEASE_MS)
    first.start()
    await until(() => first.isLeader)
    const before = (await lease('lease-c')).spec
    // A crash: the loop is gone without releasing (simulated by a second elector taking over
    // the identity while the Lease still names it).
    // The Lease is longer than the test: leading within it means it was not waited out.
    const again = candidate('same', log, kc, 'lease-c', LONG_LEASE_MS)
    again.start()
    await until(() => again.isLeader, 15_000)
    const after = (await lease('lease-c')).spec
    expect(after?.leaseTransitions).toBe(before?.leaseTransitions)
    expect(String(after?.acquireTime)).toBe(String(before?.acquireTime))
  }, 20_000)
})
