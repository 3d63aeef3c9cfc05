// The data-plane container's arguments from install.yaml, run for real: the same entry (the
// image's /app/dataplane.mjs is dataplane/main.ts bundled; run here from source), the
// same flags and values, with only the cluster-specific parts moved to loopback (the mounted
// snapshot path → a temp file, the operator Service URL → a local push server, the port → a free
// one, plus --host 127.0.0.1). Catches a flag the data plane does not know (its parser is strict),
// probes on the wrong paths, and a grace period shorter than the drain it configures.
import { type ChildProcess, spawn } from 'node:child_process'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { gzipSync } from 'node:zlib'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DATAPLANE_NAME, MOUNT_PATHS, SNAPSHOT_KEY } from '../api/crd.js'
import { installObjects, PUSH_TOKEN_DIR, pushUrl } from '../cdk8s/install.js'
import { dataplaneHelp } from '../dataplane/command.js'
import { freePort } from '../hack/cluster/control-plane.js'
import { listenPushServer, SnapshotPushServer } from '../operator/push-server.js'
import { endpoint, route, server, snapshot } from './helpers/snapshot.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
/** What the image's /app/dataplane.mjs bundles (hack/build.ts), run through tsx. */
const DATAPLANE_ENTRY = ['--import', 'tsx', join(ROOT, 'dataplane/main.ts')]

interface PodSpec {
  terminationGracePeriodSeconds: number
  containers: { args: string[] }[]
}

function dataplanePod(): PodSpec {
  const d = installObjects().find(
    (o) =>
      o['kind'] === 'Deployment' && (o['metadata'] as { name: string }).name === DATAPLANE_NAME,
  ) as { spec: { template: { spec: PodSpec } } } | undefined
  if (!d) throw new Error('no data-plane Deployment')
  return d.spec.template.spec
}

/**
 * The container's args split at the bundle (the image's entrypoint is node): Node's flags before
 * it (cdk8s/dataplane-node.ts), the data plane's after.
 */
function splitArgs(args: readonly string[]): { node: string[]; dataplane: string[] } {
  const at = args.indexOf('/app/dataplane.mjs')
  if (at < 0) throw new Error(`no /app/dataplane.mjs in ${args.join(' ')}`)
  return { node: args.slice(0, at), dataplane: args.slice(at + 1) }
}

function snap(version: number) {
  const s = server('llama', [endpoint('llama-0', '127.0.0.31', 9)], { model: 'llama' })
  return snapshot(
    [
      route('llama', {
        modelName: 'llama',
        rules: [{ name: 'all', targets: [{ server: s.key, weight: 1 }] }],
      }),
    ],
    [s],
    version,
  )
}

async function get(url: string): Promise<{ status: number; body: string }> {
  const r = await fetch(url, { signal: AbortSignal.timeout(2000) })
  return { status: r.status, body: await r.text() }
}

