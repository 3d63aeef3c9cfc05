// The controller in-process against a REAL kube-apiserver + etcd, with the install manifests'
// RBAC (it runs as the operator ServiceAccount): publishing, status, Events, no-op detection,
// restarts without churn, a lost or tampered ConfigMap, and a snapshot too large to publish.
import { fileURLToPath } from 'node:url'
import { EventsV1Api, KubeConfig } from '@kubernetes/client-node'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CRD_NAMES, CRD_VERSION, SNAPSHOT_CONFIGMAP } from '../api/crd.js'
import { API_GROUP, KTHENA_API_GROUP } from '../api/schema.js'
import { crdManifests, type Schema } from '../cdk8s/crds.js'
import {
  apply,
  type Cluster,
  condition,
  createReadyPod,
  ensureNamespace,
  getStatus,
  group,
  modelRoute,
  modelServer,
  NS,
  PLURAL,
  startCluster,
  until,
} from '../hack/bench/control-plane-kit.js'
import { Controller, type ControllerOptions } from '../operator/controller.js'
import { kthenaGroupServed } from '../operator/kthena.js'
import { memoryLogger } from '../operator/log.js'
import { OperatorMetrics } from '../operator/metrics.js'
import { SnapshotPushServer } from '../operator/push-server.js'
import { decodeSnapshotConfigMap } from '../operator/snapshot-configmap.js'

const APP = 'ctl-test'
let c: Cluster
let opKc: KubeConfig

interface Running {
  readonly controller: Controller
  readonly push: SnapshotPushServer
  readonly metrics: OperatorMetrics
  readonly log: ReturnType<typeof memoryLogger>
}

const running: Running[] = []

function startController(extra: Partial<ControllerOptions> = {}): Running {
  const push = new SnapshotPushServer()
  const metrics = new OperatorMetrics()
  const log = memoryLogger()
  const controller = new Controller({
    kc: opKc,
    namespace: NS,
    identity: 'in-process',
    push,
    metrics,
    log,
    debounceMs: 20,
    ...extra,
  })
  controller.start()
  const r = { controller, push, metrics, log }
  running.push(r)
  return r
}

async function stopController(r: Running): Promise<void> {
  await r.controller.stop(2000)
  running.splice(running.indexOf(r), 1)
}

async function settled(r: Running): Promise<void> {
  await until('controller synced', () => r.controller.synced)
  // Twice: a rebuild queues status keys, whose patches echo back as events.
  for (let i = 0; i < 3; i++) {
    await new Promise((res) => setTimeout(res, 150))
    await r.controller.idle()
  }
}

async function counter(
  m: OperatorMetrics,
  name: string,
  labels: Record<string, string>,
): Promise<number> {
  const metric = (await m.registry.getMetricsAsJSON()).find((x) => x.name === name)
  const values = (metric?.values ?? []) as {
    value: number
    labels: Record<string, string | number>
  }[]
  return values
    .filter((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x))
    .reduce((a, v) => a + v.value, 0)
}

async function configMap() {
  return c.core.readNamespacedConfigMap({ name: SNAPSHOT_CONFIGMAP, namespace: NS })
}

beforeAll(async () => {
  c = await startCluster()
  opKc = new KubeConfig()
  opKc.loadFromFile(c.operatorKubeconfig)
  await ensureNamespace(c, APP)
  await apply(
    c,
    modelServer(APP, 'sim', { labels: { app: 'sim' }, port: 8000, model: 'real-name' }),
  )
  await apply(c, modelRoute(APP, 'chat', 'chat-model', [{ server: 'sim' }]))
  await createReadyPod(c, APP, 'sim-0', { app: 'sim', gpu: 'h100' }, '127.0.0.150')
}, 180_000)

afterAll(async () => {
  await Promise.all(running.map((r) => r.controller.stop(1000)))
  await c?.stop()
}, 60_000)

