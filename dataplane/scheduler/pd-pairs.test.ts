import { describe, expect, it } from 'vitest'
import type { SnapshotEndpoint, SnapshotServer } from '../../api/snapshot.js'
import { server as serverOf } from '../../test/helpers/snapshot.js'
import { type PickContext, RoundRobinPicker } from '../picker.js'
import { pdRoles, pickPairs, roleContext, withPdRoles } from './pd-pairs.js'

const ep = (name: string, role: string, group?: string, ready = true): SnapshotEndpoint => ({
  name,
  address: `127.0.0.${name.length}`,
  port: 8000,
  ready,
  labels: { role, ...(group !== undefined ? { g: group } : {}) },
})

function pdServer(endpoints: SnapshotEndpoint[]): SnapshotServer {
  return {
    ...serverOf('s', endpoints),
    pd: {
      groupKey: 'g',
      prefillLabels: { role: 'prefill' },
      decodeLabels: { role: 'decode' },
      connector: 'nixl',
    },
  }
}

const ctxOf = (server: SnapshotServer): PickContext => ({
  requestId: 'r',
  model: 'm',
  isLora: false,
  server,
  body: {},
  header: () => undefined,
})

/** Orders endpoints by a fixed preference (first = best), whatever the server. */
class Ranked extends RoundRobinPicker {
  readonly order: string[]
  constructor(order: string[]) {
    super()
    this.order = order
  }
  override pick(ctx: PickContext): readonly SnapshotEndpoint[] {
    return ctx.server.endpoints
      .filter((e) => e.ready)
      .sort((a, b) => this.order.indexOf(a.name) - this.order.indexOf(b.name))
  }
}

describe('pd pair picker', () => {
  const eps = [
    ep('pA', 'prefill', '1'),
    ep('pBB', 'prefill', '2'),
    ep('pCCC', 'prefill', '2'),
    ep('dA', 'decode', '1'),
    ep('dBB', 'decode', '2'),
    ep('dCCC', 'decode', '2'),
    ep('dLONE', 'decode', '3'),
    ep('dNOGROUP', 'decode'),
  ]
  const s = pdServer(eps)

  it('role servers: decode pods with a prefill pod in their group, prefill pods with a group', () => {
    const r = pdRoles(s)
    expect(r?.decode.endpoints.map((e) => e.name)).toEqual(['dA', 'dBB', 'dCCC'])
    expect(r?.prefill.endpoints.map((e) => e.name)).toEqual(['pA', 'pBB', 'pCCC'])
    expect([r?.decode.key, r?.prefill.key, r?.decode.pd]).toEqual([
      'default/s#decode',
      'default/s#prefill',
      undefined,
    ])
    // The scheduler is asked for each role's whole order.
    expect(r?.prefill.trafficPolicy.retry.attempts).toBe(3)
    expect(withPdRoles([s]).map((x) => x.key)).toEqual([
      'default/s',
      'default/s#decode',
      'default/s#prefill',
    ])
    expect(pdRoles(s)).toBe(r)
  })

  it('decode first (the picker order), then the best prefill pod of its group', () => {
    const r = pdRoles(s) as NonNullable<ReturnType<typeof pdRoles>>
    const picker = new Ranked(['dBB', 'dA', 'dCCC', 'pCCC', 'pA', 'pBB'])
    const base = ctxOf(s)
    const pairs = pickPairs(
      picker,
      roleContext(base, r.decode, {}),
      roleContext(base, r.prefill, {}),
      'g',
      5,
    )
    expect(pairs.map((p) => `${p.decode.name}<${p.prefill.name}`)).toEqual([
      'dBB<pCCC',
      'dA<pA',
      // The group's next prefill pod: a retry after pCCC failed meets another one.
      'dCCC<pBB',
    ])
    expect(
      pickPairs(picker, roleContext(base, r.decode, {}), roleContext(base, r.prefill, {}), 'g', 1),
    ).toHaveLength(1)
  })

  it('a group of one decode pod and two prefill pods has two pairs', () => {
    const g = pdServer([
      ep('pA', 'prefill', '1'),
      ep('pBB', 'prefill', '1'),
      ep('dA', 'decode', '1'),
    ])
    const r = pdRoles(g) as NonNullable<ReturnType<typeof pdRoles>>
    const base = ctxOf(g)
    const pairs = pickPairs(
      new Ranked(['dA', 'pBB', 'pA']),
      roleContext(base, r.decode, {}),
      roleContext(base, r.prefill, {}),
      'g',
      3,
    )
    expect(pairs.map((p) => `${p.decode.name}<${p.prefill.name}`)).toEqual(['dA<pBB', 'dA<pA'])
  })

  it('no pair when no decode pod has a ready prefill pod in its group', () => {
    const lone = pdServer([
      ep('pA', 'prefill', '1', false),
      ep('dA', 'decode', '1'),
      ep('pB', 'prefill', '2'),
    ])
    const r = pdRoles(lone) as NonNullable<ReturnType<typeof pdRoles>>
    const base = ctxOf(lone)
    expect(
      pickPairs(
        new RoundRobinPicker(),
        roleContext(base, r.decode, {}),
        roleContext(base, r.prefill, {}),
        'g',
        3,
      ),
    ).toEqual([])
  })

  it('a role context is a fresh object: per-request picker state is not shared through it', () => {
    const base = { ...ctxOf(s), explain: { text: 'x' } }
    const r = pdRoles(s) as NonNullable<ReturnType<typeof pdRoles>>
    const d = roleContext(base, r.decode, { max_tokens: 1 })
    expect([d.server.key, d.body, d.explain]).toEqual(['default/s#decode', { max_tokens: 1 }, {}])
  })
})
