// Scaffolding shared by the operator end-to-end tests and the control-plane benchmark: a real
// kube-apiserver + etcd with the install manifests applied (CRDs, RBAC), the operator running as
// a process under its own ServiceAccount (so the least-privilege RBAC is what it really gets),
// data-plane processes subscribed to its push channel, engine simulators on 127.0.0.x and Pods
// whose status the test sets as a kubelet would.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  PatchStrategy,
  setHeaderOptions,
} from '@kubernetes/client-node'
import {
  CRD_NAMES,
  CRD_VERSION,
  OPERATOR_NAME,
  SNAPSHOT_CONFIGMAP,
  SYSTEM_NAMESPACE,
} from '../../api/crd.js'
import { API_GROUP } from '../../api/schema.js'
import { synthInstall } from '../../cdk8s/main.js'
import { type ControlPlane, freePort, startControlPlane } from '../cluster/control-plane.js'
import { type SimHandle, startSimulator } from '../sim/index.js'
import { type DataplaneProc, type Proc, spawnCli, startDataplane } from './procs.js'

export const NS = SYSTEM_NAMESPACE

export interface Cluster {
  readonly cp: ControlPlane
  /** Admin client (system:masters), for what the test itself does. */
  readonly kc: KubeConfig
  readonly core: CoreV1Api
  readonly crs: CustomObjectsApi
  /** Kubeconfig of the operator's ServiceAccount (token from the TokenRequest API). */
  readonly operatorKubeconfig: string
  readonly dir: string
  stop(): Promise<void>
}

async function kubectlOk(
  cp: ControlPlane,
  args: readonly string[],
  input?: string,
): Promise<string> {
  const r = await cp.kubectl(args, input === undefined ? {} : { input })
  if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')} failed (${r.code}): ${r.stderr}`)
  return r.stdout
}

/** Starts the control plane and `kubectl apply -f install.yaml` (synthesized from cdk8s/). */
export async function startCluster(): Promise<Cluster> {
  const cp = await startControlPlane()
  const dir = await mkdtemp(join(tmpdir(), 'infer-gateway-e2e-'))
  try {
    const manifest = await synthInstall(join(dir, 'install.yaml'))
    await kubectlOk(cp, ['apply', '-f', manifest])
    await kubectlOk(cp, [
      'wait',
      '--for=condition=Established',
      '--timeout=60s',
      ...[CRD_NAMES.modelRoute, CRD_NAMES.modelServer].map((n) => `crd/${n.plural}.${API_GROUP}`),
    ])
    await grantSnapshotWatch(cp)
    const token = (
      await kubectlOk(cp, ['create', 'token', OPERATOR_NAME, '-n', NS, '--duration=6h'])
    ).trim()
    const admin = await readFile(cp.kubeconfigPath, 'utf8')
    const operatorKubeconfig = join(dir, 'operator.kubeconfig')
    await writeFile(
      operatorKubeconfig,
      admin
        .replace(/token: \S+/, `token: ${token}`)
        .replace(/name: admin/g, 'name: operator')
        .replace(/user: admin/, 'user: operator'),
      { mode: 0o600 },
    )
    const kc = new KubeConfig()
    kc.loadFromFile(cp.kubeconfigPath)
    return {
      cp,
      kc,
      core: kc.makeApiClient(CoreV1Api),
      crs: kc.makeApiClient(CustomObjectsApi),
      operatorKubeconfig,
      dir,
      async stop() {
        await cp.stop()
        await rm(dir, { recursive: true, force: true })
      },
    }
  } catch (e) {
    await cp.stop()
    await rm(dir, { recursive: true, force: true })
    throw e
  }
}

/**
 * Followers (and a restarted leader) watch the snapshot ConfigMap: the operator needs list+watch
 * on it, which RBAC allows by name when the request selects `metadata.name`. If the install
 * manifests do not grant that yet, add it here and say so loudly: it is a manifest gap, not
 * something a test should paper over silently.
 */
