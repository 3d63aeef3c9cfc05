import { readFileSync } from 'node:fs'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import {
  alignedWait,
  lateLimit,
  MetricsScraper,
  phaseOf,
  type ScrapeResult,
  type ScrapeTarget,
} from './scraper.js'

const VLLM = readFileSync(new URL('./testdata/vllm-metrics-sample.txt', import.meta.url), 'utf8')

interface Fake {
  readonly origin: string
  readonly hits: number
  readonly maxConcurrent: number
  close(): Promise<void>
}

async function fake(
  host: string,
  handler: (req: IncomingMessage, res: ServerResponse) => void,
): Promise<Fake> {
  let hits = 0
  let active = 0
  let maxConcurrent = 0
  const server: Server = createServer((req, res) => {
    hits++
    active++
    maxConcurrent = Math.max(maxConcurrent, active)
    res.on('close', () => active--)
    handler(req, res)
  })
  await new Promise<void>((r) => server.listen(0, host, r))
  const port = (server.address() as AddressInfo).port
  return {
    origin: `http://${host}:${port}`,
    get hits() {
      return hits
    },
    get maxConcurrent() {
      return maxConcurrent
    },
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections()
        server.close(() => r())
      }),
  }
}

const text =
  (body: string, delayMs = 0) =>
  (_q: IncomingMessage, res: ServerResponse) => {
    setTimeout(() => {
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' })
      res.end(body)
    }, delayMs)
  }

const cleanups: (() => Promise<void>)[] = []
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c()
})

function scraper(opts: Partial<ConstructorParameters<typeof MetricsScraper>[0]> = {}) {
  const results = new Map<string, ScrapeResult[]>()
  const s = new MetricsScraper({
    intervalMs: 50,
    timeoutMs: 200,
    onResult: (id, r) => {
      const list = results.get(id) ?? []
      list.push(r)
      results.set(id, list)
    },
    ...opts,
  })
  cleanups.push(() => s.close())
  return { s, results }
}

function target(id: string, origin: string): ScrapeTarget {
  return { id, origin, engine: 'vLLM' }
}

const until = async (cond: () => boolean, ms = 10_000): Promise<void> => {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time')
    await new Promise((r) => setTimeout(r, 10))
  }
}

