// Reads a V8 CPU profile of one proxy-cost window (`proxy-cost.ts --cpu-prof DIR`) as CPU µs per
// request: self time by source file (the bundle's lines mapped back through its source map, so
// `dataplane/serve/server-target.ts`, `undici/lib/...`, or `node:` for Node's own JavaScript) and
// by function, and the inclusive time of our own functions. A sample is the profiler's interval
// of CPU (or of a preempted thread: on a loaded machine read shares as where to look, and the
// window's cpuUsage as what a change saved).
import { readFile } from 'node:fs/promises'
import { SourceMap, type SourceMapPayload } from 'node:module'

interface ProfileNode {
  readonly id: number
  readonly callFrame: {
    readonly functionName: string
    readonly url: string
    readonly lineNumber: number
    readonly columnNumber: number
  }
  readonly hitCount?: number
  readonly children?: readonly number[]
}

export interface CpuProfile {
  readonly nodes: readonly ProfileNode[]
  readonly startTime: number
  readonly endTime: number
  readonly samples?: readonly number[]
}

export interface ProfileSummary {
  /** µs of busy samples per request (idle and the profiler's own `(program)` left out). */
  readonly busyUsPerRequest: number
  /** Self µs/request by source file or package, largest first. */
  readonly byFile: readonly (readonly [string, number])[]
  /** Self µs/request by function (`name file:line`), largest first. */
  readonly byFunction: readonly (readonly [string, number])[]
  /** Inclusive µs/request of functions in `ours` files, largest first. */
  readonly oursInclusive: readonly (readonly [string, number])[]
}

/** Where a frame's code comes from: a project file, a package, `node:…`, or `(native)`. */
function sourceOf(
  f: ProfileNode['callFrame'],
  map: SourceMap | undefined,
): { file: string; line: number } {
  if (map !== undefined && f.url.endsWith('.mjs') && f.lineNumber >= 0) {
    const e = map.findEntry(f.lineNumber, f.columnNumber) as {
      originalSource?: string
      originalLine?: number
    }
    if (e.originalSource !== undefined) {
      const file = e.originalSource
        .replace(/^.*node_modules\//, '')
        .replace(/^.*?\/?((dataplane|api)\/)/, '$1')
      return { file, line: (e.originalLine ?? 0) + 1 }
    }
  }
  if (f.url === '') return { file: '(native)', line: 0 }
  return { file: f.url.replace(/^file:\/\/.*\//, ''), line: f.lineNumber + 1 }
}

/** A package's name for a file under node_modules (`undici`, `@hono/node-server`). */
function groupOf(file: string): string {
  if (file.startsWith('dataplane/') || file.startsWith('api/')) return file
  if (file.startsWith('node:') || file === '(native)' || file.includes('.')) {
    // Node's own modules, native code, or an unmapped script.
    return file.startsWith('node:') ? 'node' : file
  }
  const parts = file.split('/')
  return parts.slice(0, file.startsWith('@') ? 2 : 1).join('/')
}

export function summarizeProfile(
  prof: CpuProfile,
  requests: number,
  map?: SourceMap,
  ours: (file: string) => boolean = (f) => f.startsWith('dataplane/') || f.startsWith('api/'),
): ProfileSummary {
  const total = prof.nodes.reduce((a, n) => a + (n.hitCount ?? 0), 0)
  const usPerSample = total > 0 ? (prof.endTime - prof.startTime) / total : 0
  const parent = new Map<number, number>()
  for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
  const keys = new Map<number, { key: string; file: string }>()
  for (const n of prof.nodes) {
    const s = sourceOf(n.callFrame, map)
    keys.set(n.id, {
      key: `${n.callFrame.functionName || '(anonymous)'} ${s.file}:${s.line}`,
      file: s.file,
    })
  }
  const file = new Map<string, number>()
  const fn = new Map<string, number>()
  const incl = new Map<string, number>()
  let busy = 0
  for (const n of prof.nodes) {
    const hits = n.hitCount ?? 0
    const name = n.callFrame.functionName
    if (hits === 0 || name === '(idle)' || name === '(program)' || name === '(root)') continue
    busy += hits
    const k = keys.get(n.id)
    if (k === undefined) continue
    const g = groupOf(k.file)
    file.set(g, (file.get(g) ?? 0) + hits)
    fn.set(k.key, (fn.get(k.key) ?? 0) + hits)
    const seen = new Set<string>()
    for (let id: number | undefined = n.id; id !== undefined; id = parent.get(id)) {
      const a = keys.get(id)
      if (a === undefined || !ours(a.file) || seen.has(a.key)) continue
      seen.add(a.key)
      incl.set(a.key, (incl.get(a.key) ?? 0) + hits)
    }
  }
  const per = (m: Map<string, number>) =>
    [...m.entries()]
      .map(([k, v]): [string, number] => [k, (v * usPerSample) / requests])
      .sort((a, b) => b[1] - a[1])
  return {
    busyUsPerRequest: (busy * usPerSample) / requests,
    byFile: per(file),
    byFunction: per(fn),
    oursInclusive: per(incl),
  }
}

/** The source map beside a bundle (`<bundle>.map`), if there is one. */
export async function bundleSourceMap(bundle: string): Promise<SourceMap | undefined> {
  try {
    return new SourceMap(JSON.parse(await readFile(`${bundle}.map`, 'utf8')) as SourceMapPayload)
  } catch {
    return undefined
  }
}

/** The summary as lines, `top` rows per table. */
export function profileLines(s: ProfileSummary, top: number): string[] {
  const row = ([k, v]: readonly [string, number]) => `  ${v.toFixed(1).padStart(7)}  ${k}`
  return [
    `busy ${s.busyUsPerRequest.toFixed(0)} µs/request in samples; self by file (µs/request):`,
    ...s.byFile.slice(0, top).map(row),
    'self by function:',
    ...s.byFunction.slice(0, top).map(row),
    'inclusive, our functions:',
    ...s.oursInclusive.slice(0, top).map(row),
  ]
}