describe('operator controller on a real API server', () => {
  let first: Running
  let version = 0

  it('publishes the snapshot to the ConfigMap and the push channel and writes status + Events', async () => {
    first = startController()
    await settled(first)
    const snap = first.controller.publishedSnapshot
    expect(snap?.routes.map((r) => r.key)).toEqual([`${APP}/chat`])
    expect(snap?.servers[`${APP}/sim`]?.endpoints).toEqual([
      {
        name: 'sim-0',
        address: '127.0.0.150',
        port: 8000,
        ready: true,
        labels: { app: 'sim', gpu: 'h100' },
      },
    ])
    version = snap?.version ?? 0
    expect(first.push.version).toBe(version)
    const stored = decodeSnapshotConfigMap(await configMap())
    expect(stored.snapshot).toEqual(snap)

    const route = await getStatus(c, 'route', APP, 'chat')
    expect(route.status).toMatchObject({
      observedGeneration: 1,
      targets: '1/1',
      snapshotVersion: version,
    })
    expect(condition(route, 'Ready')?.status).toBe('True')
    const server = await getStatus(c, 'server', APP, 'sim')
    expect(server.status).toMatchObject({ endpoints: '1/1', readyEndpoints: 1, totalEndpoints: 1 })

    const events = await c.core.listNamespacedEvent({ namespace: APP })
    expect(
      events.items
        .map((e) => `${e.involvedObject.kind}/${e.involvedObject.name}:${e.reason}`)
        .sort(),
    ).toEqual([
      'ModelRoute/chat:Accepted',
      'ModelRoute/chat:Ready',
      'ModelRoute/chat:ResolvedRefs',
      'ModelServer/sim:Accepted',
      'ModelServer/sim:Ready',
    ])
    expect(
      await counter(first.metrics, 'infer_gateway_operator_snapshot_publishes_total', {
        result: 'success',
      }),
    ).toBeGreaterThanOrEqual(1)
  }, 30_000)

  it('does not publish for changes the snapshot does not carry', async () => {
    const before = await counter(
      first.metrics,
      'infer_gateway_operator_snapshot_publishes_total',
      {},
    )
    // A pod nobody selects, and a label on the route (not spec): no new version.
    await createReadyPod(c, APP, 'stranger', { app: 'other' }, '127.0.0.151')
    await c.crs.patchNamespacedCustomObject({
      ...group,
      namespace: APP,
      plural: PLURAL.route,
      name: 'chat',
      body: [{ op: 'add', path: '/metadata/labels', value: { team: 'a' } }],
    })
    await settled(first)
    expect(first.controller.publishedSnapshot?.version).toBe(version)
    expect(
      await counter(first.metrics, 'infer_gateway_operator_snapshot_publishes_total', {}),
    ).toBe(before)
  }, 20_000)

  it('reports an object the compiler rejects as Accepted=False with the field path; others keep working', async () => {
    await c.crs.createNamespacedCustomObject({
      ...group,
      namespace: APP,
      plural: PLURAL.route,
      body: {
        apiVersion: `${group.group}/${group.version}`,
        kind: 'ModelRoute',
        metadata: { name: 'bad-regex', namespace: APP },
        spec: {
          modelName: 'other-model',
          rules: [
            {
              modelMatch: { headers: { 'x-user': { regex: '([a-z' } } },
              targetModels: [{ modelServerName: 'sim' }],
            },
          ],
        },
      },
    })
    const bad = await until('bad-regex status', async () => {
      const s = await getStatus(c, 'route', APP, 'bad-regex')
      return condition(s, 'Accepted') ? s : undefined
    })
    expect(condition(bad, 'Accepted')).toMatchObject({ status: 'False', reason: 'Invalid' })
    expect(condition(bad, 'Accepted')?.message).toMatch(
      /spec\.rules\[0\]\.modelMatch\.headers\["x-user"\]\.regex/,
    )
    expect(condition(bad, 'Ready')?.status).toBe('False')
    expect(first.controller.publishedSnapshot?.routes.map((r) => r.key)).toEqual([`${APP}/chat`])
    expect(condition(await getStatus(c, 'route', APP, 'chat'), 'Ready')?.status).toBe('True')
  }, 20_000)

  it('restores status that someone else overwrote (level-triggered)', async () => {
    await c.crs.patchNamespacedCustomObjectStatus({
      ...group,
      namespace: APP,
      plural: PLURAL.route,
      name: 'chat',
      body: [{ op: 'replace', path: '/status', value: { targets: 'bogus' } }],
    })
    await until('status restored', async () => {
      const s = await getStatus(c, 'route', APP, 'chat')
      return s.status.targets === '1/1' && condition(s, 'Ready')?.status === 'True'
        ? true
        : undefined
    })
  }, 20_000)

  it('a restarted controller serves the same version and writes nothing', async () => {
    await settled(first)
    const cmBefore = (await configMap()).metadata?.resourceVersion
    const routeBefore = await getStatus(c, 'route', APP, 'chat')
    const serverBefore = await getStatus(c, 'server', APP, 'sim')
    const published = first.controller.publishedSnapshot
    await stopController(first)

    const second = startController()
    await settled(second)
    expect(second.push.version).toBe(published?.version)
    expect(second.controller.publishedSnapshot).toEqual(published)
    expect(await counter(second.metrics, 'infer_gateway_operator_status_patches_total', {})).toBe(0)
    expect(
      await counter(second.metrics, 'infer_gateway_operator_snapshot_publishes_total', {}),
    ).toBe(0)
    expect((await configMap()).metadata?.resourceVersion).toBe(cmBefore)
    expect((await getStatus(c, 'route', APP, 'chat')).resourceVersion).toBe(
      routeBefore.resourceVersion,
    )
    expect((await getStatus(c, 'server', APP, 'sim')).resourceVersion).toBe(
      serverBefore.resourceVersion,
    )
    first = second
  }, 30_000)

  it('rewrites a deleted or tampered ConfigMap with the version the data planes already have', async () => {
    const v = first.controller.publishedSnapshot?.version ?? 0
    await c.core.deleteNamespacedConfigMap({ name: SNAPSHOT_CONFIGMAP, namespace: NS })
    const recreated = await until('configmap recreated', async () =>
      configMap().then(
        (cm) => cm,
        () => undefined,
      ),
    )
    expect(decodeSnapshotConfigMap(recreated).snapshot.version).toBe(v)

    await c.core.patchNamespacedConfigMap({
      name: SNAPSHOT_CONFIGMAP,
      namespace: NS,
      body: [
        {
          op: 'replace',
          path: '/binaryData/snapshot.json.gz',
          value: Buffer.from('garbage').toString('base64'),
        },
      ],
    })
    const fixed = await until('configmap overwritten', async () => {
      const cm = await configMap()
      try {
        return decodeSnapshotConfigMap(cm).snapshot
      } catch {
        return undefined
      }
    })
    // Same content, same version: data planes holding v see nothing new (and need nothing).
    expect(fixed.version).toBe(v)
    expect(fixed.hash).toBe(first.controller.publishedSnapshot?.hash)
    expect(first.log.records.some((r) => r.msg.includes('unreadable'))).toBe(true)
  }, 30_000)

  it('refuses to publish a snapshot above the size limit and says so on every object', async () => {
    await stopController(first)
    const small = startController({ maxSnapshotBytes: 200 })
    await settled(small)
    const kept = (await configMap()).metadata?.resourceVersion
    // Any content change forces a new snapshot, which is now too large.
    await apply(
      c,
      modelServer(APP, 'sim', { labels: { app: 'sim' }, port: 8000, model: 'renamed' }),
    )
    const route = await until('SnapshotTooLarge', async () => {
      const s = await getStatus(c, 'route', APP, 'chat')
      return condition(s, 'Accepted')?.reason === 'SnapshotTooLarge' ? s : undefined
    })
    expect(condition(route, 'Accepted')?.message).toMatch(
      /bytes gzipped, above the 200-byte ConfigMap limit/,
    )
    expect(condition(await getStatus(c, 'server', APP, 'sim'), 'Accepted')?.reason).toBe(
      'SnapshotTooLarge',
    )
    expect((await configMap()).metadata?.resourceVersion).toBe(kept)
    expect(
      await counter(small.metrics, 'infer_gateway_operator_snapshot_publish_failures_total', {
        reason: 'too_large',
      }),
    ).toBeGreaterThanOrEqual(1)
    expect(
      small.log.records.some(
        (r) => r.level === 'error' && r.msg === 'snapshot too large to publish',
      ),
    ).toBe(true)
    await stopController(small)
  }, 30_000)
})