async function grantSnapshotWatch(cp: ControlPlane): Promise<void> {
  const sa = `system:serviceaccount:${NS}:${OPERATOR_NAME}`
  const can = await cp.kubectl([
    'auth',
    'can-i',
    'watch',
    `configmaps/${SNAPSHOT_CONFIGMAP}`,
    '-n',
    NS,
    `--as=${sa}`,
  ])
  if (can.stdout.trim() === 'yes') return
  process.stderr.write(
    `[control-plane-kit] WARNING: install.yaml does not let ${sa} list/watch configmap ${SNAPSHOT_CONFIGMAP}; granting it for this test\n`,
  )
  await kubectlOk(
    cp,
    ['apply', '-f', '-'],
    `apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: ${OPERATOR_NAME}-snapshot-watch, namespace: ${NS}}
rules:
- {apiGroups: [""], resources: [configmaps], verbs: [list, watch], resourceNames: [${SNAPSHOT_CONFIGMAP}]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: ${OPERATOR_NAME}-snapshot-watch, namespace: ${NS}}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: ${OPERATOR_NAME}-snapshot-watch}
subjects: [{kind: ServiceAccount, name: ${OPERATOR_NAME}, namespace: ${NS}}]
`,
  )
}

export async function ensureNamespace(c: Cluster, name: string): Promise<void> {
  await c.core.createNamespace({ body: { metadata: { name } } }).catch((e: unknown) => {
    if ((e as { code?: number }).code !== 409) throw e
  })
}

export interface OperatorProc extends Proc {
  readonly url: string
  readonly pushUrl: string
  readonly port: number
  /** Everything it printed (JSON log lines). */
  output(): string
}

/** Runs `infer-gateway operator` as a process under the operator's ServiceAccount. */
export async function spawnOperator(
  c: Cluster,
  opts: { identity?: string; port?: number; extra?: readonly string[] } = {},
): Promise<OperatorProc> {
  const port = opts.port ?? (await freePort())
  const proc = await spawnCli(
    [
      'operator',
      '--kubeconfig',
      c.operatorKubeconfig,
      '--namespace',
      NS,
      '--host',
      '127.0.0.1',
      '--port',
      String(port),
      '--leader-elect',
      '--identity',
      opts.identity ?? 'operator-0',
      // Short enough for tests to see take-overs, same ratios as the defaults.
      '--lease-duration',
      '4s',
      '--renew-deadline',
      '3s',
      '--retry-period',
      '500ms',
      '--max-backoff',
      '2s',
      ...(opts.extra ?? []),
    ],
    /operator listening/,
    [],
    // Loading the sources alone took 10 s on a loaded 2-core machine; 30 s ran out twice.
    90_000,
  )
  let out = ''
  proc.child.stdout?.on('data', (b: Buffer) => {
    out += b.toString()
  })
  proc.child.stderr?.on('data', (b: Buffer) => {
    out += b.toString()
  })
  const url = `http://127.0.0.1:${port}`
  return { ...proc, url, pushUrl: `${url}/v1/snapshot`, port, output: () => out }
}