describe('MetricsScraper', () => {
  it('scrapes each endpoint repeatedly and maps the engine metrics (DP series summed)', async () => {
    const f = await fake('127.0.0.21', text(VLLM))
    cleanups.push(() => f.close())
    const started: string[] = []
    const { s, results } = scraper({ onStart: (id) => started.push(id) })
    s.sync([target('a', f.origin)])
    await until(() => (results.get('a')?.length ?? 0) >= 3)
    const r = results.get('a')?.[0]
    expect(r?.ok).toBe(true)
    if (r?.ok) {
      expect(r.metrics.running).toBe(12)
      expect(r.metrics.waiting).toBe(3)
      expect(r.metrics.kvCacheUsage).toBeCloseTo((0.6312 + 0.4187) / 2, 6)
    }
    expect(started.filter((x) => x === 'a').length).toBeGreaterThanOrEqual(3)
  })

  it('reports an unreachable endpoint and one that answers with something else, and backs off the latter', async () => {
    const dead = await fake('127.0.0.22', text(''))
    const deadOrigin = dead.origin
    await dead.close()
    const notFound = await fake('127.0.0.23', (_q, res) => {
      res.writeHead(404)
      res.end()
    })
    const live = await fake('127.0.0.24', text(VLLM))
    cleanups.push(
      () => notFound.close(),
      () => live.close(),
    )
    const { s, results } = scraper({ maxBackoffMs: 5_000 })
    s.sync([
      target('dead', deadOrigin),
      target('404', notFound.origin),
      target('live', live.origin),
    ])
    // Counted in scrapes of the healthy endpoint, not in wall time: a loaded machine stretches
    // both loops alike.
    await until(() => live.hits >= 8 && (results.get('404')?.length ?? 0) >= 1)
    const d = results.get('dead')?.[0]
    expect(d).toMatchObject({ ok: false, kind: 'unreachable', error: 'ECONNREFUSED' })
    expect(results.get('404')?.[0]).toMatchObject({
      ok: false,
      kind: 'bad_response',
      error: 'HTTP 404',
    })
    // Useless answers slow the loop down exponentially (50, 100, 200, 400 ms…) while healthy ones
    // keep the interval: by the healthy endpoint's 8th scrape the 404 one has had at most 4.
    expect(notFound.hits).toBeLessThanOrEqual(4)
  })

  it('a timeout that fired late because this process was stalled blames nobody', async () => {
    // The stall starts the moment the request arrives (same process as the scraper), so the
    // scraper's timer cannot have fired on time before it, however slow the machine is
    // elsewhere; the answer is written at the end of the stall, after the timer is overdue.
    const stalled = await fake('127.0.0.26', (_req, res) => {
      // A gateway stuck in a long synchronous task (the thread blocks; no clock is read here).
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 3 * lateLimit(200))
      res.end(VLLM)
    })
    cleanups.push(() => stalled.close())
    const { s, results } = scraper({ timeoutMs: 200, intervalMs: 10_000 })
    s.sync([target('s', stalled.origin)])
    await until(() => (results.get('s')?.length ?? 0) >= 1)
    expect(results.get('s')?.[0]).toMatchObject({ ok: false, kind: 'inconclusive' })
  })

  it('gives up on a stalled endpoint after the timeout', async () => {
    const stall = await fake('127.0.0.25', () => {})
    cleanups.push(() => stall.close())
    const { s, results } = scraper({ timeoutMs: 100 })
    s.sync([target('stall', stall.origin)])
    await until(() => (results.get('stall')?.length ?? 0) >= 1)
    const r = results.get('stall')?.[0]
    expect(r).toMatchObject({ ok: false, kind: 'unreachable', error: 'timeout' })
    // Not before its deadline (how late is the machine's business, not the scraper's).
    expect(r?.durationMs).toBeGreaterThanOrEqual(90)
  })

  it('treats text without any load signal as a bad response', async () => {
    const f = await fake('127.0.0.26', text('some_other_metric 1\n'))
    cleanups.push(() => f.close())
    const { s, results } = scraper()
    s.sync([target('x', f.origin)])
    await until(() => (results.get('x')?.length ?? 0) >= 1)
    expect(results.get('x')?.[0]).toMatchObject({ ok: false, kind: 'bad_response' })
  })

  it('reads a body sent in pieces whole, and fails one past maxBytes or cut short', async () => {
    const pieces = (body: string, cut: boolean) => (_q: IncomingMessage, res: ServerResponse) => {
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' })
      const third = Math.ceil(body.length / 3)
      res.write(body.slice(0, third))
      setTimeout(() => {
        res.write(body.slice(third, 2 * third))
        setTimeout(() => {
          if (cut) res.destroy()
          else res.end(body.slice(2 * third))
        }, 5)
      }, 5)
    }
    const whole = await fake('127.0.0.27', pieces(VLLM, false))
    const cut = await fake('127.0.0.28', pieces(VLLM, true))
    cleanups.push(
      () => whole.close(),
      () => cut.close(),
    )
    const { s, results } = scraper()
    s.sync([target('whole', whole.origin), target('cut', cut.origin)])
    await until(
      () => (results.get('whole')?.length ?? 0) >= 1 && (results.get('cut')?.length ?? 0) >= 1,
    )
    expect(results.get('whole')?.[0]).toMatchObject({ ok: true, metrics: { engineType: 'vLLM' } })
    expect(results.get('cut')?.[0]).toMatchObject({ ok: false, kind: 'unreachable' })
    const small = scraper({ maxBytes: Math.floor(VLLM.length / 2) })
    small.s.sync([target('big', whole.origin)])
    await until(() => (small.results.get('big')?.length ?? 0) >= 1)
    expect(small.results.get('big')?.[0]).toMatchObject({
      ok: false,
      kind: 'bad_response',
      error: `metrics larger than ${Math.floor(VLLM.length / 2)} bytes`,
    })
  })

  it('bounds scrapes in flight across endpoints', async () => {
    const fakes = await Promise.all(
      [30, 31, 32, 33, 34, 35].map((h) => fake(`127.0.0.${h}`, text(VLLM, 60))),
    )
    for (const f of fakes) cleanups.push(() => f.close())
    let active = 0
    let peak = 0
    const { s, results } = scraper({
      concurrency: 2,
      onStart: () => {
        active++
        peak = Math.max(peak, active)
      },
      onResult: () => {
        active--
      },
    })
    s.sync(fakes.map((f, i) => target(`e${i}`, f.origin)))
    await new Promise((r) => setTimeout(r, 600))
    expect(peak).toBe(2)
    expect(results.size).toBe(0) // the custom onResult above replaced the recorder
    expect(fakes.every((f) => f.hits >= 1)).toBe(true)
  })

  it('stops scraping endpoints that left and restarts one whose engine changed', async () => {
    const f = await fake('127.0.0.27', text(VLLM))
    cleanups.push(() => f.close())
    const { s } = scraper()
    s.sync([target('a', f.origin)])
    await until(() => f.hits >= 2)
    expect(s.targets).toEqual(['a'])
    s.sync([{ id: 'a', origin: f.origin, engine: 'SGLang' }])
    expect(s.targets).toEqual(['a'])
    s.sync([])
    expect(s.targets).toEqual([])
    await new Promise((r) => setTimeout(r, 100))
    const after = f.hits
    await new Promise((r) => setTimeout(r, 250))
    expect(f.hits).toBe(after)
  })

  it('keeps the loop of an endpoint whose generic mapping comes again as an equal copy', async () => {
    const f = await fake('127.0.0.28', text(VLLM))
    cleanups.push(() => f.close())
    // A restarted loop scrapes at once (random 0); a kept one waits out its 5 s interval.
    const { s } = scraper({ intervalMs: 5_000, random: () => 0 })
    const generic = { waiting: 'vllm:num_requests_waiting', running: 'vllm:num_requests_running' }
    const at = (g: typeof generic): ScrapeTarget[] => [
      { id: 'g', origin: f.origin, engine: 'Generic', generic: g },
    ]
    s.sync(at(generic))
    await until(() => f.hits >= 1)
    // What a worker thread receives: copies, never the same object (scrape-thread.ts).
    for (let i = 0; i < 5; i++) s.sync(at(structuredClone(generic)))
    await new Promise((r) => setTimeout(r, 250))
    expect(f.hits).toBe(1)
    s.sync(at({ ...generic, running: 'other_running' }))
    await until(() => f.hits >= 2)
  })
})

