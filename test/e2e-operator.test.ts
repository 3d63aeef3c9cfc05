// End to end on a REAL control plane: `kubectl apply` the install manifests, run the operator as
// a process under its ServiceAccount, two data-plane processes subscribed to its push channel,
// engine simulators on 127.0.0.16x behind Pods whose status the test sets. Clients are the
// official OpenAI SDK and kubectl.
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import OpenAI from 'openai'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { SNAPSHOT_CONFIGMAP, SNAPSHOT_KEY } from '../api/crd.js'
import {
  type Cluster,
  condition,
  createReadyPod,
  type DataplaneProc,
  dataplaneVersion,
  deletePod,
  ensureNamespace,
  getStatus,
  NS,
  type OperatorProc,
  SIM_MODEL,
  simCounts,
  spawnDataplane,
  spawnOperator,
  startCluster,
  startSims,
  storedVersion,
  until,
  waitReady,
} from '../hack/bench/control-plane-kit.js'
import type { SimHandle } from '../hack/sim/index.js'

const APP = 'e2e'
const IP = { small0: '127.0.0.160', small1: '127.0.0.161', big0: '127.0.0.162' }
let c: Cluster
let op: OperatorProc
let dps: DataplaneProc[] = []
let sims: Map<string, SimHandle>
let port: number

const yaml = {
  server: (name: string, app: string) => `apiVersion: networking.matrixinfer.ai/v1alpha1
kind: ModelServer
metadata: {name: ${name}, namespace: ${APP}}
spec:
  model: ${SIM_MODEL}
  inferenceEngine: vLLM
  workloadSelector: {matchLabels: {app: ${app}}}
  workloadPort: {port: ${port}}
`,
  route: (
    name: string,
    model: string,
    targets: string,
  ) => `apiVersion: networking.matrixinfer.ai/v1alpha1
kind: ModelRoute
metadata: {name: ${name}, namespace: ${APP}}
spec:
  modelName: ${model}
  rules:
  - name: default
    targetModels: ${targets}
`,
}

async function kubectl(args: string[], input?: string): Promise<string> {
  const r = await c.cp.kubectl(args, input === undefined ? {} : { input })
  if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')}: ${r.stderr}`)
  return r.stdout
}

/** `kubectl get mr NAME` columns: NAME MODEL READY TARGETS AGE. */
async function getMr(name: string): Promise<string[]> {
  return (await kubectl(['get', 'mr', name, '-n', APP, '--no-headers'])).trim().split(/\s+/)
}

/** Every data plane routes by the ConfigMap's current version. */
/**
 * Resolves once every data plane runs the stored snapshot version, and that version is newer than
 * `after` when given (status can be written before the snapshot carrying the change is stored: on
 * a loaded machine "caught up" on the old version let part of a weights test run on old weights).
 */
async function dataplanesCaughtUp(after = -1): Promise<number> {
  return until('data planes on the stored version', async () => {
    const { version } = await storedVersion(c)
    if (version <= after) return undefined
    const vs = await Promise.all(dps.map((d) => dataplaneVersion(d.url)))
    return vs.every((v) => v === version) ? version : undefined
  })
}

async function send(dp: DataplaneProc, model: string, n: number): Promise<void> {
  const client = new OpenAI({ baseURL: `${dp.url}/v1`, apiKey: 'unused', maxRetries: 0 })
  for (let i = 0; i < n; i++) {
    const r = await client.chat.completions.create({
      model,
      messages: [{ role: 'user', content: `hello ${i}` }],
      max_tokens: 2,
    })
    // The simulated engine answers max_tokens tokens of text.
    expect(r.choices[0]?.message.content?.length).toBeGreaterThan(0)
    expect(r.usage?.completion_tokens).toBe(2)
  }
}

function delta(
  before: Record<string, number>,
  after: Record<string, number>,
): Record<string, number> {
  return Object.fromEntries(Object.entries(after).map(([k, v]) => [k, v - (before[k] ?? 0)]))
}

beforeAll(async () => {
  ;[c, { port, sims }] = await Promise.all([startCluster(), startSims(Object.values(IP))])
  op = await spawnOperator(c)
  await waitReady(op.url)
  dps = await Promise.all(
    ['127.0.0.170', '127.0.0.171'].map((h) => spawnDataplane(h, ['--push-url', op.pushUrl])),
  )
  await ensureNamespace(c, APP)
}, 180_000)

