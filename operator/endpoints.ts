// Pods → endpoints. The operator keeps a slim record per Pod (10k full Pod objects would cost
// ~100 MB and carry nothing the snapshot needs), indexes them by label so each ModelServer's
// `workloadSelector.matchLabels` finds its Pods without scanning the namespace, and derives:
// endpoints = Pods that are Ready (PodReady condition True), not terminating and have an IP,
// as `podIP:workloadPort.port` with the Pod's labels.
import type { EndpointInput } from '../api/index.js'

export interface PodRecord {
  readonly namespace: string
  readonly name: string
  readonly labels: Readonly<Record<string, string>>
  readonly ip: string | undefined
  readonly ready: boolean
  readonly terminating: boolean
}

function stringMap(v: unknown): Record<string, string> {
  const out: Record<string, string> = {}
  if (typeof v !== 'object' || v === null) return out
  for (const [k, x] of Object.entries(v)) if (typeof x === 'string') out[k] = x
  return out
}

/**
 * Reduces a Pod (raw watch JSON, or client-node's typed V1Pod with Date fields) to what routing
 * needs. Finished Pods (Succeeded/Failed) are dropped: they never serve again.
 */
export function podRecord(raw: unknown): PodRecord | undefined {
  if (typeof raw !== 'object' || raw === null) return undefined
  const pod = raw as {
    metadata?: {
      name?: unknown
      namespace?: unknown
      labels?: unknown
      deletionTimestamp?: unknown
    }
    status?: { phase?: unknown; podIP?: unknown; conditions?: unknown }
  }
  const m = pod.metadata
  if (m === undefined || typeof m.name !== 'string' || typeof m.namespace !== 'string')
    return undefined
  const phase = pod.status?.phase
  if (phase === 'Succeeded' || phase === 'Failed') return undefined
  const conditions = Array.isArray(pod.status?.conditions) ? pod.status.conditions : []
  const ready = conditions.some(
    (c: unknown) =>
      typeof c === 'object' &&
      c !== null &&
      (c as { type?: unknown }).type === 'Ready' &&
      (c as { status?: unknown }).status === 'True',
  )
  const ip = pod.status?.podIP
  return {
    namespace: m.namespace,
    name: m.name,
    labels: stringMap(m.labels),
    ip: typeof ip === 'string' && ip !== '' ? ip : undefined,
    ready,
    terminating: m.deletionTimestamp !== undefined && m.deletionTimestamp !== null,
  }
}

export function podRecordsEqual(a: PodRecord, b: PodRecord): boolean {
  if (a.ip !== b.ip || a.ready !== b.ready || a.terminating !== b.terminating) return false
  const ka = Object.keys(a.labels)
  if (ka.length !== Object.keys(b.labels).length) return false
  return ka.every((k) => a.labels[k] === b.labels[k])
}

/** Serves endpoints when the record says so; `total` counts every live matched Pod. */
export function isServing(p: PodRecord): boolean {
  return p.ready && !p.terminating && p.ip !== undefined
}

const pair = (k: string, v: string): string => `${k}=${v}`

/** Pods by namespace and by `label=value`, kept in step with the Pod informer. */
export class PodIndex {
  private readonly pods = new Map<string, PodRecord>()
  /** namespace → "k=v" → pod keys */
  private readonly byLabel = new Map<string, Map<string, Set<string>>>()

  get size(): number {
    return this.pods.size
  }

  get(key: string): PodRecord | undefined {
    return this.pods.get(key)
  }

  set(p: PodRecord): void {
    const key = `${p.namespace}/${p.name}`
    this.delete(key)
    this.pods.set(key, p)
    let ns = this.byLabel.get(p.namespace)
    if (ns === undefined) {
      ns = new Map()
      this.byLabel.set(p.namespace, ns)
    }
    for (const [k, v] of Object.entries(p.labels)) {
      const lk = pair(k, v)
      let set = ns.get(lk)
      if (set === undefined) {
        set = new Set()
        ns.set(lk, set)
      }
      set.add(key)
    }
  }

