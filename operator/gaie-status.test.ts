import { describe, expect, it } from 'vitest'
import { compileSnapshot } from '../api/index.js'
import { httpRouteConditions, mergeParents, poolConditions } from './gaie-status.js'
import { indexCompile, routeStatus } from './status.js'

const GW = 'infra/primary'
const ourRef = {
  group: 'gateway.networking.k8s.io',
  kind: 'Gateway',
  namespace: 'infra',
  name: 'primary',
}
const theirs = {
  parentRef: { name: 'other-gw', namespace: 'infra' },
  controllerName: 'example.net/controller',
  conditions: [
    {
      type: 'Accepted',
      status: 'True',
      reason: 'Accepted',
      message: '',
      lastTransitionTime: '2020-01-01T00:00:00Z',
    },
  ],
}
const accepted = [
  {
    type: 'Accepted',
    status: 'True' as const,
    observedGeneration: 1,
    reason: 'Accepted',
    message: 'ok',
  },
]

describe('mergeParents', () => {
  it('adds our entry next to other controllers’ entries and leaves theirs alone', () => {
    const next = mergeParents(
      { parents: [theirs] },
      'app',
      GW,
      { parentRef: ourRef, conditions: accepted },
      'T1',
    )
    expect(next).toEqual([
      theirs,
      {
        parentRef: ourRef,
        controllerName: 'infer-gateway.io/gateway-controller',
        conditions: [{ ...accepted[0], lastTransitionTime: 'T1' }],
      },
    ])
  })

  it('writes nothing when the stored entry already says it (restart: same transition time)', () => {
    const stored = mergeParents(
      { parents: [theirs] },
      'app',
      GW,
      { parentRef: ourRef, conditions: accepted },
      'T1',
    )
    expect(
      mergeParents(
        { parents: stored },
        'app',
        GW,
        { parentRef: ourRef, conditions: accepted },
        'T2',
      ),
    ).toBeUndefined()
  })

  it('keeps the transition time while the status holds, moves it on a flip', () => {
    const stored = mergeParents({}, 'app', GW, { parentRef: ourRef, conditions: accepted }, 'T1')
    const reworded = [{ ...accepted[0], message: 'still ok' }] as typeof accepted
    expect(
      mergeParents(
        { parents: stored },
        'app',
        GW,
        { parentRef: ourRef, conditions: reworded },
        'T2',
      )?.[0]?.conditions[0]?.lastTransitionTime,
    ).toBe('T1')
    const flipped = [{ ...accepted[0], status: 'False' as const, reason: 'NotSupportedByParent' }]
    expect(
      mergeParents(
        { parents: stored },
        'app',
        GW,
        { parentRef: ourRef, conditions: flipped as never },
        'T3',
      )?.[0]?.conditions[0]?.lastTransitionTime,
    ).toBe('T3')
  })

  it('removes only our entry when the object is no longer associated', () => {
    const stored = mergeParents(
      { parents: [theirs] },
      'app',
      GW,
      { parentRef: ourRef, conditions: accepted },
      'T1',
    )
    expect(mergeParents({ parents: stored }, 'app', GW, undefined, 'T2')).toEqual([theirs])
    expect(mergeParents({ parents: [theirs] }, 'app', GW, undefined, 'T2')).toBeUndefined()
  })
})

describe('conditions from the compile', () => {
  const view = () => {
    const { snapshot, diagnostics } = compileSnapshot({
      routes: [],
      servers: [],
      endpoints: {},
      version: 1,
      inferencePools: [
        {
          apiVersion: 'inference.networking.k8s.io/v1',
          kind: 'InferencePool',
          metadata: { name: 'h2c', namespace: 'app' },
          spec: {
            selector: { matchLabels: { a: 'b' } },
            targetPorts: [{ number: 8000 }],
            appProtocol: 'kubernetes.io/h2c',
          },
        },
        {
          apiVersion: 'inference.networking.k8s.io/v1',
          kind: 'InferencePool',
          metadata: { name: 'ok', namespace: 'app' },
          spec: { selector: { matchLabels: { a: 'c' } }, targetPorts: [{ number: 8000 }] },
        },
      ],
      httpRoutes: [
        {
          apiVersion: 'gateway.networking.k8s.io/v1',
          kind: 'HTTPRoute',
          metadata: { name: 'r', namespace: 'app' },
          spec: {
            parentRefs: [{ name: 'primary', namespace: 'infra' }],
            rules: [
              {
                backendRefs: [
                  { group: 'inference.networking.k8s.io', kind: 'InferencePool', name: 'ok' },
                  { group: 'inference.networking.k8s.io', kind: 'InferencePool', name: 'gone' },
                ],
              },
            ],
          },
        },
      ],
      gateway: GW,
    })
    return indexCompile(snapshot, diagnostics, {
      counts: {},
      generations: new Map(),
      publishedVersion: 1,
    })
  }

  it('a pool we cannot serve is NotSupportedByParent, saying why', () => {
    const v = view()
    const [acc, refs] = poolConditions('app/h2c', 3, v)
    expect([acc?.status, acc?.reason, acc?.observedGeneration]).toEqual([
      'False',
      'NotSupportedByParent',
      3,
    ])
    expect(acc?.message).toContain('kubernetes.io/h2c')
    expect(refs?.status).toBe('True')
    expect(poolConditions('app/ok', 1, v).map((c) => `${c.type}=${c.status}/${c.reason}`)).toEqual([
      'Accepted=True/Accepted',
      'ResolvedRefs=True/ResolvedRefs',
    ])
  })

  it('a route with one missing pool is Accepted with ResolvedRefs False BackendNotFound', () => {
    const cs = httpRouteConditions('app/r', 2, view())
    expect(cs.map((c) => `${c.type}=${c.status}/${c.reason}`)).toEqual([
      'Accepted=True/Accepted',
      'ResolvedRefs=False/BackendNotFound',
    ])
    expect(cs[1]?.message).toBe(
      'spec.rules[0].backendRefs[1] refers to inferencepool "gone" which does not exist',
    )
  })
})

describe('ModelRoute → InferencePool', () => {
  it('a missing pool is ResolvedRefs False InferencePoolNotFound on the ModelRoute', () => {
    const { snapshot, diagnostics } = compileSnapshot({
      routes: [
        {
          apiVersion: 'networking.matrixinfer.ai/v1alpha1',
          kind: 'ModelRoute',
          metadata: { name: 'm', namespace: 'app' },
          spec: { modelName: 'm', rules: [{ targetModels: [{ inferencePoolName: 'gone' }] }] },
        },
      ],
      servers: [],
      endpoints: {},
      version: 1,
    })
    const view = indexCompile(snapshot, diagnostics, {
      counts: {},
      generations: new Map([['ModelRoute/app/m', 1]]),
      publishedVersion: 1,
    })
    const st = routeStatus(
      { kind: 'ModelRoute', key: 'app/m', generation: 1, status: {} },
      view,
      'T',
    )
    const refs = st.conditions?.find((c) => c.type === 'ResolvedRefs')
    expect([refs?.status, refs?.reason]).toEqual(['False', 'InferencePoolNotFound'])
  })
})
