import { afterEach, describe, expect, it, vi } from 'vitest'
import type { SnapshotScheduler } from '../../api/snapshot.js'
import type { ExplainSink, PickContext } from '../picker.js'
import { PredictedLatencyPlugin } from './plugins/predicted-latency.js'
import { Scheduler } from './scheduler.js'
import { chat, endpoint, metrics, pickContext, seeded, server, snapshot } from './testkit.js'

// pick's one-candidate path (Scheduler #single): no scores, each plugin's `single` instead. What
// must hold: the pick is the one candidate, and every later decision is what it would have been
// had the one candidate been scored (a scheduler asked to explain takes the scoring path).

/** Plugins whose score has effects besides scores (a model, hot groups, draws, a turn) and pure ones. */
const PROFILE: SnapshotScheduler = {
  plugins: [
    { name: 'predicted-latency', weight: 6, args: {} },
    { name: 'prefix-cache', weight: 2, args: {} },
    { name: 'session-affinity', weight: 2, args: {} },
    { name: 'lora-affinity', weight: 2, args: {} },
    { name: 'least-pending', weight: 1, args: {} },
    { name: 'random', weight: 1, args: {} },
    { name: 'round-robin', weight: 1, args: {} },
  ],
}

const SYSTEMS = ['Support desk rules. ', 'Billing assistant notes. ', 'Travel planner guide. '].map(
  (s) => s.repeat(60),
)

function fleet(n = 4) {
  let now = 1000
  const s = new Scheduler({ scrape: false, now: () => now, random: seeded(3) })
  const eps = Array.from({ length: n }, (_, i) => endpoint(`pod-${i}`, 20 + i))
  const srv = server(eps, { scheduler: PROFILE, attempts: 2 })
  s.onSnapshot(snapshot([srv]))
  const ids = eps.map((e) => `${e.address}:${e.port}`)
  return { s, srv, ids, advance: (ms: number) => (now += ms), now: () => now }
}

type Fleet = ReturnType<typeof fleet>

/**
 * The same traffic on `f`: every third request narrowed to one endpoint (EPP's subset hint), the
 * rest free; scrapes every 10 requests; answers complete two requests later. `explainSingles`:
 * the narrowed ones ask for an explanation (the scoring path). Returns each pick's names.
 */
function drive(f: Fleet, explainSingles: boolean): string[] {
  const out: string[] = []
  const open: { ctx: PickContext; target: NonNullable<ReturnType<Scheduler['pick']>[0]> }[] = []
  for (let q = 0; q < 240; q++) {
    f.advance(7)
    if (q % 10 === 0) {
      for (const [i, id] of f.ids.entries()) {
        f.s.scrapeStarted(id)
        f.s.ingestScrape(id, {
          ok: true,
          // Running past the assumed batch (the model's maxRunning), the engine's TTFT and hit
          // rate: what a decision's refresh of the model reads from a scrape.
          metrics: metrics({
            running: 6 + ((q / 10 + i) % 9),
            waiting: 0,
            ttftMeanSec: 0.02 + 0.01 * ((q / 10 + i) % 4),
            prefixCacheHitRate: 0.5,
          }),
          durationMs: 1,
        })
      }
    }
    const single = q % 3 === 0 || f.ids.length === 1
    const explain: ExplainSink | undefined = single && explainSingles ? { text: '' } : undefined
    const lora = q % 4 === 1
    const ctx = pickContext(
      f.srv,
      chat(SYSTEMS[q % 3] as string, `question ${q}`),
      { 'x-session-id': `s${q % 9}` },
      { ...(explain !== undefined ? { explain } : {}), ...(lora ? { isLora: true } : {}) },
    )
    const narrowed = single ? { ...ctx, subset: new Set([f.ids[q % f.ids.length] as string]) } : ctx
    const picked = f.s.pick(narrowed)
    out.push(picked.map((e) => e.name).join(','))
    const target = picked[0]
    if (target === undefined) throw new Error('nothing picked')
    f.s.shadow(narrowed)
    f.s.onDispatch(narrowed, target)
    open.push({ ctx: narrowed, target })
    if (open.length > 2) {
      const done = open.shift()
      if (done !== undefined) {
        f.s.onComplete(done.ctx, done.target, {
          status: 200,
          durationMs: 40 + (q % 7),
          firstByteMs: 12 + (q % 5),
          completionTokens: 8,
        })
      }
    }
  }
  return out
}

afterEach(() => {
  vi.restoreAllMocks()
})

describe('pick with one candidate', () => {
  it('scores nothing, and later decisions are those of a scheduler that scored it', () => {
    const score = vi.spyOn(PredictedLatencyPlugin.prototype, 'score')
    const fast = fleet()
    const picksFast = drive(fast, false)
    // 160 decisions with four candidates scored; the 80 narrowed ones not.
    expect(score).toHaveBeenCalledTimes(160)
    score.mockClear()
    const scored = fleet()
    const picksScored = drive(scored, true)
    expect(score).toHaveBeenCalledTimes(240)
    expect(picksFast).toEqual(picksScored)
    // The narrowed picks are their one endpoint, without fallbacks.
    for (let q = 0; q < 240; q += 3) expect(picksFast[q]).toBe(`pod-${q % 4}`)
    // The latency model each left behind predicts the same.
    const ctx = pickContext(fast.srv, chat(SYSTEMS[0] as string, 'last'))
    const ctx2 = pickContext(scored.srv, chat(SYSTEMS[0] as string, 'last'))
    expect(fast.s.saturation(ctx)).toEqual(scored.s.saturation(ctx2))
  })

  it('on a one-endpoint server, leaves the latency model as scoring does', () => {
    const fast = fleet(1)
    const scored = fleet(1)
    expect(drive(fast, false)).toEqual(drive(scored, true))
    // Spill-over reads the predicted TTFT: the model must have learned the same from the scrapes.
    const ctx = pickContext(fast.srv, chat(SYSTEMS[1] as string, 'last'))
    const ctx2 = pickContext(scored.srv, chat(SYSTEMS[1] as string, 'last'))
    const a = fast.s.saturation(ctx)
    expect(a?.ttftMs).toBeGreaterThan(0)
    expect(a).toEqual(scored.s.saturation(ctx2))
    const pl = fast.s.plugins(fast.srv.key)[0] as PredictedLatencyPlugin
    const pl2 = scored.s.plugins(scored.srv.key)[0] as PredictedLatencyPlugin
    expect(pl.pooledCapacity).toBe(pl2.pooledCapacity)
    expect(pl.model.engineTtftMs).toBe(pl2.model.engineTtftMs)
  })

  it('reports the pick as decided by `single`', () => {
    const f = fleet()
    const reasons: string[] = []
    f.s.observe({
      decision: (_server, _seconds, plugin) => reasons.push(plugin),
      ejected: () => {},
      readmitted: () => {},
    })
    const ctx = pickContext(f.srv, chat('hello'))
    f.s.pick({ ...ctx, subset: new Set([f.ids[2] as string]) })
    f.s.pick(ctx)
    expect(reasons[0]).toBe('single')
    expect(reasons[1]).not.toBe('single')
  })
})
