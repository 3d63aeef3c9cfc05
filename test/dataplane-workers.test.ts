// `infer-gateway dataplane --workers 2`: the real CLI (a primary and two worker processes on one
// port) in front of simulated engines on their own loopback addresses. Connections are handed to
// the workers round-robin; a keep-alive agent with one socket stays on one worker, and the
// explain header (`| worker=N`, only with --explain and the request header) says which.
import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { Agent, createServer, request, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CLI } from '../hack/bench/procs.js'
import { type SimHandle, startSimulator } from '../hack/sim/index.js'
import { manifests } from './helpers/config.js'
import { until } from './helpers/until.js'

const BLIND = 'blind-model'
const COUNTED = 'counted-model'
let sims: SimHandle[] = []
let counter: Server
let scrapes = 0
let dir: string
const children: ChildProcess[] = []
const agents: Agent[] = []

interface Running {
  readonly url: string
  readonly child: ChildProcess
  readonly stderr: () => string
}

/** Starts the CLI; resolves once it logs `data plane listening` (the primary: all workers up). */
async function dataplane(extra: readonly string[]): Promise<Running> {
  const child = spawn(
    process.execPath,
    [
      CLI,
      'dataplane',
      '--config',
      join(dir, 'gateway.yaml'),
      '--host',
      '127.0.0.1',
      '--port',
      '0',
      '--no-access-log',
      '--explain',
      '--drain-delay',
      '0',
      ...extra,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  )
  children.push(child)
  let seen = ''
  const url = await new Promise<string>((resolve, reject) => {
    child.stderr?.on('data', (b: Buffer) => {
      seen += b.toString()
      const m = /"msg":"data plane listening","url":"([^"]+)"/.exec(seen)
      if (m?.[1] !== undefined) resolve(m[1])
    })
    child.once('exit', (code) => reject(new Error(`dataplane exited with ${code}: ${seen}`)))
  })
  return { url, child, stderr: () => seen }
}

/** One keep-alive connection (one socket): every request on it reaches the same worker. */
function connection(): Agent {
  const a = new Agent({ keepAlive: true, maxSockets: 1 })
  agents.push(a)
  return a
}

interface Answer {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: string
}

