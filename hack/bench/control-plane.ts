// `npm run bench:control-plane` (tsx hack/bench/control-plane.ts): how fast configuration
// reaches traffic, on the real control plane.
// 1. Propagation: a ModelRoute is applied through the API server; the clock stops when every
//    data-plane replica (separate processes, subscribed to the operator's push channel) answers
//    a request for the new model from the engine behind it. ~30 changes, p50/p99/max.
// 2. Scale (in-process, no API server): 1k ModelServers, 1k ModelRoutes and 10k Pods through the
//    operator's own rebuild path (Pod index → endpoints → compile → JSON → gzip): time and size.
import { parseArgs } from 'node:util'
import { compileSnapshot, type RoutingSnapshot } from '../../api/index.js'
import { endpointsFor, PodIndex, serverSelector } from '../../operator/endpoints.js'
import { encodeSnapshot } from '../../operator/snapshot-configmap.js'
import {
  apply,
  type Cluster,
  createReadyPod,
  type DataplaneProc,
  dataplaneVersion,
  ensureNamespace,
  modelRoute,
  modelServer,
  type OperatorProc,
  SIM_MODEL,
  spawnDataplane,
  spawnOperator,
  startCluster,
  startSims,
  storedVersion,
  until,
  waitReady,
} from './control-plane-kit.js'
import { percentile } from './load.js'
import { fmt, table, writeSection } from './report.js'

const { values: opts } = parseArgs({
  options: {
    changes: { type: 'string', default: '30' },
    replicas: { type: 'string', default: '3' },
    servers: { type: 'string', default: '1000' },
    'pods-per-server': { type: 'string', default: '10' },
    'no-write': { type: 'boolean', default: false },
  },
})
const CHANGES = Number(opts.changes)
const REPLICAS = Number(opts.replicas)
const SERVERS = Number(opts.servers)
const PODS_PER_SERVER = Number(opts['pods-per-server'])
const APP = 'bench'