export async function waitReady(url: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const ok = await fetch(`${url}/readyz`).then(
      (r) => r.ok,
      () => false,
    )
    if (ok) return
    if (Date.now() > deadline) throw new Error(`${url}/readyz not ready after ${timeoutMs} ms`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

export type { DataplaneProc }

/** A data plane on `host` of the simulated cluster; a stop waits at most 2 s for open requests. */
export function spawnDataplane(host: string, args: readonly string[]): Promise<DataplaneProc> {
  // A primary and a worker per core load the sources at once: 30 s ran out on a loaded machine.
  return startDataplane({ host, args: [...args, '--shutdown-timeout', '2000'], timeoutMs: 90_000 })
}

// ---------------------------------------------------------------------------------------------
// objects

export const group = { group: API_GROUP, version: CRD_VERSION } as const
export const PLURAL = { route: CRD_NAMES.modelRoute.plural, server: CRD_NAMES.modelServer.plural }

export interface Target {
  readonly server: string
  readonly weight?: number
}

export function modelServer(
  namespace: string,
  name: string,
  spec: { model?: string; labels: Record<string, string>; port: number; engine?: string },
): Record<string, unknown> {
  return {
    apiVersion: `${API_GROUP}/${CRD_VERSION}`,
    kind: 'ModelServer',
    metadata: { name, namespace },
    spec: {
      ...(spec.model !== undefined ? { model: spec.model } : {}),
      inferenceEngine: spec.engine ?? 'vLLM',
      workloadSelector: { matchLabels: spec.labels },
      workloadPort: { port: spec.port },
    },
  }
}

export function modelRoute(
  namespace: string,
  name: string,
  modelName: string,
  targets: readonly Target[],
): Record<string, unknown> {
  return {
    apiVersion: `${API_GROUP}/${CRD_VERSION}`,
    kind: 'ModelRoute',
    metadata: { name, namespace },
    spec: {
      modelName,
      rules: [
        {
          name: 'default',
          targetModels: targets.map((t) => ({
            modelServerName: t.server,
            ...(t.weight !== undefined ? { weight: t.weight } : {}),
          })),
        },
      ],
    },
  }
}

/** Server-side apply as the test's field manager (create or update in one call). */
export async function apply(c: Cluster, obj: Record<string, unknown>): Promise<void> {
  const kind = obj['kind']
  const meta = obj['metadata'] as { name: string; namespace: string }
  const plural = kind === 'ModelRoute' ? PLURAL.route : PLURAL.server
  await c.crs.patchNamespacedCustomObject(
    {
      ...group,
      namespace: meta.namespace,
      plural,
      name: meta.name,
      body: obj,
      fieldManager: 'e2e',
      force: true,
    },
    setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply),
  )
}

export async function getStatus(
  c: Cluster,
  kind: 'route' | 'server',
  namespace: string,
  name: string,
): Promise<StatusView> {
  const o = (await c.crs.getNamespacedCustomObject({
    ...group,
    namespace,
    plural: PLURAL[kind],
    name,
  })) as {
    metadata: { generation?: number; resourceVersion: string }
    status?: StatusView['status']
  }
  return {
    generation: o.metadata.generation ?? 0,
    resourceVersion: o.metadata.resourceVersion,
    status: o.status ?? {},
  }
}

export interface StatusView {
  readonly generation: number
  readonly resourceVersion: string
  readonly status: {
    observedGeneration?: number
    conditions?: {
      type: string
      status: string
      reason: string
      message: string
      lastTransitionTime: string
    }[]
    readyEndpoints?: number
    totalEndpoints?: number
    targets?: string
    endpoints?: string
    snapshotVersion?: number
  }
}

export function condition(
  s: StatusView,
  type: string,
): { status: string; reason: string; message: string; lastTransitionTime: string } | undefined {
  return s.status.conditions?.find((c) => c.type === type)
}

export async function createPod(
  c: Cluster,
  namespace: string,
  name: string,
  labels: Record<string, string>,
): Promise<void> {
  await c.core.createNamespacedPod({
    namespace,
    body: {
      metadata: { name, namespace, labels },
      spec: { containers: [{ name: 'engine', image: 'engine-sim:dev' }] },
    },
  })
}

/** Plays the kubelet: phase Running, the given IP, Ready True/False. */
export async function setPodStatus(
  c: Cluster,
  namespace: string,
  name: string,
  ip: string,
  ready: boolean,
): Promise<void> {
  const status = ready ? 'True' : 'False'
  await c.core.patchNamespacedPodStatus(
    {
      namespace,
      name,
      body: {
        status: {
          phase: 'Running',
          podIP: ip,
          podIPs: [{ ip }],
          conditions: [
            { type: 'Ready', status },
            { type: 'ContainersReady', status },
          ],
        },
      },
    },
    setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
  )
}

export async function createReadyPod(
  c: Cluster,
  namespace: string,
  name: string,
  labels: Record<string, string>,
  ip: string,
): Promise<void> {
  await createPod(c, namespace, name, labels)
  await setPodStatus(c, namespace, name, ip, true)
}

export async function deletePod(c: Cluster, namespace: string, name: string): Promise<void> {
  // Never scheduled (no nodeName), so the API server deletes it at once without a kubelet.
  await c.core.deleteNamespacedPod({ namespace, name, gracePeriodSeconds: 0 })
}

export async function until<T>(
  what: string,
  fn: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 15_000,
  stepMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  for (;;) {
    try {
      const v = await fn()
      if (v !== undefined && v !== false) return v
    } catch (e) {
      last = e
    }
    if (Date.now() > deadline)
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${String(last)})` : ''}`,
      )
    await new Promise((r) => setTimeout(r, stepMs))
  }
}

