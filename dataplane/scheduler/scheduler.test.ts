import { describe, expect, it } from 'vitest'
import type { SnapshotScheduler } from '../../api/snapshot.js'
import type { ExplainSink } from '../picker.js'
import type { PrefixCachePlugin } from './plugins/prefix-cache.js'
import { Scheduler } from './scheduler.js'
import { chat, endpoint, metrics, pickContext, seeded, server, snapshot } from './testkit.js'

const SYSTEM = 'Shared system prompt for the support desk. '.repeat(40)
const ok = { status: 200, durationMs: 5 }
const refused = { status: 0, failure: 'connect' as const, durationMs: 1 }

function setup(opts: { scheduler?: SnapshotScheduler; attempts?: number; n?: number } = {}) {
  let now = 1000
  const clock = { advance: (ms: number) => (now += ms) }
  const s = new Scheduler({ scrape: false, now: () => now, random: seeded(7) })
  const eps = Array.from({ length: opts.n ?? 3 }, (_, i) => endpoint(`pod-${i}`, 10 + i))
  const srv = server(eps, {
    ...(opts.scheduler ? { scheduler: opts.scheduler } : {}),
    attempts: opts.attempts ?? 3,
  })
  s.onSnapshot(snapshot([srv]))
  return { s, srv, eps, clock }
}

/** One full request: pick, dispatch to the first candidate, optionally complete. */
function send(
  s: Scheduler,
  srv: ReturnType<typeof server>,
  body: Record<string, unknown>,
  /** null: leave the request in flight. */
  outcome: typeof ok | null = ok,
  headers: Record<string, string> = {},
) {
  const ctx = pickContext(srv, body, headers)
  const picked = s.pick(ctx)
  const target = picked[0]
  if (target === undefined) throw new Error('nothing picked')
  s.onDispatch(ctx, target)
  if (outcome !== null) s.onComplete(ctx, target, outcome)
  return { ctx, picked, target }
}

