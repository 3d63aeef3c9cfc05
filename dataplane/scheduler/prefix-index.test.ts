import { describe, expect, it, vi } from 'vitest'
import type { SnapshotScheduler } from '../../api/snapshot.js'
import { BlockTable } from './block-table.js'
import type { PredictedLatencyPlugin } from './plugins/predicted-latency.js'
import type { PrefixCachePlugin } from './plugins/prefix-cache.js'
import { PrefixIndex } from './prefix-index.js'
import { blockHashes, chainSeed } from './prompt.js'
import { Scheduler } from './scheduler.js'
import { EndpointState } from './state.js'
import { chat, endpoint, metrics, pickContext, seeded, server, snapshot, state } from './testkit.js'

const GROUPS = Array.from({ length: 6 }, (_, g) => `Group ${g} system prompt. `.repeat(60))

function fleet(profile: SnapshotScheduler, opts: { share?: boolean } = {}) {
  let now = 1000
  const s = new Scheduler({
    scrape: false,
    now: () => now,
    random: seeded(3),
    ...(opts.share === true ? { shareDispatches: true } : {}),
  })
  const eps = Array.from({ length: 5 }, (_, i) => endpoint(`pod-${i}`, 40 + i))
  const srv = server(eps, { scheduler: profile, attempts: 3 })
  s.onSnapshot(snapshot([srv]))
  const scrape = () => {
    for (const [i, e] of eps.entries()) {
      const st = s.state(`${e.address}:${e.port}`)
      st?.scrapeStarted()
      // The engines report their cache size (small: eviction order matters), so lruCapacity
      // (below) is never used.
      st?.scrapeSucceeded(
        now,
        metrics({ running: i % 3, waiting: 0, numGpuBlocks: 60, blockSize: 16 }),
      )
    }
  }
  scrape()
  return { s, srv, eps, scrape, advance: (ms: number) => (now += ms) }
}

const plAndPrefix = (prefixArgs: Record<string, number> = {}): SnapshotScheduler => ({
  plugins: [
    { name: 'predicted-latency', weight: 6, args: {} },
    { name: 'prefix-cache', weight: 3, args: prefixArgs },
  ],
})

