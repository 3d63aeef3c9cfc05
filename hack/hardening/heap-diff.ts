// `tsx hack/hardening/heap-diff.ts A.heapsnapshot B.heapsnapshot [--top 30]`: what a process holds
// in B that it did not hold in A, for telling a leak from bounded caches filling. V8 keeps an
// object's snapshot id for its whole life, so "new in B" is exact: objects whose id A did not
// have. They are grouped by constructor (or node type and name for strings, arrays, closures),
// and each group lists who retains its new objects (the retaining object's constructor and the
// edge name), which is usually the structure that grows. Ids match only between snapshots taken
// in one inspector session (kit.ts heapSnapshotter; the soak's --heap-snapshots): the net change
// per group is counted, so it holds for any two snapshots.
import { readFile } from 'node:fs/promises'
import { pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'

export interface RawSnapshot {
  readonly snapshot: {
    readonly meta: {
      readonly node_fields: readonly string[]
      /** The first entry lists the node type names. */
      readonly node_types: readonly unknown[]
      readonly edge_fields: readonly string[]
      readonly edge_types: readonly unknown[]
    }
  }
  readonly nodes: readonly number[]
  readonly edges: readonly number[]
  readonly strings: readonly string[]
}

export class HeapDiffError extends Error {
  override readonly name = 'HeapDiffError'
  readonly code = 'bad_snapshot'
}

/** A parsed snapshot, indexed for the diff: per node its id, group key, size and first retainer. */
export interface HeapIndex {
  readonly count: number
  readonly ids: Float64Array
  readonly selfSize: Float64Array
  /** Group of each node: constructor name for objects, `(type) name` prefix otherwise. */
  readonly group: readonly string[]
  /** Retainers of each node as `Owner.edge`, weak edges left out. */
  retainersOf(node: number): string[]
  /**
   * The shortest chain of strong edges from the snapshot's root to `node`, as `Owner.edge`
   * steps root first: who holds a structure that grows, beyond its first retainer.
   */
  pathTo(node: number): string[]
  /** Sum of the self sizes of all nodes. */
  readonly totalBytes: number
  /**
   * Bytes held only through `node` (its retained size): what is reachable from it over strong
   * edges and no longer reachable from the root without it.
   */
  retainedSize(node: number): number
  /** Nodes whose group is `group`. */
  nodesOf(group: string): number[]
  /**
   * 1 for each node held through Node's source maps: with source maps on (tsx turns them on), a
   * module's map is parsed the first time an error's stack is formatted through it (a scrape that
   * timed out once, say), ~1,100 arrays of mappings at once. A cache per module filled once, never
   * state that grows with traffic, so the diff leaves it out.
   */
  readonly sourceMapHeld: Uint8Array
}

/** The edge from a module to its parsed source map (Node's private symbol, by its description). */
const SOURCE_MAP_EDGE = /source_map_data_private_symbol/

function names(v: unknown): readonly string[] {
  if (!Array.isArray(v)) throw new HeapDiffError('snapshot meta lacks the node or edge type names')
  return v.map(String)
}

/** Groups whose name is not a constructor: their name is per object (a string's text). */
const BY_TYPE = new Set(['string', 'concatenated string', 'sliced string', 'number', 'hidden'])

export function indexSnapshot(raw: RawSnapshot): HeapIndex {
  const { meta } = raw.snapshot
  const nf = meta.node_fields.length
  const ef = meta.edge_fields.length
  const nType = meta.node_fields.indexOf('type')
  const nName = meta.node_fields.indexOf('name')
  const nId = meta.node_fields.indexOf('id')
  const nSize = meta.node_fields.indexOf('self_size')
  const nEdges = meta.node_fields.indexOf('edge_count')
  const eType = meta.edge_fields.indexOf('type')
  const eName = meta.edge_fields.indexOf('name_or_index')
  const eTo = meta.edge_fields.indexOf('to_node')
  if ([nType, nName, nId, nSize, nEdges, eType, eName, eTo].some((i) => i < 0))
    throw new HeapDiffError('snapshot lacks the node or edge fields this reads')
  const nodeTypes = names(meta.node_types[0])
  const edgeTypes = names(meta.edge_types[0])
  const count = raw.nodes.length / nf
  const ids = new Float64Array(count)
  const selfSize = new Float64Array(count)
  const group: string[] = new Array(count)
  const name: string[] = new Array(count)
  for (let i = 0; i < count; i++) {
    const base = i * nf
    ids[i] = raw.nodes[base + nId] as number
    selfSize[i] = raw.nodes[base + nSize] as number
    const type = nodeTypes[raw.nodes[base + nType] as number] ?? '?'
    const n = raw.strings[raw.nodes[base + nName] as number] ?? ''
    name[i] = type === 'object' ? n : `(${type})`
    group[i] =
      type === 'object' ? n : BY_TYPE.has(type) ? `(${type})` : `(${type}) ${n.slice(0, 60)}`
  }
  // Reverse edges: for each node, the (owner, edge) pairs pointing at it.
  const retCount = new Uint32Array(count + 1)
  const forEachEdge = (fn: (owner: number, to: number, edge: number) => void): void => {
    let e = 0
    for (let i = 0; i < count; i++) {
      const n = raw.nodes[i * nf + nEdges] as number
      for (let k = 0; k < n; k++, e += ef) fn(i, (raw.edges[e + eTo] as number) / nf, e)
    }
  }
  forEachEdge((_o, to) => {
    retCount[to + 1] = (retCount[to + 1] as number) + 1
  })
  for (let i = 0; i < count; i++)
    retCount[i + 1] = (retCount[i + 1] as number) + (retCount[i] as number)
  const fill = retCount.slice(0, count)
  const retOwner = new Uint32Array(raw.edges.length / ef)
  const retEdge = new Uint32Array(raw.edges.length / ef)
  forEachEdge((owner, to, edge) => {
    const at = fill[to] as number
    retOwner[at] = owner
    retEdge[at] = edge
    fill[to] = at + 1
  })
  const edgeLabel = (owner: number, e: number): string => {
    const type = edgeTypes[raw.edges[e + eType] as number] ?? '?'
    const v = raw.edges[e + eName] as number
    const edgeName =
      type === 'element' || type === 'hidden' ? `[${v}]` : (raw.strings[v] ?? String(v))
    return `${group[owner]}.${edgeName}`
  }
  // Breadth-first distances from the root (node 0) over strong edges, computed on first use.
  let dist: Int32Array | undefined
  const distances = (): Int32Array => {
    if (dist !== undefined) return dist
    const d = new Int32Array(count).fill(-1)
    const firstEdge = new Uint32Array(count + 1)
    for (let i = 0; i < count; i++)
      firstEdge[i + 1] = (firstEdge[i] as number) + (raw.nodes[i * nf + nEdges] as number) * ef
    const queue = new Uint32Array(count)
    let head = 0
    let tail = 0
    d[0] = 0
    queue[tail++] = 0
    while (head < tail) {
      const n = queue[head++] as number
      for (let e = firstEdge[n] as number; e < (firstEdge[n + 1] as number); e += ef) {
        if (edgeTypes[raw.edges[e + eType] as number] === 'weak') continue
        const to = (raw.edges[e + eTo] as number) / nf
        if (d[to] !== -1) continue
        d[to] = (d[n] as number) + 1
        queue[tail++] = to
      }
    }
    dist = d
    return d
  }
  let totalBytes = 0
  for (let i = 0; i < count; i++) totalBytes += selfSize[i] as number
  const firstEdge = new Float64Array(count + 1)
  for (let i = 0; i < count; i++)
    firstEdge[i + 1] = (firstEdge[i] as number) + (raw.nodes[i * nf + nEdges] as number) * ef
  /** Marks (with `mark`) what `from` reaches over strong edges, never entering `skip`. */
  const reach = (from: number, skip: number, seen: Uint8Array, mark: number): void => {
    const stack = [from]
    seen[from] = mark
    while (stack.length > 0) {
      const n = stack.pop() as number
      for (let e = firstEdge[n] as number; e < (firstEdge[n + 1] as number); e += ef) {
        if (edgeTypes[raw.edges[e + eType] as number] === 'weak') continue
        const to = (raw.edges[e + eTo] as number) / nf
        if (to === skip || seen[to] !== 0) continue
        seen[to] = mark
        stack.push(to)
      }
    }
  }
  const sourceMapHeld = new Uint8Array(count)
  forEachEdge((_o, to, e) => {
    const type = edgeTypes[raw.edges[e + eType] as number]
    if (type !== 'property' && type !== 'internal') return
    if (
      sourceMapHeld[to] === 0 &&
      SOURCE_MAP_EDGE.test(raw.strings[raw.edges[e + eName] as number] ?? '')
    )
      reach(to, -1, sourceMapHeld, 1)
  })
  return {
    count,
    ids,
    selfSize,
    group,
    totalBytes,
    sourceMapHeld,
    retainedSize(node) {
      const seen = new Uint8Array(count)
      reach(0, node, seen, 1)
      if (seen[node] !== 0) return 0
      let bytes = selfSize[node] as number
      const mine = new Uint8Array(count)
      reach(node, -1, mine, 1)
      for (let i = 0; i < count; i++)
        if (mine[i] !== 0 && seen[i] === 0 && i !== node) bytes += selfSize[i] as number
      return bytes
    },
    nodesOf(g) {
      const out: number[] = []
      for (let i = 0; i < count; i++) if (group[i] === g) out.push(i)
      return out
    },
    pathTo(node) {
      const d = distances()
      const out: string[] = []
      let at = node
      while (at !== 0 && (d[at] as number) > 0) {
        // Step to a retainer one closer to the root.
        let next = -1
        for (let r = retCount[at] as number; r < (retCount[at + 1] as number); r++) {
          const e = retEdge[r] as number
          if (edgeTypes[raw.edges[e + eType] as number] === 'weak') continue
          const owner = retOwner[r] as number
          if (d[owner] === (d[at] as number) - 1) {
            next = owner
            out.push(edgeLabel(owner, e))
            break
          }
        }
        if (next < 0) break
        at = next
      }
      if (at !== 0) out.push('(unreachable from the root)')
      return out.reverse()
    },
    retainersOf(node) {
      const out: string[] = []
      for (let r = retCount[node] as number; r < (retCount[node + 1] as number); r++) {
        const e = retEdge[r] as number
        const type = edgeTypes[raw.edges[e + eType] as number] ?? '?'
        if (type === 'weak') continue
        const v = raw.edges[e + eName] as number
        const edgeName =
          type === 'element' || type === 'hidden' ? `[${v}]` : (raw.strings[v] ?? String(v))
        out.push(`${name[retOwner[r] as number]}.${edgeName}`)
      }
      return out
    },
  }
}

export interface GroupDiff {
  readonly group: string
  /** Objects of the group in B that A did not have (new), and A's that B no longer has. */
  readonly added: number
  readonly removed: number
  readonly addedBytes: number
  readonly removedBytes: number
  /** Net change in count and bytes. */
  readonly net: number
  readonly netBytes: number
  /** Retainers of the added objects, most common first (`Owner.edge` → count). */
  readonly retainers: readonly (readonly [string, number])[]
}

/** Per group, what B holds that A did not (and the reverse), largest net growth in bytes first. */
export function diffSnapshots(a: HeapIndex, b: HeapIndex): GroupDiff[] {
  // Net change per group by counting (true whatever the ids); added/removed by id.
  const netCount = new Map<string, { n: number; bytes: number }>()
  const tally = (ix: HeapIndex, sign: number): void => {
    for (let i = 0; i < ix.count; i++) {
      if (ix.sourceMapHeld[i] !== 0) continue
      const k = ix.group[i] as string
      const v = netCount.get(k) ?? { n: 0, bytes: 0 }
      v.n += sign
      v.bytes += sign * (ix.selfSize[i] as number)
      netCount.set(k, v)
    }
  }
  tally(a, -1)
  tally(b, 1)
  const inA = new Map<number, number>()
  for (let i = 0; i < a.count; i++) if (a.sourceMapHeld[i] === 0) inA.set(a.ids[i] as number, i)
  const groups = new Map<
    string,
    {
      added: number
      removed: number
      addedBytes: number
      removedBytes: number
      ret: Map<string, number>
    }
  >()
  const g = (k: string) => {
    let v = groups.get(k)
    if (v === undefined) {
      v = { added: 0, removed: 0, addedBytes: 0, removedBytes: 0, ret: new Map() }
      groups.set(k, v)
    }
    return v
  }
  for (let i = 0; i < b.count; i++) {
    const id = b.ids[i] as number
    if (inA.delete(id) || b.sourceMapHeld[i] !== 0) continue
    const v = g(b.group[i] as string)
    v.added++
    v.addedBytes += b.selfSize[i] as number
    // Retainers of a sample of the new objects (the first 200 per group are enough to name them).
    if (v.added <= 200)
      for (const r of new Set(b.retainersOf(i))) v.ret.set(r, (v.ret.get(r) ?? 0) + 1)
  }
  for (const i of inA.values()) {
    const v = g(a.group[i] as string)
    v.removed++
    v.removedBytes += a.selfSize[i] as number
  }
  return [...groups.entries()]
    .map(([group, v]) => ({
      group,
      added: v.added,
      removed: v.removed,
      addedBytes: v.addedBytes,
      removedBytes: v.removedBytes,
      net: netCount.get(group)?.n ?? 0,
      netBytes: netCount.get(group)?.bytes ?? 0,
      retainers: [...v.ret.entries()].sort((x, y) => y[1] - x[1]).slice(0, 5),
    }))
    .sort((x, y) => y.netBytes - x.netBytes)
}

/** Up to `limit` nodes of B in `group` whose ids A did not have (for `HeapIndex.pathTo`). */
export function newInGroup(a: HeapIndex, b: HeapIndex, group: string, limit: number): number[] {
  const inA = new Set<number>()
  for (let i = 0; i < a.count; i++) if (a.group[i] === group) inA.add(a.ids[i] as number)
  const out: number[] = []
  for (let i = 0; i < b.count && out.length < limit; i++) {
    if (b.group[i] === group && !inA.has(b.ids[i] as number)) out.push(i)
  }
  return out
}

/**
 * How far the ids of two snapshots can be trusted: of the ids both have, the share naming an
 * object of the same group in each. Near 1 when both came from one inspector session; far lower
 * when V8 handed ids out anew in between (another session closed), and then added/removed and
 * the retainers mean nothing (the net change per group still holds).
 */
export function idAgreement(a: HeapIndex, b: HeapIndex): { matched: number; sameGroup: number } {
  const groupOf = new Map<number, string>()
  for (let i = 0; i < a.count; i++) groupOf.set(a.ids[i] as number, a.group[i] as string)
  let matched = 0
  let same = 0
  for (let i = 0; i < b.count; i++) {
    const g = groupOf.get(b.ids[i] as number)
    if (g === undefined) continue
    matched++
    if (g === b.group[i]) same++
  }
  return { matched, sameGroup: matched > 0 ? same / matched : 0 }
}

export async function loadSnapshot(file: string): Promise<HeapIndex> {
  return indexSnapshot(JSON.parse(await readFile(file, 'utf8')) as RawSnapshot)
}

export function renderDiff(diffs: readonly GroupDiff[], top: number): string {
  const total = diffs.reduce((s, d) => s + d.netBytes, 0)
  const lines = [`net change: ${(total / 1024).toFixed(1)} KiB in ${diffs.length} groups`]
  for (const d of diffs.slice(0, top)) {
    lines.push(
      `${(d.netBytes / 1024).toFixed(1).padStart(9)} KiB  ${String(d.net).padStart(7)} objects  ${d.group}  (+${d.added} / -${d.removed})`,
    )
    for (const [r, n] of d.retainers) lines.push(`${''.padStart(30)}${n} ← ${r}`)
  }
  return `${lines.join('\n')}\n`
}

async function main(argv: readonly string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: [...argv],
    options: {
      top: { type: 'string', default: '30' },
      // Retainer chains from the root for a few new objects of these groups (as printed).
      paths: { type: 'string', multiple: true, default: [] },
      // Retained size of every object of these constructors in A and in B (by id).
      retained: { type: 'string', multiple: true, default: [] },
      'paths-per-group': { type: 'string', default: '5' },
      help: { type: 'boolean', short: 'h' },
    },
    allowPositionals: true,
    strict: true,
  })
  if (values.help === true || positionals.length !== 2) {
    process.stdout.write(
      'Usage: tsx hack/hardening/heap-diff.ts A.heapsnapshot B.heapsnapshot [--top 30]\n' +
        '       [--paths GROUP ... --paths-per-group 5]  (retainer chains of new objects of GROUP)\n' +
        '       [--retained CONSTRUCTOR ...]  (bytes each object of it holds, in A and in B)\n',
    )
    return
  }
  const [a, b] = (await Promise.all(positionals.map((f) => loadSnapshot(f)))) as [
    HeapIndex,
    HeapIndex,
  ]
  const agree = idAgreement(a, b)
  process.stdout.write(
    `ids in both: ${agree.matched}, naming the same kind of object: ${(agree.sameGroup * 100).toFixed(1)} %\n`,
  )
  if (agree.sameGroup < 0.95)
    process.stdout.write(
      'warning: ids do not match across these snapshots (not one inspector session); added/removed and retainers below are meaningless, net changes hold\n',
    )
  process.stdout.write(
    `self sizes summed: ${(a.totalBytes / 1048576).toFixed(2)} → ${(b.totalBytes / 1048576).toFixed(2)} MiB\n`,
  )
  process.stdout.write(renderDiff(diffSnapshots(a, b), Number(values.top)))
  for (const g of values.retained) {
    process.stdout.write(`\nretained by ${g} (id: A → B KiB):\n`)
    const inA = new Map(a.nodesOf(g).map((n) => [a.ids[n] as number, a.retainedSize(n)]))
    for (const n of b.nodesOf(g)) {
      const id = b.ids[n] as number
      const before = inA.get(id)
      inA.delete(id)
      const after = b.retainedSize(n)
      process.stdout.write(
        `  @${id}: ${before === undefined ? 'new' : (before / 1024).toFixed(1)} → ${(after / 1024).toFixed(1)}\n`,
      )
    }
    for (const [id, before] of inA)
      process.stdout.write(`  @${id}: ${(before / 1024).toFixed(1)} → gone\n`)
  }
  for (const g of values.paths) {
    const nodes = newInGroup(a, b, g, Number(values['paths-per-group']))
    process.stdout.write(`\nnew ${g}: ${nodes.length === 0 ? 'none' : ''}\n`)
    for (const n of nodes) process.stdout.write(`  ${b.pathTo(n).join(' → ')}\n`)
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).catch((e: unknown) => {
    process.stderr.write(`heap-diff: ${e instanceof Error ? e.message : String(e)}\n`)
    process.exitCode = 1
  })
}
