// Prefill/decode disaggregation end to end: the real data plane (standalone manifests, the default
// scheduler scraping /metrics) in front of simulated prefill and decode pods on 127.0.0.x, called
// with the official openai client, for each connector: nixl (Kthena's PD example shape, in
// Kthena's own API group), sglang and http. The pods' own counters say the KV moved as the
// connector says it does; the access log names both pods; a dead prefill pod loses no request.
import OpenAI, { APIError } from 'openai'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type Gateway, startGateway } from '../dataplane/gateway.js'
import { SGLANG_BOOTSTRAP_PORT_LABEL } from '../dataplane/serve/pd-target.js'
import { type SimHandle, startSimulator } from '../hack/sim/index.js'
import { ConfigVolume } from './helpers/config.js'

type Obj = Record<string, unknown>
const KTHENA = 'networking.serving.volcano.sh/v1alpha1'
const GROUP_KEY = 'modelserving.volcano.sh/group-name'
const PROMPT = `You review contracts for a small company. ${'Flag every clause about liability, renewal and termination. '.repeat(12)}`

interface Fleet {
  readonly prefill: SimHandle[]
  readonly decode: SimHandle[]
}

/** Kthena's prefill/decode example, written from its API reference: one server, one route. */
function manifests(connector: string, fleet: Fleet, engine: 'vLLM' | 'SGLang'): string {
  const server: Obj = {
    apiVersion: KTHENA,
    kind: 'ModelServer',
    metadata: { name: 'deepseek-pd', namespace: 'default' },
    spec: {
      model: 'pd-model',
      inferenceEngine: engine,
      workloadSelector: {
        matchLabels: { 'modelserving.volcano.sh/name': 'deepseek-pd' },
        pdGroup: {
          groupKey: GROUP_KEY,
          prefillLabels: { 'modelserving.volcano.sh/role': 'prefill' },
          decodeLabels: { 'modelserving.volcano.sh/role': 'decode' },
        },
      },
      workloadPort: { port: 8000 },
      kvConnector: { type: connector },
      trafficPolicy: { retry: { attempts: 2 } },
    },
  }
  const route: Obj = {
    apiVersion: KTHENA,
    kind: 'ModelRoute',
    metadata: { name: 'deepseek-pd', namespace: 'default' },
    spec: {
      modelName: 'pd-model',
      rules: [{ targetModels: [{ modelServerName: 'deepseek-pd' }] }],
    },
  }
  const ep = (s: SimHandle, role: string, group: number) => ({
    name: s.name,
    address: s.host,
    port: s.port,
    labels: {
      'modelserving.volcano.sh/name': 'deepseek-pd',
      'modelserving.volcano.sh/role': role,
      [GROUP_KEY]: `g${group}`,
      ...(role === 'prefill' ? { [SGLANG_BOOTSTRAP_PORT_LABEL]: String(s.port) } : {}),
    },
  })
  const endpoints: Obj = {
    apiVersion: 'standalone.infer-gateway.io/v1alpha1',
    kind: 'StaticEndpoints',
    metadata: { name: 'deepseek-pd', namespace: 'default' },
    endpoints: [
      ...fleet.prefill.map((s, i) => ep(s, 'prefill', i)),
      ...fleet.decode.map((s, i) => ep(s, 'decode', i)),
    ],
  }
  return [server, route, endpoints].map((d) => JSON.stringify(d, null, 2)).join('\n---\n')
}

const CASES = [
  { connector: 'nixl', engine: 'vLLM', base: 180 },
  { connector: 'sglang', engine: 'SGLang', base: 185 },
  { connector: 'http', engine: 'vLLM', base: 190 },
  { connector: 'lmcache', engine: 'vLLM', base: 195 },
] as const

