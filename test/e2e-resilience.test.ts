// Failure drills on a REAL control plane with two operator replicas (Lease election) and two
// data-plane processes, one subscribed to each replica, under continuous load: the leader is
// killed, restarted, gracefully replaced, and the API server goes away for 30 s. Throughout,
// requests must not fail, versions must not move without a content change, and statuses must
// not churn.
import { CoordinationV1Api } from '@kubernetes/client-node'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { OPERATOR_LEASE } from '../api/crd.js'
import {
  apply,
  type Cluster,
  createReadyPod,
  type DataplaneProc,
  dataplaneVersion,
  deletePod,
  ensureNamespace,
  getStatus,
  modelRoute,
  modelServer,
  NS,
  type OperatorProc,
  SIM_MODEL,
  spawnDataplane,
  spawnOperator,
  startCluster,
  startLoad,
  startSims,
  storedVersion,
  until,
  waitReady,
} from '../hack/bench/control-plane-kit.js'
import type { SimHandle } from '../hack/sim/index.js'

const APP = 'drill'
const IP = { a: '127.0.0.180', b: '127.0.0.181' }
let c: Cluster
let opA: OperatorProc
let opB: OperatorProc
let dp1: DataplaneProc
let dp2: DataplaneProc
let sims: Map<string, SimHandle>

let n = 0
// Distinct prompts: the scheduler keeps one prompt prefix on one pod (cache affinity).
const chat = () => ({
  model: 'chat',
  messages: [{ role: 'user', content: `request ${n++}` }],
  max_tokens: 1,
})

async function role(op: OperatorProc): Promise<string> {
  const r = await fetch(`${op.url}/readyz`).catch(() => undefined)
  return r === undefined ? 'down' : (await r.text()).trim()
}

async function holder(): Promise<string | undefined> {
  const l = await c.kc
    .makeApiClient(CoordinationV1Api)
    .readNamespacedLease({ name: OPERATOR_LEASE, namespace: NS })
  return l.spec?.holderIdentity
}

async function writes(op: OperatorProc): Promise<number> {
  const text = await (await fetch(`${op.url}/metrics`)).text()
  let n = 0
  for (const m of text.matchAll(
    /^infer_gateway_operator_(?:status_patches|snapshot_publishes)_total\{[^}]*\} (\d+)/gm,
  ))
    n += Number(m[1])
  return n
}

