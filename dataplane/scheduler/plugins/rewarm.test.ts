// Re-warms of a dead engine's groups (rewarm.ts) through the scheduler, on an injected clock:
// which groups get one, to which pod (the one the group's next request goes to), that each is
// planned once, and none for cold groups, LoRA requests, groups whose prompt was not kept, a
// worker that does not send them, or a profile that filters. What they are worth: the virtual
// fleet (regimes-restart.test.ts); the store of kept prompts: serve/rewarm.test.ts.
import { describe, expect, it } from 'vitest'
import type { SnapshotEndpoint, SnapshotServer } from '../../../api/snapshot.js'
import type { PickContext } from '../../picker.js'
import { Scheduler } from '../scheduler.js'
import { endpoint, metrics, pickContext, server, snapshot } from '../testkit.js'
import type { PredictedLatencyPlugin } from './predicted-latency.js'

function system(g: string): string {
  return `${g} policy. ${'Refunds need the order number and the reason given. '.repeat(60)}`
}

function body(g: string, k: number, model?: string): Record<string, unknown> {
  return {
    ...(model !== undefined ? { model } : {}),
    messages: [
      { role: 'system', content: system(g) },
      { role: 'user', content: `Customer question ${k}?` },
    ],
    max_tokens: 16,
    stream: true,
  }
}

interface Fleet {
  readonly sch: Scheduler
  readonly srv: SnapshotServer
  readonly clock: { t: number }
}

function fleet(opts: { rewarm?: boolean; fairness?: boolean } = {}): Fleet {
  const clock = { t: 5_000 }
  const sch = new Scheduler({
    scrape: false,
    now: () => clock.t,
    ...(opts.rewarm !== undefined ? { rewarm: opts.rewarm } : {}),
  })
  const srv = server(
    [endpoint('pod-a', 71), endpoint('pod-b', 72), endpoint('pod-c', 73), endpoint('pod-d', 74)],
    {
      scheduler: {
        plugins: [
          { name: 'predicted-latency', weight: 1, args: {} },
          ...(opts.fairness === true ? [{ name: 'fairness' as const, weight: 1, args: {} }] : []),
        ],
      },
    },
  )
  sch.onSnapshot(snapshot([srv]))
  return { sch, srv, clock }
}

/** One request answered at once (a hit's TTFT after the first); returns its pod and group key. */
function serve(
  f: Fleet,
  ctx: PickContext,
  ttft = 12,
): { pod: SnapshotEndpoint; group: number | undefined } {
  const pod = f.sch.pick(ctx)[0]
  if (pod === undefined) throw new Error('no pick')
  const group = f.sch.rewarmGroup(ctx)
  f.sch.onDispatch(ctx, pod)
  f.sch.onComplete(ctx, pod, { status: 200, durationMs: ttft + 150, firstByteMs: ttft })
  return { pod, group }
}

/** Groups `names`, a request of each in turn every 50 ms for `n` rounds; each group's pod and key. */
function warm(f: Fleet, names: readonly string[], n: number): Homes {
  const out: Homes = new Map()
  for (let k = 0; k < n; k++) {
    for (const g of names) {
      f.clock.t += 50
      const r = serve(f, pickContext(f.srv, body(g, k)), k === 0 ? 90 : 12)
      out.set(g, { pod: r.pod.name, key: r.group })
    }
  }
  return out
}

/** The engine behind `name` refuses connections: two refused dispatches eject it (liveness). */
function kill(f: Fleet, name: string): void {
  const ep = f.srv.endpoints.find((e) => e.name === name) as SnapshotEndpoint
  for (let i = 0; i < 2; i++) {
    const ctx = pickContext(f.srv, body('Probe', i))
    f.sch.onDispatch(ctx, ep)
    f.sch.onComplete(ctx, ep, { status: 0, failure: 'connect', durationMs: 1 })
  }
}

const GROUPS = ['Alpha', 'Beta', 'Gamma', 'Delta', 'Epsilon', 'Zeta']

type Homes = Map<string, { pod: string; key: number | undefined }>

