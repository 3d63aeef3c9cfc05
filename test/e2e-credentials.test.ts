// Cluster mode for credentials, on a REAL control plane: the operator runs as a process under its
// ServiceAccount (the install manifests' RBAC), reads labelled source Secrets referenced by a
// GatewayPolicy and ExternalModelProviders, and copies the values under the snapshot's entry
// names into the data plane's credentials Secret. Values must never reach the snapshot, the
// ConfigMap, the operator's output or any condition.
import { createHash } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  CRD_NAMES,
  CREDENTIAL_SOURCE_LABEL,
  CREDENTIALS_SECRET,
  SNAPSHOT_CONFIGMAP,
} from '../api/crd.js'
import { API_GROUP } from '../api/index.js'
import { secretFileName } from '../api/provider.js'
import {
  type Cluster,
  ensureNamespace,
  NS,
  type OperatorProc,
  spawnOperator,
  startCluster,
  until,
} from '../hack/bench/control-plane-kit.js'
import { decodeSnapshotConfigMap } from '../operator/snapshot-configmap.js'

const APP = 'creds'
const KEY1 = 'sk-client-one-0123456789abcdef'
const KEY2 = 'sk-client-two-fedcba9876543210'
const PROVIDER_KEY = 'sk-upstream-provider-secret-42'
const sha = (s: string) => createHash('sha256').update(s).digest('hex')
const PROVIDER_ENTRY = secretFileName(APP, 'openai', 'api-key')

let c: Cluster
let op: OperatorProc | undefined

async function kubectl(args: string[], input?: string): Promise<string> {
  const r = await c.cp.kubectl(args, input === undefined ? {} : { input })
  if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')}: ${r.stderr}`)
  return r.stdout
}

function secretYaml(name: string, data: Record<string, string>, labelled = true): string {
  const label = labelled ? `labels: {${CREDENTIAL_SOURCE_LABEL}: "true"}` : ''
  const entries = Object.entries(data)
    .map(([k, v]) => `  ${k}: ${JSON.stringify(v)}`)
    .join('\n')
  return `apiVersion: v1
kind: Secret
metadata: {name: ${name}, namespace: ${APP}, ${label}}
stringData:
${entries}
`
}

async function credentials(): Promise<Record<string, string>> {
  try {
    const s = await c.core.readNamespacedSecret({ name: CREDENTIALS_SECRET, namespace: NS })
    return Object.fromEntries(
      Object.entries(s.data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]),
    )
  } catch {
    return {}
  }
}

interface Cond {
  type: string
  status: string
  reason: string
  message: string
}

async function conditions(plural: string, name: string): Promise<Cond[]> {
  const o = (await c.crs.getNamespacedCustomObject({
    group: API_GROUP,
    version: 'v1alpha1',
    namespace: APP,
    plural,
    name,
  })) as { status?: { conditions?: Cond[] } }
  return o.status?.conditions ?? []
}

async function cond(plural: string, name: string, type: string): Promise<Cond | undefined> {
  return (await conditions(plural, name)).find((x) => x.type === type)
}

const P = CRD_NAMES.gatewayPolicy.plural
const E = CRD_NAMES.externalModelProvider.plural

beforeAll(async () => {
  c = await startCluster()
  await ensureNamespace(c, APP)
  await kubectl([
    'wait',
    '--for=condition=Established',
    '--timeout=60s',
    `crd/${P}.${API_GROUP}`,
    `crd/${E}.${API_GROUP}`,
  ])
  await kubectl(['apply', '-f', '-'], secretYaml('team-creds', { 'key.team-a': sha(KEY1) }))
  await kubectl(['apply', '-f', '-'], secretYaml('openai', { 'api-key': PROVIDER_KEY }))
  // Same name and key as a real source, but unlabelled: the operator must not see it.
  await kubectl(['apply', '-f', '-'], secretYaml('hidden', { 'api-key': 'sk-hidden' }, false))
  await kubectl(
    ['apply', '-f', '-'],
    `apiVersion: ${API_GROUP}/v1alpha1
kind: GatewayPolicy
metadata: {name: main, namespace: ${APP}}
spec:
  credentialsSecretName: team-creds
  authentication:
    apiKeys:
    - {name: team-a, secretKey: key.team-a, tenant: team-a}
---
apiVersion: ${API_GROUP}/v1alpha1
kind: ExternalModelProvider
metadata: {name: oai, namespace: ${APP}}
spec:
  providerType: OpenAI
  model: gpt-4o-mini
  auth: {secretRef: {name: openai, key: api-key}}
---
apiVersion: ${API_GROUP}/v1alpha1
kind: ExternalModelProvider
metadata: {name: unlabelled, namespace: ${APP}}
spec:
  providerType: OpenAI
  model: gpt-4o-mini
  auth: {secretRef: {name: hidden, key: api-key}}
---
apiVersion: ${API_GROUP}/v1alpha1
kind: ExternalModelProvider
metadata: {name: wrong-key, namespace: ${APP}}
spec:
  providerType: OpenAI
  model: gpt-4o
  auth: {secretRef: {name: openai, key: nope}}
`,
  )
  op = await spawnOperator(c)
}, 120_000)

