// Standalone GAIE mode end to end: InferencePool + StaticEndpoints + HTTPRoute documents in
// `dataplane --config`, the real data plane in front of simulated engines on 127.0.0.x, the
// official OpenAI SDK as the client. Which pod served is read from the simulator's
// `x-inference-pod` header.
import OpenAI from 'openai'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type Gateway, startGateway } from '../dataplane/gateway.js'
import { type SimHandle, startSimulator } from '../hack/sim/index.js'
import { ConfigVolume } from './helpers/config.js'

const MODEL = 'meta-llama/Llama-3.1-8B-Instruct'
let rank0: SimHandle
let rank1: SimHandle
let canary: SimHandle
let gw: Gateway
let vol: ConfigVolume
let client: OpenAI

const doc = (o: unknown) => JSON.stringify(o, null, 2)

function config(): string {
  const poolRef = (name: string, weight?: number) => ({
    group: 'inference.networking.k8s.io',
    kind: 'InferencePool',
    name,
    ...(weight !== undefined ? { weight } : {}),
  })
  return [
    // One pod serving two data-parallel ranks: one endpoint per target port.
    doc({
      apiVersion: 'inference.networking.k8s.io/v1',
      kind: 'InferencePool',
      metadata: { name: 'vllm-llama3-8b-instruct' },
      spec: {
        selector: { matchLabels: { app: 'vllm-llama3-8b-instruct' } },
        targetPorts: [{ number: rank0.port }, { number: rank1.port }],
        endpointPickerRef: { name: 'vllm-llama3-8b-instruct-epp', port: { number: 9002 } },
      },
    }),
    doc({
      apiVersion: 'standalone.infer-gateway.io/v1alpha1',
      kind: 'StaticEndpoints',
      metadata: { name: 'vllm-llama3-8b-instruct' },
      targetKind: 'InferencePool',
      endpoints: [{ name: 'pod-0', address: rank0.host }],
    }),
    doc({
      apiVersion: 'inference.networking.k8s.io/v1',
      kind: 'InferencePool',
      metadata: { name: 'canary' },
      spec: {
        selector: { matchLabels: { app: 'canary' } },
        targetPorts: [{ number: canary.port }],
      },
    }),
    doc({
      apiVersion: 'standalone.infer-gateway.io/v1alpha1',
      kind: 'StaticEndpoints',
      metadata: { name: 'canary' },
      targetKind: 'InferencePool',
      endpoints: [{ name: 'canary-0', address: canary.host }],
    }),
    doc({
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'HTTPRoute',
      metadata: { name: 'llm-route' },
      spec: {
        parentRefs: [
          { group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'inference-gateway' },
        ],
        rules: [
          // Declared first but least specific: Gateway API precedence puts it last.
          { backendRefs: [poolRef('vllm-llama3-8b-instruct')] },
          {
            matches: [{ headers: [{ name: 'x-canary', value: 'yes' }] }],
            backendRefs: [poolRef('canary')],
          },
          {
            matches: [{ path: { type: 'Exact', value: '/v1/completions' } }],
            backendRefs: [poolRef('vllm-llama3-8b-instruct', 50), poolRef('canary', 50)],
          },
        ],
      },
    }),
    // Bound to another Gateway: its longer prefix would win if this data plane served it.
    doc({
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'HTTPRoute',
      metadata: { name: 'not-ours' },
      spec: {
        parentRefs: [{ name: 'someone-elses-gateway' }],
        rules: [
          {
            matches: [{ path: { type: 'PathPrefix', value: '/v1/chat' } }],
            backendRefs: [poolRef('canary')],
          },
        ],
      },
    }),
  ].join('\n---\n')
}

beforeAll(async () => {
  const sim = (name: string, host: string) =>
    startSimulator({
      name,
      host,
      port: 0,
      model: MODEL,
      metricsFormat: 'vllm',
      seed: 1,
      timeScale: 0.05,
    })
  ;[rank0, rank1, canary] = await Promise.all([
    sim('pod-0-rank-0', '127.0.0.81'),
    sim('pod-0-rank-1', '127.0.0.81'),
    sim('canary-0', '127.0.0.82'),
  ])
  vol = await ConfigVolume.create({ 'gateway.yaml': config() })
  gw = await startGateway({
    config: { kind: 'manifests', paths: [vol.dir] },
    port: 0,
    pollMs: 100,
    gateway: 'default/inference-gateway',
  })
  client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'unused', maxRetries: 0 })
})

afterAll(async () => {
  await gw?.shutdown({ deadlineMs: 1000 })
  await Promise.all([rank0, rank1, canary].map((s) => s?.close()))
  await vol?.remove()
})

async function chat(headers: Record<string, string> = {}, content = 'Hi'): Promise<string | null> {
  const { response, data } = await client.chat.completions
    .create({ model: MODEL, messages: [{ role: 'user', content }], max_tokens: 4 }, { headers })
    .withResponse()
  expect(data.model).toBe(MODEL)
  return response.headers.get('x-inference-pod')
}

describe('HTTPRoute → InferencePool through our data plane (standalone)', () => {
  it('serves any model in the body on the pool, over both target ports of the pod', async () => {
    // Distinct prompts, concurrently: no prefix affinity, and load to spread.
    const pods = new Set(
      await Promise.all(
        Array.from({ length: 24 }, (_, i) => chat({}, `question ${i}: ${'why '.repeat(i * 7)}`)),
      ),
    )
    // Both ranks of the one pod serve; the canary (and the other Gateway's route) never does.
    expect([...pods].sort()).toEqual(['pod-0-rank-0', 'pod-0-rank-1'])
  })

  it('a header match outranks the catch-all rule declared before it', async () => {
    expect(await chat({ 'x-canary': 'yes' })).toBe('canary-0')
  })

  it('splits an Exact-path rule by backendRef weights', async () => {
    const seen = new Map<string, number>()
    for (let i = 0; i < 40; i++) {
      const { response } = await client.completions
        .create({ model: MODEL, prompt: 'Hello', max_tokens: 2 })
        .withResponse()
      const pod = response.headers.get('x-inference-pod') ?? 'none'
      seen.set(
        pod.startsWith('canary') ? 'canary' : 'pool',
        (seen.get(pod.startsWith('canary') ? 'canary' : 'pool') ?? 0) + 1,
      )
    }
    // 50/50 over 40 requests: both sides serve (P(one side never picked) = 2^-39).
    expect(seen.get('canary') ?? 0).toBeGreaterThan(0)
    expect(seen.get('pool') ?? 0).toBeGreaterThan(0)
  })

  it('lists no model (HTTPRoutes claim none) yet serves them', async () => {
    const models = await client.models.list()
    expect(models.data.map((m) => m.id)).toEqual([])
  })
})
