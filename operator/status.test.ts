import { describe, expect, it } from 'vitest'
import { compileSnapshot, type ModelRouteStatus, type ModelServerStatus } from '../api/index.js'
import { endpointsFor, PodIndex, serverSelector } from './endpoints.js'
import {
  type CompiledView,
  indexCompile,
  routeStatus,
  serverStatus,
  statusPatch,
  transitions,
  viewKey,
} from './status.js'

type Obj = Record<string, unknown>
const T0 = '2026-01-01T00:00:00Z'
const T1 = '2026-01-01T00:05:00Z'

function server(name: string, app = name): Obj {
  return {
    metadata: { name, namespace: 'ns', generation: 1 },
    spec: {
      inferenceEngine: 'vLLM',
      workloadSelector: { matchLabels: { app } },
      workloadPort: { port: 8000 },
    },
  }
}
function route(name: string, model: string, targets: string[], created = T0, generation = 1): Obj {
  return {
    metadata: { name, namespace: 'ns', generation, creationTimestamp: created },
    spec: {
      modelName: model,
      rules: [{ targetModels: targets.map((t) => ({ modelServerName: t })) }],
    },
  }
}

function view(
  routes: Obj[],
  servers: Obj[],
  pods: { name: string; app: string; ready: boolean; labels?: Record<string, string> }[],
  extra: Partial<CompiledView> = {},
): CompiledView {
  const index = new PodIndex()
  pods.forEach((p, i) => {
    index.set({
      namespace: 'ns',
      name: p.name,
      labels: { app: p.app, ...p.labels },
      ip: `10.0.0.${i + 1}`,
      ready: p.ready,
      terminating: false,
    })
  })
  const sel = servers.map(serverSelector).filter((s) => s !== undefined)
  const { endpoints, counts } = endpointsFor(sel, index)
  const { snapshot, diagnostics } = compileSnapshot({ routes, servers, endpoints, version: 0 })
  const generations = new Map<string, number>()
  for (const r of routes)
    generations.set(viewKey('ModelRoute', `ns/${(r['metadata'] as { name: string }).name}`), 1)
  return indexCompile(snapshot, diagnostics, { counts, generations, publishedVersion: 7, ...extra })
}

const subj = (
  kind: 'ModelRoute' | 'ModelServer',
  name: string,
  status?: unknown,
  generation = 1,
) => ({
  kind,
  key: `ns/${name}`,
  generation,
  status,
})
const c = (s: ModelRouteStatus | ModelServerStatus, type: string) =>
  s.conditions?.find((x) => x.type === type)

