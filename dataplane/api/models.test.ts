import { describe, expect, it } from 'vitest'
import { route, server, snapshot } from '../../test/helpers/snapshot.js'
import { RouteTable } from '../router.js'
import { ModelCatalog } from './models.js'

const s = server('s', [])
const rule = { name: 'r', targets: [{ server: s.key, weight: 1 }] }
const table = (extra: string[]) =>
  new RouteTable(
    snapshot(
      [
        route('dated', { modelName: 'dated', rules: [rule] }),
        ...extra.map((m) => route(m, { modelName: m, creationTimestamp: '', rules: [rule] })),
      ],
      [s],
    ),
  )

describe('ModelCatalog', () => {
  it('created: the route creationTimestamp, else first seen — kept across tables', () => {
    let now = 1_000
    const c = new ModelCatalog(() => now)
    const t1 = table(['a'])
    expect(c.find(t1, 'dated')?.model.created).toBe(Date.parse('2026-01-01T00:00:00Z') / 1000)
    expect(c.find(t1, 'a')?.model).toEqual({
      id: 'a',
      object: 'model',
      created: 1_000,
      owned_by: 'infer-gateway',
    })
    now = 2_000
    const t2 = table(['a', 'b'])
    expect(c.list(t2).map((m) => [m.model.id, m.model.created])).toEqual([
      ['a', 1_000],
      ['b', 2_000],
      ['dated', Date.parse('2026-01-01T00:00:00Z') / 1000],
    ])
    // Gone and back: still its first time.
    now = 3_000
    c.list(table([]))
    expect(c.find(table(['a']), 'a')?.model.created).toBe(1_000)
    expect(c.find(t2, 'nope')).toBeUndefined()
  })
})