async function until<T>(what: string, f: () => Promise<T | undefined>, ms = 120_000): Promise<T> {
  const deadline = Date.now() + ms
  let last: unknown
  while (Date.now() < deadline) {
    try {
      const v = await f()
      if (v !== undefined) return v
    } catch (e) {
      last = e
    }
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`)
}

/** The push token the operator keeps in its Secret; data planes read it from the mounted file. */
const TOKEN = 'manifests-test-push-token-0123456789'
let tmp: string
let tokenFile: string
let push: SnapshotPushServer
let pushSrv: Awaited<ReturnType<typeof listenPushServer>>
let child: ChildProcess | undefined
let output = ''

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'manifests-dp-'))
  tokenFile = join(tmp, 'push-token')
  await writeFile(tokenFile, `${TOKEN}\n`)
  push = new SnapshotPushServer({ token: TOKEN })
  pushSrv = await listenPushServer(push, '127.0.0.1', 0)
})

afterAll(async () => {
  if (child && child.exitCode === null) child.kill('SIGKILL')
  await pushSrv?.close()
  await rm(tmp, { recursive: true, force: true })
})

describe('the data-plane container args from install.yaml', () => {
  it('are all flags the data plane knows', () => {
    const [c] = dataplanePod().containers
    for (const flag of splitArgs(c?.args ?? []).dataplane.filter((a) => a.startsWith('--')))
      expect(dataplaneHelp).toContain(`${flag} `)
  })

  it('start a data plane that loads the mounted snapshot, follows the push channel, and drains within the grace period', async () => {
    const pod = dataplanePod()
    const [c] = pod.containers
    if (!c) throw new Error('no container')
    const port = await freePort()
    const snapshotFile = join(tmp, SNAPSHOT_KEY)
    await writeFile(snapshotFile, gzipSync(JSON.stringify(snap(1))))
    const swap: Record<string, string> = {
      [`${MOUNT_PATHS.snapshotDir}/${SNAPSHOT_KEY}`]: snapshotFile,
      [pushUrl('infer-gateway-system')]: pushSrv.url,
      '8080': String(port),
      // The mounted credentials Secret (an empty directory when no Secret exists yet).
      [MOUNT_PATHS.credentialsDir]: tmp,
      [`${PUSH_TOKEN_DIR}/token`]: tokenFile,
    }
    // The bundle path (the image's CMD) after Node's flags; from a checkout it is DATAPLANE_ENTRY.
    const { node, dataplane } = splitArgs(c.args)
    const args = [...dataplane.map((a) => swap[a] ?? a), '--host', '127.0.0.1', '--no-access-log']
    expect(args).toContain(snapshotFile)
    expect(args).toContain(pushSrv.url)
    const proc = spawn(process.execPath, [...node, ...DATAPLANE_ENTRY, ...args], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    child = proc
    proc.stdout?.on('data', (b: Buffer) => {
      output += b.toString()
    })
    proc.stderr?.on('data', (b: Buffer) => {
      output += b.toString()
    })
    const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)))
    const base = `http://127.0.0.1:${port}`

    // The probes of the manifest, on the manifest's paths.
    await until(`/readyz (output: ${output})`, async () =>
      (await get(`${base}/readyz`)).status === 200 ? true : undefined,
    )
    expect((await get(`${base}/healthz`)).status).toBe(200)
    const version = async () =>
      /^infer_gateway_snapshot_version (\d+)/m.exec((await get(`${base}/metrics`)).body)?.[1]
    expect(await until('snapshot v1 from the file', version)).toBe('1')
    // Node took the manifest's flags: the young generation starts at its minimum (one semi-space
    // committed), where Node's defaults start it at 1 MiB.
    const minMb = Number(
      /^--min-semi-space-size=(\d+)$/.exec(node.find((a) => a.startsWith('--min-semi')) ?? '')?.[1],
    )
    const newSpace = Number(
      /^nodejs_heap_space_size_total_bytes\{space="new"\} (\d+)/m.exec(
        (await get(`${base}/metrics`)).body,
      )?.[1],
    )
    expect(newSpace).toBeGreaterThanOrEqual(minMb * 2 ** 20)
    // The push channel (the operator Service in the cluster) delivers newer versions.
    push.publish(snap(7))
    await until('snapshot v7 over the push channel', async () =>
      (await version()) === '7' ? true : undefined,
    )

    const t0 = Date.now()
    proc.kill('SIGTERM')
    const code = await Promise.race([
      exited,
      new Promise<'timeout'>((r) =>
        setTimeout(() => r('timeout'), pod.terminationGracePeriodSeconds * 1000),
      ),
    ])
    expect(code, output).toBe(0)
    // It stayed up for the drain delay (readiness off, still serving) before exiting.
    expect(Date.now() - t0).toBeGreaterThanOrEqual(4_000)
  }, 300_000)

  // The ConfigMap and token volumes are optional so a pod can start before the operator's first
  // publish (and before it created the token Secret): the data plane then serves not-ready,
  // refused by the push channel, until the token file appears and a snapshot is published.
  it('start with no snapshot file and no token yet, and become ready once both arrive', async () => {
    const [c] = dataplanePod().containers
    if (!c) throw new Error('no container')
    const port = await freePort()
    const fresh = new SnapshotPushServer({ token: TOKEN })
    const lateToken = join(tmp, 'late', 'token')
    const freshSrv = await listenPushServer(fresh, '127.0.0.1', 0)
    const missing = join(tmp, 'not-yet', SNAPSHOT_KEY)
    const swap: Record<string, string> = {
      [`${MOUNT_PATHS.snapshotDir}/${SNAPSHOT_KEY}`]: missing,
      [pushUrl('infer-gateway-system')]: freshSrv.url,
      '8080': String(port),
      // The mounted credentials Secret (an empty directory when no Secret exists yet).
      [MOUNT_PATHS.credentialsDir]: tmp,
      [`${PUSH_TOKEN_DIR}/token`]: lateToken,
    }
    const { node, dataplane } = splitArgs(c.args)
    const args = [...dataplane.map((a) => swap[a] ?? a), '--host', '127.0.0.1', '--no-access-log']
    const proc = spawn(process.execPath, [...node, ...DATAPLANE_ENTRY, ...args], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    proc.stdout?.on('data', (b: Buffer) => {
      out += b.toString()
    })
    proc.stderr?.on('data', (b: Buffer) => {
      out += b.toString()
    })
    try {
      const base = `http://127.0.0.1:${port}`
      expect(
        await until(
          `/readyz answering (output: ${out})`,
          async () => (await get(`${base}/readyz`)).status,
        ),
      ).toBe(503)
      expect(proc.exitCode).toBeNull()
      fresh.publish(snap(3))
      // Refused without the token: still not ready, the refusals counted.
      await until(`refused polls counted (output: ${out})`, async () =>
        /^infer_gateway_config_reloads_total\{result="failure"\} [1-9]/m.test(
          (await get(`${base}/metrics`)).body,
        )
          ? true
          : undefined,
      )
      expect((await get(`${base}/readyz`)).status).toBe(503)
      await mkdir(join(tmp, 'late'), { recursive: true })
      await writeFile(lateToken, TOKEN)
      await until(`ready after the first publish (output: ${out})`, async () =>
        (await get(`${base}/readyz`)).status === 200 ? true : undefined,
      )
    } finally {
      proc.kill('SIGKILL')
      await freshSrv.close()
    }
  }, 300_000)
})