describe('alignedWait', () => {
  it('waits for the interval tick nearest the due time, so loops share their wake-ups', () => {
    // Two loops that scraped at 1003 and 1047 (interval 200) both wake at 1200.
    expect(alignedWait(1010, 1203, 200)).toBe(190)
    expect(alignedWait(1060, 1247, 200)).toBe(140)
    // A loop that started late (at 1130) waits for 1400 rather than crowd 1200 with a short gap.
    expect(alignedWait(1140, 1330, 200)).toBe(260)
    // A timer that fired a little early still keeps its tick.
    expect(alignedWait(1199.6, 1399.6, 200)).toBeCloseTo(200.4, 9)
    // A scrape that overran its tick: at once, never a negative wait.
    expect(alignedWait(1450, 1200, 200)).toBe(0)
    // In phase 50 the ticks are 1050, 1250, …
    expect(alignedWait(1060, 1247, 200, 50)).toBe(190)
    expect(alignedWait(1010, 1140, 200, 50)).toBe(40)
  })

  it('deals loops over phases, at most SCRAPES_PER_TICK a tick', () => {
    expect([0, 1, 2, 3].map((k) => phaseOf(k, 4, 200))).toEqual([0, 0, 0, 0])
    expect([0, 1, 2, 3, 4].map((k) => phaseOf(k, 5, 200))).toEqual([0, 100, 0, 100, 0])
    const of64 = Array.from({ length: 64 }, (_, k) => phaseOf(k, 64, 200))
    expect(new Set(of64).size).toBe(16)
    expect(of64.slice(0, 3)).toEqual([0, 12.5, 25])
    expect(Math.max(...[...new Set(of64)].map((p) => of64.filter((x) => x === p).length))).toBe(4)
  })
})
