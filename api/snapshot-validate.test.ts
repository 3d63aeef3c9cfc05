import { describe, expect, it } from 'vitest'
import { compileSnapshot } from './compile.js'
import { type RoutingSnapshot, SNAPSHOT_SCHEMA_VERSION } from './snapshot.js'
import { SnapshotInvalidError, snapshotHash, validateSnapshot } from './snapshot-validate.js'

function goodSnapshot(): RoutingSnapshot {
  const { snapshot } = compileSnapshot({
    version: 3,
    servers: [
      {
        metadata: { name: 's' },
        spec: {
          inferenceEngine: 'TGI',
          workloadSelector: { matchLabels: { a: 'b' } },
          workloadPort: { port: 80 },
        },
      },
    ],
    routes: [
      {
        metadata: { name: 'r' },
        spec: { modelName: 'm', rules: [{ targetModels: [{ modelServerName: 's' }] }] },
      },
    ],
    endpoints: { 'default/s': [{ name: 'p', address: '127.0.0.2', ready: true }] },
  })
  return snapshot
}

/** Mutable deep copy, as a received JSON document would be. */
function copy(s: RoutingSnapshot): Record<string, unknown> {
  return JSON.parse(JSON.stringify(s)) as Record<string, unknown>
}

/** Apply a change and re-seal the hash so only the change itself is under test. */
function resealed(s: RoutingSnapshot, change: (x: RoutingSnapshot) => void): unknown {
  const x = copy(s) as unknown as RoutingSnapshot
  change(x)
  return { ...x, hash: snapshotHash(x) }
}

function errorOf(x: unknown): SnapshotInvalidError {
  try {
    validateSnapshot(x)
  } catch (err) {
    if (err instanceof SnapshotInvalidError) return err
    throw err
  }
  throw new Error('expected validateSnapshot to throw')
}

describe('validateSnapshot', () => {
  it('accepts what the compiler produced', () => {
    const s = goodSnapshot()
    expect(validateSnapshot(copy(s))).toEqual(s)
  })

  it('rejects another schema version with a clear message', () => {
    const e = errorOf({ ...copy(goodSnapshot()), schemaVersion: SNAPSHOT_SCHEMA_VERSION + 1 })
    expect(e.code).toBe('SNAPSHOT_INVALID')
    expect(e.path).toBe('schemaVersion')
    expect(e.message).toBe('schemaVersion: unsupported snapshot schema version 2 (expected 1)')
  })

  it('rejects a hash that does not match the content', () => {
    const tampered = copy(goodSnapshot()) as { servers: Record<string, { port: number }> }
    const s = tampered.servers['default/s']
    if (s !== undefined) s.port = 81
    expect(errorOf(tampered).path).toBe('hash')
  })

  it('names the path of a malformed field', () => {
    const bad = resealed(goodSnapshot(), (x) => {
      ;(x.routes[0]?.rules[0]?.targets[0] as { weight: number }).weight = 1_000_001
    })
    const e = errorOf(bad)
    expect(e.path).toBe('routes[0].rules[0].targets[0].weight')
    expect(e.message).toMatch(/^routes\[0\]\.rules\[0\]\.targets\[0\]\.weight: /)
  })

  it('rejects targets that point at servers not in the snapshot', () => {
    const bad = resealed(goodSnapshot(), (x) => {
      ;(x.routes[0]?.rules[0]?.targets[0] as { server: string }).server = 'default/ghost'
    })
    expect(errorOf(bad).message).toBe(
      'routes[0].rules[0].targets[0].server: refers to server "default/ghost" which is not in the snapshot',
    )
  })

  it('accepts a scheduler profile and rejects an unknown plugin name', () => {
    const good = resealed(goodSnapshot(), (x) => {
      ;(x.servers['default/s'] as { scheduler?: unknown }).scheduler = {
        plugins: [{ name: 'prefix-cache', weight: 3, args: { blockSizeTokens: 16 } }],
      }
    })
    expect(validateSnapshot(good).servers['default/s']?.scheduler?.plugins[0]?.name).toBe(
      'prefix-cache',
    )
    const bad = resealed(goodSnapshot(), (x) => {
      ;(x.servers['default/s'] as { scheduler?: unknown }).scheduler = {
        plugins: [{ name: 'telepathy', weight: 1, args: {} }],
      }
    })
    expect(errorOf(bad).path).toBe('servers["default/s"].scheduler.plugins[0].name')
  })

  it('rejects non-objects and a server filed under the wrong key', () => {
    expect(errorOf(null).message).toBe('must be an object')
    const bad = resealed(goodSnapshot(), (x) => {
      const servers = x.servers as Record<string, unknown>
      servers['default/other'] = servers['default/s']
    })
    expect(errorOf(bad).path).toBe('servers["default/other"].key')
  })
})
