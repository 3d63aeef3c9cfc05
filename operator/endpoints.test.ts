import { describe, expect, it } from 'vitest'
import {
  endpointsFor,
  PodIndex,
  type PodRecord,
  podRecord,
  podRecordsEqual,
  serverSelector,
} from './endpoints.js'

function pod(
  name: string,
  o: {
    labels?: Record<string, string>
    ip?: string
    ready?: boolean
    phase?: string
    deleting?: boolean
    ns?: string
  } = {},
): unknown {
  return {
    metadata: {
      name,
      namespace: o.ns ?? 'ns',
      labels: o.labels ?? { app: 'a' },
      resourceVersion: '1',
      ...(o.deleting ? { deletionTimestamp: new Date() } : {}),
    },
    status: {
      phase: o.phase ?? 'Running',
      ...(o.ip !== undefined ? { podIP: o.ip } : {}),
      conditions: [{ type: 'Ready', status: o.ready === false ? 'False' : 'True' }],
    },
  }
}

describe('podRecord', () => {
  it('keeps identity, labels, IP, readiness and termination; drops finished pods', () => {
    expect(podRecord(pod('p', { ip: '10.0.0.1' }))).toEqual({
      namespace: 'ns',
      name: 'p',
      labels: { app: 'a' },
      ip: '10.0.0.1',
      ready: true,
      terminating: false,
    })
    expect(podRecord(pod('p', { ready: false }))).toMatchObject({ ready: false, ip: undefined })
    expect(podRecord(pod('p', { deleting: true }))?.terminating).toBe(true)
    expect(podRecord(pod('p', { phase: 'Succeeded' }))).toBeUndefined()
    expect(podRecord(pod('p', { phase: 'Failed' }))).toBeUndefined()
    expect(podRecord({ metadata: { name: 'x' } })).toBeUndefined()
    expect(podRecord(null)).toBeUndefined()
  })

  it('equality ignores everything routing does not read', () => {
    const a = podRecord(pod('p', { ip: '10.0.0.1' })) as PodRecord
    const b = podRecord({
      ...(pod('p', { ip: '10.0.0.1' }) as object),
      spec: { nodeName: 'n' },
    }) as PodRecord
    expect(podRecordsEqual(a, b)).toBe(true)
    expect(podRecordsEqual(a, { ...a, ready: false })).toBe(false)
    expect(podRecordsEqual(a, { ...a, labels: { app: 'b' } })).toBe(false)
    expect(podRecordsEqual(a, { ...a, labels: { app: 'a', gpu: 'h100' } })).toBe(false)
  })
})

describe('endpointsFor', () => {
  const server = (name: string, labels: Record<string, string>, ns = 'ns') =>
    serverSelector({
      metadata: { name, namespace: ns },
      spec: { workloadSelector: { matchLabels: labels }, workloadPort: { port: 8000 } },
    })

  it('selects by every matchLabel in the server namespace; ready, live, addressed pods become endpoints', () => {
    const index = new PodIndex()
    const add = (raw: unknown) => index.set(podRecord(raw) as PodRecord)
    add(pod('b-ready', { labels: { app: 'a', gpu: 'h100' }, ip: '10.0.0.2' }))
    add(pod('a-ready', { labels: { app: 'a', gpu: 'h100' }, ip: '10.0.0.1' }))
    add(pod('not-ready', { labels: { app: 'a', gpu: 'h100' }, ip: '10.0.0.3', ready: false }))
    add(pod('no-ip', { labels: { app: 'a', gpu: 'h100' } }))
    add(pod('leaving', { labels: { app: 'a', gpu: 'h100' }, ip: '10.0.0.4', deleting: true }))
    add(pod('other-gpu', { labels: { app: 'a', gpu: 'a10' }, ip: '10.0.0.5' }))
    add(pod('other-ns', { labels: { app: 'a', gpu: 'h100' }, ip: '10.0.0.6', ns: 'elsewhere' }))
    const s = server('s', { app: 'a', gpu: 'h100' })
    const none = server('none', { app: 'zzz' })
    const r = endpointsFor([s!, none!], index)
    expect(r.endpoints['ns/s']?.map((e) => [e.name, e.address, e.port])).toEqual([
      ['a-ready', '10.0.0.1', 8000],
      ['b-ready', '10.0.0.2', 8000],
    ])
    expect(r.endpoints['ns/s']?.[0]?.labels).toEqual({ app: 'a', gpu: 'h100' })
    expect(r.counts['ns/s']).toEqual({ ready: 2, total: 4 })
    expect(r.counts['ns/none']).toEqual({ ready: 0, total: 0 })
  })

  it('follows relabelling and deletion through the label index', () => {
    const index = new PodIndex()
    index.set(podRecord(pod('p', { ip: '10.0.0.1' })) as PodRecord)
    const s = server('s', { app: 'a' })!
    expect(endpointsFor([s], index).counts['ns/s']?.ready).toBe(1)
    index.set(podRecord(pod('p', { ip: '10.0.0.1', labels: { app: 'b' } })) as PodRecord)
    expect(endpointsFor([s], index).counts['ns/s']?.ready).toBe(0)
    expect(index.select('ns', { app: 'b' })).toHaveLength(1)
    index.delete('ns/p')
    expect(index.select('ns', { app: 'b' })).toHaveLength(0)
    expect(index.size).toBe(0)
  })

  it('an empty selector selects nothing (not everything)', () => {
    const index = new PodIndex()
    index.set(podRecord(pod('p', { ip: '10.0.0.1' })) as PodRecord)
    expect(index.select('ns', {})).toEqual([])
  })
})
