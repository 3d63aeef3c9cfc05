// install.yaml's production parts on a real kube-apiserver (hack/cluster), with the real operator
// and data-plane processes (hack/bench/control-plane-kit.ts):
//  - re-applying it changes nothing, client-side (every object `unchanged`, `kubectl diff` empty)
//    and then server-side over the client-side apply (no conflicts, no resourceVersion moves);
//  - with the HPA option, a re-apply leaves the replica count the HPA set;
//  - the push token: the operator, under the ServiceAccount and RBAC of install.yaml, creates the
//    token Secret; its push channel refuses a poll without the token (401) and serves a data plane
//    that sends it from the mounted file;
//  - secretsNamespace: the authorizer grants Secrets there and nowhere else.
// NetworkPolicy enforcement needs a CNI plugin, which this control plane has none of: the policy's
// content is checked in cdk8s/install.test.ts, here only that the API server accepts it.
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parseAllDocuments } from 'yaml'
import { DATAPLANE_NAME, OPERATOR_NAME, SYSTEM_NAMESPACE } from '../api/crd.js'
import { PUSH_TOKEN_SECRET } from '../cdk8s/install.js'
import { synthInstall } from '../cdk8s/main.js'
import {
  type Cluster,
  dataplaneVersion,
  ensureNamespace,
  startCluster,
  until,
} from '../hack/bench/control-plane-kit.js'
import { type Proc, spawnCli } from '../hack/bench/procs.js'
import { freePort } from '../hack/cluster/control-plane.js'

const NS = SYSTEM_NAMESPACE
let c: Cluster
let manifest: string
const procs: { stop(): Promise<void> }[] = []

beforeAll(async () => {
  // startCluster applies install.yaml client-side (`kubectl apply -f`), as a first install does.
  c = await startCluster()
  manifest = join(c.dir, 'install.yaml')
}, 180_000)

afterAll(async () => {
  for (const p of procs.reverse()) await p.stop().catch(() => {})
  await c?.stop()
})

async function kubectl(args: readonly string[]): Promise<{ code: number; out: string }> {
  const r = await c.cp.kubectl(args)
  return { code: r.code, out: r.stdout + r.stderr }
}

/** name → resourceVersion of every object in `file`. */
async function versions(file: string): Promise<Record<string, string>> {
  const docs = parseAllDocuments(await readFile(file, 'utf8')).map(
    (d) => d.toJS() as { kind: string; metadata: { name: string; namespace?: string } },
  )
  const out: Record<string, string> = {}
  for (const d of docs) {
    const ns = d.metadata.namespace ? ['-n', d.metadata.namespace] : []
    const r = await kubectl([
      'get',
      d.kind,
      d.metadata.name,
      ...ns,
      '-o',
      'jsonpath={.metadata.resourceVersion}',
    ])
    expect(r.code, r.out).toBe(0)
    out[`${d.kind}/${d.metadata.name}`] = r.out
  }
  return out
}

describe('re-applying install.yaml', () => {
  it('client-side: kubectl diff empty and every object unchanged', async () => {
    // diff first: on a failure its output names the field that would change.
    const diff = await kubectl(['diff', '-f', manifest])
    expect(diff.out).toBe('')
    expect(diff.code).toBe(0)
    const before = await versions(manifest)
    const r = await kubectl(['apply', '-f', manifest])
    expect(r.code, r.out).toBe(0)
    const lines = r.out.trim().split('\n')
    expect(lines.length).toBeGreaterThan(15)
    for (const l of lines) {
      // kubectl's strategic merge patch always re-sends a PodDisruptionBudget's selector (its
      // patch strategy is "replace"), so it says "configured" for any PDB; nothing changes.
      if (l.startsWith('poddisruptionbudget.policy/')) expect(l).toMatch(/ (unchanged|configured)$/)
      else expect(l).toMatch(/ unchanged$/)
    }
    expect(await versions(manifest)).toEqual(before)
  }, 120_000)

  it('server-side over the client-side install: no conflicts, then nothing changes', async () => {
    const first = await kubectl(['apply', '--server-side', '-f', manifest])
    expect(first.code, first.out).toBe(0)
    expect(first.out).not.toMatch(/conflict/i)
    const before = await versions(manifest)
    const again = await kubectl(['apply', '--server-side', '-f', manifest])
    expect(again.code, again.out).toBe(0)
    expect(again.out).not.toMatch(/conflict|warning/i)
    expect(await versions(manifest)).toEqual(before)
    const diff = await kubectl(['diff', '--server-side', '-f', manifest])
    expect(diff.out).toBe('')
    expect(diff.code).toBe(0)
  }, 120_000)

  it('with the HPA option, keeps the replica count the HPA chose', async () => {
    const file = await synthInstall(join(c.dir, 'hpa.yaml'), {
      autoscaling: { minReplicas: 2, maxReplicas: 8, targetCPUUtilizationPercentage: 70 },
    })
    const r = await kubectl(['apply', '--server-side', '-f', file])
    expect(r.code, r.out).toBe(0)
    expect(r.out).toContain(
      `horizontalpodautoscaler.autoscaling/${DATAPLANE_NAME} serverside-applied`,
    )
    // What the HPA controller does: the scale subresource.
    const scale = await kubectl(['scale', `deployment/${DATAPLANE_NAME}`, '-n', NS, '--replicas=5'])
    expect(scale.code, scale.out).toBe(0)
    const again = await kubectl(['apply', '--server-side', '-f', file])
    expect(again.code, again.out).toBe(0)
    const replicas = await kubectl([
      'get',
      'deployment',
      DATAPLANE_NAME,
      '-n',
      NS,
      '-o',
      'jsonpath={.spec.replicas}',
    ])
    expect(replicas.out).toBe('5')
  }, 120_000)

  it('with secretsNamespace, the operator may list Secrets there and nowhere else', async () => {
    await ensureNamespace(c, 'team-keys')
    const file = await synthInstall(join(c.dir, 'secrets-ns.yaml'), {
      secretsNamespace: 'team-keys',
    })
    const r = await kubectl(['apply', '--server-side', '-f', file])
    expect(r.code, r.out).toBe(0)
    const as = `--as=system:serviceaccount:${NS}:${OPERATOR_NAME}`
    const can = async (ns: string) =>
      (await kubectl(['auth', 'can-i', 'list', 'secrets', '-n', ns, as])).out.trim()
    expect(await can('team-keys')).toBe('yes')
    expect(await can('default')).toBe('no')
    // Back to the default file (cluster-wide list/watch) for the tests after this one.
    expect((await kubectl(['apply', '--server-side', '-f', manifest])).code).toBe(0)
    expect(await can('default')).toBe('yes')
  }, 120_000)
})

