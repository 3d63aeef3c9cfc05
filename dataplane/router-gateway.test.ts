// parentRefs on the data plane: a fleet started with --gateway ns/name serves the routes bound to
// its Gateway and the unbound ones, and nothing bound elsewhere.
import { describe, expect, it } from 'vitest'
import { endpoint, route, server, snapshot } from '../test/helpers/snapshot.js'
import { RouteTable } from './router.js'

const a = server('a', [endpoint('a-0', '127.0.0.2', 8000)])
const b = server('b', [endpoint('b-0', '127.0.0.3', 8000)])
const req = (model: string) => ({
  model,
  path: '/v1/chat/completions',
  header: (): undefined => undefined,
})
const rules = (key: string) => [{ name: 'all', targets: [{ server: key, weight: 100 }] }]

// One model claimed once per Gateway, plus a model bound nowhere.
const snap = snapshot(
  [
    { ...route('public', { modelName: 'm', rules: rules(a.key) }), gateways: ['ns/public'] },
    { ...route('internal', { modelName: 'm', rules: rules(b.key) }), gateways: ['ns/internal'] },
    route('shared', { modelName: 'any', rules: rules(a.key) }),
  ],
  [a, b],
)
const serverOf = (t: RouteTable, model: string) => {
  const r = t.resolve(req(model))
  if (r.kind !== 'chain') return r.kind
  const first = r.decision.targets[0]
  return first?.kind === 'server' ? first.server.key : first?.kind
}

describe('RouteTable with a Gateway identity', () => {
  it('serves the routes bound to its Gateway and unbound ones only', () => {
    const pub = new RouteTable(snap, Math.random, 'ns/public')
    expect(serverOf(pub, 'm')).toBe(a.key)
    expect(serverOf(pub, 'any')).toBe(a.key)
    const internal = new RouteTable(snap, Math.random, 'ns/internal')
    expect(serverOf(internal, 'm')).toBe(b.key)
    const other = new RouteTable(snap, Math.random, 'ns/other')
    expect(serverOf(other, 'm')).toBe('unknown-model')
    expect(other.models.map((m) => m.id)).toEqual(['any'])
  })

  it('without --gateway every route is served (the oldest claim of a name wins)', () => {
    const all = new RouteTable(snap)
    expect(serverOf(all, 'm')).toBe(a.key)
    expect(all.models.map((m) => m.id).sort()).toEqual(['any', 'm'])
  })
})
