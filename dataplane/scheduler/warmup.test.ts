import { describe, expect, it, vi } from 'vitest'
import { EngineMetricsTracker } from '../engines/tracker.js'
import { DEFAULT_PROFILE } from './profile.js'
import { Scheduler } from './scheduler.js'
import { chat, endpoint, pickContext, seeded, server, snapshot } from './testkit.js'
import { runWarmup, warmupContext, warmupMetricsText, warmupServers } from './warmup.js'

const LEAST_PENDING = { plugins: [{ name: 'least-pending' as const, weight: 1, args: {} }] }
const KV = { plugins: [{ name: 'kv-cache' as const, weight: 1, args: {} }] }

describe('warmupServers', () => {
  it('makes one synthetic server per profile not warmed yet, none for kv-cache', () => {
    const eps = [endpoint('a', 1), endpoint('b', 2)]
    const snap = snapshot([
      server(eps, { name: 'plain' }),
      server(eps, { name: 'explicit-default', scheduler: DEFAULT_PROFILE }),
      server(eps, { name: 'lp', scheduler: LEAST_PENDING }),
      server(eps, { name: 'kv', scheduler: KV }),
    ])
    const done = new Set<string>()
    const out = warmupServers(snap, done)
    expect(out.map((s) => [s.key, s.scheduler])).toEqual([
      ['warmup/warmup-0', undefined],
      ['warmup/warmup-1', LEAST_PENDING],
    ])
    expect(out[0]?.endpoints.map((e) => `${e.address}:${e.port}`)).toEqual([
      '192.0.2.1:8000',
      '192.0.2.2:8000',
      '192.0.2.3:8000',
      '192.0.2.4:8000',
    ])
    // The same profiles again (a later snapshot): nothing left to warm.
    expect(warmupServers(snap, done)).toEqual([])
  })
})

describe('warmupContext', () => {
  it('gives every request its own parsed body on the synthetic server', () => {
    const [srv] = warmupServers(snapshot([server([endpoint('a', 1)])]), new Set())
    if (srv === undefined) throw new Error('no server')
    const a = warmupContext(srv, 0, ['sys-a', 'sys-b'])
    const b = warmupContext(srv, 1, ['sys-a', 'sys-b'])
    expect(a.server).toBe(srv)
    expect(a.body['messages']).toEqual([
      { role: 'system', content: 'sys-a' },
      { role: 'user', content: expect.stringMatching(/^w\d+ /) },
    ])
    expect((b.body['messages'] as { content: string }[])[0]?.content).toBe('sys-b')
    expect(a.body['stream']).toBe(true)
    expect(b.body['stream']).toBe(false)
  })
})

describe('warmupMetricsText', () => {
  it('reads through the vLLM adapter as a scrape with every load signal', () => {
    const t = new EngineMetricsTracker('vLLM')
    const first = t.ingestText(warmupMetricsText(3, 1))
    expect(first.metrics).toMatchObject({
      running: 4,
      waiting: 1,
      missing: [],
      kvCacheUsage: 0.4,
      blockSize: 16,
      numGpuBlocks: 1024,
    })
    expect(first.restart).toBeUndefined()
    // The next scrape's interval: 10 more requests at 50 ms to the first token each.
    const next = t.ingestText(warmupMetricsText(4, 1))
    expect(next.metrics.ttftMeanSec).toBeCloseTo(0.05, 9)
    expect(next.restart).toBeUndefined()
  })
})

describe('runWarmup', () => {
  it('runs the decisions asked for per server on the target, then closes it', async () => {
    const target = new Scheduler({ scrape: { external: true }, random: seeded(1) })
    const close = vi.spyOn(target, 'close')
    const eps = [endpoint('a', 1)]
    const servers = warmupServers(
      snapshot([server(eps), server(eps, { name: 'lp', scheduler: LEAST_PENDING })]),
      new Set(),
    )
    const run = runWarmup(target, servers, { decisions: 30, batch: 7 })
    expect(await run.done).toBe(60)
    expect((target.debug() as { decisions: { decisions: number } }).decisions.decisions).toBe(60)
    expect(close).toHaveBeenCalledTimes(1)
  })

  it('stops at the next turn once cancelled', async () => {
    const target = new Scheduler({ scrape: { external: true }, random: seeded(1) })
    const servers = warmupServers(snapshot([server([endpoint('a', 1)])]), new Set())
    const run = runWarmup(target, servers, { decisions: 1000, batch: 10 })
    run.cancel()
    expect(await run.done).toBe(0)
  })
})

describe('Scheduler warmup option', () => {
  function pair(warmup: number) {
    const now = 1000
    const s = new Scheduler({ scrape: false, now: () => now, random: seeded(7), warmup })
    const srv = server([endpoint('pod-0', 10), endpoint('pod-1', 11), endpoint('pod-2', 12)])
    s.onSnapshot(snapshot([srv]))
    return { s, srv }
  }

  it('leaves the real scheduler exactly as it would be without the warm-up', async () => {
    const warm = pair(50)
    const cold = pair(0)
    await warm.s.warmedUp()
    const picks = (x: ReturnType<typeof pair>): string[] =>
      Array.from({ length: 6 }, (_, i) => {
        const ctx = pickContext(x.srv, chat(`shared system prompt ${i % 2} `.repeat(50)))
        const t = x.s.pick(ctx)[0]
        if (t === undefined) throw new Error('nothing picked')
        x.s.onDispatch(ctx, t)
        if (i % 3 !== 0) x.s.onComplete(ctx, t, { status: 200, durationMs: 5 })
        return t.name
      })
    expect(picks(warm)).toEqual(picks(cold))
    const view = (x: ReturnType<typeof pair>) => {
      const d = x.s.debug() as { decisions: { decisions: number } }
      return { ...d, decisions: { ...d.decisions, p50Us: 0, p99Us: 0 } }
    }
    expect(view(warm)).toEqual(view(cold))
    // Only the six real decisions are in its figures.
    expect(view(warm).decisions.decisions).toBe(6)
  })

  it('says it is warming only during the first warm-up (what /readyz waits for)', async () => {
    const s = new Scheduler({ scrape: false, warmup: 64 })
    expect(s.warming()).toBe(false)
    s.onSnapshot(snapshot([server([endpoint('pod-0', 10)])]))
    expect(s.warming()).toBe(true)
    await s.warmedUp()
    expect(s.warming()).toBe(false)
    // A later snapshot's new profile warms while the process serves: readiness is not withdrawn.
    s.onSnapshot(
      snapshot(
        [
          server([endpoint('pod-0', 10)]),
          server([endpoint('pod-1', 11)], { name: 'lp', scheduler: LEAST_PENDING }),
        ],
        2,
      ),
    )
    expect(s.warming()).toBe(false)
    await s.warmedUp()
    await s.close()
  })

  it('is not warming when the warm-up is off', () => {
    const s = new Scheduler({ scrape: false, warmup: 0 })
    s.onSnapshot(snapshot([server([endpoint('pod-0', 10)])]))
    expect(s.warming()).toBe(false)
  })

  it('stops warming when the scheduler closes', async () => {
    // A million decisions would take minutes: close() must end the run at its next turn.
    const s = new Scheduler({ scrape: false, warmup: 1_000_000 })
    s.onSnapshot(snapshot([server([endpoint('pod-0', 10)])]))
    await s.close()
    await s.warmedUp()
  })
})
