// The seams `--workers N` uses (dataplane/cluster/): scrapes fed from outside, and the other
// workers' in-flight counted in the blended load.
import { describe, expect, it } from 'vitest'
import { Scheduler } from './scheduler.js'
import { endpoint, metrics, pickContext, scraped, server, snapshot, state } from './testkit.js'

const ticket = { promptTokens: 100, outputTokens: 20, stream: true }

describe('EndpointState: peer in-flight', () => {
  it('counts the other workers’ in-flight like its own, including since the last scrape', () => {
    const s = state('a', 2)
    s.setPeerLoad(3, 300)
    s.dispatchStarted(ticket, 0)
    // No metrics yet: everyone's in-flight.
    expect(s.pending(0)).toBe(4)
    // A scrape taken with 4 in flight everywhere: the engine's numbers already include them.
    s.scrapeStarted()
    scraped(s, 0, { running: 4, waiting: 0 })
    expect(s.pending(1)).toBe(4)
    // Another worker dispatches 2 more before the next scrape: seen at once.
    s.setPeerLoad(5, 500)
    expect(s.pending(2)).toBe(6)
    // Another worker's requests finish: the engine still counted them at the scrape.
    s.setPeerLoad(0, 0)
    expect(s.pending(3)).toBe(1)
  })

  it('adds peer tokens to the KV-cache estimate', () => {
    const s = state('a', 2)
    s.scrapeStarted()
    scraped(s, 0, { kvCacheUsage: 0.5, numGpuBlocks: 100, blockSize: 10 })
    expect(s.kvCacheUsage(1)).toBe(0.5)
    s.setPeerLoad(1, 250)
    expect(s.kvCacheUsage(1)).toBe(0.75)
  })
})

describe('Scheduler: external scraping and peer load', () => {
  it('does not scrape, takes results from outside, reports and applies load by endpoint id', () => {
    const a = endpoint('a', 11)
    const b = endpoint('b', 12)
    const srv = server([a, b], {
      scheduler: { plugins: [{ name: 'least-pending', weight: 1, args: {} }] },
    })
    const sch = new Scheduler({ scrape: { external: true }, now: () => 0 })
    sch.onSnapshot(snapshot([srv]))
    expect((sch.debug() as { scrape: unknown }).scrape).toMatchObject({ by: 'primary' })
    // An engine-reported queue on `a` arrives from the primary.
    sch.scrapeStarted('127.0.0.11:8000')
    sch.ingestScrape('127.0.0.11:8000', {
      ok: true,
      metrics: metrics({ running: 3, waiting: 2 }),
      durationMs: 1,
    })
    expect(sch.state('127.0.0.11:8000')?.pending(0)).toBe(5)
    expect(sch.pick(pickContext(srv))[0]?.name).toBe('b')
    // Another worker has 9 in flight on `b`: now `a` is the lighter one.
    sch.setPeerLoad(new Map([['127.0.0.12:8000', [9, 900] as const]]))
    expect(sch.pick(pickContext(srv))[0]?.name).toBe('a')
    // Own dispatches are what the worker reports.
    const ctx = pickContext(srv)
    sch.onDispatch(ctx, a)
    const local = [...sch.localLoad()]
    expect(local.map(([id, [n]]) => [id, n])).toEqual([['127.0.0.11:8000', 1]])
    expect(local[0]?.[1][1]).toBeGreaterThan(0)
    // Absent from the next view = nothing in flight there.
    sch.setPeerLoad(new Map())
    expect(sch.state('127.0.0.12:8000')?.peerInFlight).toBe(0)
    // An unreachable result counts like a scrape of its own.
    for (let i = 0; i < 2; i++) {
      sch.ingestScrape('127.0.0.12:8000', {
        ok: false,
        kind: 'unreachable',
        error: 'ECONNREFUSED',
        durationMs: 1,
      })
    }
    expect(sch.state('127.0.0.12:8000')?.isEjected(0)).toBe(true)
  })
})

describe('Scheduler: prefix dispatches shared between workers', () => {
  it("another worker's placement of a prefix is where this one sends it too", () => {
    const eps = [endpoint('a', 21), endpoint('b', 22), endpoint('c', 23)]
    const plugins = [{ name: 'prefix-cache' as const, weight: 1, args: {} }]
    const srv = server(eps, { scheduler: { plugins } })
    const mk = () => {
      const s = new Scheduler({ scrape: false, shareDispatches: true, now: () => 0 })
      s.onSnapshot(snapshot([srv]))
      return s
    }
    const one = mk()
    const two = mk()
    const body = {
      messages: [{ role: 'user', content: 'a long shared system prompt '.repeat(40) }],
    }
    const cold = two.pick(pickContext(srv, body))[0]?.name
    // Worker one sent the prompt to an endpoint worker two would not have chosen.
    const placed = eps.find((e) => e.name !== cold) as (typeof eps)[number]
    one.onDispatch(pickContext(srv, body), placed)
    const sent = one.takeDispatches()
    expect(sent).toHaveLength(1)
    expect(sent[0]).toMatchObject({
      server: srv.key,
      plugin: 'prefix-cache',
      id: `${placed.address}:8000`,
    })
    expect(one.takeDispatches()).toEqual([])
    two.applyPeerDispatches(sent)
    expect(two.pick(pickContext(srv, body))[0]?.name).toBe(placed.name)
    // A dispatch for a plugin the profile does not have here is ignored.
    const three = mk()
    three.applyPeerDispatches(sent.map((d) => ({ ...d, plugin: 'predicted-latency' })))
    expect(three.pick(pickContext(srv, body))[0]?.name).toBe(cold)
  })

  it('keeps nothing without shareDispatches', () => {
    const eps = [endpoint('a', 21)]
    const srv = server(eps)
    const s = new Scheduler({ scrape: false, now: () => 0 })
    s.onSnapshot(snapshot([srv]))
    s.onDispatch(
      pickContext(srv, { messages: [{ role: 'user', content: 'x'.repeat(400) }] }),
      eps[0] as (typeof eps)[number],
    )
    expect(s.takeDispatches()).toEqual([])
  })
})
