import { describe, expect, it } from 'vitest'
import { hasPdRole, pairableDecodes, pdGroupOf } from './pd.js'
import type { SnapshotEndpoint, SnapshotPd } from './snapshot.js'

const pd: SnapshotPd = {
  groupKey: 'group',
  prefillLabels: { role: 'prefill' },
  decodeLabels: { role: 'decode' },
  connector: 'nixl',
}
const ep = (name: string, labels: Record<string, string>, ready = true): SnapshotEndpoint => ({
  name,
  address: '127.0.0.9',
  port: 8000,
  ready,
  labels,
})

describe('pd roles and groups', () => {
  it('roles come from the label sets, groups from the groupKey label', () => {
    const p = ep('p', { role: 'prefill', group: 'a' })
    const d = ep('d', { role: 'decode', group: 'a' })
    expect([hasPdRole(p, pd, 'prefill'), hasPdRole(p, pd, 'decode')]).toEqual([true, false])
    expect([hasPdRole(d, pd, 'prefill'), hasPdRole(d, pd, 'decode')]).toEqual([false, true])
    expect(pdGroupOf(d, pd)).toBe('a')
    expect(pdGroupOf(ep('x', { role: 'decode' }), pd)).toBeUndefined()
  })

  it('a decode endpoint is pairable only with a ready prefill endpoint of its group', () => {
    const eps = [
      ep('p-a', { role: 'prefill', group: 'a' }),
      ep('d-a', { role: 'decode', group: 'a' }),
      ep('p-b', { role: 'prefill', group: 'b' }, false),
      ep('d-b', { role: 'decode', group: 'b' }),
      ep('d-c', { role: 'decode', group: 'c' }),
      ep('d-none', { role: 'decode' }),
      ep('d-a2', { role: 'decode', group: 'a' }, false),
    ]
    expect(pairableDecodes(eps, pd).map((e) => e.name)).toEqual(['d-a'])
  })
})