// ---------------------------------------------------------------------------------------------
// engines and data planes

export const SIM_MODEL = 'sim-model'

/**
 * One simulator per IP, all on the same port: Pods of one ModelServer share `workloadPort`.
 * The port is the first simulator's ephemeral one (free on the other loopback IPs in practice).
 */
export async function startSims(
  ips: readonly string[],
): Promise<{ port: number; sims: Map<string, SimHandle> }> {
  const sims = new Map<string, SimHandle>()
  let port = 0
  for (const ip of ips) {
    const s = await startSimulator({
      name: ip,
      host: ip,
      port,
      model: SIM_MODEL,
      metricsFormat: 'vllm',
      zeroLatency: true,
    })
    port = s.port
    sims.set(ip, s)
  }
  return { port, sims }
}

/** Requests each simulator received so far, by IP. */
export function simCounts(sims: ReadonlyMap<string, SimHandle>): Record<string, number> {
  return Object.fromEntries([...sims].map(([ip, s]) => [ip, s.stats().requests]))
}

/** `infer_gateway_snapshot_version` of a data plane (0 before any snapshot). */
export async function dataplaneVersion(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text()
  const m = /^infer_gateway_snapshot_version (\d+)/m.exec(text)
  return m ? Number(m[1]) : 0
}

/** The snapshot version stored in the ConfigMap (annotation). */
export async function storedVersion(
  c: Cluster,
): Promise<{ version: number; hash: string; resourceVersion: string }> {
  const cm = await c.core.readNamespacedConfigMap({ name: SNAPSHOT_CONFIGMAP, namespace: NS })
  const a = cm.metadata?.annotations ?? {}
  return {
    version: Number(a['infer-gateway.io/snapshot-version']),
    hash: a['infer-gateway.io/snapshot-hash'] ?? '',
    resourceVersion: cm.metadata?.resourceVersion ?? '',
  }
}

/** A closed-loop load generator on some data planes; counts every failed request. */
export function startLoad(
  urls: readonly string[],
  body: () => Record<string, unknown>,
  concurrency = 2,
): { stop(): Promise<{ ok: number; failed: number; errors: string[] }> } {
  let stopping = false
  let ok = 0
  let failed = 0
  const errors: string[] = []
  const worker = async (url: string): Promise<void> => {
    while (!stopping) {
      try {
        const r = await fetch(`${url}/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(body()),
        })
        await r.arrayBuffer()
        if (r.ok) ok++
        else {
          failed++
          if (errors.length < 10) errors.push(`${url}: ${r.status}`)
        }
      } catch (e) {
        failed++
        if (errors.length < 10) errors.push(`${url}: ${e instanceof Error ? e.message : String(e)}`)
      }
    }
  }
  const workers = urls.flatMap((u) => Array.from({ length: concurrency }, () => worker(u)))
  return {
    async stop() {
      stopping = true
      await Promise.all(workers)
      return { ok, failed, errors }
    },
  }
}
