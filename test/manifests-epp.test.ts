// install.yaml's Endpoint Picker objects (cdk8s/epp.ts, install option `endpointPickers`):
//  - applied to a real kube-apiserver (hack/cluster) next to GAIE's upstream InferencePool CRD:
//    the API server accepts every object, the pool's endpointPickerRef names the EPP Service in
//    the pool's namespace on its gRPC port, and that Service selects the EPP Deployment's pods;
//  - the EPP container's arguments run for real (`infer-gateway epp`, from source), with only the
//    cluster-specific parts moved to loopback (the operator Service URL → a local push server, the
//    mounted token → a temp file, the ports → free ones): it follows the push channel, and its
//    gRPC readiness (the manifest's probe service) turns SERVING once a snapshot compiled from the
//    manifest's own InferencePool arrives.
import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { compileSnapshot } from '../api/compile.js'
import { inferencePoolKey } from '../api/snapshot.js'
import { EPP_NODE_OPTIONS, EPP_POOL_LABEL, EPP_PORTS, eppName } from '../cdk8s/epp.js'
import { installObjects, PUSH_TOKEN_DIR, pushUrl } from '../cdk8s/install.js'
import { type ControlPlane, freePort, startControlPlane } from '../hack/cluster/control-plane.js'
import { listenPushServer, SnapshotPushServer } from '../operator/push-server.js'
import { ensureGaieModules, GAIE_V160 } from './helpers/gaie-modules.js'

const run = promisify(execFile)
const ROOT = fileURLToPath(new URL('..', import.meta.url))
const NS = 'llm'
const POOL = 'vllm-llama3-8b-instruct'
const TOKEN = 'manifests-epp-test-push-token-0123456789'

type Obj = Record<string, unknown> & {
  kind: string
  metadata: { name: string; namespace?: string }
}

const OBJECTS = installObjects({
  image: 'infer-gateway:test',
  endpointPickers: [
    {
      namespace: NS,
      pool: POOL,
      spec: { selector: { app: POOL }, targetPorts: [8000], engine: 'vLLM' },
    },
    // A pool its owner applies (no spec): only the EPP is written.
    { namespace: NS, pool: 'owner-managed', replicas: 1 },
  ],
}) as Obj[]

const find = (kind: string, name: string, ns = NS): Obj => {
  const o = OBJECTS.find(
    (x) => x.kind === kind && x.metadata.name === name && (x.metadata.namespace ?? ns) === ns,
  )
  if (o === undefined) throw new Error(`no ${kind} ${ns}/${name} in install.yaml`)
  return o
}

interface Container {
  args: string[]
  env?: { name: string; value: string }[]
  ports: { name: string; containerPort: number }[]
  readinessProbe: { grpc: { port: number; service: string } }
  livenessProbe: { grpc: { port: number; service: string } }
}

let cp: ControlPlane | undefined
let tmp: string
const children: ChildProcess[] = []

beforeAll(async () => {
  ensureGaieModules()
  tmp = await mkdtemp(join(tmpdir(), 'manifests-epp-'))
  cp = await startControlPlane()
}, 240_000)

afterAll(async () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL')
  await cp?.stop()
  if (tmp) await rm(tmp, { recursive: true, force: true })
})

async function kubectl(args: readonly string[], input?: string): Promise<string> {
  if (cp === undefined) throw new Error('no control plane')
  const r = await cp.kubectl(args, input === undefined ? {} : { input })
  if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')}: ${r.stderr}`)
  return r.stdout
}