describe.each(CASES)('prefill/decode through the data plane: $connector', (c) => {
  let fleet: Fleet
  let gw: Gateway
  let vol: ConfigVolume
  let client: OpenAI
  const log: Obj[] = []

  beforeAll(async () => {
    const sim = (i: number, role: 'prefill' | 'decode') =>
      startSimulator({
        name: `${c.connector}-${role}-${i}`,
        host: `127.0.0.${c.base + (role === 'prefill' ? i : 2 + i)}`,
        port: 0,
        model: 'pd-model',
        metricsFormat: c.engine === 'SGLang' ? 'sglang' : 'vllm',
        seed: i,
        role,
        timeScale: 0.05,
      })
    const [p0, p1, d0, d1] = await Promise.all([
      sim(0, 'prefill'),
      sim(1, 'prefill'),
      sim(0, 'decode'),
      sim(1, 'decode'),
    ])
    fleet = {
      prefill: [p0 as SimHandle, p1 as SimHandle],
      decode: [d0 as SimHandle, d1 as SimHandle],
    }
    vol = await ConfigVolume.create({ 'gateway.yaml': manifests(c.connector, fleet, c.engine) })
    gw = await startGateway({
      config: { kind: 'manifests', paths: [vol.dir] },
      port: 0,
      pollMs: 100,
      accessLog: (e) => log.push({ ...e }),
      // A generous scrape timeout: on a loaded CI machine a slow scrape must not take a pod out
      // of the pairs (with two pods per role, that leaves one pair and nothing to retry on).
      scheduler: { scrape: { intervalMs: 100, timeoutMs: 2000 } },
    })
    client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'unused', maxRetries: 0 })
  })

  afterAll(async () => {
    await gw?.shutdown({ deadlineMs: 1000 })
    await Promise.all([...(fleet?.prefill ?? []), ...(fleet?.decode ?? [])].map((s) => s.close()))
    await vol?.remove()
  })

  const received = () => fleet.decode.reduce((n, s) => n + s.stats().pd.kvReceived, 0)
  const recomputed = () => fleet.decode.reduce((n, s) => n + s.stats().pd.kvRecomputed, 0)
  const prefills = () => fleet.prefill.reduce((n, s) => n + s.stats().requests, 0)

  it('non-streaming: answered by a decode pod with KV from a prefill pod of its group', async () => {
    const before = received()
    const r = await client.chat.completions.create({
      model: 'pd-model',
      messages: [{ role: 'user', content: `${PROMPT} Case 1.` }],
      max_tokens: 8,
    })
    expect(r.choices[0]?.message.content?.length).toBeGreaterThan(0)
    expect(r.usage?.completion_tokens).toBe(8)
    expect(received()).toBe(before + 1)
    expect(recomputed()).toBe(0)
    const line = log.at(-1) as Obj
    expect(line['status']).toBe(200)
    const decodeEp = String(line['endpoint'])
    const prefillEp = String(line['prefill_endpoint'])
    const decodeAt = fleet.decode.map((s) => `${s.host}:${s.port}`).indexOf(decodeEp)
    const prefillAt = fleet.prefill.map((s) => `${s.host}:${s.port}`).indexOf(prefillEp)
    // A decode pod answered, with KV from a prefill pod: each log field names a pod of its role.
    expect(decodeAt, decodeEp).toBeGreaterThan(-1)
    expect(prefillAt, prefillEp).toBeGreaterThan(-1)
    // Paired by the group label: prefill i serves decode i.
    expect(decodeAt).toBe(prefillAt)
  })

  it('streaming: chunks and usage arrive as for any request; phases are measured', async () => {
    const before = received()
    const stream = await client.chat.completions.create({
      model: 'pd-model',
      messages: [{ role: 'user', content: `${PROMPT} Case 2.` }],
      max_tokens: 6,
      stream: true,
      stream_options: { include_usage: true },
    })
    let text = ''
    let usage: OpenAI.CompletionUsage | undefined | null
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta?.content ?? ''
      if (chunk.usage) usage = chunk.usage
    }
    expect(text.length).toBeGreaterThan(0)
    expect(usage?.completion_tokens).toBe(6)
    expect(received()).toBe(before + 1)
    const line = log.at(-1) as Obj
    expect([line['stream'], typeof line['prefill_endpoint']]).toEqual([true, 'string'])
    const metrics = await gw.metrics.registry.metrics()
    const count = (name: string) =>
      Number(
        new RegExp(
          `^${name}_count\\{server="default/deepseek-pd",connector="${c.connector}",outcome="ok"\\} (\\d+)`,
          'm',
        ).exec(metrics)?.[1] ?? 0,
      )
    expect(count('infer_gateway_prefill_duration_seconds')).toBeGreaterThanOrEqual(2)
    expect(count('infer_gateway_decode_duration_seconds')).toBeGreaterThanOrEqual(2)
  })

  it.runIf(c.connector === 'sglang')(
    'sglang: when no decode answers, the prefill requests sent beside them are cancelled',
    async () => {
      // Prefill pods hold their answer back; decode pods refuse at once.
      for (const s of fleet.prefill) s.setFailures({ stallMs: 300 })
      for (const s of fleet.decode) s.setFailures({ forceStatus: 503 })
      const before = fleet.prefill.map((s) => s.stats())
      try {
        const err = await client.chat.completions
          .create({
            model: 'pd-model',
            messages: [{ role: 'user', content: `${PROMPT} Case refused.` }],
            max_tokens: 4,
          })
          .catch((e: unknown) => e)
        expect(err).toBeInstanceOf(APIError)
        expect((err as APIError).status).toBe(503)
        // Past the prefill pods' stall: a prefill still open would have been answered by now.
        await new Promise((r) => setTimeout(r, 900))
        const after = fleet.prefill.map((s) => s.stats())
        // Each pair's prefill went out (2 pairs) and none was let finish.
        const sent = after.reduce((n, s, i) => n + s.requests - (before[i]?.requests ?? 0), 0)
        const done = after.reduce((n, s, i) => n + s.completed - (before[i]?.completed ?? 0), 0)
        expect([sent >= 2, done]).toEqual([true, 0])
      } finally {
        for (const s of fleet.prefill) s.setFailures({ stallMs: 0 })
        for (const s of fleet.decode) s.setFailures({ forceStatus: null })
      }
    },
  )

  it('a decode pod answering 503 is retried on the next pair (retry policy), before any byte', async () => {
    const bad = fleet.decode[0] as SimHandle
    const good = fleet.decode[1] as SimHandle
    bad.setFailures({ forceStatus: 503 })
    try {
      const texts = await Promise.all(
        Array.from({ length: 4 }, async (_, i) => {
          const messages = [{ role: 'user' as const, content: `${PROMPT} Case retry-${i}.` }]
          if (i % 2 === 1) {
            const r = await client.chat.completions.create({
              model: 'pd-model',
              messages,
              max_tokens: 4,
            })
            return r.choices[0]?.message.content ?? ''
          }
          let text = ''
          const stream = await client.chat.completions.create({
            model: 'pd-model',
            messages,
            max_tokens: 4,
            stream: true,
          })
          for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? ''
          return text
        }),
      )
      expect(texts.every((t) => t.length > 0)).toBe(true)
      const last = log.slice(-4)
      expect(last.map((l) => [l['status'], l['endpoint']])).toEqual(
        Array.from({ length: 4 }, () => [200, `${good.host}:${good.port}`]),
      )
    } finally {
      bad.setFailures({ forceStatus: null })
    }
  })

  it('a dead prefill pod loses no request: the next pair answers', async () => {
    const dead = fleet.prefill[0] as SimHandle
    await dead.close()
    const before = prefills()
    const answers = await Promise.all(
      Array.from({ length: 6 }, (_, i) =>
        client.chat.completions.create({
          model: 'pd-model',
          messages: [{ role: 'user', content: `${PROMPT} Case dead-${i}.` }],
          max_tokens: 4,
        }),
      ),
    )
    expect(answers.every((a) => (a.choices[0]?.message.content?.length ?? 0) > 0)).toBe(true)
    // Every answer's prefill ran on the live prefill pod.
    expect(prefills() - before).toBeGreaterThanOrEqual(6)
    const last = log.slice(-6)
    expect(last.every((l) => l['status'] === 200)).toBe(true)
    const live = fleet.prefill[1] as SimHandle
    expect(last.every((l) => l['prefill_endpoint'] === `${live.host}:${live.port}`)).toBe(true)
  })
})