describe('Scheduler', () => {
  it('returns an ordered list as long as the retry budget: target first, distinct fallbacks', () => {
    const { s, srv } = setup({ attempts: 2 })
    const picked = s.pick(pickContext(srv, chat('hello')))
    expect(picked).toHaveLength(2)
    expect(new Set(picked.map((e) => e.name)).size).toBe(2)
    const one = setup({ attempts: 1 })
    expect(one.s.pick(pickContext(one.srv, chat('hello')))).toHaveLength(1)
  })

  it('default profile: keeps a shared prefix on one pod and spreads unrelated prompts by load', () => {
    const { s, srv } = setup({ n: 4 })
    const targets = new Set<string>()
    // A burst: nothing completes, so in-flight counts grow while prefixes are recorded at dispatch.
    for (let i = 0; i < 6; i++) targets.add(send(s, srv, chat(`${SYSTEM} q${i}`), null).target.name)
    expect(targets.size).toBe(1)
    const others = new Set<string>()
    for (let i = 0; i < 8; i++)
      others.add(send(s, srv, chat(`unrelated prompt ${i} ${'z'.repeat(i)}`), null).target.name)
    // The shared-prefix pod carries 6 in flight: the unrelated prompts go elsewhere, spread out.
    expect(others.has([...targets][0] as string)).toBe(false)
    expect(others.size).toBe(3)
  })

  it('spills a hot prefix to a second pod once queueing on the first would cost more than its prefill', () => {
    const { s, srv } = setup({ n: 3 })
    const seen: string[] = []
    for (let i = 0; i < 20; i++) seen.push(send(s, srv, chat(`${SYSTEM} q${i}`), null).target.name)
    const counts = new Map<string, number>()
    for (const n of seen) counts.set(n, (counts.get(n) ?? 0) + 1)
    // Sticky while the pod has free batch slots (8 assumed without metrics), then a second pod
    // takes (and caches) it: waiting for a slot would cost more than the prefill it saves.
    expect(counts.size).toBeGreaterThan(1)
    expect(Math.max(...counts.values())).toBeLessThan(20)
  })

  it('replicas agree: same scraped state, same prompt, same pod, whatever random() says', () => {
    const eps = Array.from({ length: 4 }, (_, i) => endpoint(`pod-${i}`, 10 + i))
    const srv = server(eps, { attempts: 2 })
    const replicas = [seeded(1), seeded(99)].map((random) => {
      const s = new Scheduler({ scrape: false, now: () => 500, random })
      s.onSnapshot(snapshot([srv]))
      // The same engine numbers reach every replica (they scrape the same pods).
      ;[2, 0, 5, 1].forEach((running, i) => {
        const st = s.state(`127.0.0.${10 + i}:8000`)
        st?.scrapeStarted()
        st?.scrapeSucceeded(500, metrics({ running, tpotMeanSec: 0.01 }))
      })
      return s
    })
    // One replica has a request of its own in flight that the last scrape did not see yet.
    const extra = replicas[1]?.state('127.0.0.11:8000')
    extra?.dispatchStarted({ promptTokens: 10, outputTokens: 10, stream: true }, 500)
    const chosen = new Set<string>()
    for (let g = 0; g < 30; g++) {
      const body = chat(`Group ${g} system prompt. ${'Policy text. '.repeat(60)}`, `question ${g}`)
      // The target is where the prefix goes (fallbacks only matter if it fails).
      const picks = replicas.map((s) => s.pick(pickContext(srv, body))[0]?.name)
      expect(picks[0]).toMatch(/^pod-/)
      expect(picks[0]).toBe(picks[1])
      chosen.add(picks[0] as string)
    }
    // Different prefixes still spread over the pods with room.
    expect(chosen.size).toBeGreaterThanOrEqual(3)
  })

  it('skips not-ready and ejected endpoints, but tries all of them when all are ejected', () => {
    const eps = [endpoint('a', 2), endpoint('b', 3), endpoint('c', 4, {}, false)]
    const s = new Scheduler({ scrape: false, now: () => 0 })
    const srv = server(eps, { attempts: 3 })
    s.onSnapshot(snapshot([srv]))
    expect(
      s
        .pick(pickContext(srv, chat('x')))
        .map((e) => e.name)
        .sort(),
    ).toEqual(['a', 'b'])
    const ctx = pickContext(srv, chat('x'))
    const a = eps[0] as (typeof eps)[number]
    s.onDispatch(ctx, a)
    s.onComplete(ctx, a, refused)
    s.onDispatch(ctx, a)
    s.onComplete(ctx, a, refused)
    expect(s.pick(pickContext(srv, chat('x'))).map((e) => e.name)).toEqual(['b'])
    const b = eps[1] as (typeof eps)[number]
    s.onDispatch(ctx, b)
    s.onComplete(ctx, b, refused)
    s.onDispatch(ctx, b)
    s.onComplete(ctx, b, refused)
    const sink: ExplainSink = {}
    const panic = s.pick(pickContext(srv, chat('x'), {}, { explain: sink }))
    expect(panic.map((e) => e.name).sort()).toEqual(['a', 'b'])
    expect(sink.text).toContain('panic=all-ejected')
  })

  it('explains a decision in one ASCII line with per-plugin scores and weights', () => {
    const { s, srv } = setup({ n: 2 })
    send(s, srv, chat(`${SYSTEM} first`), null)
    const sink: ExplainSink = {}
    const [target] = s.pick(pickContext(srv, chat(`${SYSTEM} second`), {}, { explain: sink }))
    expect(sink.text).toMatch(/^server=default\/m profile=default pick=pod-\d/)
    expect(sink.text).toContain(`pick=${target?.name}`)
    expect(sink.text).toMatch(/predicted-latency [\d.]+x6/)
    expect(sink.text).toMatch(/\d+(\.\d+)?us$/)
    expect(sink.text).toMatch(/^[\x20-\x7e]+$/)
  })

  it('applies a per-server profile and swaps it on reload, keeping unchanged plugins and their state', () => {
    const profile: SnapshotScheduler = {
      plugins: [
        { name: 'prefix-cache', weight: 1, args: {} },
        { name: 'round-robin', weight: 1, args: {} },
      ],
    }
    const { s, srv, eps } = setup({ scheduler: profile, n: 2 })
    const before = s.plugins(srv.key)[0] as PrefixCachePlugin
    send(s, srv, chat(SYSTEM))
    expect(before.stats().blocksIndexed).toBeGreaterThan(0)
    const heavier: SnapshotScheduler = {
      plugins: [
        { name: 'prefix-cache', weight: 5, args: {} },
        { name: 'random', weight: 1, args: {} },
      ],
    }
    s.onSnapshot(snapshot([server(eps, { scheduler: heavier })], 2))
    const after = s.plugins(srv.key)
    expect(after[0]).toBe(before)
    expect(after[1]?.name).toBe('random')
    const sink: ExplainSink = {}
    s.pick(pickContext(srv, chat(SYSTEM), {}, { explain: sink }))
    expect(sink.text).toContain('profile=custom')
    expect(sink.text).toMatch(/prefix-cache 1x5/)
    // Changed arguments = a new instance (its state no longer applies).
    s.onSnapshot(
      snapshot(
        [
          server(eps, {
            scheduler: {
              plugins: [{ name: 'prefix-cache', weight: 1, args: { blockSizeTokens: 8 } }],
            },
          }),
        ],
        3,
      ),
    )
    expect(s.plugins(srv.key)[0]).not.toBe(before)
  })

  it('forgets an endpoint that left the server, and reuses no state for a new one', () => {
    const { s, srv, eps } = setup({
      scheduler: { plugins: [{ name: 'prefix-cache', weight: 1, args: {} }] },
      n: 2,
    })
    const p = s.plugins(srv.key)[0] as PrefixCachePlugin
    send(s, srv, chat(SYSTEM))
    send(s, srv, chat(SYSTEM))
    const indexed = p.stats().blocksIndexed
    expect(indexed).toBeGreaterThan(0)
    s.onSnapshot(
      snapshot(
        [server([endpoint('new-pod', 30)], { scheduler: srv.scheduler as SnapshotScheduler })],
        2,
      ),
    )
    expect(p.stats().endpoints).toBe(0)
    expect(s.state('127.0.0.30:8000')?.dispatched).toBe(0)
    expect(s.state(`${eps[0]?.address}:8000`)).toBeUndefined()
  })

  it('tracks in-flight requests per endpoint from dispatch to completion', () => {
    const { s, srv } = setup({ n: 1 })
    const { ctx, target } = send(s, srv, chat('a'), null)
    const st = s.state(`${target.address}:${target.port}`)
    expect(st?.inFlight).toBe(1)
    s.onComplete(ctx, target, ok)
    expect(st?.inFlight).toBe(0)
    expect(st?.dispatched).toBe(1)
  })

  it('admits at once without a fairness plugin, and through it when configured', async () => {
    const plain = setup()
    expect(
      plain.s.admit(pickContext(plain.srv, chat('a')), new AbortController().signal),
    ).toBeUndefined()
    const fair = setup({
      scheduler: {
        plugins: [
          { name: 'least-pending', weight: 1, args: {} },
          { name: 'fairness', weight: 0, args: {} },
        ],
      },
    })
    const a = await fair.s.admit(pickContext(fair.srv, chat('a')), new AbortController().signal)
    expect(a).toBeDefined()
    a?.release()
  })

  it('falls back to the default profile for a server from an older snapshot', () => {
    const { s } = setup()
    const stale = server([endpoint('x', 40)], { name: 'gone' })
    expect(s.pick(pickContext(stale, chat('a'))).map((e) => e.name)).toEqual(['x'])
    expect(s.pick(pickContext(server([], { name: 'empty' }), chat('a')))).toEqual([])
  })

  it('serves a debug view of servers, plugins, endpoints and decision cost', () => {
    const { s, srv } = setup({ n: 2 })
    send(s, srv, chat(SYSTEM))
    const d = s.debug() as {
      scrape: { enabled: boolean }
      decisions: { decisions: number }
      servers: Record<
        string,
        { profile: string; plugins: { name: string }[]; state: Record<string, unknown> }
      >
      endpoints: { name: string; local: { dispatched: number } }[]
    }
    expect(d.scrape.enabled).toBe(false)
    expect(d.decisions.decisions).toBe(1)
    expect(d.servers['default/m']?.profile).toBe('default')
    expect(d.servers['default/m']?.plugins.map((p) => p.name)).toContain('predicted-latency')
    // The one decision recorded its prompt's blocks for the one pod it dispatched to.
    const prefix = d.servers['default/m']?.state['predicted-latency'] as {
      prefix: { blocksPerEndpoint: Record<string, number> }
    }
    const held = Object.entries(prefix.prefix.blocksPerEndpoint)
    expect(held).toHaveLength(1)
    expect(held[0]?.[1]).toBeGreaterThan(0)
    expect(d.endpoints.map((e) => e.name).sort()).toEqual(['pod-0', 'pod-1'])
    expect(d.endpoints.reduce((n, e) => n + e.local.dispatched, 0)).toBe(1)
  })
})