/** The pod holding the most groups, and the groups it holds. */
function busiest(homes: Homes): { pod: string; held: string[] } {
  const count = new Map<string, number>()
  for (const h of homes.values()) count.set(h.pod, (count.get(h.pod) ?? 0) + 1)
  const pod = [...count.entries()].sort((a, b) => b[1] - a[1])[0]?.[0] as string
  return { pod, held: GROUPS.filter((g) => homes.get(g)?.pod === pod) }
}

/**
 * One-off requests, each followed by the question the proxy asks after a pick: the re-warms
 * planned (one a time, each started and ended ok), group key → pod. A group planned twice fails.
 */
function plansAfterPicks(f: Fleet, n = 10): Map<number, string> {
  const plans = new Map<number, string>()
  for (let i = 0; i < n; i++) {
    f.clock.t += 5
    serve(f, pickContext(f.srv, body(`One-off ${i}`, i)), 90)
    const plan = f.sch.rewarm(f.srv, () => true)
    if (plan === undefined) continue
    expect(plans.has(plan.group)).toBe(false)
    plans.set(plan.group, plan.endpoint.name)
    plan.start()(true)
  }
  return plans
}

describe('re-warms of a dead engine’s groups', () => {
  it('one per group the dead pod held alone, each to the pod the group’s next request goes to', () => {
    const f = fleet()
    const homes = warm(f, GROUPS, 10)
    // The pod holding most groups dies.
    const { pod: dead, held: lost } = busiest(homes)
    expect(lost.length).toBeGreaterThan(0)
    // Every group was kept, each under its own key.
    const keys = GROUPS.map((g) => homes.get(g)?.key)
    expect(keys.map((k) => typeof k)).toEqual(GROUPS.map(() => 'number'))
    expect(new Set(keys).size).toBe(GROUPS.length)
    kill(f, dead)
    // Asked after each pick of any request (here unrelated, one-off prompts): one plan a time.
    const plans = plansAfterPicks(f)
    expect([...plans.values()]).not.toContain(dead)
    const lostKeys = lost.map((g) => homes.get(g)?.key)
    expect([...plans.keys()].sort()).toEqual([...lostKeys].sort())
    // Each lost group's next request goes where its re-warm went (its prefill done by then; the
    // dead pod still ejected: without scrapes here, nothing would show its restart).
    f.clock.t += 300
    for (const g of lost) {
      const key = homes.get(g)?.key as number
      const { pod } = serve(f, pickContext(f.srv, body(g, 99)))
      expect(pod.name).toBe(plans.get(key))
    }
    const pl = f.sch.plugins(f.srv.key)[0] as PredictedLatencyPlugin
    expect(pl.debug(f.clock.t)['rewarms']).toEqual({
      started: lost.length,
      ok: lost.length,
      lost: 0,
    })
  })

  it('none for a group whose prompt the caller did not keep, nor for the lost group being placed', () => {
    const f = fleet()
    const homes = warm(f, GROUPS, 10)
    const dead = homes.get('Alpha')?.pod as string
    kill(f, dead)
    const lost = GROUPS.filter((g) => homes.get(g)?.pod === dead)
    // Nothing kept: the lost groups are dropped, not planned later either.
    serve(f, pickContext(f.srv, body('One-off', 0)), 90)
    expect(f.sch.rewarm(f.srv, () => false)).toBeUndefined()
    expect(f.sch.rewarm(f.srv, () => true)).toBeUndefined()
    // Kept, but the lost group's own request comes first: it is the re-home, no re-warm for it.
    const g = fleet()
    const h2 = warm(g, GROUPS, 10)
    const d2 = h2.get('Alpha')?.pod as string
    kill(g, d2)
    const lost2 = GROUPS.filter((x) => h2.get(x)?.pod === d2)
    for (const x of lost2) serve(g, pickContext(g.srv, body(x, 50)), 90)
    expect(g.sch.rewarm(g.srv, () => true)).toBeUndefined()
    expect(lost.length).toBeGreaterThan(0)
  })

  it('none for groups that cooled, and their kept blocks are released', () => {
    const f = fleet()
    const homes = warm(f, GROUPS, 10)
    const alpha = homes.get('Alpha') as { pod: string; key: number }
    const pl = f.sch.plugins(f.srv.key)[0] as PredictedLatencyPlugin
    // The group's prompt blocks are kept (its long system prompt spans many blocks).
    expect(pl.keptBlocks(alpha.key)?.length).toBeGreaterThan(4)
    // A minute without requests: every group cooled (decayed count far below 2).
    f.clock.t += 60_000
    kill(f, alpha.pod)
    expect(pl.keptBlocks(alpha.key)).toBeUndefined()
    serve(f, pickContext(f.srv, body('One-off', 0)), 90)
    expect(f.sch.rewarm(f.srv, () => true)).toBeUndefined()
  })

  it('none for a group seen once (cold), nor for LoRA requests', () => {
    const f = fleet()
    f.clock.t += 50
    // One request: a decayed count of 1, below the bar.
    expect(serve(f, pickContext(f.srv, body('Once', 0)), 90).group).toBeUndefined()
    // LoRA: no group is counted, none kept however often it comes.
    let kept = 0
    for (let k = 0; k < 20; k++) {
      f.clock.t += 50
      const ctx = pickContext(f.srv, body('Adapter', k, 'adapter-a'), {}, { isLora: true })
      if (serve(f, ctx).group !== undefined) kept++
    }
    expect(kept).toBe(0)
  })

  it('none from a scheduler told not to (a --workers N worker other than the first)', () => {
    const f = fleet({ rewarm: false })
    const homes = warm(f, GROUPS, 10)
    expect(homes.get('Alpha')?.key).toBeUndefined()
    kill(f, homes.get('Alpha')?.pod as string)
    serve(f, pickContext(f.srv, body('One-off', 0)), 90)
    expect(f.sch.rewarm(f.srv, () => true)).toBeUndefined()
  })

  it('one per group a restarted pod held alone, seen by a scrape only (never ejected)', () => {
    const f = fleet()
    const homes = warm(f, GROUPS, 10)
    const { pod, held: lost } = busiest(homes)
    expect(lost.length).toBeGreaterThan(0)
    // A container restart faster than any request noticed: the next scrape shows a new process
    // start time (Scheduler #onScrape -> #endpointReset -> onEndpointReset).
    const ep = f.srv.endpoints.find((e) => e.name === pod) as SnapshotEndpoint
    const id = `${ep.address}:${ep.port}`
    f.sch.scrapeStarted(id)
    f.sch.ingestScrape(id, {
      ok: true,
      metrics: metrics({ running: 0, waiting: 0 }),
      durationMs: 1,
      restart: 'start_time',
    })
    expect(f.sch.state(id)?.isEjected(f.clock.t)).toBe(false)
    const plans = plansAfterPicks(f)
    expect([...plans.keys()].sort()).toEqual(lost.map((g) => homes.get(g)?.key).sort())
    // The restarted pod is live and empty: it may be a group's re-home. Either way the group's
    // next request goes where its re-warm went.
    f.clock.t += 300
    for (const g of lost) {
      const { pod: next } = serve(f, pickContext(f.srv, body(g, 99)))
      expect(next.name).toBe(plans.get(homes.get(g)?.key as number))
    }
  })

  it('none when the profile filters candidates (a re-warm has no request to filter for)', () => {
    const f = fleet({ fairness: true })
    const homes = warm(f, GROUPS, 10)
    // Kept as without the filter (the same key): only the re-warm is withheld.
    expect(homes.get('Alpha')?.key).toBe(warm(fleet(), ['Alpha'], 10).get('Alpha')?.key)
    expect(typeof homes.get('Alpha')?.key).toBe('number')
    kill(f, homes.get('Alpha')?.pod as string)
    serve(f, pickContext(f.srv, body('One-off', 0)), 90)
    expect(f.sch.rewarm(f.srv, () => true)).toBeUndefined()
  })
})