async function resourceVersions(): Promise<string[]> {
  return [
    (await getStatus(c, 'route', APP, 'chat')).resourceVersion,
    (await getStatus(c, 'server', APP, 'engine')).resourceVersion,
    (await storedVersion(c)).resourceVersion,
  ]
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

beforeAll(async () => {
  let port: number
  ;[c, { port, sims }] = await Promise.all([startCluster(), startSims(Object.values(IP))])
  await ensureNamespace(c, APP)
  await apply(c, modelServer(APP, 'engine', { labels: { app: 'engine' }, port, model: SIM_MODEL }))
  await apply(c, modelRoute(APP, 'chat', 'chat', [{ server: 'engine' }]))
  await createReadyPod(c, APP, 'engine-a', { app: 'engine' }, IP.a)
  opA = await spawnOperator(c, { identity: 'op-a' })
  await waitReady(opA.url)
  await until('op-a leads', async () => ((await role(opA)).includes('leader') ? true : undefined))
  opB = await spawnOperator(c, { identity: 'op-b' })
  await waitReady(opB.url)
  ;[dp1, dp2] = await Promise.all([
    spawnDataplane('127.0.0.190', ['--push-url', opA.pushUrl]),
    spawnDataplane('127.0.0.191', ['--push-url', opB.pushUrl]),
  ])
  await until('route ready', async () => {
    const s = await getStatus(c, 'route', APP, 'chat')
    return s.status.readyEndpoints === 1 ? true : undefined
  })
  const { version } = await storedVersion(c)
  await until('data planes have it', async () =>
    (await dataplaneVersion(dp1.url)) === version && (await dataplaneVersion(dp2.url)) === version
      ? true
      : undefined,
  )
}, 180_000)

afterAll(async () => {
  await Promise.all([dp1?.stop(), dp2?.stop(), opA?.stop(), opB?.stop()])
  await Promise.all([...(sims?.values() ?? [])].map((s) => s.close()))
  await c?.stop()
}, 60_000)

describe('resilience (two operator replicas, real API server)', () => {
  it('one replica leads and writes; both serve byte-identical snapshots', async () => {
    expect(await role(opA)).toBe('ok (leader)')
    expect(await role(opB)).toBe('ok (follower)')
    expect(await holder()).toBe('op-a')
    const [a, b] = await Promise.all(
      [opA, opB].map((o) => fetch(`${o.pushUrl}?after=0`).then((r) => r.text())),
    )
    expect(a).toBe(b)
    expect(JSON.parse(a ?? '{}').version).toBe((await storedVersion(c)).version)
    expect(await writes(opA)).toBeGreaterThan(0)
    expect(await writes(opB)).toBe(0)
  })

  it('kill -9 of the leader: no failed request, take-over without a new version, changes keep flowing', async () => {
    const load = startLoad([dp1.url, dp2.url], chat)
    const before = await storedVersion(c)
    const rvs = await resourceVersions()
    opA.child.kill('SIGKILL')
    await until(
      'op-b takes over',
      async () => ((await role(opB)).includes('leader') ? true : undefined),
      15_000,
    )
    await sleep(1000)
    // Same content → same version; nothing rewritten (ConfigMap and statuses untouched).
    expect(await resourceVersions()).toEqual(rvs)
    expect(await writes(opB)).toBe(0)

    await createReadyPod(c, APP, 'engine-b', { app: 'engine' }, IP.b)
    const next = await until('new version', async () => {
      const s = await storedVersion(c)
      return s.version > before.version ? s : undefined
    })
    await until('dp2 (on op-b) routes by it', async () =>
      (await dataplaneVersion(dp2.url)) === next.version ? true : undefined,
    )
    // dp1's operator is gone: it keeps serving its last snapshot...
    expect(await dataplaneVersion(dp1.url)).toBe(before.version)
    // ...until op-a is back (same identity and port), now as a follower serving the stored state.
    opA = await spawnOperator(c, { identity: 'op-a', port: opA.port })
    await waitReady(opA.url)
    await until('dp1 catches up', async () =>
      (await dataplaneVersion(dp1.url)) === next.version ? true : undefined,
    )
    expect(await role(opA)).toBe('ok (follower)')
    const result = await load.stop()
    expect(result.errors).toEqual([])
    expect(result.failed).toBe(0)
    expect(result.ok).toBeGreaterThan(100)
    expect(sims.get(IP.b)?.stats().requests).toBeGreaterThan(0)
  }, 60_000)

  it('a graceful leader restart hands over at once with no version bump and no status writes', async () => {
    await until('status settled', async () =>
      (await getStatus(c, 'route', APP, 'chat')).status.readyEndpoints === 2 ? true : undefined,
    )
    await sleep(500)
    const rvs = await resourceVersions()
    opB.child.kill('SIGTERM')
    await until('op-b releases the lease', () =>
      opB.output().includes('released the lease') ? true : undefined,
    )
    // Released on SIGTERM (holder cleared), so op-a need not wait for the 4 s lease to expire: a
    // leader that went away without releasing would still be the holder here.
    expect(await holder()).not.toBe('op-b')
    await until('op-a leads', async () => ((await role(opA)).includes('leader') ? true : undefined))
    await opB.stop()
    await sleep(1000)
    expect(await holder()).toBe('op-a')
    expect(await resourceVersions()).toEqual(rvs)
    expect(await writes(opA)).toBe(0)
    opB = await spawnOperator(c, { identity: 'op-b', port: opB.port })
    await waitReady(opB.url)
    expect(await role(opB)).toBe('ok (follower)')
  }, 30_000)

  it('API server down for 30 s: no failed request; operators recover and catch up after', async () => {
    const load = startLoad([dp1.url, dp2.url], chat)
    const before = await storedVersion(c)
    await c.cp.stopApiServer()
    await sleep(30_000)
    // Throughout, the replicas kept serving the push channel (no restart, nothing lost).
    expect((await fetch(`${opB.pushUrl}?after=0`)).headers.get('x-snapshot-version')).toBe(
      String(before.version),
    )
    await c.cp.startApiServer()
    // A change made after the API server returns reaches both data planes and the status.
    await deletePod(c, APP, 'engine-b')
    const next = await until(
      'new version after the outage',
      async () => {
        const s = await storedVersion(c)
        return s.version > before.version ? s : undefined
      },
      20_000,
    )
    await until('both data planes route by it', async () =>
      (await dataplaneVersion(dp1.url)) === next.version &&
      (await dataplaneVersion(dp2.url)) === next.version
        ? true
        : undefined,
    )
    await until('status follows', async () =>
      (await getStatus(c, 'route', APP, 'chat')).status.readyEndpoints === 1 ? true : undefined,
    )
    const result = await load.stop()
    expect(result.errors).toEqual([])
    expect(result.failed).toBe(0)
    expect(result.ok).toBeGreaterThan(100)
    expect([await role(opA), await role(opB)].filter((r) => r.includes('leader'))).toHaveLength(1)
  }, 90_000)
})
