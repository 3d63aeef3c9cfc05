import { gzipSync } from 'node:zlib'
import { describe, expect, it } from 'vitest'
import { compileSnapshot, type RoutingSnapshot } from '../api/index.js'
import {
  decodeSnapshotConfigMap,
  encodeSnapshot,
  HASH_ANNOTATION,
  nextVersion,
  snapshotConfigMap,
  VERSION_ANNOTATION,
} from './snapshot-configmap.js'

function snap(version: number): RoutingSnapshot {
  const { snapshot } = compileSnapshot({
    servers: [
      {
        metadata: { name: 's', namespace: 'ns' },
        spec: {
          inferenceEngine: 'vLLM',
          workloadSelector: { matchLabels: { app: 's' } },
          workloadPort: { port: 8000 },
        },
      },
    ],
    routes: [
      {
        metadata: { name: 'r', namespace: 'ns', creationTimestamp: '2026-01-01T00:00:00Z' },
        spec: { modelName: 'm', rules: [{ targetModels: [{ modelServerName: 's' }] }] },
      },
    ],
    endpoints: {
      'ns/s': [{ name: 'p', address: '10.0.0.1', ready: true, labels: { b: '1', a: '2' } }],
    },
    version: 0,
  })
  return { ...snapshot, version }
}

describe('snapshot ConfigMap', () => {
  it('round-trips to the exact bytes the push channel serves', () => {
    const s = snap(42)
    const enc = encodeSnapshot(s)
    const cm = snapshotConfigMap('sys', 'infer-gateway-snapshot', enc, '17')
    expect(cm.metadata?.annotations).toEqual({
      [VERSION_ANNOTATION]: '42',
      [HASH_ANNOTATION]: s.hash,
    })
    expect(cm.metadata?.resourceVersion).toBe('17')
    const back = decodeSnapshotConfigMap({
      ...cm,
      metadata: { ...cm.metadata, resourceVersion: '18' },
    })
    expect(back.resourceVersion).toBe('18')
    expect(Buffer.from(JSON.stringify(back.snapshot))).toEqual(enc.json)
    // Key order is the canonical one the compiler produced (version stays in place).
    expect(Object.keys(back.snapshot)).toEqual(Object.keys(s))
  })

  it('rejects missing, corrupt and tampered content with CONFIGMAP_INVALID', () => {
    expect(() => decodeSnapshotConfigMap({ metadata: { name: 'x' } })).toThrow(
      expect.objectContaining({ code: 'CONFIGMAP_INVALID' }),
    )
    const bad = (payload: Buffer) => ({
      metadata: { name: 'x' },
      binaryData: { 'snapshot.json.gz': payload.toString('base64') },
    })
    expect(() => decodeSnapshotConfigMap(bad(Buffer.from('not gzip')))).toThrow(
      /CONFIGMAP_INVALID|gzip|incorrect header/,
    )
    const tampered = { ...snap(1), routes: [] }
    expect(() => decodeSnapshotConfigMap(bad(gzipSync(JSON.stringify(tampered))))).toThrow(
      expect.objectContaining({
        code: 'CONFIGMAP_INVALID',
        message: expect.stringMatching(/hash/),
      }),
    )
  })

  it('versions go up by one, never below the wall clock in seconds', () => {
    const now = 1_800_000_000_000
    expect(nextVersion(0, now)).toBe(1_800_000_000)
    expect(nextVersion(1_800_000_005, now)).toBe(1_800_000_006)
    expect(nextVersion(5, now)).toBe(1_800_000_000)
  })
})