describe("Kthena's group (networking.serving.volcano.sh) on a real API server", () => {
  const KNS = 'kthena'
  const kgroup = { group: KTHENA_API_GROUP, version: CRD_VERSION } as const

  it('is found by API discovery once its CRDs exist; its objects are compiled, status written where the CRD keeps it, Events otherwise', async () => {
    expect(await kthenaGroupServed(opKc)).toBe(false)
    // Kthena's CRDs, shaped as Kthena ships them where it matters here: ModelRoute's status has
    // no fields (the API server prunes ours), ModelServer's keeps ours (a status-aware install).
    for (const crd of crdManifests().filter((x) =>
      ['modelRoute', 'modelServer', 'externalModelProvider'].some(
        (k) => x.metadata.name === `${CRD_NAMES[k as 'modelRoute'].plural}.${API_GROUP}`,
      ),
    )) {
      const k = structuredClone(crd)
      k.metadata.name = k.metadata.name.replace(API_GROUP, KTHENA_API_GROUP)
      k.spec['group'] = KTHENA_API_GROUP
      const names = k.spec['names'] as { shortNames?: string[]; categories?: string[] }
      delete names.shortNames // ours own mr/ms
      delete names.categories
      if (k.metadata.name.startsWith('modelroutes.')) {
        const v = (k.spec['versions'] as { schema: { openAPIV3Schema: Schema } }[])[0]
        const props = v?.schema.openAPIV3Schema['properties'] as Record<string, unknown>
        props['status'] = { type: 'object' }
        delete (v as Record<string, unknown>)['additionalPrinterColumns']
      }
      const r = await c.cp.kubectl(['apply', '-f', '-'], { input: JSON.stringify(k) })
      expect(r.code, r.stderr).toBe(0)
    }
    await until('kthena group discoverable', () => kthenaGroupServed(opKc))
    await ensureNamespace(c, KNS)
    const fixture = fileURLToPath(new URL('./fixtures/kthena/volcano/kthena.yaml', import.meta.url))
    await until('kthena fixtures applied', async () => {
      const r = await c.cp.kubectl(['apply', '-f', fixture])
      return r.code === 0 ? true : undefined
    })
    await createReadyPod(c, KNS, 'qwen-0', { app: 'qwen' }, '127.0.0.151')

    const r = startController({ kthena: true })
    await settled(r).catch((e: unknown) => {
      // What the informers said is the useful part of a failure here.
      throw new Error(
        `${String(e)}\n${JSON.stringify(r.log.records.filter((x) => x.level !== 'debug'))}`,
      )
    })
    const snap = r.controller.publishedSnapshot
    expect(snap?.routes.map((x) => x.key).sort()).toEqual(
      expect.arrayContaining([`${KNS}/qwen`, `${KNS}/qwen-internal`]),
    )
    expect(snap?.servers[`${KNS}/qwen-vllm`]?.endpoints.map((e) => e.address)).toEqual([
      '127.0.0.151',
    ])
    // Kthena's prefill/decode server is served as pairs (issue 14), its connector carried.
    expect(snap?.servers[`${KNS}/qwen-pd`]?.pd?.connector).toBe('nixl')

    // ModelServer: the CRD keeps our status, so conditions are stored.
    const server = async (name: string) =>
      (await c.crs.getNamespacedCustomObject({
        ...kgroup,
        namespace: KNS,
        plural: CRD_NAMES.modelServer.plural,
        name,
      })) as {
        status?: {
          conditions?: { type: string; status: string; reason: string; message: string }[]
        }
      }
    const pd = await until('qwen-pd status', async () => {
      const s = await server('qwen-pd')
      return s.status?.conditions?.find((x) => x.type === 'Accepted') ? s : undefined
    })
    expect(pd.status?.conditions?.find((x) => x.type === 'Accepted')).toMatchObject({
      status: 'True',
      reason: 'Accepted',
    })
    // No pod selected: nothing to pair yet.
    expect(pd.status?.conditions?.find((x) => x.type === 'Ready')?.status).toBe('False')
    const vllm = await server('qwen-vllm')
    expect(vllm.status?.conditions?.find((x) => x.type === 'Ready')?.status).toBe('True')

    // ModelRoute: Kthena's status has no fields; the transition is an Event on the object.
    const events = await until('an event for the qwen-pd route (no ready pair)', async () => {
      const list = await c.kc.makeApiClient(EventsV1Api).listNamespacedEvent({ namespace: KNS })
      const mine = list.items.filter(
        (e) => e.regarding?.kind === 'ModelRoute' && e.regarding.name === 'qwen-pd',
      )
      return mine.length > 0 ? mine : undefined
    })
    expect(
      events.every((e) => e.regarding?.apiVersion === `${KTHENA_API_GROUP}/${CRD_VERSION}`),
    ).toBe(true)
    // And no churn: a settled controller does not patch again on a resync.
    const patches = await counter(r.metrics, 'infer_gateway_operator_status_patches_total', {})
    r.controller['queue'].add('snapshot')
    await settled(r)
    expect(await counter(r.metrics, 'infer_gateway_operator_status_patches_total', {})).toBe(
      patches,
    )
    await stopController(r)
  }, 120_000)
})
