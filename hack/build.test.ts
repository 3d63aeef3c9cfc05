// `npm run build` output, run for real: the CLI and data-plane bundles, the data plane as a single
// executable in an empty directory (no Node, no node_modules beside it), and the data-plane
// bundle on the Node LTS the image ships (when that binary is cached: `npm run node:fetch`).
// Both data-plane runs serve examples/demo/ unchanged except for where its engines are: the
// StaticEndpoints are moved to simulated engines (hack/sim) on 127.0.0.x with free ports.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { chmod, copyFile, mkdtemp, readdir, rm } from 'node:fs/promises'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import OpenAI from 'openai'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { otlpSpanCount } from '../test/helpers/otlp-spans.js'
import { type BuildResult, buildAll, SEA_FILE } from './build.js'
import { freePort } from './cluster/control-plane.js'
import { demoWithEngines } from './demo-engines.js'
import { cachedNode, IMAGE_NODE_MAJOR } from './sea/node-dist.js'

/** Addresses no other test here uses (ports are ephemeral anyway). */
const SIM_HOST_BASE = 160

const node24 = await cachedNode(IMAGE_NODE_MAJOR)
if (!node24)
  process.stdout.write(
    `hack/build.test.ts: skipping the Node ${IMAGE_NODE_MAJOR} run of dist/dataplane.mjs: no cached Node ${IMAGE_NODE_MAJOR} binary (npm run node:fetch downloads it)\n`,
  )

let out: string
let built: BuildResult
const cleanups: (() => Promise<void>)[] = []

beforeAll(async () => {
  out = await mkdtemp(join(tmpdir(), 'igw-build-'))
  // esbuild three times, the blob, and postject's injection into a ~100 MB binary (~6 s of CPU
  // and ~1 GB peak of it alone): ~10 s of CPU in all, 60-110 s wall on a loaded 2-core machine.
  built = await buildAll(out)
}, 600_000)

afterAll(async () => {
  for (const c of cleanups.reverse()) await c()
  await rm(out, { recursive: true, force: true })
})

async function until<T>(what: string, f: () => Promise<T | undefined>, ms = 30_000): Promise<T> {
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

/**
 * An OTLP/HTTP traces endpoint counting the spans it receives (protobuf, the default encoding):
 * the data plane's tracing worker runs from code inside the bundle
 * (hack/tracing-worker-plugin.ts), checked here.
 */
async function otlpEndpoint(): Promise<{ url: string; spans: () => number }> {
  let spans = 0
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      spans += otlpSpanCount(Buffer.concat(chunks), req.headers['content-type'])
      // An empty ExportTraceServiceResponse: full success.
      res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end()
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  cleanups.push(() => new Promise((r) => server.close(() => r())))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, spans: () => spans }
}

/**
 * Starts a data plane (`cmd args --config dir`, tracing on) and answers every demo model through
 * it; each request's span reaches the OTLP endpoint by the time the data plane has exited.
 */
