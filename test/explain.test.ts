// The explain header and /debug/endpoints reveal pod names, load and scores, so the data plane
// answers them only when started with `--explain` (alias `--debug-endpoints`). The real CLI in
// its own process, in front of one simulated engine.
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type Proc, startDataplane } from '../hack/bench/procs.js'
import { routingManifests } from '../hack/bench/routing-config.js'
import { type SimHandle, startSimulator } from '../hack/sim/index.js'

const MODEL = 'explain-model'
let sim: SimHandle
let dir: string
const procs: Proc[] = []

/** Starts `infer-gateway dataplane` on an ephemeral port; resolves with its URL. */
async function dataplane(extra: readonly string[]): Promise<string> {
  const p = await startDataplane({
    // One process: what is tested here does not depend on workers, and it starts faster.
    args: ['--config', join(dir, 'gateway.yaml'), '--workers', '1', ...extra],
  })
  procs.push(p)
  return p.url
}

async function ask(url: string): Promise<{ pod: string | null; explain: string | null }> {
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-infer-gateway-explain': '1' },
    body: JSON.stringify({
      model: MODEL,
      messages: [{ role: 'user', content: 'which pod?' }],
      max_tokens: 2,
    }),
  })
  await res.text()
  expect(res.status).toBe(200)
  return {
    pod: res.headers.get('x-inference-pod'),
    explain: res.headers.get('x-infer-gateway-explain'),
  }
}

beforeAll(async () => {
  sim = await startSimulator({
    name: 'pod-x',
    host: '127.0.0.71',
    port: 0,
    model: MODEL,
    metricsFormat: 'vllm',
    zeroLatency: true,
  })
  dir = await mkdtemp(join(tmpdir(), 'igw-explain-'))
  await writeFile(
    join(dir, 'gateway.yaml'),
    routingManifests({
      model: MODEL,
      endpoints: [{ name: sim.name, address: sim.host, port: sim.port }],
    }),
  )
})

afterAll(async () => {
  await Promise.all(procs.map((p) => p.stop()))
  await sim?.close()
  if (dir !== undefined) await rm(dir, { recursive: true, force: true })
})

describe('dataplane --explain', () => {
  it('without the flag: no explain header, no /debug/endpoints', async () => {
    const url = await dataplane([])
    const r = await ask(url)
    expect(r.pod).toBe('pod-x')
    expect(r.explain).toBeNull()
    expect((await fetch(`${url}/debug/endpoints`)).status).toBe(404)
  }, 90_000)

  it('with --explain: the decision line and the endpoint view', async () => {
    const url = await dataplane(['--explain'])
    const r = await ask(url)
    expect(r.explain).toMatch(/^server=default\/pool profile=default pick=pod-x /)
    const debug = await fetch(`${url}/debug/endpoints`)
    expect(debug.status).toBe(200)
    const body = (await debug.json()) as { endpoints: { name: string }[] }
    expect(body.endpoints.map((e) => e.name)).toEqual(['pod-x'])
  }, 90_000)

  it('--debug-endpoints is an alias of --explain', async () => {
    const url = await dataplane(['--debug-endpoints'])
    expect((await ask(url)).explain).toContain('pick=pod-x')
  }, 90_000)
})