afterAll(async () => {
  await op?.stop()
  await c?.stop()
})

describe('cluster-mode credentials', () => {
  it('copies the referenced values under the snapshot entry names', async () => {
    const got = await until(
      'credentials secret filled',
      async () => {
        const d = await credentials()
        return d['key.team-a'] !== undefined && d[PROVIDER_ENTRY] !== undefined ? d : undefined
      },
      30_000,
    )
    expect(got).toEqual({ 'key.team-a': sha(KEY1), [PROVIDER_ENTRY]: PROVIDER_KEY })
  })

  it('publishes entry names, never values, in the snapshot ConfigMap', async () => {
    const cm = await until('snapshot with policy', async () => {
      const m = await c.core.readNamespacedConfigMap({ name: SNAPSHOT_CONFIGMAP, namespace: NS })
      const s = decodeSnapshotConfigMap(m).snapshot
      return s.policy !== undefined && s.providers !== undefined ? m : undefined
    })
    const snap = decodeSnapshotConfigMap(cm).snapshot
    expect(snap.policy?.key).toBe(`${APP}/main`)
    expect(snap.providers?.[`${APP}/oai`]?.credential?.secretFile).toBe(PROVIDER_ENTRY)
    const text = JSON.stringify(snap) + JSON.stringify(cm)
    for (const v of [sha(KEY1), PROVIDER_KEY, 'sk-hidden']) {
      expect(text).not.toContain(v)
      expect(text).not.toContain(Buffer.from(v).toString('base64'))
    }
  })

  it('reports Accepted/ResolvedRefs and Ready/CredentialsResolved with reasons', async () => {
    await until('policy conditions', async () =>
      (await cond(P, 'main', 'ResolvedRefs'))?.status === 'True' ? true : undefined,
    )
    expect(await cond(P, 'main', 'Accepted')).toMatchObject({ status: 'True', reason: 'Accepted' })
    expect(await cond(P, 'main', 'ResolvedRefs')).toMatchObject({ reason: 'Resolved' })
    await until('provider conditions', async () =>
      (await cond(E, 'oai', 'Ready'))?.status === 'True' ? true : undefined,
    )
    expect(await cond(E, 'oai', 'CredentialsResolved')).toMatchObject({
      status: 'True',
      reason: 'SecretResolved',
    })
    const hidden = await until('unlabelled provider condition', () =>
      cond(E, 'unlabelled', 'CredentialsResolved'),
    )
    expect(hidden).toMatchObject({ status: 'False', reason: 'SecretNotFound' })
    expect(hidden.message).toContain(CREDENTIAL_SOURCE_LABEL)
    expect(await cond(E, 'unlabelled', 'Ready')).toMatchObject({
      status: 'False',
      reason: 'CredentialsNotResolved',
    })
    expect(
      await until('wrong key', () => cond(E, 'wrong-key', 'CredentialsResolved')),
    ).toMatchObject({
      status: 'False',
      reason: 'SecretKeyNotFound',
    })
    // Nothing that is not resolved is copied.
    expect(Object.keys(await credentials()).sort()).toEqual(['key.team-a', PROVIDER_ENTRY].sort())
  })

  it('follows a rotated source Secret and reports a removed key', async () => {
    await kubectl(['apply', '-f', '-'], secretYaml('team-creds', { 'key.team-a': sha(KEY2) }))
    await until('rotated entry', async () =>
      (await credentials())['key.team-a'] === sha(KEY2) ? true : undefined,
    )
    // `replace`, not `apply`: the new content has no key.team-a at all.
    await kubectl(['replace', '-f', '-'], secretYaml('team-creds', { 'key.team-b': sha(KEY2) }))
    const refs = await until('policy refs broken', async () => {
      const x = await cond(P, 'main', 'ResolvedRefs')
      return x?.status === 'False' ? x : undefined
    })
    expect(refs).toMatchObject({ reason: 'SecretKeyNotFound' })
    expect(refs.message).toContain('key.team-a')
    // The entry is no longer applied by the operator, so server-side apply removed it.
    await until('entry pruned', async () =>
      (await credentials())['key.team-a'] === undefined ? true : undefined,
    )
  })

  it('never prints a value', () => {
    const out = op?.output() ?? ''
    expect(out).toContain('credentials secret applied')
    for (const v of [sha(KEY1), sha(KEY2), PROVIDER_KEY, 'sk-hidden']) expect(out).not.toContain(v)
  })
})
