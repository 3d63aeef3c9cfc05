// Which server an EPP serves, how subset hints map onto its endpoints, and when a decision's
// bookkeeping happens.
import { setImmediate as tick } from 'node:timers/promises'
import { describe, expect, it } from 'vitest'
import { inferencePoolKey } from '../../api/snapshot.js'
import { endpoint, server, snapshot } from '../../test/helpers/snapshot.js'
import { ClientSignal } from '../abort.js'
import { Scheduler } from '../scheduler/index.js'
import { SnapshotStore } from '../snapshot-store.js'
import { EppCore, poolServer, subsetIds, wireAddress } from './core.js'

describe('poolServer', () => {
  const ms = server('pool', [endpoint('a', '10.0.0.1', 8000)])
  const ip = {
    ...server('pool', [endpoint('b', '10.0.0.2', 8000)]),
    key: inferencePoolKey('default', 'pool'),
  }
  const snap = snapshot([], [ms, ip])

  it('--pool names the InferencePool, --server the ModelServer of the same name', () => {
    expect(poolServer(snap, { kind: 'pool', key: 'default/pool' })?.endpoints[0]?.name).toBe('b')
    expect(poolServer(snap, { kind: 'server', key: 'default/pool' })?.endpoints[0]?.name).toBe('a')
    expect(poolServer(snap, { kind: 'pool', key: 'default/other' })).toBeUndefined()
    expect(poolServer(undefined, { kind: 'pool', key: 'default/pool' })).toBeUndefined()
  })
})

describe('subsetIds', () => {
  const srv = server('pool', [
    endpoint('a', '10.0.0.1', 8000),
    endpoint('a2', '10.0.0.1', 8001),
    endpoint('b', '10.0.0.2', 8000),
    endpoint('v6', 'fd00::1', 8000),
  ])

  it('ip:port entries match exactly, a bare address every port of it; others are ignored', () => {
    expect([...subsetIds(srv, ['10.0.0.1:8001', '10.0.0.9:8000'])]).toEqual(['10.0.0.1:8001'])
    expect([...subsetIds(srv, [' 10.0.0.1 '])].sort()).toEqual(['10.0.0.1:8000', '10.0.0.1:8001'])
    expect([...subsetIds(srv, ['[fd00::1]:8000'])]).toEqual(['fd00::1:8000'])
    expect(subsetIds(srv, []).size).toBe(0)
  })
})

describe('wireAddress', () => {
  it('brackets IPv6 as Envoy parses it', () => {
    expect(wireAddress(endpoint('a', '10.0.0.1', 8000))).toBe('10.0.0.1:8000')
    expect(wireAddress(endpoint('v6', 'fd00::1', 8000))).toBe('[fd00::1]:8000')
  })
})

describe('EppCore bookkeeping after the answer', () => {
  const srv = server('pool', [endpoint('a', '10.0.0.1', 8000), endpoint('b', '10.0.0.2', 8000)])
  const setup = () => {
    const store = new SnapshotStore()
    const scheduler = new Scheduler({ scrape: false })
    store.onSwap((s) => scheduler.onSnapshot(s))
    store.swap(snapshot([], [srv]))
    const core = new EppCore({ store, picker: scheduler, pool: { kind: 'server', key: srv.key } })
    const load = (): number => [...scheduler.localLoad()].reduce((a, [, [n]]) => a + n, 0)
    const decide = (prompt: string) =>
      core.decide({
        headers: new Map([[':path', '/v1/chat/completions']]),
        body: Buffer.from(JSON.stringify({ model: 'm', prompt })),
        subset: undefined,
        signal: new ClientSignal(),
      })
    return { core, load, decide }
  }

  it('counts a dispatch once the turn that answered is over, and before any later pick', async () => {
    const { load, decide } = setup()
    const first = await decide('one')
    // Answered, not yet counted: the accounting waits behind the answer's write.
    expect(load()).toBe(0)
    // A pick in the same turn applies it first: the second decision sees the first dispatch.
    const second = await decide('two')
    expect(load()).toBe(1)
    await tick()
    expect(load()).toBe(2)
    first.finish({ status: 200 })
    second.finish({ status: 200 })
    expect(load()).toBe(0)
  })

  it('a request finished before its dispatch was applied still ends at zero', async () => {
    const { core, load, decide } = setup()
    const d = await decide('one')
    d.finish({ status: 200 })
    core.settle()
    await tick()
    expect(load()).toBe(0)
  })

  it('a failing step is logged and the ones after it still run', async () => {
    const records: string[] = []
    const core = new EppCore({
      store: new SnapshotStore(),
      picker: new Scheduler({ scrape: false }),
      pool: { kind: 'server', key: 'default/none' },
      log: (_level, msg, fields) => records.push(`${msg}: ${String(fields?.['error'])}`),
    })
    const ran: number[] = []
    core.afterAnswer(() => ran.push(1))
    core.afterAnswer(() => {
      throw new Error('boom')
    })
    core.afterAnswer(() => ran.push(3))
    expect(ran).toEqual([])
    await tick()
    expect(ran).toEqual([1, 3])
    expect(records).toEqual(['epp bookkeeping failed: boom'])
  })
})