describe('routeStatus', () => {
  const servers = [server('a'), server('b')]
  const pods = [
    { name: 'a-0', app: 'a', ready: true },
    { name: 'a-1', app: 'a', ready: false },
    { name: 'b-0', app: 'b', ready: false },
  ]

  it('a resolvable route whose every target has a ready pod: Ready True; counts and targets', () => {
    const v = view([route('r', 'm', ['a', 'b'])], servers, [
      ...pods,
      { name: 'b-1', app: 'b', ready: true },
    ])
    const s = routeStatus(subj('ModelRoute', 'r'), v, T0)
    expect(s).toMatchObject({
      observedGeneration: 1,
      readyEndpoints: 2,
      totalEndpoints: 4,
      targets: '2/2',
      resolvedTargets: ['ns/a', 'ns/b'],
      snapshotVersion: 7,
    })
    expect(s.conditions?.map((x) => [x.type, x.status, x.reason])).toEqual([
      ['Accepted', 'True', 'Accepted'],
      ['ResolvedRefs', 'True', 'ResolvedRefs'],
      ['Ready', 'True', 'Ready'],
    ])
    expect(c(s, 'Ready')?.message).toBe('2 of 4 endpoint(s) ready')
    expect(
      s.conditions?.every((x) => x.lastTransitionTime === T0 && x.observedGeneration === 1),
    ).toBe(true)
  })

  it('a weighted target with no ready endpoint: Ready False TargetUnavailable, TARGETS counts it', () => {
    const v = view([route('r', 'm', ['a', 'b'])], servers, pods)
    const s = routeStatus(subj('ModelRoute', 'r'), v, T0)
    expect(s).toMatchObject({ readyEndpoints: 1, totalEndpoints: 3, targets: '1/2' })
    expect(c(s, 'Accepted')?.status).toBe('True')
    expect(c(s, 'Ready')).toMatchObject({ status: 'False', reason: 'TargetUnavailable' })
    expect(c(s, 'Ready')?.message).toContain('ns/b')
  })

  it('pdGroup: Accepted; Ready only once a decode pod has a prefill pod in its group', () => {
    const pd = server('pd')
    ;(pd['spec'] as Obj)['workloadSelector'] = {
      matchLabels: { app: 'pd' },
      pdGroup: { groupKey: 'g', prefillLabels: { r: 'p' }, decodeLabels: { r: 'd' } },
    }
    ;(pd['spec'] as Obj)['kvConnector'] = { type: 'nixl' }
    const pods = [
      { name: 'pd-p', app: 'pd', ready: true, labels: { r: 'p', g: '1' } },
      { name: 'pd-d', app: 'pd', ready: true, labels: { r: 'd', g: '2' } },
    ]
    const unpaired = serverStatus(subj('ModelServer', 'pd'), view([], [pd], pods), T0)
    expect(c(unpaired, 'Accepted')).toMatchObject({ status: 'True', reason: 'Accepted' })
    expect(c(unpaired, 'Ready')).toMatchObject({ status: 'False', reason: 'NoReadyPair' })
    const paired = [...pods, { name: 'pd-d1', app: 'pd', ready: true, labels: { r: 'd', g: '1' } }]
    const s = serverStatus(subj('ModelServer', 'pd'), view([], [pd], paired), T0)
    expect(c(s, 'Ready')).toMatchObject({ status: 'True', reason: 'Ready' })
  })

  it('kvConnector mooncake is refused naming it; without pdGroup a kvConnector is said, not hidden', () => {
    const moon = server('moon')
    ;(moon['spec'] as Obj)['workloadSelector'] = {
      matchLabels: { app: 'moon' },
      pdGroup: { groupKey: 'g', prefillLabels: { r: 'p' }, decodeLabels: { r: 'd' } },
    }
    ;(moon['spec'] as Obj)['kvConnector'] = { type: 'mooncake' }
    const kv = server('kv')
    ;(kv['spec'] as Obj)['kvConnector'] = { type: 'nixl' }
    const v = view(
      [route('r', 'm', ['moon'])],
      [moon, kv],
      [{ name: 'kv-0', app: 'kv', ready: true }],
    )
    const sm = serverStatus(subj('ModelServer', 'moon'), v, T0)
    expect(c(sm, 'Accepted')).toMatchObject({ status: 'False', reason: 'Unsupported' })
    expect(c(sm, 'Accepted')?.message).toContain('mooncake')
    const skv = serverStatus(subj('ModelServer', 'kv'), v, T0)
    expect(c(skv, 'Accepted')).toMatchObject({ status: 'True', reason: 'Accepted' })
    expect(c(skv, 'Accepted')?.message).toContain('spec.kvConnector has no effect')
    const r = routeStatus(subj('ModelRoute', 'r'), v, T0)
    expect(c(r, 'Accepted')).toMatchObject({ status: 'False', reason: 'Unsupported' })
    expect(c(r, 'Accepted')?.message).toContain('spec.kvConnector.type')
  })

  it('a dangling server reference: ResolvedRefs False with the field path; Accepted False when nothing is left', () => {
    const v = view(
      [route('partial', 'm', ['a', 'x']), route('dangling', 'n', ['x'])],
      servers,
      pods,
    )
    const partial = routeStatus(subj('ModelRoute', 'partial'), v, T0)
    expect(c(partial, 'Accepted')?.status).toBe('True')
    expect(c(partial, 'ResolvedRefs')).toMatchObject({
      status: 'False',
      reason: 'ModelServerNotFound',
      message: 'spec.rules[0].targetModels[1] refers to modelserver "x" which does not exist',
    })
    expect(c(partial, 'Ready')?.status).toBe('True')

    const dangling = routeStatus(subj('ModelRoute', 'dangling'), v, T0)
    expect(c(dangling, 'Accepted')).toMatchObject({
      status: 'False',
      reason: 'ModelServerNotFound',
    })
    expect(c(dangling, 'Accepted')?.message).toContain(
      'refers to modelserver "x" which does not exist',
    )
    expect(c(dangling, 'Ready')).toMatchObject({ status: 'False', reason: 'ModelServerNotFound' })
    expect(dangling).toMatchObject({ targets: '0/0', resolvedTargets: [] })
    expect(dangling.snapshotVersion).toBeUndefined()
  })

  it('the younger of two routes claiming one model is not Accepted (DuplicateModelName); the older is', () => {
    const v = view(
      [route('old', 'm', ['a']), route('young', 'm', ['a'], '2026-02-01T00:00:00Z')],
      servers,
      pods,
    )
    const young = routeStatus(subj('ModelRoute', 'young'), v, T0)
    expect(c(young, 'Accepted')).toMatchObject({ status: 'False', reason: 'DuplicateModelName' })
    expect(c(young, 'Accepted')?.message).toContain('older modelroute "ns/old"')
    expect(c(young, 'Ready')).toMatchObject({ status: 'False', reason: 'DuplicateModelName' })
    expect(c(routeStatus(subj('ModelRoute', 'old'), v, T0), 'Ready')?.status).toBe('True')
  })

  it('no ready endpoint: Ready False NoReadyEndpoints naming the servers', () => {
    const v = view([route('r', 'm', ['b'])], servers, pods)
    const s = routeStatus(subj('ModelRoute', 'r'), v, T0)
    expect(c(s, 'Ready')).toMatchObject({
      status: 'False',
      reason: 'NoReadyEndpoints',
      message: '0 of 1 endpoint(s) ready behind ns/b',
    })
  })

  it('an unpublishable snapshot makes every object Accepted False with the reason', () => {
    const v = view([route('r', 'm', ['a'])], servers, pods, {
      publishError: { reason: 'SnapshotTooLarge', message: 'too big' },
    })
    const s = routeStatus(subj('ModelRoute', 'r'), v, T0)
    expect(c(s, 'Accepted')).toMatchObject({
      status: 'False',
      reason: 'SnapshotTooLarge',
      message: 'too big',
    })
    expect(s.snapshotVersion).toBeUndefined()
    expect(c(serverStatus(subj('ModelServer', 'a'), v, T0), 'Accepted')?.reason).toBe(
      'SnapshotTooLarge',
    )
  })
})

