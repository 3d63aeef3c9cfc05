// Runs the REAL control plane (etcd + kube-apiserver + kubectl from hack/cluster/build.sh). Nothing
// is skipped: without the binaries this suite fails and says to run the build script.
import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { request } from 'node:https'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type ControlPlane, DEFAULT_K8S_VERSION, startControlPlane } from './control-plane.js'

const NS = 'cp-test'

/** A raw GET as a non-kubectl client would do it (client-node): bearer token + the kubeconfig's CA. */
function rawGet(
  cp: ControlPlane,
  path: string,
  ca: Buffer,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${cp.server}${path}`,
      { headers: { authorization: `Bearer ${cp.token}` }, ca, agent: false, timeout: 5000 },
      (res) => {
        let body = ''
        res.setEncoding('utf8')
        res.on('data', (c: string) => {
          body += c
        })
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
      },
    )
    req.on('timeout', () => req.destroy(new Error('timeout')))
    req.on('error', reject)
    req.end()
  })
}

async function ok(cp: ControlPlane, args: readonly string[], input?: string): Promise<string> {
  const r = await cp.kubectl(args, input === undefined ? {} : { input })
  if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')} failed (${r.code}): ${r.stderr}`)
  return r.stdout
}

interface PodJson {
  metadata: { resourceVersion: string }
  status: {
    phase?: string
    podIP?: string
    conditions?: { type: string; status: string }[]
  }
}

describe('build.sh and control-plane.ts agree', () => {
  it('on the default Kubernetes version (binDir() must find what build.sh built)', async () => {
    const script = await readFile(fileURLToPath(new URL('./build.sh', import.meta.url)), 'utf8')
    expect(/K8S_VERSION="\$\{K8S_VERSION:-(v[0-9.]+)\}"/.exec(script)?.[1]).toBe(
      DEFAULT_K8S_VERSION,
    )
  })
})

describe('local control plane (real kube-apiserver + etcd)', () => {
  // A start failure (e.g. missing binaries) fails every test below with its message; a throwing
  // beforeAll would only mark them skipped, which a CI summary counts as nothing failed.
  let started: ControlPlane | undefined
  let startError: unknown = new Error('the control plane was not started')
  const plane = (): ControlPlane => {
    if (started === undefined) throw startError
    return started
  }

  beforeAll(async () => {
    try {
      started = await startControlPlane()
    } catch (e) {
      startError = e
    }
  }, 180_000)

  afterAll(async () => {
    await started?.stop()
  }, 60_000)

  it('serves the built version over TLS that the kubeconfig CA verifies, with RBAC on', async () => {
    const cp = plane()
    expect(cp.server).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/)
    const version = JSON.parse(await ok(cp, ['version', '-o', 'json'])) as {
      serverVersion: { gitVersion: string }
      clientVersion: { gitVersion: string }
    }
    expect(version.serverVersion.gitVersion).toBe(DEFAULT_K8S_VERSION)
    expect(cp.caCertPath).toBeDefined()
    const ca = await readFile(cp.caCertPath ?? '')
    const r = await rawGet(cp, '/readyz', ca)
    expect(r).toEqual({ status: 200, body: 'ok' })
    // RBAC, not AlwaysAllow: an identity without bindings is refused.
    const denied = await cp.kubectl([
      'auth',
      'can-i',
      'list',
      'pods',
      '--as=system:serviceaccount:x:nobody',
    ])
    expect(denied.stdout.trim()).toBe('no')
    expect((await ok(cp, ['auth', 'can-i', '*', '*'])).trim()).toBe('yes')
  })

  it('stores objects, patches Pod status, and keeps them across an API server restart', async () => {
    const cp = plane()
    await ok(cp, ['create', 'namespace', NS])
    await ok(
      cp,
      ['apply', '-f', '-'],
      `apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: ${NS}}
data: {mode: fast}
---
apiVersion: v1
kind: Pod
metadata: {name: engine-0, namespace: ${NS}, labels: {app: engine}}
spec:
  containers: [{name: engine, image: engine-sim:dev, ports: [{containerPort: 8000}]}]
`,
    )
    // No scheduler or kubelet: the test plays the kubelet and reports the Pod Ready on a loopback IP.
    const status = {
      status: {
        phase: 'Running',
        podIP: '127.0.0.9',
        podIPs: [{ ip: '127.0.0.9' }],
        conditions: [
          { type: 'Ready', status: 'True' },
          { type: 'ContainersReady', status: 'True' },
        ],
      },
    }
    await ok(cp, [
      'patch',
      'pod',
      'engine-0',
      '-n',
      NS,
      '--subresource=status',
      '--type=merge',
      '-p',
      JSON.stringify(status),
    ])

    const ca = await readFile(cp.caCertPath ?? '')
    const got = await rawGet(cp, `/api/v1/namespaces/${NS}/pods/engine-0`, ca)
    expect(got.status).toBe(200)
    const pod = JSON.parse(got.body) as PodJson
    expect(pod.status.podIP).toBe('127.0.0.9')
    expect(pod.status.phase).toBe('Running')
    expect(pod.status.conditions?.find((c) => c.type === 'Ready')?.status).toBe('True')

    // Down: connections are refused and kubectl fails, while etcd keeps the data.
    await cp.stopApiServer()
    await expect(rawGet(cp, '/readyz', ca)).rejects.toThrow(/ECONNREFUSED/)
    const down = await cp.kubectl(['get', 'ns', '--request-timeout=2s'])
    expect(down.code).not.toBe(0)

    // Up again on the same port and CA: same objects, same resourceVersion.
    const before = cp.server
    await cp.startApiServer()
    expect(cp.server).toBe(before)
    const again = JSON.parse(
      await ok(cp, ['get', 'pod', 'engine-0', '-n', NS, '-o', 'json']),
    ) as PodJson
    expect(again.status.podIP).toBe('127.0.0.9')
    expect(again.metadata.resourceVersion).toBe(pod.metadata.resourceVersion)
    expect(await ok(cp, ['get', 'cm', 'settings', '-n', NS, '-o', 'jsonpath={.data.mode}'])).toBe(
      'fast',
    )
  }, 120_000)

  it('stop() ends both processes and removes its temp data dir', async () => {
    const cp = plane()
    const dir = cp.dataDir
    const ca = await readFile(cp.caCertPath ?? '')
    await cp.stop()
    expect(existsSync(dir)).toBe(false)
    await expect(rawGet(cp, '/readyz', ca)).rejects.toThrow(/ECONNREFUSED/)
    await expect(cp.startApiServer()).rejects.toMatchObject({ code: 'STOPPED' })
  }, 60_000)
})
