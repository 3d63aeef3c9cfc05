// `infer-gateway epp` driven by a client nobody here wrote the protocol side of: a Go program on
// go-control-plane's generated ext_proc types (test/epp-client), acting as Envoy does — request
// headers with protocol_config and subset hints, body chunks, end of stream, routing by the
// destination header to real simulated engines on loopback, response headers with the served
// endpoint and response body chunks back through the EPP — in full-duplex-streamed and buffered
// body modes.
import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CLI } from '../hack/bench/procs.js'
import { type SimHandle, startSimulator } from '../hack/sim/index.js'
import { manifests } from './helpers/config.js'

const run = promisify(execFile)
const ROOT = fileURLToPath(new URL('..', import.meta.url))
const MODEL = 'epp-model'
const ENGINE_MODEL = 'epp-engine-model'

let client: string
let dir: string
let epp: ChildProcess | undefined
let grpcAddr: string
let metricsUrl: string
const sims: SimHandle[] = []

interface Result {
  id: string
  destinationHeader?: string
  metadataDestination?: string
  clearRouteCache?: boolean
  setHeaders?: Record<string, string>
  upstreamBody?: string
  immediate?: { status: number; headers: Record<string, string>; body: string }
  served?: string
  tried?: string[]
  status?: number
  responseBody?: string
  error?: string
}

interface ClientRequest {
  id: string
  mode: 'streamed' | 'buffered'
  body?: string
  chunkBytes?: number
  subset?: unknown
  forward?: boolean
  reset?: boolean
  pause?: boolean
  noProtocolConfig?: boolean
}

function chat(content: string, model = MODEL): string {
  return JSON.stringify({ model, messages: [{ role: 'user', content }], max_tokens: 3 })
}

async function spec(requests: ClientRequest[], concurrency = 1): Promise<string> {
  const file = join(dir, `spec-${Math.random().toString(16).slice(2)}.json`)
  await writeFile(file, JSON.stringify({ addr: grpcAddr, requests, concurrency }))
  return file
}

async function drive(requests: ClientRequest[], concurrency = 1): Promise<Result[]> {
  const { stdout } = await run(client, ['run', await spec(requests, concurrency)], {
    maxBuffer: 16 * 1024 * 1024,
  })
  return stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Result)
}

/** In-flight requests per endpoint, from the EPP's /metrics (absent = none). */
async function inflight(): Promise<Record<string, number>> {
  const text = await (await fetch(`${metricsUrl}/metrics`)).text()
  const out: Record<string, number> = {}
  for (const m of text.matchAll(
    /^infer_gateway_epp_inflight_requests\{endpoint="([^"]+)"\} (\d+)/gm,
  ))
    if (Number(m[2]) > 0) out[m[1] as string] = Number(m[2])
  return out
}

const ids = (): string[] => sims.map((s) => `${s.host}:${s.port}`)

beforeAll(async () => {
  // The Go client: built from the module proxy once (hack/ensure-test-deps.sh does it before the
  // suite; a cache hit here costs nothing).
  const built = await run('bash', [join(ROOT, 'test/epp-client/build.sh')], {
    timeout: 900_000,
  })
  client = built.stdout.trim().split('\n').pop() as string
  for (let i = 0; i < 3; i++) {
    sims.push(
      await startSimulator({
        name: `epp-pod-${i}`,
        host: `127.0.0.${91 + i}`,
        port: 0,
        model: ENGINE_MODEL,
        metricsFormat: 'vllm',
        zeroLatency: true,
      }),
    )
  }
  dir = await mkdtemp(join(tmpdir(), 'igw-epp-'))
  await writeFile(
    join(dir, 'pool.yaml'),
    manifests(
      [
        {
          name: 'pool',
          model: ENGINE_MODEL,
          endpoints: [
            ...sims.map((s) => ({ name: s.name, address: s.host, port: s.port })),
            { name: 'epp-pod-not-ready', address: '127.0.0.94', port: 9, ready: false },
          ],
        },
      ],
      [
        {
          name: 'route',
          modelName: MODEL,
          rules: [{ targetModels: [{ modelServerName: 'pool' }] }],
        },
      ],
    ),
  )
  epp = spawn(
    process.execPath,
    [
      CLI,
      'epp',
      '--server',
      'default/pool',
      '--config',
      join(dir, 'pool.yaml'),
      '--host',
      '127.0.0.1',
      '--grpc-port',
      '0',
      '--metrics-port',
      '0',
      '--explain',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  )
  const child = epp
  let seen = ''
  await new Promise<void>((resolve, reject) => {
    child.stderr?.on('data', (b: Buffer) => {
      seen += b.toString()
      const m = /"msg":"epp listening","grpc":"([^"]+)","metrics":"([^"]+)"/.exec(seen)
      if (m !== null) {
        grpcAddr = m[1] as string
        metricsUrl = m[2] as string
        resolve()
      }
    })
    child.once('exit', (code) => reject(new Error(`epp exited with ${code}: ${seen}`)))
  })
  const ready = await fetch(`${metricsUrl}/readyz`)
  expect(ready.status).toBe(200)
  // Start once every pod has been scraped (the scheduler's view, /debug/endpoints with --explain).
  for (let i = 0; i < 200; i++) {
    const view = (await (await fetch(`${metricsUrl}/debug/endpoints`)).json()) as {
      endpoints: { scrape: { fresh: boolean }; ejected: boolean }[]
    }
    if (view.endpoints.filter((e) => e.scrape.fresh && !e.ejected).length === 3) break
    await new Promise((r) => setTimeout(r, 100))
  }
}, 900_000)

afterAll(async () => {
  if (epp !== undefined && epp.exitCode === null) {
    const child = epp
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve())
      child.kill('SIGTERM')
    })
  }
  await Promise.all(sims.map((s) => s.close()))
  if (dir !== undefined) await rm(dir, { recursive: true, force: true })
})

