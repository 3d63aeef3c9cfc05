// Which server an EPP serves, and how subset hints map onto its endpoints.
import { describe, expect, it } from 'vitest'
import { inferencePoolKey } from '../../api/snapshot.js'
import { endpoint, server, snapshot } from '../../test/helpers/snapshot.js'
import { poolServer, subsetIds, wireAddress } from './core.js'

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