const sorted = (xs: readonly number[]): number[] => [...xs].sort((a, b) => a - b)
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** Polls one data plane until a request for `model` succeeds; returns when (performance.now()). */
async function firstSuccess(dp: DataplaneProc, model: string, deadline: number): Promise<number> {
  const body = JSON.stringify({
    model,
    messages: [{ role: 'user', content: 'ping' }],
    max_tokens: 1,
  })
  for (;;) {
    const r = await fetch(`${dp.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body,
    }).catch(() => undefined)
    const ok = r?.ok ?? false
    await r?.arrayBuffer()
    if (ok) return performance.now()
    if (performance.now() > deadline) throw new Error(`${dp.url} never routed model ${model}`)
    await sleep(2)
  }
}

/** Snapshots the operator has written so far (versions are not consecutive: wall-clock floor). */
async function publishes(op: OperatorProc): Promise<number> {
  const text = await (await fetch(`${op.url}/metrics`)).text()
  const m = /^infer_gateway_operator_snapshot_publishes_total\{result="success"\} (\d+)/m.exec(text)
  return Number(m?.[1] ?? 0)
}

interface Propagation {
  readonly perChangeMs: number[]
  readonly perReplicaMs: number[]
  readonly versions: number
}

async function propagation(
  c: Cluster,
  op: OperatorProc,
  dps: DataplaneProc[],
): Promise<Propagation> {
  const perChangeMs: number[] = []
  const perReplicaMs: number[] = []
  const v0 = await publishes(op)
  for (let i = 0; i < CHANGES; i++) {
    const model = `model-${i}`
    const t0 = performance.now()
    await apply(c, modelRoute(APP, `route-${i}`, model, [{ server: 'engine' }]))
    const done = await Promise.all(dps.map((d) => firstSuccess(d, model, t0 + 10_000)))
    for (const t of done) perReplicaMs.push(t - t0)
    perChangeMs.push(Math.max(...done) - t0)
    // Spread the changes out like edits, not one burst the debounce would merge.
    await sleep(100)
  }
  return { perChangeMs, perReplicaMs, versions: (await publishes(op)) - v0 }
}

interface Scale {
  readonly servers: number
  readonly pods: number
  readonly endpointsMs: number
  readonly compileMs: number
  readonly encodeMs: number
  readonly totalMs: number
  readonly jsonBytes: number
  readonly gzipBytes: number
}

function median(xs: readonly number[]): number {
  return percentile(sorted(xs), 50)
}

/** The leader's rebuild path at scale, in-process (the API server is not what is measured). */
function scale(): Scale {
  const created = '2026-01-01T00:00:00Z'
  const servers: unknown[] = []
  const routes: unknown[] = []
  const index = new PodIndex()
  const zones = ['a', 'b', 'c']
  for (let s = 0; s < SERVERS; s++) {
    const ns = `team-${s % 20}`
    servers.push({
      metadata: { name: `server-${s}`, namespace: ns, generation: 1 },
      spec: {
        model: `org/model-${s}`,
        inferenceEngine: s % 2 === 0 ? 'vLLM' : 'SGLang',
        workloadSelector: { matchLabels: { app: `server-${s}`, role: 'engine' } },
        workloadPort: { port: 8000 },
        trafficPolicy: { timeout: '30s', retry: { attempts: 2 } },
      },
    })
    routes.push({
      metadata: { name: `route-${s}`, namespace: ns, generation: 1, creationTimestamp: created },
      spec: {
        modelName: `model-${s}`,
        rules: [{ targetModels: [{ modelServerName: `server-${s}` }] }],
      },
    })
    for (let p = 0; p < PODS_PER_SERVER; p++) {
      const n = s * PODS_PER_SERVER + p
      index.set({
        namespace: ns,
        name: `server-${s}-${p.toString(36)}x${(n * 2654435761).toString(36).slice(-5)}`,
        labels: {
          app: `server-${s}`,
          role: 'engine',
          'pod-template-hash': (s * 7919).toString(36),
          'topology.kubernetes.io/zone': `zone-${zones[p % 3]}`,
          'nvidia.com/gpu.product': p % 2 === 0 ? 'NVIDIA-H100-80GB-HBM3' : 'NVIDIA-A100-SXM4-80GB',
        },
        ip: `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`,
        ready: true,
        terminating: false,
      })
    }
  }
  const runs: Omit<Scale, 'servers' | 'pods'>[] = []
  let snapshot: RoutingSnapshot | undefined
  for (let run = 0; run < 6; run++) {
    const t0 = performance.now()
    const selectors = servers.map(serverSelector).filter((x) => x !== undefined)
    const { endpoints } = endpointsFor(selectors, index)
    const t1 = performance.now()
    const compiled = compileSnapshot({ routes, servers, endpoints, version: 0 })
    const t2 = performance.now()
    snapshot = { ...compiled.snapshot, version: 1_800_000_000 }
    const enc = encodeSnapshot(snapshot)
    const t3 = performance.now()
    if (compiled.diagnostics.some((d) => d.severity === 'error'))
      throw new Error(`scale inputs did not compile: ${compiled.diagnostics[0]?.message}`)
    // The first run warms up the JIT; report the median of the rest.
    if (run > 0)
      runs.push({
        endpointsMs: t1 - t0,
        compileMs: t2 - t1,
        encodeMs: t3 - t2,
        totalMs: t3 - t0,
        jsonBytes: enc.json.length,
        gzipBytes: enc.gz.length,
      })
  }
  const endpoints = Object.values(snapshot?.servers ?? {}).reduce(
    (a, s) => a + s.endpoints.length,
    0,
  )
  return {
    servers: SERVERS,
    pods: endpoints,
    endpointsMs: median(runs.map((r) => r.endpointsMs)),
    compileMs: median(runs.map((r) => r.compileMs)),
    encodeMs: median(runs.map((r) => r.encodeMs)),
    totalMs: median(runs.map((r) => r.totalMs)),
    jsonBytes: runs[0]?.jsonBytes ?? 0,
    gzipBytes: runs[0]?.gzipBytes ?? 0,
  }
}

async function main(): Promise<void> {
  process.stdout.write(`scale: ${SERVERS} servers × ${PODS_PER_SERVER} pods, in-process…\n`)
  const sc = scale()
  process.stdout.write(`${JSON.stringify(sc)}\n`)

  process.stdout.write('starting control plane, operator, simulators and data planes…\n')
  const [c, { port, sims }] = await Promise.all([
    startCluster(),
    startSims(['127.0.0.200', '127.0.0.201']),
  ])
  let op: OperatorProc | undefined
  let dps: DataplaneProc[] = []
  try {
    await ensureNamespace(c, APP)
    await apply(
      c,
      modelServer(APP, 'engine', { labels: { app: 'engine' }, port, model: SIM_MODEL }),
    )
    await createReadyPod(c, APP, 'engine-0', { app: 'engine' }, '127.0.0.200')
    await createReadyPod(c, APP, 'engine-1', { app: 'engine' }, '127.0.0.201')
    op = await spawnOperator(c, { identity: 'bench' })
    await waitReady(op.url)
    dps = await Promise.all(
      Array.from({ length: REPLICAS }, (_, i) =>
        spawnDataplane(`127.0.0.${210 + i}`, ['--push-url', op?.pushUrl ?? '']),
      ),
    )
    // Settled: both engine Pods are in the stored snapshot and every replica has it.
    await until(
      'first snapshot',
      async () => {
        const r = await fetch(`${op?.pushUrl}?after=0`)
        const snap = (await r.json()) as RoutingSnapshot
        return snap.servers[`${APP}/engine`]?.endpoints.length === 2 ? true : undefined
      },
      15_000,
    )
    const { version } = await storedVersion(c)
    await until('replicas subscribed', async () =>
      (await Promise.all(dps.map((d) => dataplaneVersion(d.url)))).every((v) => v >= version)
        ? true
        : undefined,
    )
    process.stdout.write(`${CHANGES} changes → ${REPLICAS} data-plane replicas…\n`)
    const p = await propagation(c, op, dps)
    const change = sorted(p.perChangeMs)
    const replica = sorted(p.perReplicaMs)
    const row = (name: string, xs: number[]) => [
      name,
      xs.length,
      fmt(percentile(xs, 50), 1),
      fmt(percentile(xs, 90), 1),
      fmt(percentile(xs, 99), 1),
      fmt(xs.at(-1) ?? Number.NaN, 1),
    ]
    const md = `## Control plane

Measured on the real control plane (kube-apiserver + etcd from \`hack/cluster\`, loopback), the
operator as a process under its ServiceAccount, ${REPLICAS} data-plane processes subscribed to its push
channel, and simulated engines. Reproduce with \`npm run bench:control-plane\`.

### ModelRoute apply → every data-plane replica routing by it

Each change creates a ModelRoute for a new model name through the API server (server-side apply);
the clock stops when every replica answers a request for that model (each replica is polled every
~2 ms). ${CHANGES} changes, ${p.versions} snapshot versions published. Every number includes the
operator's 50 ms batching window (\`--debounce\`). Target: p99 ≤ 1000 ms.

${table(['', 'n', 'p50 ms', 'p90 ms', 'p99 ms', 'max ms'], [row('all replicas routing', change), row('per replica', replica)])}

### Rebuild at scale (in-process)

${sc.servers} ModelServers, ${sc.servers} ModelRoutes and ${sc.pods} ready Pods (5 labels each, 20
namespaces) through the leader's rebuild path: Pod label index → endpoints → \`compileSnapshot\` →
JSON → gzip (level 9). Median of 5 runs after a warm-up. Targets: compile ≤ 200 ms, ≤ 1 MiB gzipped.

${table(
  ['step', 'ms'],
  [
    ['endpoints from Pods', fmt(sc.endpointsMs, 1)],
    ['compileSnapshot', fmt(sc.compileMs, 1)],
    ['JSON + gzip', fmt(sc.encodeMs, 1)],
    ['total', fmt(sc.totalMs, 1)],
  ],
)}

Snapshot: ${(sc.jsonBytes / 1024).toFixed(0)} KiB JSON, **${(sc.gzipBytes / 1024).toFixed(0)} KiB gzipped** (ConfigMap limit used by the operator: 1,000,000 bytes).
`
    const data = {
      propagation: {
        changes: CHANGES,
        replicas: REPLICAS,
        versions: p.versions,
        allReplicasMs: {
          p50: percentile(change, 50),
          p90: percentile(change, 90),
          p99: percentile(change, 99),
          max: change.at(-1),
        },
        perReplicaMs: {
          p50: percentile(replica, 50),
          p90: percentile(replica, 90),
          p99: percentile(replica, 99),
          max: replica.at(-1),
        },
        raw: p.perChangeMs,
      },
      scale: sc,
    }
    process.stdout.write(`${md}\n`)
    if (!opts['no-write'])
      process.stdout.write(`wrote ${await writeSection('control-plane', md, data)}\n`)
  } finally {
    await Promise.all(dps.map((d) => d.stop()))
    await op?.stop()
    await Promise.all([...sims.values()].map((s) => s.close()))
    await c.stop()
  }
}

main().catch((e: unknown) => {
  process.stderr.write(
    `bench:control-plane failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`,
  )
  process.exitCode = 1
})