describe('install.yaml with an Endpoint Picker per InferencePool', () => {
  it('is accepted by the API server; the pool points at the EPP Service, which selects the EPP pods', async () => {
    await kubectl([
      'apply',
      '--server-side',
      '-f',
      join(GAIE_V160, 'config/crd/bases/inference.networking.k8s.io_inferencepools.yaml'),
    ])
    await kubectl([
      'wait',
      '--for=condition=Established',
      '--timeout=60s',
      'crd/inferencepools.inference.networking.k8s.io',
    ])
    await kubectl(['create', 'namespace', NS])
    await kubectl(['create', 'namespace', 'infer-gateway-system'])
    // Our own CRDs and cluster objects are covered elsewhere; these are the EPP's.
    const epp = OBJECTS.filter(
      (o) =>
        o.kind === 'InferencePool' ||
        o.metadata.namespace === NS ||
        o.metadata.name.startsWith('infer-gateway-operator-epp-'),
    )
    expect(epp.map((o) => `${o.kind}/${o.metadata.namespace}/${o.metadata.name}`).sort()).toEqual(
      [
        `Deployment/${NS}/${eppName('owner-managed')}`,
        `Deployment/${NS}/${eppName(POOL)}`,
        `InferencePool/${NS}/${POOL}`,
        `NetworkPolicy/infer-gateway-system/infer-gateway-operator-epp-${NS}`,
        `Service/${NS}/${eppName('owner-managed')}`,
        `Service/${NS}/${eppName(POOL)}`,
      ].sort(),
    )
    await kubectl(['apply', '-f', '-'], epp.map((o) => JSON.stringify(o)).join('\n'))

    // What the API server stored (defaults and validation applied), not what we wrote.
    const get = async <T>(kind: string, name: string, ns = NS): Promise<T> =>
      JSON.parse(await kubectl(['get', kind, name, '-n', ns, '-o', 'json'])) as T
    const pool = await get<{
      spec: { endpointPickerRef: { name: string; port: { number: number }; failureMode: string } }
    }>('inferencepool', POOL)
    expect(pool.spec.endpointPickerRef).toEqual({
      group: '',
      kind: 'Service',
      name: eppName(POOL),
      port: { number: EPP_PORTS.grpc },
      failureMode: 'FailClose',
    })
    // GAIE resolves endpointPickerRef to a Service in the pool's namespace, on that port.
    const svc = await get<{
      spec: {
        selector: Record<string, string>
        ports: { name: string; port: number; targetPort: string; appProtocol?: string }[]
      }
    }>('service', pool.spec.endpointPickerRef.name)
    const grpcPort = svc.spec.ports.find((p) => p.port === pool.spec.endpointPickerRef.port.number)
    expect(grpcPort).toMatchObject({
      name: 'grpc',
      targetPort: 'grpc',
      appProtocol: 'kubernetes.io/h2c',
    })
    const dep = await get<{
      spec: {
        selector: { matchLabels: Record<string, string> }
        template: {
          metadata: { labels: Record<string, string> }
          spec: { containers: Container[] }
        }
      }
    }>('deployment', eppName(POOL))
    expect(dep.spec.template.metadata.labels).toMatchObject(svc.spec.selector)
    expect(dep.spec.selector.matchLabels).toEqual(svc.spec.selector)
    expect(svc.spec.selector[EPP_POOL_LABEL]).toBe(POOL)
    const [c] = dep.spec.template.spec.containers
    expect(c?.ports.find((p) => p.name === 'grpc')?.containerPort).toBe(EPP_PORTS.grpc)
    // The other pool's Service selects only its own EPP's pods.
    const other = await get<{ spec: { selector: Record<string, string> } }>(
      'service',
      eppName('owner-managed'),
    )
    expect(other.spec.selector[EPP_POOL_LABEL]).toBe('owner-managed')
  }, 240_000)

  it('runs the EPP container args: it follows the push channel and turns SERVING once the pool is in the snapshot', async () => {
    const dep = find('Deployment', eppName(POOL)) as unknown as {
      spec: { template: { spec: { containers: Container[] } } }
    }
    const [c] = dep.spec.template.spec.containers
    if (c === undefined) throw new Error('no container')
    const tokenFile = join(tmp, 'token')
    await writeFile(tokenFile, `${TOKEN}\n`)
    const push = new SnapshotPushServer({ token: TOKEN })
    const pushSrv = await listenPushServer(push, '127.0.0.1', 0)
    try {
      const grpcPort = await freePort()
      const metricsPort = await freePort()
      const swap: Record<string, string> = {
        [`--push-url=${pushUrl('infer-gateway-system')}`]: `--push-url=${pushSrv.url}`,
        [`--push-token-file=${PUSH_TOKEN_DIR}/token`]: `--push-token-file=${tokenFile}`,
      }
      // args[0] is the bundle path (the image's CMD); from a checkout it is bin/infer-gateway.js.
      expect(c.args[0]).toBe('/app/infer-gateway.mjs')
      const args = [
        ...c.args.slice(1).map((a) => swap[a] ?? a),
        '--host',
        '127.0.0.1',
        '--grpc-port',
        String(grpcPort),
        '--metrics-port',
        String(metricsPort),
      ]
      expect(args).toContain(`--push-url=${pushSrv.url}`)
      // The container's environment too: Node must accept its NODE_OPTIONS (the GC sizing).
      const env = Object.fromEntries((c.env ?? []).map((e) => [e.name, e.value]))
      expect(env['NODE_OPTIONS']).toBe(EPP_NODE_OPTIONS)
      const child = spawn(process.execPath, [join(ROOT, 'bin/infer-gateway.js'), ...args], {
        cwd: ROOT,
        env: { ...process.env, ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
      })
      children.push(child)
      let out = ''
      child.stdout?.on('data', (b: Buffer) => {
        out += b.toString()
      })
      child.stderr?.on('data', (b: Buffer) => {
        out += b.toString()
      })
      const built = await run('bash', [join(ROOT, 'test/epp-client/build.sh')], {
        timeout: 900_000,
      })
      const client = built.stdout.trim().split('\n').pop() as string
      const health = async (service: string): Promise<string> => {
        try {
          return (await run(client, ['health', `127.0.0.1:${grpcPort}`, service])).stdout.trim()
        } catch (e) {
          return `error: ${e instanceof Error ? e.message : String(e)}`
        }
      }
      // Liveness answers at once; readiness waits for the pool.
      await expect
        .poll(() => health(c.livenessProbe.grpc.service), { timeout: 60_000, interval: 200 })
        .toBe('SERVING')
      expect(await health(c.readinessProbe.grpc.service), out).toBe('NOT_SERVING')
      // The operator would compile the manifest's own InferencePool: do that, with one pod.
      const compiled = compileSnapshot({
        routes: [],
        servers: [],
        inferencePools: [find('InferencePool', POOL)],
        endpoints: {
          [inferencePoolKey(NS, POOL)]: [{ name: 'pod-0', address: '127.0.0.61', ready: true }],
        },
        version: 4,
      })
      push.publish(compiled.snapshot)
      await expect
        .poll(() => health(c.readinessProbe.grpc.service), { timeout: 60_000, interval: 200 })
        .toBe('SERVING')
    } finally {
      for (const ch of children) if (ch.exitCode === null) ch.kill('SIGTERM')
      await pushSrv.close()
    }
  }, 300_000)
})