describe('infer-gateway epp, driven like Envoy by the go-control-plane client', () => {
  for (const mode of ['streamed', 'buffered'] as const) {
    it(`${mode}: destination header = envoy.lb metadata (primary + 2 fallbacks), model rewritten, pod answers through the EPP`, async () => {
      const body = chat(`hello from the ${mode} mode`)
      const [r] = await drive([{ id: mode, mode, body, chunkBytes: 7, forward: true }])
      expect(r?.error).toBeUndefined()
      const list = r?.destinationHeader?.split(',') ?? []
      expect(r?.metadataDestination).toBe(r?.destinationHeader)
      // The primary and its fallbacks, distinct pool endpoints (an endpoint whose scrape timed out
      // on a loaded machine is ejected for a while and left out: two of three still pass).
      expect(list.length).toBeGreaterThanOrEqual(2)
      expect(new Set(list).size).toBe(list.length)
      for (const e of list) expect(ids()).toContain(e)
      expect(r?.clearRouteCache).toBe(true)
      // The route's public name went upstream as the engine's model, with a fitting length.
      const up = JSON.parse(r?.upstreamBody ?? '{}') as { model: string; messages: unknown }
      expect(up.model).toBe(ENGINE_MODEL)
      expect(up.messages).toEqual(JSON.parse(body).messages)
      expect(r?.setHeaders?.['content-length']).toBe(
        String(Buffer.byteLength(r?.upstreamBody ?? '')),
      )
      expect(r?.served).toBe(list[0])
      expect(r?.status).toBe(200)
      const answer = JSON.parse(r?.responseBody ?? '{}') as { usage?: { prompt_tokens: number } }
      expect(answer.usage?.prompt_tokens).toBeGreaterThan(0)
      expect(await inflight()).toEqual({})
    }, 60_000)
  }

  it('older Envoy without protocol_config: the --body-mode default (full duplex) applies', async () => {
    const [r] = await drive([
      {
        id: 'legacy',
        mode: 'streamed',
        body: chat('no protocol config'),
        noProtocolConfig: true,
        forward: true,
      },
    ])
    expect(r?.error).toBeUndefined()
    expect(r?.status).toBe(200)
  }, 60_000)

  it('subset hint: only hinted endpoints are picked, as a list or a comma string', async () => {
    const [a, b] = ids()
    const results = await drive([
      { id: 'list', mode: 'streamed', body: chat('subset list'), subset: [b], forward: true },
      { id: 'comma', mode: 'buffered', body: chat('subset comma'), subset: `${a}, ${b}` },
    ])
    expect(results[0]?.destinationHeader).toBe(b)
    expect(results[0]?.served).toBe(b)
    expect(results[0]?.status).toBe(200)
    expect(new Set(results[1]?.destinationHeader?.split(','))).toEqual(new Set([a, b]))
  }, 60_000)

  it('a subset hint with no ready pool endpoint, and a body that is not JSON: ImmediateResponses 503 and 400', async () => {
    const results = await drive([
      { id: 'foreign', mode: 'streamed', body: chat('x'), subset: ['10.1.2.3:8000'] },
      { id: 'not-ready', mode: 'buffered', body: chat('x'), subset: ['127.0.0.94:9'] },
      { id: 'bad-json', mode: 'streamed', body: '{"model": "epp-model", ' },
    ])
    for (const r of results.slice(0, 2)) {
      expect(r.immediate?.status).toBe(503)
      expect(r.immediate?.headers['retry-after']).toBe('1')
      expect(JSON.parse(r.immediate?.body ?? '{}').error.code).toBe('no_ready_endpoint_in_subset')
      expect(r.destinationHeader).toBeUndefined()
    }
    expect(results[2]?.immediate?.status).toBe(400)
    expect(JSON.parse(results[2]?.immediate?.body ?? '{}').error.code).toBe('invalid_json')
    expect(await inflight()).toEqual({})
  }, 60_000)

  it('holds the in-flight place while the request is at the pod, releases it at the end of the stream or on reset', async () => {
    for (const reset of [false, true]) {
      const file = await spec([
        {
          id: `held-${reset}`,
          mode: 'streamed',
          body: chat(`held ${reset}`),
          forward: true,
          pause: true,
          reset,
        },
      ])
      const child = spawn(client, ['run', file], { stdio: ['pipe', 'pipe', 'pipe'] })
      let out = ''
      child.stdout.on('data', (b: Buffer) => {
        out += b.toString()
      })
      const decided = await new Promise<{ endpoints: string[] }>((resolve, reject) => {
        let err = ''
        child.stderr.on('data', (b: Buffer) => {
          err += b.toString()
          const line = err.split('\n').find((l) => l.includes('"event":"decided"'))
          if (line !== undefined) resolve(JSON.parse(line) as { endpoints: string[] })
        })
        child.once('exit', (code) => reject(new Error(`client exited ${code}: ${err}`)))
      })
      expect(await inflight()).toEqual({ [decided.endpoints[0] as string]: 1 })
      const exited = new Promise<number | null>((resolve) => child.once('exit', resolve))
      child.stdin.end('\n')
      expect(await exited).toBe(0)
      const r = JSON.parse(out.trim()) as Result
      expect(r.error).toBeUndefined()
      if (!reset) expect(r.status).toBe(200)
      // A reset reaches the EPP as a cancelled stream: poll briefly for it to be seen.
      let now = await inflight()
      for (let i = 0; i < 100 && Object.keys(now).length > 0; i++) {
        await new Promise((res) => setTimeout(res, 50))
        now = await inflight()
      }
      expect(now).toEqual({})
    }
  }, 60_000)

  it('a shared prompt prefix keeps going to the same pod; 24 concurrent streams all complete', async () => {
    const system = 'You answer questions about the quarterly report in detail. '.repeat(60)
    const first = await drive([
      { id: 'warm', mode: 'streamed', body: chat(`${system} Q0`), forward: true },
    ])
    const pod = first[0]?.served
    expect(ids()).toContain(pod)
    const again = await drive([
      { id: 'again', mode: 'buffered', body: chat(`${system} Q1`), forward: true },
    ])
    expect(again[0]?.served).toBe(pod)
    const many = await drive(
      Array.from({ length: 24 }, (_, i) => ({
        id: `c${i}`,
        mode: i % 2 === 0 ? ('streamed' as const) : ('buffered' as const),
        body: chat(`independent question number ${i} ${'z'.repeat(i * 37)}`),
        forward: true,
      })),
      6,
    )
    expect(many.map((r) => r.error ?? r.status)).toEqual(Array.from({ length: 24 }, () => 200))
    expect(await inflight()).toEqual({})
  }, 120_000)

  it('answers grpc.health.v1 and counts decisions in /metrics', async () => {
    for (const service of [
      '',
      'liveness',
      'readiness',
      'envoy.service.ext_proc.v3.ExternalProcessor',
    ]) {
      const { stdout } = await run(client, ['health', grpcAddr, service])
      expect(stdout.trim()).toBe('SERVING')
    }
    await expect(run(client, ['health', grpcAddr, 'no-such-service'])).rejects.toThrow(/NotFound/)
    const text = await (await fetch(`${metricsUrl}/metrics`)).text()
    const routed = /^infer_gateway_epp_decisions_total\{result="routed"\} (\d+)/m.exec(text)
    expect(Number(routed?.[1])).toBeGreaterThanOrEqual(30)
    expect(text).toMatch(
      /^infer_gateway_epp_decisions_total\{result="no_ready_endpoint_in_subset"\} 2$/m,
    )
  })
})