function http(
  agent: Agent,
  url: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
  timeoutMs = 0,
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${url}${path}`,
      {
        agent,
        method: body === undefined ? 'GET' : 'POST',
        headers: { 'content-type': 'application/json', ...headers },
      },
      (res) => {
        let text = ''
        res.setEncoding('utf8')
        res.on('data', (c: string) => {
          text += c
        })
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }),
        )
        res.on('error', reject)
      },
    )
    req.on('error', reject)
    if (timeoutMs > 0) req.setTimeout(timeoutMs, () => req.destroy(new Error('timed out')))
    req.end(body === undefined ? undefined : JSON.stringify(body))
  })
}

const chat = (model: string, content: string, extra: Record<string, unknown> = {}) => ({
  model,
  messages: [{ role: 'user', content }],
  max_tokens: 2,
  ...extra,
})

async function explain(agent: Agent, url: string, model: string, content: string) {
  const r = await http(agent, url, '/v1/chat/completions', chat(model, content), {
    'x-infer-gateway-explain': '1',
  })
  expect(r.status, r.body).toBe(200)
  const line = String(r.headers['x-infer-gateway-explain'] ?? '')
  return {
    pod: /pick=(\S+)/.exec(line)?.[1],
    worker: Number(/\| worker=(\d+)$/.exec(line)?.[1] ?? 'NaN'),
    line,
  }
}

/** A connection per worker (connections alternate between workers; the explain line says which). */
async function connectionsByWorker(url: string): Promise<Map<number, Agent>> {
  const out = new Map<number, Agent>()
  for (let i = 0; i < 12 && out.size < 2; i++) {
    const a = connection()
    const { worker } = await explain(a, url, BLIND, `who serves connection ${i}?`)
    if (!out.has(worker)) out.set(worker, a)
  }
  return out
}

interface DebugView {
  worker?: { index: number; pid: number }
  scrape: { enabled: boolean; by?: string; intervalMs?: number; thread?: string }
  endpoints: {
    name: string
    scrape: { fresh: boolean }
    engine: { running: number; waiting: number } | null
    local: { inFlight: number; peerInFlight?: number }
  }[]
}

async function debugView(agent: Agent, url: string, timeoutMs = 0): Promise<DebugView> {
  return JSON.parse(
    (await http(agent, url, '/debug/endpoints', undefined, {}, timeoutMs)).body,
  ) as DebugView
}

function requestsTotal(metricsText: string, model: string): number {
  let n = 0
  for (const m of metricsText.matchAll(/^infer_gateway_requests_total\{([^}]*)\} (\d+)/gm)) {
    if (m[1]?.includes(`model="${model}"`)) n += Number(m[2])
  }
  return n
}

beforeAll(async () => {
  // Blind engines: vLLM-format metrics under a TGI ModelServer, so the gateway finds no load
  // signals there and only in-flight counts (own and the other worker's) tell the pods apart.
  sims = await Promise.all(
    ['127.0.0.131', '127.0.0.132', '127.0.0.133'].map((host, i) =>
      startSimulator({
        name: `pod-${i + 1}`,
        host,
        port: 0,
        model: i < 2 ? BLIND : COUNTED,
        metricsFormat: 'vllm',
        decodeMsPerToken: 40,
        prefillMsPerToken: 0,
        prefillOverheadMs: 1,
      }),
    ),
  )
  const text = await (await fetch(`${(sims[2] as SimHandle).url}/metrics`)).text()
  // The counted engine: a real vLLM metrics page, counting every scrape.
  counter = createServer((req, res) => {
    if (req.url === '/metrics') scrapes++
    res.writeHead(200, { 'content-type': 'text/plain' })
    res.end(text)
  })
  await new Promise<void>((r) => counter.listen(0, '127.0.0.134', r))
  const [a, b] = sims as [SimHandle, SimHandle]
  dir = await mkdtemp(join(tmpdir(), 'igw-workers-'))
  await writeFile(
    join(dir, 'gateway.yaml'),
    manifests(
      [
        {
          name: 'blind',
          engine: 'TGI',
          endpoints: [
            { name: 'pod-1', address: a.host, port: a.port },
            { name: 'pod-2', address: b.host, port: b.port },
          ],
          scheduler: { plugins: [{ name: 'least-pending', weight: 1 }] },
        },
        {
          name: 'counted',
          endpoints: [
            {
              name: 'counted-1',
              address: '127.0.0.134',
              port: (counter.address() as AddressInfo).port,
            },
          ],
        },
      ],
      [
        {
          name: 'blind',
          modelName: BLIND,
          rules: [{ targetModels: [{ modelServerName: 'blind' }] }],
        },
        {
          name: 'counted',
          modelName: COUNTED,
          rules: [{ targetModels: [{ modelServerName: 'counted' }] }],
        },
      ],
    ),
  )
}, 90_000)

afterAll(async () => {
  for (const a of agents) a.destroy()
  await Promise.all(
    children.map(
      (c) =>
        new Promise<void>((resolve) => {
          if (c.exitCode !== null || c.signalCode !== null) return resolve()
          c.once('exit', () => resolve())
          c.kill('SIGTERM')
        }),
    ),
  )
  await Promise.all(sims.map((s) => s.close()))
  await new Promise<void>((r) => (counter ? counter.close(() => r()) : r()))
  if (dir !== undefined) await rm(dir, { recursive: true, force: true })
})

describe('dataplane --workers 2', () => {
  let gw: Running
  let byWorker: Map<number, Agent>

  beforeAll(async () => {
    gw = await dataplane(['--workers', '2'])
    byWorker = await connectionsByWorker(gw.url)
  }, 90_000)

  it('both workers serve requests; the explain line and debug view name the worker', async () => {
    expect([...byWorker.keys()].sort()).toEqual([1, 2])
    const pids = new Set<number>()
    for (const [w, a] of byWorker) {
      const d = await debugView(a, gw.url)
      expect(d.worker?.index).toBe(w)
      pids.add(d.worker?.pid ?? 0)
      // Workers do not scrape: the primary does it for them.
      expect(d.scrape).toMatchObject({ enabled: true, by: 'primary' })
    }
    expect(pids.size).toBe(2)
    expect(pids.has(gw.child.pid ?? 0)).toBe(false)
    // Without the explain header, no trace of the worker in the response.
    const plain = await http(
      byWorker.get(1) as Agent,
      gw.url,
      '/v1/chat/completions',
      chat(BLIND, 'hi'),
    )
    expect(plain.status).toBe(200)
    expect(JSON.stringify(plain.headers)).not.toContain('worker=')
  }, 90_000)

  it('engine /metrics is scraped by one process: ~1 scrape per interval, not 2', async () => {
    // Both workers have fresh metrics of the counted engine (the primary's scrapes reached them).
    for (const a of byWorker.values()) {
      await until(
        async () => {
          const ep = (await debugView(a, gw.url)).endpoints.find((e) => e.name === 'counted-1')
          return ep?.scrape.fresh === true && ep.engine?.running === 0 && ep.engine.waiting === 0
        },
        5000,
        'counted engine scraped',
      )
    }
    const before = scrapes
    await new Promise((r) => setTimeout(r, 2000))
    const n = scrapes - before
    // 200 ms interval: 10 in 2 s from one scraper (fewer on a loaded machine), 20 from two.
    expect(n).toBeGreaterThanOrEqual(3)
    expect(n).toBeLessThanOrEqual(13)
  }, 90_000)

  it("one worker's in-flight streams steer the other worker's decisions", async () => {
    const a = byWorker.get(1) as Agent
    const b = byWorker.get(2) as Agent
    const prompt = 'the same prompt on both workers, so only the load can tell them apart'
    // A long stream through worker 1 (150 tokens × 40 ms ≈ 6 s).
    const ac = new AbortController()
    const streaming = new Promise<string>((resolve, reject) => {
      const req = request(
        `${gw.url}/v1/chat/completions`,
        {
          agent: a,
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-infer-gateway-explain': '1' },
          signal: ac.signal,
        },
        (res) => {
          res.on('error', () => {})
          resolve(String(res.headers['x-infer-gateway-explain'] ?? ''))
        },
      )
      req.on('error', (e) => (ac.signal.aborted ? undefined : reject(e)))
      req.end(JSON.stringify(chat(BLIND, prompt, { stream: true, max_tokens: 150 })))
    })
    try {
      const line = await streaming
      expect(line).toContain('worker=1')
      const busy = /pick=(\S+)/.exec(line)?.[1]
      expect(['pod-1', 'pod-2']).toContain(busy)
      // Worker 2 learns about it from the primary, within tens of milliseconds.
      await until(
        async () => {
          const d = await debugView(b, gw.url)
          const ep = d.endpoints.find((e) => e.name === busy)
          return ep?.local.inFlight === 0 && ep.local.peerInFlight === 1
        },
        5000,
        'worker 2 sees the stream',
      )
      // Same prompt, same tie-break: without the shared count worker 2 would pick `busy` too.
      const other = await explain(b, gw.url, BLIND, prompt)
      expect(other.worker).toBe(2)
      expect(other.pod).not.toBe(busy)
    } finally {
      ac.abort()
    }
    // Once the stream is gone, worker 2 no longer counts it.
    await until(
      async () => {
        const d = await debugView(b, gw.url)
        return d.endpoints.every((e) => (e.local.peerInFlight ?? 0) === 0)
      },
      5000,
      'the stream is forgotten',
    )
  }, 90_000)

  it("a prompt placed through one worker is in the other worker's prefix index", async () => {
    const blocks = async (a: Agent): Promise<number> => {
      const d = (await debugView(a, gw.url)) as DebugView & {
        servers: Record<
          string,
          {
            state?: {
              'predicted-latency'?: { prefix: { blocksPerEndpoint: Record<string, number> } }
            }
          }
        >
      }
      const st = d.servers['default/counted']?.state?.['predicted-latency']
      return st?.prefix.blocksPerEndpoint['counted-1'] ?? 0
    }
    const a = byWorker.get(1) as Agent
    const b = byWorker.get(2) as Agent
    expect(await blocks(b)).toBe(0)
    // Worker 1 dispatches a long prompt (the counted engine's answer does not matter here).
    await http(a, gw.url, '/v1/chat/completions', chat(COUNTED, 'shared system prompt '.repeat(50)))
    expect(await blocks(a)).toBeGreaterThan(0)
    await until(
      async () => (await blocks(b)) === (await blocks(a)),
      5000,
      'worker 2 has the blocks',
    )
  }, 90_000)

  it('/metrics on any worker answers the sum over both workers', async () => {
    const read = async (a: Agent) =>
      requestsTotal((await http(a, gw.url, '/metrics')).body, COUNTED)
    const a = byWorker.get(1) as Agent
    const b = byWorker.get(2) as Agent
    const base = await read(a)
    for (let i = 0; i < 3; i++)
      await http(a, gw.url, '/v1/chat/completions', chat(COUNTED, `a${i}`))
    for (let i = 0; i < 2; i++)
      await http(b, gw.url, '/v1/chat/completions', chat(COUNTED, `b${i}`))
    expect(await read(a)).toBe(base + 5)
    expect(await read(b)).toBe(base + 5)
    // The snapshot version is the same in both workers: not summed.
    const text = (await http(a, gw.url, '/metrics')).body
    expect(/^infer_gateway_snapshot_version (\d+)$/m.exec(text)?.[1]).toBe('1')
  }, 90_000)

  it('a worker that dies is restarted under the same index', async () => {
    const old = (await debugView(byWorker.get(2) as Agent, gw.url)).worker?.pid ?? 0
    expect(old).toBeGreaterThan(0)
    process.kill(old, 'SIGKILL')
    const restarted = until(
      async () => {
        const a = connection()
        try {
          // A connection handed to the worker just as it died is lost: a client times out.
          const d = await debugView(a, gw.url, 3000)
          if (d.worker?.index === 2 && d.worker.pid !== old) {
            byWorker.set(2, a)
            return true
          }
        } catch {
          // refused while the worker restarts: try again
        }
        a.destroy()
        await new Promise((r) => setTimeout(r, 100))
        return false
      },
      // A new worker loads the whole data plane: slow on a busy machine.
      60_000,
      'a new worker 2',
    )
    await restarted.catch((e: unknown) => {
      throw new Error(`${String(e)}; gateway log:\n${gw.stderr().slice(-3000)}`)
    })
    expect(gw.stderr()).toContain('"msg":"worker exited; restarting"')
    expect(gw.child.exitCode).toBeNull()
  }, 90_000)

  it('SIGTERM drains the workers and exits 0', async () => {
    const pids: number[] = []
    for (const a of byWorker.values()) pids.push((await debugView(a, gw.url)).worker?.pid ?? 0)
    for (const a of agents) a.destroy()
    const code = await new Promise<number | null>((resolve) => {
      gw.child.once('exit', (c) => resolve(c))
      gw.child.kill('SIGTERM')
    })
    expect(code).toBe(0)
    expect(gw.stderr()).toContain('"msg":"worker stopped"')
    expect(gw.stderr()).toMatch(/"msg":"stopped"/)
    for (const pid of pids) expect(() => process.kill(pid, 0)).toThrow()
  }, 90_000)
})

describe('dataplane --workers 2, stopped while starting', () => {
  it('SIGTERM before every worker listens is a normal stop: exit 0, no worker left', async () => {
    const child = spawn(
      process.execPath,
      [
        CLI,
        'dataplane',
        '--config',
        join(dir, 'gateway.yaml'),
        '--host',
        '127.0.0.1',
        '--port',
        '0',
        '--workers',
        '2',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    )
    children.push(child)
    let seen = ''
    const code = await new Promise<number | null>((resolve) => {
      child.stderr?.on('data', (b: Buffer) => {
        seen += b.toString()
        // Forked, not yet listening: loading the worker's modules takes far longer than this.
        if (seen.includes('"worker":2,') && !child.killed) child.kill('SIGTERM')
      })
      child.once('exit', (c) => resolve(c))
    })
    expect(code, seen).toBe(0)
    expect(seen).toContain('"msg":"shutting down before all workers listened"')
    expect(seen).not.toContain('"msg":"data plane listening"')
    const pids = [...seen.matchAll(/"msg":"worker starting","worker":\d,"pid":(\d+)/g)].map((m) =>
      Number(m[1]),
    )
    expect(pids).toHaveLength(2)
    for (const pid of pids) expect(() => process.kill(pid, 0)).toThrow()
  }, 90_000)
})

describe('dataplane --workers 1', () => {
  it('is the single process: it scrapes itself (--scrape thread: in a thread), no worker in the decision', async () => {
    const gw = await dataplane(['--workers', '1', '--scrape', 'thread'])
    const a = connection()
    const r = await explain(a, gw.url, BLIND, 'single')
    expect(r.line).not.toContain('worker=')
    const d = await debugView(a, gw.url)
    expect(d.worker).toBeUndefined()
    // Scraped in a worker thread with --scrape thread, and its results reach decisions.
    // ('starting' until the worker is up; 'inline' would mean it gave up on the thread).
    expect(d.scrape).toMatchObject({ enabled: true, intervalMs: 200 })
    await until(
      async () => {
        const view = await debugView(a, gw.url)
        const ep = view.endpoints.find((e) => e.name === 'counted-1')
        return (
          view.scrape.thread === 'thread' && ep?.scrape.fresh === true && ep.engine?.running === 0
        )
      },
      5000,
      'counted engine scraped through the thread',
    )
    a.destroy()
    const code = await new Promise<number | null>((resolve) => {
      gw.child.once('exit', (c) => resolve(c))
      gw.child.kill('SIGTERM')
    })
    expect(code).toBe(0)
    expect(gw.stderr()).not.toContain('worker')
  }, 90_000)
})

describe('dataplane --workers 2 --scrape off', () => {
  it('nobody scrapes: not the primary, and the workers do not wait for scrapes from it', async () => {
    const gw = await dataplane(['--workers', '2', '--scrape', 'off'])
    const before = scrapes
    const byWorker = await connectionsByWorker(gw.url)
    expect([...byWorker.keys()].sort()).toEqual([1, 2])
    for (const a of byWorker.values()) {
      expect((await debugView(a, gw.url)).scrape).toEqual({ enabled: false })
      // The counted engine is routed to on request outcomes alone.
      const r = await http(a, gw.url, '/v1/chat/completions', chat(COUNTED, 'no scrape'))
      expect(r.status, r.body).toBe(200)
    }
    // Several 200 ms intervals: a scraping primary would have fetched /metrics about 6 times.
    await new Promise((r) => setTimeout(r, 1200))
    expect(scrapes - before).toBe(0)
    const code = await new Promise<number | null>((resolve) => {
      gw.child.once('exit', (c) => resolve(c))
      gw.child.kill('SIGTERM')
    })
    expect(code).toBe(0)
  }, 90_000)
})