  delete(key: string): void {
    const p = this.pods.get(key)
    if (p === undefined) return
    this.pods.delete(key)
    const ns = this.byLabel.get(p.namespace)
    if (ns === undefined) return
    for (const [k, v] of Object.entries(p.labels)) {
      const lk = pair(k, v)
      const set = ns.get(lk)
      set?.delete(key)
      if (set?.size === 0) ns.delete(lk)
    }
    if (ns.size === 0) this.byLabel.delete(p.namespace)
  }

  /** Pods in `namespace` carrying every label of `matchLabels` (none for an empty selector). */
  select(namespace: string, matchLabels: Readonly<Record<string, string>>): PodRecord[] {
    const ns = this.byLabel.get(namespace)
    const pairs = Object.entries(matchLabels)
    if (ns === undefined || pairs.length === 0) return []
    // Start from the rarest label so a broad one (app=llm) does not make this a namespace scan.
    let smallest: Set<string> | undefined
    for (const [k, v] of pairs) {
      const set = ns.get(pair(k, v))
      if (set === undefined) return []
      if (smallest === undefined || set.size < smallest.size) smallest = set
    }
    const out: PodRecord[] = []
    for (const key of smallest ?? []) {
      const p = this.pods.get(key)
      if (p !== undefined && pairs.every(([k, v]) => p.labels[k] === v)) out.push(p)
    }
    return out
  }
}

/** What the endpoint derivation reads from a ModelServer (raw object from the informer). */
export interface ServerSelector {
  readonly key: string
  readonly namespace: string
  readonly matchLabels: Readonly<Record<string, string>>
  readonly port: number | undefined
}

/** Best effort on an unvalidated object: the compiler reports invalid servers itself. */
export function serverSelector(raw: unknown): ServerSelector | undefined {
  if (typeof raw !== 'object' || raw === null) return undefined
  const o = raw as {
    metadata?: { name?: unknown; namespace?: unknown }
    spec?: { workloadSelector?: { matchLabels?: unknown }; workloadPort?: { port?: unknown } }
  }
  const name = o.metadata?.name
  const namespace = o.metadata?.namespace
  if (typeof name !== 'string' || typeof namespace !== 'string') return undefined
  const port = o.spec?.workloadPort?.port
  return {
    key: `${namespace}/${name}`,
    namespace,
    matchLabels: stringMap(o.spec?.workloadSelector?.matchLabels),
    port: typeof port === 'number' ? port : undefined,
  }
}

export interface EndpointCounts {
  readonly ready: number
  readonly total: number
}

export interface ServerEndpoints {
  /** Compiler input: ready endpoints per server key, sorted by Pod name. */
  readonly endpoints: Record<string, EndpointInput[]>
  readonly counts: Record<string, EndpointCounts>
}

export function endpointsFor(servers: readonly ServerSelector[], pods: PodIndex): ServerEndpoints {
  const endpoints: Record<string, EndpointInput[]> = {}
  const counts: Record<string, EndpointCounts> = {}
  for (const s of servers) {
    const matched = pods.select(s.namespace, s.matchLabels).filter((p) => !p.terminating)
    const ready = matched.filter(isServing)
    counts[s.key] = { ready: ready.length, total: matched.length }
    endpoints[s.key] = ready
      .map((p) => ({
        name: p.name,
        address: p.ip as string,
        ...(s.port !== undefined ? { port: s.port } : {}),
        ready: true,
        labels: { ...p.labels },
      }))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
  }
  return { endpoints, counts }
}

/** True if a Pod with these labels in `namespace` would be selected by any server. */
export function selectedByAny(
  servers: Iterable<ServerSelector>,
  namespace: string,
  labels: Readonly<Record<string, string>>,
): boolean {
  for (const s of servers) {
    if (s.namespace !== namespace) continue
    const pairs = Object.entries(s.matchLabels)
    if (pairs.length > 0 && pairs.every(([k, v]) => labels[k] === v)) return true
  }
  return false
}
