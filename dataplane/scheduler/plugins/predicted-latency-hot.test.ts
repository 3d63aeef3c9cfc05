// predicted-latency's hot-group copies (#replicate) through the scheduler: when a copy is asked
// for, where, that replicas agree on the pod, that nothing is recorded until the caller sends
// it (the EPP never does), and that `hotCopyTheta: 0` switches it off. The shadows sent for real
// are in serve/shadow.test.ts; what they are worth on virtual time in regimes-restart.test.ts.
import { describe, expect, it } from 'vitest'
import type { SnapshotServer } from '../../../api/snapshot.js'
import type { ShadowPlan } from '../../picker.js'
import { Scheduler } from '../scheduler.js'
import { endpoint, pickContext, server, snapshot } from '../testkit.js'
import type { PredictedLatencyPlugin } from './predicted-latency.js'

const SYSTEM = `Support policy. ${'Refunds need the order number and the reason given. '.repeat(60)}`

function body(k: number, lora = false): Record<string, unknown> {
  return {
    ...(lora ? { model: 'adapter-a' } : {}),
    messages: [
      { role: 'system', content: SYSTEM },
      { role: 'user', content: `Customer question ${k}?` },
    ],
    max_tokens: 16,
    stream: true,
  }
}

function fleet(theta?: number): { sch: Scheduler; srv: SnapshotServer; clock: { t: number } } {
  const clock = { t: 5_000 }
  const sch = new Scheduler({ scrape: false, now: () => clock.t })
  const srv = server(
    [endpoint('pod-a', 71), endpoint('pod-b', 72), endpoint('pod-c', 73), endpoint('pod-d', 74)],
    {
      scheduler: {
        plugins: [
          {
            name: 'predicted-latency',
            weight: 1,
            args: theta === undefined ? {} : { hotCopyTheta: theta },
          },
        ],
      },
    },
  )
  sch.onSnapshot(snapshot([srv]))
  return { sch, srv, clock }
}

/**
 * The group's requests every `gapMs`, each answered at once; `take` decides whether a shadow
 * asked for is started (and then ended ok at once). Other traffic: 10 ms before each of them a
 * cold request of a new prefix (its ~800-token prompt, a 90 ms prefill) lands on its rendezvous
 * pod, so the plugin sees how the engines treat a request sent behind another's prefill (copies
 * wait for that). With `stall` they compute prompts one after another (prefill interference): a
 * group request sent to a pod whose cold prefill is still running gets its first token only
 * after that prefill ends; without, prefills overlap. Returns each group request's pick and
 * shadow plan.
 */
function drive(
  f: ReturnType<typeof fleet>,
  n: number,
  gapMs: number,
  take: boolean,
  opts: { lora?: boolean; stall?: boolean } = {},
): { picks: string[]; plans: (ShadowPlan | undefined)[] } {
  const lora = opts.lora === true
  const picks: string[] = []
  const plans: (ShadowPlan | undefined)[] = []
  const coldEnds = new Map<string, number>()
  for (let k = 0; k < n; k++) {
    f.clock.t += gapMs - 10
    const other = pickContext(f.srv, {
      messages: [
        { role: 'system', content: `Other ${k}. ${SYSTEM}` },
        { role: 'user', content: 'Hello?' },
      ],
      max_tokens: 16,
      stream: true,
    })
    const pod = f.sch.pick(other)[0]
    if (pod === undefined) throw new Error('no pick')
    f.sch.onDispatch(other, pod)
    coldEnds.set(pod.name, Math.max(coldEnds.get(pod.name) ?? 0, f.clock.t) + 90)
    f.sch.onComplete(other, pod, { status: 200, durationMs: 240, firstByteMs: 90 })
    f.clock.t += 10
    const ctx = pickContext(f.srv, body(k, lora), {}, lora ? { isLora: true } : {})
    const first = f.sch.pick(ctx)[0]
    if (first === undefined) throw new Error('no pick')
    picks.push(first.name)
    f.sch.onDispatch(ctx, first)
    const plan = f.sch.shadow(ctx)
    plans.push(plan)
    if (plan !== undefined && take) plan.start()(true)
    // A cold prefill of the ~800-token prompt at 0.1 ms a token, hits at the overhead; with
    // `stall`, after the other prefill running there.
    const ahead = opts.stall === true ? Math.max(0, (coldEnds.get(first.name) ?? 0) - f.clock.t) : 0
    const ttft = (k === 0 ? 90 : 12) + ahead
    f.sch.onComplete(ctx, first, { status: 200, durationMs: ttft + 150, firstByteMs: ttft })
  }
  return { picks, plans }
}