async function serveDemo(cmd: string, args: readonly string[], cwd: string): Promise<void> {
  const demo = await demoWithEngines(SIM_HOST_BASE, cleanups)
  const otlp = await otlpEndpoint()
  const port = await freePort()
  let output = ''
  const proc: ChildProcess = spawn(
    cmd,
    [
      ...args,
      '--config',
      demo.configDir,
      '--host',
      '127.0.0.1',
      '--port',
      String(port),
      '--drain-delay',
      '0',
      '--otlp-endpoint',
      otlp.url,
    ],
    // No PATH, no NODE_PATH: nothing from the host's Node installation can be found.
    { cwd, env: { HOME: cwd }, stdio: ['ignore', 'pipe', 'pipe'] },
  )
  proc.stdout?.on('data', (b: Buffer) => {
    output += b.toString()
  })
  proc.stderr?.on('data', (b: Buffer) => {
    output += b.toString()
  })
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)))
  let code: number | null | 'timeout'
  try {
    const base = `http://127.0.0.1:${port}`
    await until(`/readyz (output: ${output})`, async () => {
      if (proc.exitCode !== null) throw new Error(`exited ${proc.exitCode}: ${output}`)
      const r = await fetch(`${base}/readyz`, { signal: AbortSignal.timeout(2000) })
      return r.status === 200 ? true : undefined
    })
    const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'unused', maxRetries: 0 })
    expect(demo.models).toContain('llama-3.1-8b')
    for (const model of demo.models) {
      const r = await client.chat.completions.create({
        model,
        messages: [{ role: 'user', content: `Hello ${model}` }],
        max_tokens: 4,
      })
      expect(r.choices[0]?.message.content, model).toMatch(/\S/)
    }
    const stream = await client.chat.completions.create({
      model: 'llama-3.1-8b',
      messages: [{ role: 'user', content: 'Stream please' }],
      max_tokens: 4,
      stream: true,
    })
    let text = ''
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? ''
    expect(text).toMatch(/\S/)
    // Every answer came from a simulated engine through this data plane.
    const served = demo.fleet.sims.reduce((n, s) => n + s.stats().requests, 0)
    expect(served).toBe(demo.models.length + 1)
  } finally {
    proc.kill('SIGTERM')
    code = await Promise.race([
      exited,
      new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 15_000)),
    ])
    if (code === 'timeout') proc.kill('SIGKILL')
  }
  // A clean exit on SIGTERM (graceful drain), as the kubelet sends it.
  expect(code, output).toBe(0)
  // Shutdown flushed the tracing worker: one span per request.
  expect(otlp.spans(), output).toBe(demo.models.length + 1)
}

describe('npm run build', () => {
  it('builds a runnable CLI and a data-plane bundle without the Kubernetes client', () => {
    expect(built.dataplaneInputs.some((i) => i.startsWith('dataplane/'))).toBe(true)
    expect(built.dataplaneInputs.some((i) => i.includes('@kubernetes/client-node'))).toBe(false)
    const help = spawnSync(process.execPath, [join(out, 'dataplane.mjs'), '--help'], {
      encoding: 'utf8',
      timeout: 20_000,
    })
    expect(help.status, help.stderr).toBe(0)
    expect(help.stdout).toContain('Usage: infer-gateway dataplane')
    const cli = spawnSync(process.execPath, [join(out, 'infer-gateway.mjs'), 'sim', '--help'], {
      encoding: 'utf8',
      timeout: 20_000,
    })
    expect(cli.status, cli.stderr).toBe(0)
    expect(cli.stdout).toContain('Usage: sim')
  })

  it.runIf(process.platform === 'linux')(
    'builds a single executable that serves examples/demo/ from an empty directory',
    async () => {
      expect(built.sea?.nodeVersion).toBe(process.version)
      const dir = await mkdtemp(join(tmpdir(), 'igw-sea-run-'))
      cleanups.push(() => rm(dir, { recursive: true, force: true }))
      await copyFile(join(out, SEA_FILE), join(dir, SEA_FILE))
      await chmod(join(dir, SEA_FILE), 0o755)
      expect(await readdir(dir)).toEqual([SEA_FILE])
      await serveDemo(join(dir, SEA_FILE), [], dir)
    },
    120_000,
  )

  it.runIf(node24 !== undefined)(
    `runs dist/dataplane.mjs on Node ${IMAGE_NODE_MAJOR} (the image's Node) and serves examples/demo/`,
    async () => {
      if (!node24) return
      const v = spawnSync(node24, ['--version'], { encoding: 'utf8' }).stdout.trim()
      expect(v.startsWith(`v${IMAGE_NODE_MAJOR}.`)).toBe(true)
      // Only the bundle in the directory: the image has no node_modules either.
      const dir = await mkdtemp(join(tmpdir(), 'igw-node24-run-'))
      cleanups.push(() => rm(dir, { recursive: true, force: true }))
      await copyFile(join(out, 'dataplane.mjs'), join(dir, 'dataplane.mjs'))
      await serveDemo(node24, [join(dir, 'dataplane.mjs')], dir)
    },
    120_000,
  )
})
