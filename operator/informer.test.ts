// The informer against a REAL kube-apiserver + etcd (hack/cluster): list/watch, paging, update
// suppression, API-server restart, and a network path that goes silent (watchdog + list timeout).
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  proxiedKubeconfig,
  startTcpProxy,
  type TcpProxy,
} from '../hack/bench/control-plane-proxy.js'
import { type ControlPlane, startControlPlane } from '../hack/cluster/control-plane.js'
import { until } from '../test/helpers/until.js'
import { Informer, type InformerEvent } from './informer.js'

const NS = 'informer-test'
let cp: ControlPlane
let kc: KubeConfig
let core: CoreV1Api
let dir: string
let listCalls = 0

interface Cm {
  readonly name: string
  readonly mode: string | undefined
}

function cmInformer(
  client: KubeConfig,
  events: InformerEvent<Cm>[],
  extra: Partial<ConstructorParameters<typeof Informer<Cm>>[0]> = {},
): Informer<Cm> {
  const api = client.makeApiClient(CoreV1Api)
  return new Informer<Cm>({
    name: 'configmaps',
    kc: client,
    path: `/api/v1/namespaces/${NS}/configmaps`,
    labelSelector: 'test=informer',
    list: async (r) => {
      listCalls++
      const res = await api.listNamespacedConfigMap({
        namespace: NS,
        limit: r.limit,
        ...(r.continueToken !== undefined ? { _continue: r.continueToken } : {}),
        ...(r.labelSelector !== undefined ? { labelSelector: r.labelSelector } : {}),
      })
      return {
        items: res.items,
        resourceVersion: res.metadata?.resourceVersion ?? '',
        continueToken: res.metadata?._continue,
      }
    },
    transform: (raw) => {
      const o = raw as { metadata: { name: string }; data?: Record<string, string> }
      return { name: o.metadata.name, mode: o.data?.['mode'] }
    },
    // `note` changes are invisible to this consumer: no update event for them.
    equals: (a, b) => a.mode === b.mode,
    onEvent: (e) => events.push(e),
    backoff: { baseMs: 50, maxMs: 300 },
    ...extra,
  })
}

const put = (name: string, mode: string, note = '') =>
  core.replaceNamespacedConfigMap({
    name,
    namespace: NS,
    body: { metadata: { name, labels: { test: 'informer' } }, data: { mode, note } },
  })
const create = (name: string, mode: string) =>
  core.createNamespacedConfigMap({
    namespace: NS,
    body: { metadata: { name, labels: { test: 'informer' } }, data: { mode } },
  })

beforeAll(async () => {
  cp = await startControlPlane()
  kc = new KubeConfig()
  kc.loadFromFile(cp.kubeconfigPath)
  core = kc.makeApiClient(CoreV1Api)
  dir = await mkdtemp(join(tmpdir(), 'informer-test-'))
  await core.createNamespace({ body: { metadata: { name: NS } } })
}, 180_000)

afterAll(async () => {
  await cp?.stop()
  if (dir) await rm(dir, { recursive: true, force: true })
}, 60_000)

describe('Informer (real API server)', () => {
  it('lists in pages, then follows adds, updates and deletes; equal updates are not emitted', async () => {
    for (let i = 0; i < 7; i++) await create(`pre-${i}`, 'a')
    await core.createNamespacedConfigMap({
      namespace: NS,
      body: { metadata: { name: 'unlabelled' } },
    })
    const events: InformerEvent<Cm>[] = []
    const inf = cmInformer(kc, events, { pageSize: 3 })
    listCalls = 0
    inf.start()
    await inf.waitForSync()
    expect(inf.size).toBe(7)
    expect(listCalls).toBe(3)
    expect(events.filter((e) => e.type === 'add')).toHaveLength(7)
    expect(inf.get(`${NS}/unlabelled`)).toBeUndefined()

    events.length = 0
    await create('new', 'a')
    await until(() => inf.get(`${NS}/new`) !== undefined)
    await put('new', 'a', 'only the note changed')
    await put('new', 'b')
    await until(() => inf.get(`${NS}/new`)?.mode === 'b')
    await core.deleteNamespacedConfigMap({ name: 'pre-0', namespace: NS })
    await until(() => inf.get(`${NS}/pre-0`) === undefined)
    expect(events.map((e) => `${e.type}:${e.key}:${e.value.mode}`)).toEqual([
      `add:${NS}/new:a`,
      `update:${NS}/new:b`,
      `delete:${NS}/pre-0:a`,
    ])
    expect(events[1]?.old?.mode).toBe('a')
    await inf.stop()
    // Stopped means stopped: nothing more arrives, and stop() does not count as a failure.
    await create('after-stop', 'a')
    await new Promise((r) => setTimeout(r, 300))
    expect(inf.get(`${NS}/after-stop`)).toBeUndefined()
  }, 30_000)

  it('a forced re-list emits exactly the differences', async () => {
    const events: InformerEvent<Cm>[] = []
    const inf = cmInformer(kc, events)
    inf.start()
    await inf.waitForSync()
    events.length = 0
    inf.relist()
    await new Promise((r) => setTimeout(r, 300))
    expect(events).toEqual([])
    await inf.stop()
  })

  it('survives an API server restart and catches up with what changed after it', async () => {
    const events: InformerEvent<Cm>[] = []
    const restarts: string[] = []
    const inf = cmInformer(kc, events, { onRestart: (r) => restarts.push(r) })
    inf.start()
    await inf.waitForSync()
    await cp.stopApiServer()
    await until(() => restarts.length >= 1)
    await cp.startApiServer()
    await create('after-restart', 'x')
    await until(() => inf.get(`${NS}/after-restart`)?.mode === 'x', 15_000)
    expect(restarts.every((r) => r === 'error' || r === 'gone')).toBe(true)
    await inf.stop()
  }, 60_000)

  it('restarts a watch on a silent network path (watchdog) and bounds a hung list', async () => {
    const proxy: TcpProxy = await startTcpProxy(Number(new URL(cp.server).port))
    try {
      const pkc = new KubeConfig()
      pkc.loadFromFile(await proxiedKubeconfig(cp.kubeconfigPath, join(dir, 'proxied'), proxy.port))
      const events: InformerEvent<Cm>[] = []
      const restarts: string[] = []
      const inf = cmInformer(pkc, events, {
        stallMs: 800,
        watchdogMs: 100,
        listTimeoutMs: 800,
        // Long server-side timeout: only the watchdog can end this watch.
        watchTimeoutSeconds: [600, 600],
        onRestart: (r) => restarts.push(r),
      })
      inf.start()
      await inf.waitForSync()
      proxy.freeze()
      await create('while-frozen', 'f')
      // The watch stalls (restart), then LIST hangs behind the frozen proxy (bounded: restart).
      await until(() => restarts.filter((r) => r === 'stall').length >= 2, 10_000)
      expect(inf.get(`${NS}/while-frozen`)).toBeUndefined()
      proxy.thaw()
      await until(() => inf.get(`${NS}/while-frozen`)?.mode === 'f', 10_000)
      await inf.stop()
    } finally {
      await proxy.close()
    }
  }, 40_000)
})