describe('shared prefix index', () => {
  it('predicted-latency and prefix-cache share one index, and pick exactly as with two copies', () => {
    const shared = fleet(plAndPrefix())
    // An lruCapacity no one uses (engines report their size) only makes the cuttings differ:
    // the reference keeps two separate indexes, recorded separately, as before sharing.
    const apart = fleet(plAndPrefix({ lruCapacity: 31_251 }))
    const [pl, pc] = shared.s.plugins(shared.srv.key) as [PredictedLatencyPlugin, PrefixCachePlugin]
    const [pl2, pc2] = apart.s.plugins(apart.srv.key) as [PredictedLatencyPlugin, PrefixCachePlugin]
    expect(pc.index).toBe(pl.index.index)
    expect(pc2.index).not.toBe(pl2.index.index)
    const r = seeded(9)
    const inFlight: {
      ctx: ReturnType<typeof pickContext>
      to: unknown
      f: (typeof shared)['s']
    }[] = []
    for (let q = 0; q < 300; q++) {
      const body = chat(`${GROUPS[Math.floor(r() * GROUPS.length)]} question ${q}`)
      const picks: string[][] = []
      for (const f of [shared, apart]) {
        const ctx = pickContext(f.srv, body)
        const order = f.s.pick(ctx)
        picks.push(order.map((e) => e.name))
        const to = order[0]
        if (to === undefined) throw new Error('nothing picked')
        f.s.onDispatch(ctx, to)
        inFlight.push({ ctx, to, f: f.s })
      }
      expect(picks[0]).toEqual(picks[1])
      // Completions in a deterministic mixed order; a scrape now and then.
      while (inFlight.length > 8) {
        const done = inFlight.splice(Math.floor(r() * 4) * 2, 2)
        for (const d of done) {
          d.f.onComplete(d.ctx, d.to as never, { status: 200, durationMs: 30, firstByteMs: 10 })
        }
      }
      for (const f of [shared, apart]) {
        f.advance(7)
        if (q % 10 === 0) f.scrape()
      }
    }
    // One table per endpoint, holding what each of the two copies holds.
    const live = (f: typeof shared) =>
      f.eps.map((e) => f.s.state(`${e.address}:${e.port}`)).filter((x) => x !== undefined)
    for (const g of GROUPS) {
      // The group's prompt head as its requests are flattened (model 'm', one user message).
      const h = blockHashes(`<|im_start|>user\n${g}`, 64, 2048, chainSeed('m'))
      const depths = (p: PrefixCachePlugin, f: typeof shared) => {
        const m = p.matchDepths(h, live(f))
        return live(f).map((x) => m[x.slot])
      }
      expect(depths(pc, shared)).toEqual(depths(pl2.index, apart))
      expect(depths(pc, shared)).toEqual(depths(pc2, apart))
    }
    expect(pc.stats()).toEqual(pl2.index.stats())
    expect(pc.stats()).toEqual(pc2.stats())
    expect(pc.stats().blocksIndexed).toBeGreaterThan(0)
  })

  it('records a dispatch and a completion once, and tells another worker once', () => {
    const a = fleet(plAndPrefix(), { share: true })
    const b = fleet(plAndPrefix())
    const pcA = a.s.plugins(a.srv.key)[1] as PrefixCachePlugin
    const pcB = b.s.plugins(b.srv.key)[1] as PrefixCachePlugin
    const record = vi.spyOn(pcA.index, 'record')
    const completed = vi.spyOn(pcA.index, 'completed')
    const ctx = pickContext(a.srv, chat(`${GROUPS[0]} hi`))
    const to = a.s.pick(ctx)[0]
    if (to === undefined) throw new Error('nothing picked')
    a.s.onDispatch(ctx, to)
    a.s.onComplete(ctx, to, { status: 200, durationMs: 30 })
    expect(record).toHaveBeenCalledTimes(1)
    expect(completed).toHaveBeenCalledTimes(1)
    const sent = a.s.takeDispatches()
    expect(sent).toHaveLength(1)
    const recordB = vi.spyOn(pcB.index, 'record')
    b.s.applyPeerDispatches(sent)
    expect(recordB).toHaveBeenCalledTimes(1)
    expect(pcB.stats()).toEqual(pcA.stats())
    expect(pcB.stats().blocksIndexed).toBe(sent[0]?.hashes.length)
  })

  it('a plugin re-created by a profile change joins the index that holds what was learned', () => {
    const f = fleet(plAndPrefix())
    const ctx = pickContext(f.srv, chat(`${GROUPS[1]} hi`))
    const to = f.s.pick(ctx)[0]
    if (to === undefined) throw new Error('nothing picked')
    f.s.onDispatch(ctx, to)
    const pc = f.s.plugins(f.srv.key)[1] as PrefixCachePlugin
    const held = pc.stats().blocksIndexed
    expect(held).toBeGreaterThan(0)
    const changed: SnapshotScheduler = {
      plugins: [
        { name: 'predicted-latency', weight: 6, args: { tolerance: 0.1 } },
        { name: 'prefix-cache', weight: 3, args: {} },
      ],
    }
    f.s.onSnapshot(snapshot([server(f.eps, { scheduler: changed })], 2))
    const [pl, pc2] = f.s.plugins(f.srv.key) as [PredictedLatencyPlugin, PrefixCachePlugin]
    expect(pc2).toBe(pc)
    expect(pl.index.index).toBe(pc.index)
    expect(pl.index.stats().blocksIndexed).toBe(held)
    // The new first user feeds it: a dispatch is recorded once, not lost and not twice.
    const ctx2 = pickContext(f.srv, chat(`${GROUPS[2]} hi`))
    const to2 = f.s.pick(ctx2)[0]
    if (to2 === undefined) throw new Error('nothing picked')
    f.s.onDispatch(ctx2, to2)
    expect(pc.index.owner).toBe(pl.index)
    expect(pc.stats().blocksIndexed).toBeGreaterThan(held)
  })
})

