// heap-diff: objects new in B (ids A did not have) grouped by constructor, with their retainers.
// Two snapshots in V8's format, small enough to read: a Map holding entries that grow between
// them, a string that went away.
import { describe, expect, it } from 'vitest'
import { diffSnapshots, indexSnapshot, newInGroup, renderDiff } from './heap-diff.js'

const meta = {
  node_fields: ['type', 'name', 'id', 'self_size', 'edge_count', 'trace_node_id', 'detachedness'],
  node_types: [['hidden', 'array', 'string', 'object', 'code', 'closure'], 'string', 'number'],
  edge_fields: ['type', 'name_or_index', 'to_node'],
  edge_types: [['context', 'element', 'property', 'internal', 'hidden', 'shortcut', 'weak']],
}
const NF = meta.node_fields.length

/** Nodes as [type index, name, id, size, edges]; edges as [type index, name or index, node]. */
function snapshot(
  strings: string[],
  nodes: [number, string, number, number, number][],
  edges: [number, string | number, number][],
) {
  const s = (x: string): number => {
    const i = strings.indexOf(x)
    if (i >= 0) return i
    strings.push(x)
    return strings.length - 1
  }
  return {
    snapshot: { meta },
    nodes: nodes.flatMap(([t, n, id, size, e]) => [t, s(n), id, size, e, 0, 0]),
    edges: edges.flatMap(([t, n, to]) => [t, typeof n === 'number' ? n : s(n), to * NF]),
    strings,
  }
}

describe('heap-diff', () => {
  it('counts objects new in B by constructor and names what retains them', () => {
    // A: root → cache (Map) → 1 Entry; root → a string.
    const a = snapshot(
      [],
      [
        [0, '(root)', 1, 0, 2],
        [3, 'Map', 3, 32, 1],
        [3, 'Entry', 5, 40, 0],
        [2, 'gone', 7, 24, 0],
      ],
      [
        [2, 'cache', 1],
        [2, 'text', 3],
        [1, 0, 2],
      ],
    )
    // B: the same Map (id 3) and Entry (id 5), plus 2 new Entries (ids 9, 11) held by the Map,
    // and a weak reference to one of them that must not count as a retainer.
    const b = snapshot(
      [],
      [
        [0, '(root)', 1, 0, 2],
        [3, 'Map', 3, 32, 3],
        [3, 'Entry', 5, 40, 0],
        [3, 'Entry', 9, 40, 0],
        [3, 'Entry', 11, 40, 0],
        [3, 'WeakRef', 13, 16, 1],
      ],
      [
        [2, 'cache', 1],
        [2, 'ref', 5],
        [1, 0, 2],
        [1, 1, 3],
        [1, 2, 4],
        [6, 'target', 3],
      ],
    )
    const d = diffSnapshots(indexSnapshot(a), indexSnapshot(b))
    const entry = d.find((x) => x.group === 'Entry')
    expect(entry).toMatchObject({ added: 2, removed: 0, net: 2, netBytes: 80 })
    expect(entry?.retainers).toEqual([
      ['Map.[1]', 1],
      ['Map.[2]', 1],
    ])
    expect(d.find((x) => x.group === '(string)')).toMatchObject({ added: 0, removed: 1, net: -1 })
    expect(d.find((x) => x.group === 'Map')).toBeUndefined()
    // Largest growth first.
    expect(d[0]?.group).toBe('Entry')
    expect(renderDiff(d, 5)).toContain('Entry  (+2 / -0)')
    // The chain from the root to a new Entry goes through the Map, not the weak reference.
    const ib = indexSnapshot(b)
    const fresh = newInGroup(indexSnapshot(a), ib, 'Entry', 5)
    expect(fresh).toEqual([3, 4])
    expect(ib.pathTo(3)).toEqual(['(hidden).cache', 'Map.[1]'])
    expect(ib.totalBytes).toBe(32 + 40 * 3 + 16)
  })

  it("leaves out what Node's source maps hold (parsed once, on the first formatted stack)", () => {
    const a = snapshot(
      [],
      [
        [0, '(root)', 1, 0, 1],
        [3, 'ModuleWrap', 3, 32, 0],
      ],
      [[2, 'module', 1]],
    )
    // B: the module now holds its parsed map (an object with two mapping arrays), and a list
    // held elsewhere grew by one array: only that one counts.
    const b = snapshot(
      [],
      [
        [0, '(root)', 1, 0, 2],
        [3, 'ModuleWrap', 3, 32, 1],
        [3, 'SourceMap', 5, 40, 2],
        [3, 'Array', 7, 16, 0],
        [3, 'Array', 9, 16, 0],
        [3, 'Array', 11, 16, 0],
      ],
      [
        [2, 'module', 1],
        [2, 'list', 5],
        [2, '<symbol node:source_map_data_private_symbol>', 2],
        [1, 0, 3],
        [1, 1, 4],
      ],
    )
    const ib = indexSnapshot(b)
    expect([...ib.sourceMapHeld]).toEqual([0, 0, 1, 1, 1, 0])
    const d = diffSnapshots(indexSnapshot(a), ib)
    expect(d.find((x) => x.group === 'Array')).toMatchObject({ added: 1, net: 1 })
    expect(d.find((x) => x.group === 'SourceMap')).toBeUndefined()
  })
})
