// Scraping in a worker thread (scrape-thread.ts → scrape-worker.ts → scraper.ts) against real
// HTTP on loopback: the engine simulator and a server answering a vLLM exposition. The results are
// the ones the same scraper gives on this thread; a worker that ends is started again; one that
// cannot run hands the loops to this thread with a warning, and results keep coming.
import { execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { afterEach, describe, expect, it } from 'vitest'
import { type SimHandle, startSimulator } from '../../hack/sim/index.js'
import { until } from '../../test/helpers/until.js'
import { memoryLogger } from '../log.js'
import {
  MAX_QUICK_EXITS,
  SCRAPE_WORKER_LIMITS,
  ScrapeThread,
  type ScrapeThreadOptions,
} from './scrape-thread.js'
import type { ScrapeResult, ScrapeTarget } from './scraper.js'
import { EngineMetricsTracker } from './tracker.js'

const VLLM = readFileSync(new URL('./testdata/vllm-metrics-sample.txt', import.meta.url), 'utf8')

const cleanups: (() => Promise<void>)[] = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

/** A pod answering `body` on /metrics; counts the scrapes it got. */
async function metricsServer(
  host: string,
  body: string,
): Promise<{ origin: string; hits: () => number }> {
  let hits = 0
  const server: Server = createServer((_req, res) => {
    hits++
    res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end(body)
  })
  await new Promise<void>((r) => server.listen(0, host, r))
  cleanups.push(
    () =>
      new Promise<void>((r) => {
        server.closeAllConnections()
        server.close(() => r())
      }),
  )
  return { origin: `http://${host}:${(server.address() as AddressInfo).port}`, hits: () => hits }
}

async function sim(host: string): Promise<SimHandle> {
  const s = await startSimulator({
    name: `scrape-thread-${host}`,
    host,
    port: 0,
    model: 'm',
    metricsFormat: 'vllm',
    zeroLatency: true,
  })
  cleanups.push(() => s.close())
  return s
}

function threaded(opts: Partial<ScrapeThreadOptions> = {}) {
  const results = new Map<string, ScrapeResult[]>()
  const starts = new Map<string, number>()
  const log = memoryLogger()
  const s = new ScrapeThread({
    intervalMs: 50,
    timeoutMs: 2_000,
    log,
    onStart: (id) => starts.set(id, (starts.get(id) ?? 0) + 1),
    onResult: (id, r) => {
      const list = results.get(id) ?? []
      list.push(r)
      results.set(id, list)
    },
    ...opts,
  })
  cleanups.push(() => s.close())
  const okCount = (id: string): number => (results.get(id) ?? []).filter((r) => r.ok).length
  return { s, results, starts, log, okCount }
}

const target = (id: string, origin: string): ScrapeTarget => ({ id, origin, engine: 'vLLM' })

describe('ScrapeThread', () => {
  it('scrapes in a worker thread and delivers what the scraper on this thread would', async () => {
    const pod = await metricsServer('127.0.0.241', VLLM)
    const engine = await sim('127.0.0.242')
    const engineId = `${engine.host}:${engine.port}`
    const { s, results, starts, okCount } = threaded()
    s.sync([target('sample', pod.origin), target(engineId, `http://${engineId}`)])
    await until(() => okCount('sample') >= 2 && okCount(engineId) >= 1, 20_000, 'two scrapes')
    expect(s.mode).toBe('thread')
    expect(s.worker()?.threadId).toBeGreaterThan(0)
    expect(starts.get('sample')).toBeGreaterThanOrEqual(2)
    // The same text through the tracker on this thread: the worker's parse gives the same view.
    const local = new EngineMetricsTracker('vLLM')
    const first = local.ingestText(VLLM).metrics
    const second = local.ingestText(VLLM).metrics
    const got = (results.get('sample') ?? []).filter((r) => r.ok)
    expect(got[0]?.ok && got[0].metrics).toEqual(first)
    expect(got[1]?.ok && got[1].metrics).toEqual(second)
    expect(first.running + first.waiting).toBeGreaterThan(0)
    const live = (results.get(engineId) ?? []).find((r) => r.ok)
    expect(live?.ok && live.metrics.engineType).toBe('vLLM')
    expect(live?.ok && live.metrics.missing).toEqual([])
  })

  it('stops scraping an endpoint the next sync leaves out, and everything on close', async () => {
    const a = await metricsServer('127.0.0.243', VLLM)
    const b = await metricsServer('127.0.0.244', VLLM)
    const { s, okCount } = threaded()
    s.sync([target('a', a.origin), target('b', b.origin)])
    await until(() => okCount('a') >= 1 && okCount('b') >= 1, 20_000, 'both scraped')
    s.sync([target('a', a.origin)])
    // Once a has been scraped twice more, b's loop (a 50 ms interval) is surely gone.
    const aHits = a.hits()
    await until(() => a.hits() >= aHits + 3, 10_000, 'a scraped on')
    const bHits = b.hits()
    const aNow = a.hits()
    await until(() => a.hits() >= aNow + 3, 10_000, 'a scraped on again')
    expect(b.hits()).toBe(bHits)
    const w = s.worker()
    const exited = new Promise<number>((r) => w?.once('exit', r))
    await s.close()
    expect(s.mode).toBe('closed')
    await exited
  })

  it('starts a worker that ended again, and results keep coming', async () => {
    const pod = await metricsServer('127.0.0.245', VLLM)
    const { s, okCount, log } = threaded()
    s.sync([target('p', pod.origin)])
    await until(() => okCount('p') >= 1, 20_000, 'first scrape')
    const first = s.worker()
    await first?.terminate()
    await until(() => s.worker() !== undefined && s.worker() !== first, 20_000, 'a new worker')
    const before = okCount('p')
    await until(() => okCount('p') >= before + 2, 20_000, 'scrapes from the new worker')
    expect(s.restarts).toBe(1)
    expect(s.mode).toBe('thread')
    expect(log.records.some((r) => r.level === 'warn' && /starting it again/.test(r.msg))).toBe(
      true,
    )
  })

  it('scrapes on this thread, with a warning, when the worker cannot load', async () => {
    const pod = await metricsServer('127.0.0.246', VLLM)
    const { s, okCount, log } = threaded({
      workerCode: () => Promise.reject(new Error('no esbuild here')),
    })
    s.sync([target('p', pod.origin)])
    await until(() => okCount('p') >= 2, 20_000, 'scrapes on this thread')
    expect(s.mode).toBe('inline')
    const warn = log.records.find((r) => r.msg === 'scraping engines on the main thread')
    expect(warn?.level).toBe('warn')
    expect(warn?.fields['error']).toBe('no esbuild here')
  })

  it('gives up on a worker that keeps ending at its start', async () => {
    const pod = await metricsServer('127.0.0.246', VLLM)
    const { s, okCount, log } = threaded({
      workerCode: () => Promise.resolve("throw new Error('broken worker')"),
    })
    s.sync([target('p', pod.origin)])
    await until(() => s.mode === 'inline', 20_000, 'the loops moved to this thread')
    await until(() => okCount('p') >= 1, 20_000, 'scrapes on this thread')
    expect(s.restarts).toBe(MAX_QUICK_EXITS - 1)
    expect(log.records.filter((r) => r.msg === 'scrape worker failed')).toHaveLength(
      MAX_QUICK_EXITS,
    )
    expect(log.records.find((r) => r.msg === 'scraping engines on the main thread')?.level).toBe(
      'warn',
    )
  })

  it('ends a worker that outgrows its heap cap, starts it again, then gives up on it', async () => {
    const pod = await metricsServer('127.0.0.247', VLLM)
    // Keeps everything it allocates: only the default old-generation cap stops it.
    const { s, okCount, log } = threaded({
      workerCode: () =>
        Promise.resolve('const keep = []; for (;;) keep.push(new Array(1e5).fill(Math.random()))'),
    })
    s.sync([target('p', pod.origin)])
    await until(() => s.mode === 'inline', 30_000, 'the loops moved to this thread')
    await until(() => okCount('p') >= 1, 20_000, 'scrapes on this thread')
    const failures = log.records.filter((r) => r.msg === 'scrape worker failed')
    expect(failures).toHaveLength(MAX_QUICK_EXITS)
    for (const f of failures) expect(String(f.fields['error'])).toMatch(/memory limit/)
    expect(s.restarts).toBe(MAX_QUICK_EXITS - 1)
  })

  it.each([
    // As the EPP's manifests start it (NODE_OPTIONS: the cap only).
    [['--max-semi-space-size=32']],
    // As the data plane's start it (cdk8s/dataplane-node.ts: the cap and the same minimum).
    [['--max-semi-space-size=32', '--min-semi-space-size=32']],
  ])("keeps the worker's young generation at its cap under %j", async (flags: string[]) => {
    // A process with 32 MB semi-spaces for the main thread: the scrape worker's code reports its
    // isolate's new space; a plain Worker created afterwards with the same resourceLimits shows
    // the flags again in force for every other isolate.
    const probe = [
      "const v8 = require('node:v8'); const { parentPort } = require('node:worker_threads')",
      'let keep = []',
      'for (let r = 0; r < 300; r++) { const a = []; for (let i = 0; i < 20000; i++) a.push({ i }); keep.push(a); if (keep.length > 3) keep.shift() }',
      "const size = v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size",
      "parentPort.postMessage({ t: 'result', id: 'new_space', r: { ok: false, kind: 'bad_response', error: String(size), durationMs: 0 } })",
    ].join('\n')
    const module = new URL('./scrape-thread.ts', import.meta.url).href
    const heap = new URL('../worker-heap.ts', import.meta.url).href
    const script = `
      import { Worker } from 'node:worker_threads'
      import { ScrapeThread, SCRAPE_WORKER_LIMITS } from ${JSON.stringify(module)}
      import { workerWithOwnHeap } from ${JSON.stringify(heap)}
      // The scrape worker is unref'd: something else keeps the process up until the end.
      const alive = setInterval(() => {}, 1000)
      const scraped = await new Promise((resolve) => {
        const s = new ScrapeThread({
          workerCode: async () => ${JSON.stringify(probe)},
          onResult: (_id, r) => { void s.close(); resolve(Number(r.error)) },
        })
      })
      const plain = await new Promise((resolve) => {
        const w = new Worker(${JSON.stringify(probe)}, { eval: true, resourceLimits: SCRAPE_WORKER_LIMITS })
        w.on('message', (m) => { void w.terminate(); resolve(Number(m.r.error)) })
      })
      // A worker with no limits of its own (the tracing worker) made while the flags are lifted.
      const lifted = await new Promise((resolve) => {
        const w = workerWithOwnHeap(${JSON.stringify(probe)}, { eval: true })
        w.on('message', (m) => { void w.terminate(); resolve(Number(m.r.error)) })
      })
      process.stdout.write(JSON.stringify({ scraped, plain, lifted }))
      clearInterval(alive)
    `
    // A file, not -e: eval'd workers would inherit -e's --input-type=module.
    const dir = await mkdtemp(join(tmpdir(), 'scrape-thread-'))
    cleanups.push(() => rm(dir, { recursive: true, force: true }))
    const file = join(dir, 'semi-space.mjs')
    await writeFile(file, script)
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [...flags, '--import', 'tsx', file],
      { cwd: fileURLToPath(new URL('../../', import.meta.url)), timeout: 60_000 },
    )
    const { scraped, plain, lifted } = JSON.parse(stdout) as {
      scraped: number
      plain: number
      lifted: number
    }
    const mb = 1024 * 1024
    expect(scraped).toBeGreaterThan(0)
    expect(scraped).toBeLessThanOrEqual((SCRAPE_WORKER_LIMITS.maxYoungGenerationSizeMb ?? 0) * mb)
    expect(plain).toBeGreaterThanOrEqual(32 * mb)
    // V8's own sizing (at most 16 MB semi-spaces), not the process's 32 MB ones (64 MB in all).
    expect(lifted).toBeGreaterThan(0)
    expect(lifted).toBeLessThan(64 * mb)
  })
})