afterAll(async () => {
  await Promise.all(dps.map((d) => d.stop()))
  await op?.stop()
  await Promise.all([...(sims?.values() ?? [])].map((s) => s.close()))
  await c?.stop()
}, 60_000)

describe('operator + data planes on a real control plane', () => {
  it('kubectl apply → `kubectl get mr` shows READY True with TARGETS within seconds', async () => {
    await Promise.all([
      createReadyPod(c, APP, 'small-0', { app: 'small' }, IP.small0),
      createReadyPod(c, APP, 'small-1', { app: 'small' }, IP.small1),
      createReadyPod(c, APP, 'big-0', { app: 'big' }, IP.big0),
    ])
    await kubectl(
      ['apply', '-f', '-'],
      [
        yaml.server('small', 'small'),
        yaml.server('big', 'big'),
        yaml.route('chat', 'chat', '[{modelServerName: small}]'),
      ].join('---\n'),
    )
    const cols = await until('mr chat READY True', async () => {
      const row = await getMr('chat')
      return row[2] === 'True' ? row : undefined
    })
    // (Within until's 15 s; how fast is for the benchmarks, not a test on a shared machine.)
    // TARGETS: available/total weighted targets (one server, with ready pods).
    expect(cols.slice(0, 4)).toEqual(['chat', 'chat', 'True', '1/1'])
    const ms = (await kubectl(['get', 'ms', '-n', APP, '--no-headers'])).trim().split('\n')
    expect(ms.map((l) => l.split(/\s+/).slice(0, 4))).toEqual([
      ['big', 'vLLM', 'True', '1/1'],
      ['small', 'vLLM', 'True', '2/2'],
    ])
  }, 30_000)

  it('requests via every data plane (OpenAI SDK) reach the selected pods only', async () => {
    await dataplanesCaughtUp()
    const before = simCounts(sims)
    for (const dp of dps) await send(dp, 'chat', 10)
    const d = delta(before, simCounts(sims))
    expect(d[IP.small0]! + d[IP.small1]!).toBe(20)
    expect(d[IP.small0]).toBeGreaterThan(0)
    expect(d[IP.small1]).toBeGreaterThan(0)
    expect(d[IP.big0]).toBe(0)
  }, 30_000)

  it('a deleted pod stops receiving traffic', async () => {
    await deletePod(c, APP, 'small-1')
    await until('1 ready endpoint', async () =>
      (await getStatus(c, 'route', APP, 'chat')).status.readyEndpoints === 1 ? true : undefined,
    )
    await dataplanesCaughtUp()
    const before = simCounts(sims)
    for (const dp of dps) await send(dp, 'chat', 10)
    expect(delta(before, simCounts(sims))).toEqual({
      [IP.small0]: 20,
      [IP.small1]: 0,
      [IP.big0]: 0,
    })
  }, 30_000)

  it('changed weights move the traffic split', async () => {
    const { version: v0 } = await storedVersion(c)
    await kubectl(
      ['apply', '-f', '-'],
      yaml.route(
        'chat',
        'chat',
        '[{modelServerName: small, weight: 20}, {modelServerName: big, weight: 80}]',
      ),
    )
    await until('both targets', async () => ((await getMr('chat'))[3] === '2/2' ? true : undefined))
    await dataplanesCaughtUp(v0)
    const before = simCounts(sims)
    for (const dp of dps) await send(dp, 'chat', 100)
    const d = delta(before, simCounts(sims))
    // 200 draws at p=0.8: ±0.1 is more than 3.5 standard deviations.
    expect(d[IP.big0]! / 200).toBeGreaterThan(0.7)
    expect(d[IP.big0]! / 200).toBeLessThan(0.9)
    expect(d[IP.small0]! + d[IP.big0]!).toBe(200)
  }, 60_000)

  it('semantic errors surface as conditions with reasons while valid routes keep working', async () => {
    await kubectl(
      ['apply', '-f', '-'],
      [
        yaml.route('dangling', 'ghost', '[{modelServerName: nope}]'),
        yaml.route('copycat', 'chat', '[{modelServerName: small}]'),
      ].join('---\n'),
    )
    const dangling = await until('dangling status', async () => {
      const s = await getStatus(c, 'route', APP, 'dangling')
      return condition(s, 'Accepted') ? s : undefined
    })
    expect(condition(dangling, 'Accepted')).toMatchObject({
      status: 'False',
      reason: 'ModelServerNotFound',
    })
    expect(condition(dangling, 'ResolvedRefs')).toMatchObject({
      status: 'False',
      reason: 'ModelServerNotFound',
      message: 'spec.rules[0].targetModels[0] refers to modelserver "nope" which does not exist',
    })
    expect(condition(dangling, 'Ready')?.status).toBe('False')
    const copycat = await until('copycat status', async () => {
      const s = await getStatus(c, 'route', APP, 'copycat')
      return condition(s, 'Accepted') ? s : undefined
    })
    expect(condition(copycat, 'Accepted')).toMatchObject({
      status: 'False',
      reason: 'DuplicateModelName',
    })
    expect(condition(copycat, 'Ready')).toMatchObject({
      status: 'False',
      reason: 'DuplicateModelName',
    })
    expect((await getMr('dangling'))[2]).toBe('False')
    expect((await getMr('chat'))[2]).toBe('True')

    await dataplanesCaughtUp()
    for (const dp of dps) await send(dp, 'chat', 3)
    const client = new OpenAI({ baseURL: `${dps[0]?.url}/v1`, apiKey: 'unused', maxRetries: 0 })
    await expect(
      client.chat.completions.create({
        model: 'ghost',
        messages: [{ role: 'user', content: 'x' }],
      }),
    ).rejects.toMatchObject({ status: 404 })

    const events = await kubectl([
      'get',
      'events',
      '-n',
      APP,
      '-o',
      'jsonpath={range .items[*]}{.reason}{"\\n"}{end}',
    ])
    expect(events).toContain('ModelServerNotFound')
    expect(events).toContain('DuplicateModelName')
  }, 30_000)

  it('a weighted target with no ready pod: READY False (TargetUnavailable), TARGETS counts it', async () => {
    await kubectl(
      ['apply', '-f', '-'],
      [
        yaml.server('empty', 'nobody'),
        yaml.route(
          'split',
          'split',
          '[{modelServerName: small, weight: 20}, {modelServerName: empty, weight: 80}]',
        ),
      ].join('---\n'),
    )
    const row = await until('split READY False', async () => {
      const out = (await kubectl(['get', 'mr', 'split', '-n', APP, '-o', 'wide', '--no-headers']))
        .trim()
        .split(/\s+/)
      return out[2] === 'False' ? out : undefined
    })
    // NAME MODEL READY TARGETS AGE REASON ACCEPTED
    expect([row[3], row[5], row[6]]).toEqual(['1/2', 'TargetUnavailable', 'Accepted'])
    const s = await getStatus(c, 'route', APP, 'split')
    expect(condition(s, 'Ready')?.message).toContain(`${APP}/empty`)
  }, 30_000)

  it('kubectl apply rejects invalid objects with a message naming the field', async () => {
    const ms = (spec: string) =>
      `apiVersion: networking.matrixinfer.ai/v1alpha1\nkind: ModelServer\nmetadata: {name: bad, namespace: ${APP}}\nspec: ${spec}\n`
    const mr = (spec: string) =>
      `apiVersion: networking.matrixinfer.ai/v1alpha1\nkind: ModelRoute\nmetadata: {name: bad, namespace: ${APP}}\nspec: ${spec}\n`
    const sel = 'workloadSelector: {matchLabels: {app: x}}'
    const ok = `inferenceEngine: vLLM, ${sel}, workloadPort: {port: 8000}`
    const target = 'targetModels: [{modelServerName: s}]'
    const cases: [string, RegExp][] = [
      [
        ms(`{inferenceEngine: Foo, ${sel}, workloadPort: {port: 8000}}`),
        /spec\.inferenceEngine: Unsupported value: "Foo"/,
      ],
      [
        ms(`{inferenceEngine: vLLM, ${sel}, workloadPort: {port: 70000}}`),
        /spec\.workloadPort\.port: Invalid value: 70000/,
      ],
      [ms(`{inferenceEngine: vLLM, ${sel}}`), /spec\.workloadPort: Required value/],
      [
        ms('{inferenceEngine: vLLM, workloadPort: {port: 8000}}'),
        /spec\.workloadSelector: Required value/,
      ],
      [
        ms(
          '{inferenceEngine: vLLM, workloadSelector: {matchLabels: {}}, workloadPort: {port: 8000}}',
        ),
        /spec\.workloadSelector\.matchLabels: .*at least 1/,
      ],
      [
        ms(`{inferenceEngine: vLLM, ${sel}, workloadPort: {port: 8000, protocol: tcp}}`),
        /spec\.workloadPort\.protocol: Unsupported value: "tcp"/,
      ],
      [
        ms(`{${ok}, trafficPolicy: {timeout: soon}}`),
        /spec\.trafficPolicy\.timeout: Invalid value: "soon"/,
      ],
      [
        ms(`{${ok}, trafficPolicy: {retry: {attempts: -1}}}`),
        /spec\.trafficPolicy\.retry\.attempts: Invalid value: -1/,
      ],
      [
        ms(`{${ok}, scheduler: {plugins: [{name: bogus}]}}`),
        /spec\.scheduler\.plugins\[0\]\.name: Unsupported value: "bogus"/,
      ],
      [mr('{modelName: m, rules: []}'), /spec\.rules: .*at least 1 items/],
      [
        mr('{modelName: m, rules: [{targetModels: []}]}'),
        /spec\.rules\[0\]\.targetModels: .*at least 1 items/,
      ],
      [
        mr('{modelName: m, rules: [{targetModels: [{modelServerName: s, weight: 101}]}]}'),
        /spec\.rules\[0\]\.targetModels\[0\]\.weight: Invalid value: 101/,
      ],
      [
        mr(`{rules: [{${target}}]}`),
        /spec: Invalid value: "object": modelName or loraAdapters must be set/,
      ],
      [
        mr(`{modelName: m, rules: [{modelMatch: {uri: {exact: /a, prefix: /b}}, ${target}}]}`),
        /spec\.rules\[0\]\.modelMatch\.uri: .*exactly one of exact, prefix or regex/,
      ],
      [
        mr(
          '{modelName: m, rules: [{targetModels: [{modelServerName: s, externalModelProviderName: p}]}]}',
        ),
        /spec\.rules\[0\]\.targetModels\[0\]: .*exactly one of modelServerName or externalModelProviderName/,
      ],
      [
        mr(`{modelName: m, rateLimit: {unit: week}, rules: [{${target}}]}`),
        /spec\.rateLimit\.unit: Unsupported value: "week"/,
      ],
      [
        mr(`{loraAdapters: [a, b, c, d, e, f, g, h, i, j, k], rules: [{${target}}]}`),
        /spec\.loraAdapters: Too many: 11/,
      ],
    ]
    const results = await Promise.all(
      cases.map(([y]) => c.cp.kubectl(['apply', '-f', '-'], { input: y })),
    )
    results.forEach((r, i) => {
      expect(r.code, cases[i]?.[0]).not.toBe(0)
      expect(r.stderr).toMatch(cases[i]?.[1] as RegExp)
    })
    expect(cases.length).toBeGreaterThanOrEqual(12)
    // Nothing was stored.
    expect(await kubectl(['get', 'mr,ms', 'bad', '-n', APP, '--ignore-not-found'])).toBe('')
  }, 60_000)

  it('the ConfigMap, the push channel and every data plane hold the same snapshot', async () => {
    const version = await dataplanesCaughtUp()
    // A data plane fed only by the ConfigMap, as its volume mount would present it (a kubelet
    // writes binaryData keys as files): the durable path works on its own.
    const cm = await c.core.readNamespacedConfigMap({ name: SNAPSHOT_CONFIGMAP, namespace: NS })
    const file = join(c.dir, SNAPSHOT_KEY)
    await writeFile(file, Buffer.from(cm.binaryData?.[SNAPSHOT_KEY] ?? '', 'base64'))
    const fromFile = await spawnDataplane('127.0.0.172', ['--snapshot', file])
    try {
      expect(await dataplaneVersion(fromFile.url)).toBe(version)
      await send(fromFile, 'chat', 2)
    } finally {
      await fromFile.stop()
    }
    const r = await fetch(`${op.pushUrl}?after=0`)
    expect(r.headers.get('x-snapshot-version')).toBe(String(version))
    const stored = await storedVersion(c)
    expect(r.headers.get('x-snapshot-hash')).toBe(stored.hash)
    const metrics = await (await fetch(`${op.url}/metrics`)).text()
    expect(metrics).toMatch(new RegExp(`^infer_gateway_operator_snapshot_version ${version}$`, 'm'))
    expect(metrics).toMatch(/^infer_gateway_operator_leader 1$/m)
  })
})