describe('predicted-latency hot-group copies', () => {
  it('no copy where the engine makes requests wait for the prefills ahead of them (prefill interference)', () => {
    const f = fleet()
    const { plans } = drive(f, 60, 50, true, { stall: true })
    const pl = f.sch.plugins(f.srv.key)[0] as PredictedLatencyPlugin
    // The same group and traffic get their copy when prefills overlap (the next test but one):
    // the engine's stalls stop it.
    expect(pl.prefillInterference()).toBeGreaterThan(0.5)
    expect(plans.filter((p) => p !== undefined)).toHaveLength(0)
  })

  it('none either before the plugin has seen how the engines treat a request behind a prefill', () => {
    // Only the group's own requests: none is ever sent behind another prefix's prefill.
    const f = fleet()
    const plans: (ShadowPlan | undefined)[] = []
    for (let k = 0; k < 60; k++) {
      f.clock.t += 50
      const ctx = pickContext(f.srv, body(k))
      const first = f.sch.pick(ctx)[0]
      if (first === undefined) throw new Error('no pick')
      f.sch.onDispatch(ctx, first)
      plans.push(f.sch.shadow(ctx))
      const ttft = k === 0 ? 90 : 12
      f.sch.onComplete(ctx, first, { status: 200, durationMs: ttft + 150, firstByteMs: ttft })
    }
    const pl = f.sch.plugins(f.srv.key)[0] as PredictedLatencyPlugin
    expect(pl.prefillInterference()).toBeUndefined()
    expect(plans.filter((p) => p !== undefined)).toHaveLength(0)
  })

  it('a group of 20 req/s gets one copy once it is a second old, on a pod that does not hold it', () => {
    const f = fleet()
    const { picks, plans } = drive(f, 60, 50, true)
    const pl = f.sch.plugins(f.srv.key)[0] as PredictedLatencyPlugin
    // Requests sent behind other prefills' were not held up by them.
    expect(pl.prefillInterference()).toBeLessThan(0.2)
    const at = plans.findIndex((p) => p !== undefined)
    // Not before 1 s of age (20 requests), then at the first request that finds it hot.
    expect(at).toBeGreaterThanOrEqual(20)
    expect(at).toBeLessThan(26)
    const copy = plans[at]?.endpoint.name
    expect(copy).not.toBe(picks[0])
    // Made once: with two holders no second copy is asked for.
    expect(plans.filter((p) => p !== undefined)).toHaveLength(1)
    // Groups: the hot one + drive's 60 one-off "Other k" prefixes; their prefills overlapped
    // (interference measured 0), so the copy was allowed.
    expect(pl.debug(f.clock.t)['hotCopies']).toEqual({
      theta: 1,
      groups: 61,
      started: 1,
      ok: 1,
      interference: 0,
    })
  })

  it('a slow group gets none: 2 req/s × a cold prefill of ~100 ms is well under one request', () => {
    const f = fleet()
    const { plans } = drive(f, 20, 500, true)
    expect(plans.every((p) => p === undefined)).toBe(true)
  })

  it('replicas that see the same group choose the same pod for its copy', () => {
    const a = drive(fleet(), 40, 50, true)
    const b = drive(fleet(), 40, 50, true)
    const copyA = a.plans.find((p) => p !== undefined)?.endpoint.name
    // A copy was asked for, on one of the fleet's pods, and the other replica names the same pod.
    expect(['pod-a', 'pod-b', 'pod-c', 'pod-d']).toContain(copyA)
    expect(b.plans.find((p) => p !== undefined)?.endpoint.name).toBe(copyA)
  })

  it('a copy never sent leaves no trace: asked for again by the next request, nothing recorded on its pod', () => {
    const f = fleet()
    const { plans } = drive(f, 40, 50, false)
    const asked = plans.filter((p) => p !== undefined)
    // Every request from the first hot one on asks (up to the copies-per-second bound, never
    // taken here), all for the same pod, and that pod never shows the prefix.
    expect(asked.length).toBeGreaterThan(10)
    expect(new Set(asked.map((p) => p?.endpoint.name)).size).toBe(1)
    const pl = f.sch.plugins(f.srv.key)[0] as PredictedLatencyPlugin
    expect(pl.debug(f.clock.t)['hotCopies']).toMatchObject({ theta: 1, started: 0, ok: 0 })
  })

  it('hotCopyTheta 0 switches copies off; adapter requests never get one', () => {
    expect(drive(fleet(0), 60, 50, true).plans.every((p) => p === undefined)).toBe(true)
    expect(drive(fleet(), 60, 50, true, { lora: true }).plans.every((p) => p === undefined)).toBe(
      true,
    )
  })
})