describe('serverStatus', () => {
  it('counts ready/total selected pods into ENDPOINTS', () => {
    const v = view(
      [],
      [server('a')],
      [
        { name: 'a-0', app: 'a', ready: true },
        { name: 'a-1', app: 'a', ready: false },
        { name: 'z-0', app: 'z', ready: true },
      ],
    )
    const s = serverStatus(subj('ModelServer', 'a'), v, T0)
    expect(s).toMatchObject({ readyEndpoints: 1, totalEndpoints: 2, endpoints: '1/2' })
    expect(c(s, 'Ready')).toMatchObject({ status: 'True', message: '1 of 2 selected pod(s) ready' })
    const none = view([], [server('a')], [{ name: 'a-1', app: 'a', ready: false }])
    expect(c(serverStatus(subj('ModelServer', 'a'), none, T0), 'Ready')).toMatchObject({
      status: 'False',
      reason: 'NoReadyEndpoints',
    })
  })
})

describe('no churn: recomputing from the stored status changes nothing', () => {
  const servers = [server('a')]
  const pods = [{ name: 'a-0', app: 'a', ready: true }]

  it('same inputs at a later time → no patch (lastTransitionTime and snapshotVersion kept)', () => {
    const v = view([route('r', 'm', ['a'])], servers, pods)
    const first = routeStatus(subj('ModelRoute', 'r'), v, T0)
    expect(statusPatch(undefined, first)).toEqual({ status: first })
    // Later, after a restart, with a newer published version for unrelated changes:
    const v2 = view([route('r', 'm', ['a'])], servers, pods, { publishedVersion: 9 })
    const again = routeStatus(subj('ModelRoute', 'r', first), v2, T1)
    expect(again).toEqual(first)
    expect(statusPatch(first, again)).toBeUndefined()
    expect(transitions(first, again)).toEqual([])
  })

  it('a flip moves only that condition’s lastTransitionTime; a new generation moves snapshotVersion', () => {
    const v = view([route('r', 'm', ['a'])], servers, pods)
    const first = routeStatus(subj('ModelRoute', 'r'), v, T0)
    const down = view(
      [route('r', 'm', ['a'])],
      servers,
      [{ name: 'a-0', app: 'a', ready: false }],
      {
        publishedVersion: 8,
      },
    )
    const second = routeStatus(subj('ModelRoute', 'r', first), down, T1)
    expect(c(second, 'Ready')).toMatchObject({ status: 'False', lastTransitionTime: T1 })
    expect(c(second, 'Accepted')?.lastTransitionTime).toBe(T0)
    expect(second.snapshotVersion).toBe(7)
    const patch = statusPatch(first, second)
    expect(Object.keys(patch?.status ?? {}).sort()).toEqual([
      'conditions',
      'readyEndpoints',
      'targets',
    ])
    expect(transitions(first, second)).toEqual([
      {
        type: 'Ready',
        from: 'True',
        to: 'False',
        reason: 'NoReadyEndpoints',
        message: '0 of 1 endpoint(s) ready behind ns/a',
      },
    ])
    const gen2 = routeStatus(subj('ModelRoute', 'r', second, 2), down, T1)
    expect(gen2.snapshotVersion).toBe(8)
    expect(gen2.observedGeneration).toBe(2)
  })

  it('fields written by others are left alone; fields of ours that went away are removed', () => {
    const v = view([route('r', 'm', ['x'])], servers, pods)
    const desired = routeStatus(subj('ModelRoute', 'r'), v, T0)
    const stored = { ...desired, snapshotVersion: 3, somebodyElse: 'x' }
    expect(statusPatch(stored, desired)).toEqual({ status: { snapshotVersion: null } })
  })
})