/**
 * The operator as install.yaml runs it (its ServiceAccount's token, --push-token-secret), with a
 * start timeout for a loaded CI machine (tsx compiles the whole CLI first).
 */
async function startOperator(): Promise<Proc & { pushUrl: string }> {
  const port = await freePort()
  const proc = await spawnCli(
    [
      ...['operator', '--kubeconfig', c.operatorKubeconfig, '--namespace', NS],
      ...['--host', '127.0.0.1', '--port', String(port)],
      ...['--push-token-secret', PUSH_TOKEN_SECRET],
    ],
    /operator listening/,
    [],
    120_000,
  )
  return { ...proc, pushUrl: `http://127.0.0.1:${port}/v1/snapshot` }
}

/** A data plane on `host` following the push channel (start timeout as above). */
async function startDataplane(
  host: string,
  args: readonly string[],
): Promise<Proc & { url: string }> {
  const port = await freePort()
  const proc = await spawnCli(
    [
      ...['dataplane', ...args, '--host', host, '--port', String(port)],
      ...['--no-access-log', '--drain-delay', '0', '--shutdown-timeout', '2000'],
    ],
    /data plane listening/,
    [],
    120_000,
  )
  return { ...proc, url: `http://${host}:${port}` }
}

describe('the push token', () => {
  let op: Proc & { pushUrl: string }
  let token: string

  it('is created by the operator, under install.yaml RBAC, in the Secret the data planes mount', async () => {
    op = await startOperator()
    procs.push(op)
    const s = await c.core.readNamespacedSecret({ name: PUSH_TOKEN_SECRET, namespace: NS })
    token = Buffer.from(s.data?.['token'] ?? '', 'base64').toString('utf8')
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/)
  }, 180_000)

  it('is required on the push channel: 401 without it or with another, 200 with it', async () => {
    const get = (auth?: string) =>
      fetch(`${op.pushUrl}?after=0&timeoutSeconds=0`, {
        headers: auth ? { authorization: auth } : {},
      })
    const none = await get()
    expect(none.status).toBe(401)
    expect(((await none.json()) as { error: { code: string } }).error.code).toBe(
      'push_token_required',
    )
    expect((await get(`Bearer ${'x'.repeat(token.length)}`)).status).toBe(401)
    const ok = await until('a published snapshot', async () => {
      const r = await get(`Bearer ${token}`)
      return r.status === 200 ? r : undefined
    })
    expect(Number(ok.headers.get('x-snapshot-version'))).toBeGreaterThan(0)
  }, 60_000)

  it('a restarted operator reads the same token; a data plane with the mounted token follows it, one without does not', async () => {
    await op.stop()
    op = await startOperator()
    procs.push(op)
    const tokenFile = join(c.dir, 'push-token')
    await writeFile(tokenFile, `${token}\n`)
    const withToken = await startDataplane('127.0.0.176', [
      '--push-url',
      op.pushUrl,
      '--push-token-file',
      tokenFile,
    ])
    procs.push(withToken)
    const without = await startDataplane('127.0.0.177', ['--push-url', op.pushUrl])
    procs.push(without)
    const v = await until('the data plane with the token has the snapshot', async () => {
      const n = await dataplaneVersion(withToken.url)
      return n > 0 ? n : undefined
    })
    expect(v).toBeGreaterThan(0)
    // The other one polled (and was refused) meanwhile: failures counted, no snapshot.
    const failures = await until('refused polls counted', async () => {
      const text = await (await fetch(`${without.url}/metrics`)).text()
      const m = /^infer_gateway_config_reloads_total\{result="failure"\} (\d+)/m.exec(text)
      return m && Number(m[1]) > 0 ? Number(m[1]) : undefined
    })
    expect(failures).toBeGreaterThan(0)
    expect(await dataplaneVersion(without.url)).toBe(0)
  }, 300_000)
})