describe('PrefixIndex.matchDepths', () => {
  it('reuses a match only while no table changed: records and resets are seen', () => {
    const idx = new PrefixIndex({
      blockTokens: 16,
      blockChars: 64,
      maxBlocks: 2048,
      lruCapacity: 1000,
    })
    const a = state('a', 60)
    const b = state('b', 61)
    const eps = [a, b]
    const h = blockHashes('x'.repeat(64 * 10), 64, 2048, 1)
    expect(idx.matchDepths(h, eps)[a.slot]).toBe(0)
    idx.record(a, h.subarray(0, 4))
    expect(idx.matchDepths(h, eps)[a.slot]).toBe(4)
    // A one-endpoint query in between leaves the list's answer right.
    expect(idx.matchDepths(h, [b])[b.slot]).toBe(0)
    expect(idx.matchDepths(h, eps)[a.slot]).toBe(4)
    idx.record(b, h)
    const m = idx.matchDepths(h, eps)
    expect([m[a.slot], m[b.slot]]).toEqual([4, 10])
    idx.drop(b)
    expect(idx.matchDepths(h, eps)[b.slot]).toBe(0)
  })
})

describe('PrefixIndex first-block filter', () => {
  // Prompts of 1-12 blocks from 16 first blocks (64 characters each) and 24 continuations: many
  // prompts share a first block and part of the way on, so matches stop at every depth. Tables
  // of 16-40 blocks: evictions all the time.
  const heads = Array.from({ length: 16 }, (_, h) => `head ${h} `.repeat(10).slice(0, 64))
  const prompt = (rnd: () => number): Int32Array => {
    const head = heads[Math.floor(rnd() * heads.length)] as string
    const body = `body ${Math.floor(rnd() * 24)} `.repeat(70)
    const blocks = 1 + Math.floor(rnd() * 12)
    return blockHashes(`${head}${body}`.slice(0, 64 * blocks), 64, 64, 7)
  }
  /** The match as it was made before the filter: every candidate's table probed. */
  const probed = (idx: PrefixIndex, h: Int32Array, e: EndpointState): number => {
    if (h.length === 0 || !idx.holds(e, h[0] as number)) return 0
    let lo = 1
    let hi = h.length
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1
      if (idx.holds(e, h[mid - 1] as number)) lo = mid
      else hi = mid - 1
    }
    return lo
  }

  it('matches as probing every table would, through evictions, resizes, restarts and removals', () => {
    const idx = new PrefixIndex({ blockTokens: 16, blockChars: 64, maxBlocks: 64, lruCapacity: 24 })
    const eps = Array.from({ length: 10 }, (_, i) => state(`f${i}`, 70 + i))
    // A throwaway state in the slot of eps[0] (as a request resolved against an old snapshot has).
    const twin = new EndpointState(endpoint('twin-f', 95), (eps[0] as EndpointState).slot)
    const all = [...eps, twin]
    const rnd = seeded(11)
    /** First blocks recorded on each endpoint since its last drop (the marks it may still hold). */
    const firsts = new Map<EndpointState, Set<number>>()
    let held = 0
    let probes = 0
    for (let op = 0; op < 6000; op++) {
      const e = all[Math.floor(rnd() * all.length)] as EndpointState
      const r = rnd()
      if (r < 0.02) {
        // An engine restart or the endpoint leaving: both drop its table.
        idx.drop(e)
        firsts.delete(e)
      } else if (r < 0.05) {
        // The engine reports another cache size: the table is resized (smaller or larger).
        e.scrapeSucceeded(op, metrics({ numGpuBlocks: 16 + Math.floor(rnd() * 25), blockSize: 16 }))
      } else {
        const h = prompt(rnd)
        idx.record(e, h)
        let set = firsts.get(e)
        if (set === undefined) {
          set = new Set()
          firsts.set(e, set)
        }
        set.add(h[0] as number)
      }
      const q = prompt(rnd)
      const cand = all.filter(() => rnd() < 0.6)
      if (cand.length === 0) continue
      const m = idx.matchDepths(q, cand)
      // Two states in one slot share a match entry: the later candidate's stands (as before).
      const want = new Map<number, number>()
      for (const c of cand) {
        const d = probed(idx, q, c)
        want.set(c.slot, d)
        if (d > 0) held++
        probes++
      }
      for (const [slot, d] of want) expect(m[slot]).toBe(d)
      // The filter counts exactly the first blocks still held (every slot distinct but the twin's).
      if (op % 25 !== 0) continue
      let marks = 0
      for (const [x, set] of firsts) for (const f of set) if (idx.holds(x, f)) marks++
      expect(idx.firstBlocksTracked()).toBe(marks)
    }
    expect(held).toBeGreaterThan(probes / 10)
    expect(held).toBeLessThan(probes / 2)
    // Every endpoint dropped: nothing counted.
    for (const e of all) idx.drop(e)
    expect(idx.firstBlocksTracked()).toBe(0)
  })

  it('starts where the last holder of the same first block stopped: same depths, few probes', () => {
    const idx = new PrefixIndex({
      blockTokens: 16,
      blockChars: 64,
      maxBlocks: 512,
      lruCapacity: 4096,
    })
    const holders = [state('g1', 81), state('g2', 82)]
    const none = state('g3', 83)
    const system = 'Shared system prompt. '.repeat(1200) // ~26 kB: ~410 blocks
    const cut = (q: string) => blockHashes(`${system}${q.repeat(20)}`, 64, 512, 7)
    for (const [i, e] of holders.entries()) idx.record(e, cut(` question ${i} `))
    const has = vi.spyOn(BlockTable.prototype, 'has')
    const depths = (q: Int32Array) => {
      has.mockClear()
      const m = idx.matchDepths(q, [...holders, none])
      const calls = has.mock.calls.length
      for (const e of [...holders, none]) expect(m[e.slot]).toBe(probed(idx, q, e))
      expect(m[none.slot]).toBe(0)
      return calls
    }
    // The first query bisects once; the next ones start at the depth found (about two probes).
    const cold = depths(cut(' question a '))
    const warm = depths(cut(' question b '))
    // A longer match on one holder (its own earlier conversation) is still found exactly.
    const own = cut(' question 1 ')
    has.mockClear()
    expect(idx.matchDepths(own, holders)[(holders[1] as EndpointState).slot]).toBe(own.length)
    has.mockRestore()
    expect(warm).toBeLessThanOrEqual(3 * holders.length)
    expect(cold).toBeGreaterThan(warm)
  })

  it('gives the twin and the live state of one slot their own answers when asked apart', () => {
    const idx = new PrefixIndex({ blockTokens: 16, blockChars: 64, maxBlocks: 64, lruCapacity: 64 })
    const live = state('live', 96)
    const twin = new EndpointState(endpoint('twin-g', 97), live.slot)
    const h = blockHashes('t'.repeat(64 * 6), 64, 64, 7)
    idx.record(twin, h.subarray(0, 3))
    expect(idx.matchDepths(h, [live])[live.slot]).toBe(0)
    expect(idx.matchDepths(h, [twin])[twin.slot]).toBe(3)
    idx.record(live, h)
    idx.drop(twin)
    expect(idx.matchDepths(h, [live])[live.slot]).toBe(6)
    expect(idx.matchDepths(h, [twin])[twin.slot]).toBe(0)
    idx.drop(live)
    expect(idx.matchDepths(h, [live])[live.slot]).toBe(0)
    expect(idx.firstBlocksTracked()).toBe(0)
  })
})

describe('PrefixIndex.heldOutside', () => {
  it('answers as a check of every table would, for any candidate subset and shared slots', () => {
    const idx = new PrefixIndex({ blockTokens: 16, blockChars: 64, maxBlocks: 64, lruCapacity: 64 })
    const eps = Array.from({ length: 8 }, (_, i) => state(`h${i}`, 60 + i))
    // A throwaway state in the slot of eps[0] (as a request resolved against an old snapshot has).
    const twin = new EndpointState(endpoint('twin', 90), (eps[0] as EndpointState).slot)
    const all = [...eps, twin]
    const rnd = seeded(5)
    for (const [i, e] of all.entries()) idx.record(e, [i * 10, i * 10 + 1, 1000 + (i % 3)])
    let outside = 0
    for (let t = 0; t < 2000; t++) {
      const cand = all.filter(() => rnd() < 0.5)
      const h = rnd() < 0.5 ? Math.floor(rnd() * 9) * 10 : 1000 + Math.floor(rnd() * 4)
      const brute = all.some(
        (e) =>
          !cand.includes(e) &&
          (h === 1000 + (all.indexOf(e) % 3) || Math.floor(h / 10) === all.indexOf(e)),
      )
      expect(idx.heldOutside(h, cand)).toBe(brute)
      if (brute) outside++
    }
    expect(outside).toBeGreaterThan(500)
    // The twin outside, its slot's live state a candidate: still held outside.
    expect(idx.heldOutside(0, [eps[0] as EndpointState])).toBe(false)
    expect(idx.heldOutside(80, [eps[0] as EndpointState])).toBe(true)
    expect(idx.heldOutside(80, [twin])).toBe(false)
  })
})
