// Shadow requests on real loopback engines (the project's simulator): the body a shadow carries,
// the scheduler's hot-group copy sent for real (counted in flight while it runs, its prefix
// recorded on the copy's pod, no health or latency learned), failures that leave nothing behind,
// the proxy path's hook (the client's answer and accounting untouched), and the re-warm of a warm
// group whose only engine died, end to end: kill seen by the scrape, sent over real HTTP.
import { afterEach, describe, expect, it } from 'vitest'
import type { SnapshotEndpoint, SnapshotServer } from '../../api/snapshot.js'
import { type SimHandle, startSimulator } from '../../hack/sim/index.js'
import { route } from '../../test/helpers/snapshot.js'
import { fetchInbound } from '../inbound.js'
import { silentLogger } from '../log.js'
import { GatewayMetrics } from '../metrics.js'
import {
  type EndpointPicker,
  type PickContext,
  RoundRobinPicker,
  type ShadowPlan,
} from '../picker.js'
import { ProviderCredentials } from '../providers/credentials.js'
import { ProviderTransport } from '../providers/transport.js'
import { UpstreamPool } from '../proxy/upstream-pool.js'
import type { ChainDecision } from '../router.js'
import { PredictedLatencyPlugin } from '../scheduler/plugins/predicted-latency.js'
import { REWARM_MIN_COUNT } from '../scheduler/plugins/rewarm.js'
import { Scheduler } from '../scheduler/scheduler.js'
import { pickContext, server, snapshot } from '../scheduler/testkit.js'
import { serveChain } from './chain.js'
import { Outcome } from './outcome.js'
import {
  type ShadowDeps,
  ShadowGate,
  type ShadowOutcome,
  type ShadowRequest,
  sendShadow,
  shadowBody,
} from './shadow.js'

const cleanups: (() => Promise<void>)[] = []
afterEach(async () => {
  await Promise.all(cleanups.splice(0).map((f) => f()))
})

async function sim(host: string): Promise<SimHandle> {
  const s = await startSimulator({
    name: `shadow-${host}`,
    host,
    port: 0,
    model: 'm',
    metricsFormat: 'vllm',
    zeroLatency: true,
  })
  cleanups.push(() => s.close())
  return s
}

function ep(s: SimHandle): SnapshotEndpoint {
  return { name: s.name, address: s.host, port: s.port, ready: true, labels: {} }
}

function pool(): UpstreamPool {
  const p = new UpstreamPool()
  cleanups.push(() => p.close())
  return p
}

/** A group's long shared system prompt (many blocks) and a distinct question. */
const SYSTEM = `Policy handbook. ${'Every answer cites the handbook section it relies on. '.repeat(60)}`
function groupBody(k: number): Record<string, unknown> {
  return {
    messages: [
      { role: 'system', content: SYSTEM },
      { role: 'user', content: `Question number ${k}: what applies here?` },
    ],
    max_tokens: 32,
    stream: true,
    stream_options: { include_usage: true },
  }
}

function counting(): ShadowDeps & { counted: ShadowOutcome[]; gate: ShadowGate } {
  const counted: ShadowOutcome[] = []
  return { pool: pool(), gate: new ShadowGate(2), count: (o) => counted.push(o), counted }
}

function shadowRequest(srv: SnapshotServer, body: Record<string, unknown>): ShadowRequest {
  return {
    server: srv,
    api: 'chat',
    path: '/v1/chat/completions',
    body,
    upstreamModel: 'm',
    headers: { 'x-request-id': 'req-1', traceparent: '00-1-2-01' },
  }
}

describe('shadowBody', () => {
  it('the prompt as the client sent it, one output token, not streamed, one choice', () => {
    const body = shadowBody(
      'chat',
      {
        model: 'alias',
        messages: [{ role: 'user', content: 'hi' }],
        tools: [{ type: 'function', function: { name: 'f' } }],
        stream: true,
        stream_options: { include_usage: true },
        max_completion_tokens: 500,
        n: 3,
        min_tokens: 20,
        response_format: { type: 'json_object' },
        temperature: 0.2,
      },
      'served-name',
    )
    expect(JSON.parse(body as string)).toEqual({
      model: 'served-name',
      messages: [{ role: 'user', content: 'hi' }],
      tools: [{ type: 'function', function: { name: 'f' } }],
      stream: false,
      max_tokens: 1,
      max_completion_tokens: 1,
      n: 1,
      temperature: 0.2,
    })
    expect(
      JSON.parse(
        shadowBody('completions', { prompt: 'p', echo: true, prompt_logprobs: 5 }, 'x') as string,
      ),
    ).toEqual({
      model: 'x',
      prompt: 'p',
      stream: false,
      max_tokens: 1,
    })
  })

  it('no shadow for APIs without a prompt to cache that way', () => {
    expect(shadowBody('embeddings', { input: 'x' }, 'm')).toBeUndefined()
    expect(shadowBody('responses', { input: 'x' }, 'm')).toBeUndefined()
  })
})

describe('hot-group copies by shadow request (real engines)', () => {
  it('a hot group held by one pod gets a copy on the other: sent with one token, in flight while it runs, recorded there, nothing learned', async () => {
    const a = await sim('127.0.0.61')
    const b = await sim('127.0.0.62')
    let clock = 1_000
    const sch = new Scheduler({ scrape: false, now: () => clock })
    cleanups.push(() => sch.close())
    const srv = server([ep(a), ep(b)], {
      scheduler: {
        plugins: [{ name: 'predicted-latency', weight: 1, args: { hotCopyTheta: 0.05 } }],
      },
    })
    sch.onSnapshot(snapshot([srv]))
    const pl = sch.plugins(srv.key)[0] as PredictedLatencyPlugin
    expect(pl).toBeInstanceOf(PredictedLatencyPlugin)
    // The group's requests, every 50 ms, each answered at once; 10 ms before each, a cold request
    // of another prefix (reported, not sent): the plugin copies only once it has seen requests
    // sent behind another prefill not held up by it (predicted-latency prefillInterference).
    let plan: ShadowPlan | undefined
    let home: SnapshotEndpoint | undefined
    let ctx: PickContext | undefined
    let k = 0
    for (; k < 40 && plan === undefined; k++) {
      clock += 40
      const other = pickContext(srv, {
        messages: [
          { role: 'system', content: `Other ${k}. ${SYSTEM}` },
          { role: 'user', content: 'Hello?' },
        ],
        max_tokens: 32,
        stream: true,
      })
      const otherPod = sch.pick(other)[0] as SnapshotEndpoint
      sch.onDispatch(other, otherPod)
      sch.onComplete(other, otherPod, { status: 200, durationMs: 100, firstByteMs: 60 })
      clock += 10
      ctx = pickContext(srv, groupBody(k))
      const first = sch.pick(ctx)[0] as SnapshotEndpoint
      home ??= first
      // Affinity holds: every request of the group goes to its home.
      expect(first.name).toBe(home.name)
      sch.onDispatch(ctx, first)
      plan = sch.shadow(ctx)
      sch.onComplete(ctx, first, { status: 200, durationMs: 30, firstByteMs: 20 })
    }
    // Not before the group is a second old (20 requests at 50 ms), then at once.
    expect(k).toBeGreaterThan(19)
    expect(k).toBeLessThan(25)
    if (plan === undefined || home === undefined || ctx === undefined) throw new Error('no copy')
    const copy = plan.endpoint
    expect(copy.name).not.toBe(home.name)
    // Taken once.
    expect(sch.shadow(ctx)).toBeUndefined()

    const deps = counting()
    const st = sch.state(`${copy.address}:${copy.port}`)
    const before = st?.completed ?? 0
    const dispatchedBefore = st?.dispatched ?? 0
    const ttftBefore = st?.ttftMs.value
    const sent = sendShadow(deps, plan, shadowRequest(srv, groupBody(k)))
    // Started synchronously: in flight on the copy's pod, and in the gate.
    expect(st?.inFlight).toBe(1)
    expect(deps.gate.inFlight).toBe(1)
    expect(await sent).toBe('ok')
    expect(st?.inFlight).toBe(0)
    expect(deps.gate.inFlight).toBe(0)
    expect(deps.counted).toEqual(['ok'])
    // The engine got one request of one output token (the client's 32 were not asked for).
    const copyStats = (copy.name === a.name ? a : b).stats()
    expect(copyStats.requests).toBe(1)
    expect(copyStats.generationTokens).toBe(1)
    // Not a latency sample and not a trial: its TTFT not learned, no dispatch but its own counted.
    expect(st?.ttftMs.value).toBe(ttftBefore)
    expect(st?.dispatched).toBe(dispatchedBefore + 1)
    expect(st?.completed).toBe(before + 1)
    // The group's next request sees two holders: no second copy.
    clock += 50
    const next = pickContext(srv, groupBody(k + 1))
    sch.pick(next)
    expect(sch.shadow(next)).toBeUndefined()
    const depths = pl.index.matchDepths(pl.index.hashes(requestOf(next)), [
      sch.state(`${home.address}:${home.port}`) as never,
      st as never,
    ])
    expect(depths[(st as { slot: number }).slot]).toBeGreaterThanOrEqual(pl.affinityBlocks)
  }, 20_000)

  it('a refused shadow leaves nothing behind: gate and in-flight released, no ejection, counted failed', async () => {
    const a = await sim('127.0.0.63')
    // A port nothing listens on (the simulator just closed there).
    const gone = await sim('127.0.0.64')
    const goneEp = ep(gone)
    await gone.close()
    const sch = new Scheduler({ scrape: false })
    cleanups.push(() => sch.close())
    const srv = server([ep(a), goneEp])
    sch.onSnapshot(snapshot([srv]))
    const st = sch.state(`${goneEp.address}:${goneEp.port}`)
    const plan = planFor(sch, srv, goneEp)
    const deps = counting()
    expect(await sendShadow(deps, plan, shadowRequest(srv, groupBody(0)))).toBe('failed')
    expect(st?.inFlight).toBe(0)
    expect(st?.connectFailures).toBe(0)
    expect(st?.isEjected(0)).toBe(false)
    expect(deps.gate.inFlight).toBe(0)
    expect(deps.counted).toEqual(['failed'])
  })

  it('an exception while starting ends the shadow once and releases the gate; a full gate drops without starting', async () => {
    const deps = counting()
    const srv = server([])
    const ended: boolean[] = []
    const throwing: ShadowPlan = {
      endpoint: { name: 'x', address: '127.0.0.65', port: 1, ready: true, labels: {} },
      start: () => {
        throw new Error('boom')
      },
    }
    expect(await sendShadow(deps, throwing, shadowRequest(srv, groupBody(0)))).toBe('failed')
    expect(deps.gate.inFlight).toBe(0)
    // A pool that is closed: the request itself rejects.
    const closed = pool()
    const rejecting: ShadowPlan = {
      endpoint: { name: 'y', address: '127.0.0.66', port: 1, ready: true, labels: {} },
      start: () => (ok) => ended.push(ok),
    }
    const d2 = { ...deps, pool: closed }
    closed.agent = () => {
      throw new Error('pool closed')
    }
    expect(await sendShadow(d2, rejecting, shadowRequest(srv, groupBody(0)))).toBe('failed')
    expect(ended).toEqual([false])
    expect(deps.gate.inFlight).toBe(0)
    // Full gate: dropped, the plan never started.
    deps.gate.tryAcquire()
    deps.gate.tryAcquire()
    let started = 0
    const counted: ShadowPlan = {
      endpoint: rejecting.endpoint,
      start: () => {
        started++
        return () => {}
      },
    }
    expect(await sendShadow(deps, counted, shadowRequest(srv, groupBody(0)))).toBe('dropped')
    expect(started).toBe(0)
    expect(deps.counted).toEqual(['failed', 'failed', 'dropped'])
  })
})

describe('the proxy path sends the shadow beside the client request', () => {
  it('client answered by its pick; the shadow to the mirror with one token; one access-log entry, one request counted', async () => {
    const a = await sim('127.0.0.67')
    const b = await sim('127.0.0.68')
    const srv = server([ep(a)], { attempts: 1 })
    let ended: boolean | undefined
    // Round-robin over the client's pod, and a shadow to the other engine on every pick.
    class Mirroring extends RoundRobinPicker {
      shadow(): ShadowPlan {
        return { endpoint: ep(b), start: () => (ok) => (ended = ok) }
      }
    }
    const metrics = new GatewayMetrics()
    const log: Record<string, unknown>[] = []
    const { stream_options: _, ...rest } = groupBody(0)
    const res = await serveChain(
      serverDecision(srv),
      chainRequest({ model: 'm', ...rest, stream: false }),
      clientOutcome(metrics, log, 'req-1'),
      chainDeps(pool(), new Mirroring(), metrics),
    )
    expect(res.status).toBe(200)
    const json = (await res.json()) as { usage: { completion_tokens: number } }
    expect(json.usage.completion_tokens).toBe(32)
    // The shadow's answer arrives in the background.
    for (let i = 0; i < 100 && ended === undefined; i++) await new Promise((r) => setTimeout(r, 10))
    expect(ended).toBe(true)
    expect(b.stats().requests).toBe(1)
    expect(b.stats().generationTokens).toBe(1)
    expect(a.stats().requests).toBe(1)
    expect(log).toHaveLength(1)
    const requests = (await metrics.requests.get()).values.reduce((n, v) => n + v.value, 0)
    expect(requests).toBe(1)
    const shadows = (await metrics.shadowRequests.get()).values.map((v) => [
      v.labels['outcome'],
      v.value,
    ])
    expect(shadows).toEqual([['ok', 1]])
  })
})

/** The decision of a route whose one rule serves `srv` (no fallback). */
function serverDecision(srv: SnapshotServer): ChainDecision {
  const r = route('r', { modelName: 'm', rules: [{ name: 'x', targets: [] }] })
  return {
    route: r,
    rule: r.rules[0] ?? { name: 'x', targets: [] },
    isLora: false,
    targets: [{ kind: 'server', server: srv, upstreamModel: 'm' }],
    fallbackOn: new Set(),
    plain: true,
  }
}

/** A chat request to the proxy path, `body` as the client sent it (and its x-request-id). */
function chainRequest(body: Record<string, unknown>, id?: string) {
  const raw = new TextEncoder().encode(JSON.stringify(body))
  const headers: Record<string, string> = id === undefined ? {} : { 'x-request-id': id }
  return {
    path: '/v1/chat/completions',
    api: 'chat' as const,
    model: 'm',
    body,
    raw,
    inbound: fetchInbound(new Request('http://gw/v1', { method: 'POST', body: raw, headers })),
  }
}

/** A client request's outcome, recorded in `metrics` and `log`. */
function clientOutcome(
  metrics: GatewayMetrics,
  log: Record<string, unknown>[],
  id: string,
): Outcome {
  const out = new Outcome(
    { metrics, accessLog: (e) => log.push({ ...e }) },
    id,
    '/v1/chat/completions',
    'chat',
    0, // a start time is an input only: no duration is asserted here
  )
  out.model = 'm'
  out.modelLabel = 'm'
  return out
}

/** What serveChain needs besides the request: the pool and picker under test. */
function chainDeps(p: UpstreamPool, picker: EndpointPicker, metrics: GatewayMetrics) {
  return {
    pool: p,
    picker,
    metrics,
    transport: new ProviderTransport(),
    credentials: new ProviderCredentials(undefined, silentLogger),
    random: () => 0,
  }
}

/** A plan the scheduler would hand out for `target` (its Mirror set directly: no hot group needed). */
function planFor(sch: Scheduler, srv: SnapshotServer, target: SnapshotEndpoint): ShadowPlan {
  const ctx = pickContext(srv, groupBody(0))
  sch.pick(ctx)
  const st = sch.state(`${target.address}:${target.port}`)
  if (st === undefined) throw new Error('no state')
  requestOf(ctx).mirror = { ep: st, started: () => {}, ended: () => {} }
  const plan = sch.shadow(ctx)
  if (plan === undefined) throw new Error('no plan')
  return plan
}

/** The scheduler's record of a picked request (kept on its context under a symbol). */
function requestOf(ctx: PickContext): import('../scheduler/types.js').SchedRequest {
  const sym = Object.getOwnPropertySymbols(ctx)[0]
  if (sym === undefined) throw new Error('not picked')
  return (ctx as unknown as Record<symbol, import('../scheduler/types.js').SchedRequest>)[
    sym
  ] as import('../scheduler/types.js').SchedRequest
}

/** A pool that notes every request it sends: where to, the x-request-id, the body. */
class RecordingPool extends UpstreamPool {
  readonly sent: { to: string; id: string; body: Record<string, unknown> }[] = []

  override request(
    server: SnapshotServer,
    endpoint: SnapshotEndpoint,
    call: Parameters<UpstreamPool['request']>[2],
  ): ReturnType<UpstreamPool['request']> {
    const text =
      typeof call.body === 'string' ? call.body : new TextDecoder().decode(call.body ?? undefined)
    this.sent.push({
      to: endpoint.name,
      id: call.headers['x-request-id'] ?? '',
      body: JSON.parse(text) as Record<string, unknown>,
    })
    return super.request(server, endpoint, call)
  }
}

/** Polls `cond` every 5 ms, up to `ms` (a bound, not a timing assertion). */
async function until(cond: () => boolean | Promise<boolean>, ms = 2_000): Promise<boolean> {
  for (let i = 0; i * 5 < ms && !(await cond()); i++) await new Promise((r) => setTimeout(r, 5))
  return cond()
}

/**
 * Three engines behind the proxy path (serveChain, Scheduler with predicted-latency, scraped
 * every 20 ms on its own clock for the rest), the group's requests served through it, its pod
 * killed and seen by the scrape, then one request of another prompt. What went out, where.
 */
async function rewarmScene(
  hosts: readonly [string, string, string],
  o: { groupRequests: number; rewarm?: boolean },
) {
  const sims = [await sim(hosts[0]), await sim(hosts[1]), await sim(hosts[2])]
  let clock = 1_000
  const sch = new Scheduler({
    scrape: { intervalMs: 20, timeoutMs: 200 },
    now: () => clock,
    ...(o.rewarm === false ? { rewarm: false } : {}),
  })
  cleanups.push(() => sch.close())
  const srv = server(sims.map(ep), {
    attempts: 1,
    scheduler: { plugins: [{ name: 'predicted-latency', weight: 1, args: {} }] },
  })
  sch.onSnapshot(snapshot([srv]))
  const p = new RecordingPool()
  cleanups.push(() => p.close())
  const metrics = new GatewayMetrics()
  const log: Record<string, unknown>[] = []
  const d = serverDecision(srv)
  let served = 0
  /** One client request through the proxy path; its status and the engine it went to. */
  const serve = async (system: string, k: number): Promise<{ status: number; to: string }> => {
    clock += 10
    const id = `req-${++served}`
    const body = {
      model: 'm',
      messages: [
        { role: 'system', content: system },
        { role: 'user', content: `Question number ${k}: what applies here?` },
      ],
      max_tokens: 8,
      stream: false,
    }
    const res = await serveChain(
      d,
      chainRequest(body, id),
      clientOutcome(metrics, log, id),
      chainDeps(p, sch, metrics),
    )
    await res.arrayBuffer()
    const mine = p.sent.filter((s) => s.id === id)
    return { status: res.status, to: mine.at(-1)?.to ?? '' }
  }
  const byName = (name: string) => sims.find((s) => s.name === name) as SimHandle

  const firsts: string[] = []
  for (let k = 0; k < o.groupRequests; k++) {
    const a = await serve(SYSTEM, k)
    expect(a.status).toBe(200)
    firsts.push(a.to)
  }
  const home = firsts[0] as string
  // Affinity holds: the group's requests all went to its first pod.
  expect(new Set(firsts)).toEqual(new Set([home]))
  // The engine dies; the scrape sees it (two failed scrapes eject it: #note → #endpointDown).
  const homeSim = byName(home)
  await homeSim.close()
  const homeSt = sch.state(`${homeSim.host}:${homeSim.port}`)
  expect(await until(() => homeSt?.ejectionActive === true)).toBe(true)
  const before = new Map(sims.map((s) => [s.name, s.stats()]))
  const sentBefore = p.sent.length
  // Another prompt (its own group, cold): the pick after which the re-warm is asked for.
  const other = await serve(
    `Another assistant entirely. ${'Short and plain answers. '.repeat(40)}`,
    0,
  )
  expect(other.status).toBe(200)
  expect(other.to).not.toBe(home)
  const shadows = p.sent.slice(sentBefore).filter((s) => s.id.endsWith('-shadow'))
  return { p, metrics, log, serve, home, before, other, shadows, byName }
}

async function shadowCounts(metrics: GatewayMetrics): Promise<[string, string, number][]> {
  return (await metrics.shadowRequests.get()).values.map((v) => [
    String(v.labels['reason']),
    String(v.labels['outcome']),
    v.value,
  ])
}

async function clientRequests(metrics: GatewayMetrics): Promise<number> {
  return (await metrics.requests.get()).values.reduce((n, v) => n + v.value, 0)
}

describe('re-warms after an engine dies (real engines)', () => {
  it('a warm group whose only pod died: one re-warm of its prompt (one token, not streamed) to a live engine, where its next request then goes', async () => {
    // Warm: a decayed count of REWARM_MIN_COUNT (HOT_TAU_MS 5 s); two requests 10 ms apart make
    // 1.998, so three.
    const s = await rewarmScene(['127.0.0.71', '127.0.0.72', '127.0.0.73'], {
      groupRequests: REWARM_MIN_COUNT + 1,
    })
    // Exactly one re-warm, sent beside the other prompt's request (req-4). It is the group's kept
    // request (serve/rewarm.ts keeps its upstream headers): the x-request-id is that request's,
    // suffixed, not req-4's.
    expect(s.shadows).toHaveLength(1)
    const re = s.shadows[0] as (typeof s.shadows)[number]
    expect(re.id).toBe('req-3-shadow')
    expect(re.to).not.toBe(s.home)
    // The group's prompt (its last request's), one output token, not streamed.
    expect(re.body['messages']).toEqual([
      { role: 'system', content: SYSTEM },
      { role: 'user', content: 'Question number 2: what applies here?' },
    ])
    expect(re.body['max_tokens']).toBe(1)
    expect(re.body['stream']).toBe(false)
    expect(re.body['stream_options']).toBeUndefined()
    // Counted once, as a re-warm that succeeded (its answer arrives in the background).
    await until(async () => (await shadowCounts(s.metrics)).length > 0)
    expect(await shadowCounts(s.metrics)).toEqual([['rewarm', 'ok', 1]])
    // The engine got it: one request more (two if the other prompt went there too), one token.
    const both = s.other.to === re.to
    const was = s.before.get(re.to)
    const now = s.byName(re.to).stats()
    expect(now.requests - (was?.requests ?? 0)).toBe(both ? 2 : 1)
    expect(now.generationTokens - (was?.generationTokens ?? 0)).toBe(both ? 9 : 1)
    // Not a client request: four requests counted and logged (three of the group, the other).
    expect(await clientRequests(s.metrics)).toBe(4)
    expect(s.log).toHaveLength(4)
    // The group's next request goes where the re-warm went, and finds its prefix cached there (the
    // system prompt: 608 of its tokens in this run; a pod that never saw it hits none of them).
    const hitBefore = now.prefixHitTokens
    const next = await s.serve(SYSTEM, 3)
    expect(next.status).toBe(200)
    expect(next.to).toBe(re.to)
    expect(s.byName(re.to).stats().prefixHitTokens - hitBefore).toBeGreaterThan(400)
    // Nothing more re-warmed.
    expect(s.p.sent.filter((x) => x.id.endsWith('-shadow'))).toHaveLength(1)
    expect(await shadowCounts(s.metrics)).toEqual([['rewarm', 'ok', 1]])
  }, 20_000)

  it('no re-warm for a cold group (one request)', async () => {
    const s = await rewarmScene(['127.0.0.74', '127.0.0.75', '127.0.0.76'], { groupRequests: 1 })
    // A re-warm is handed to the pool within the pick's serveShadow (synchronously): none by the
    // time the other request was answered is none at all.
    expect(s.shadows).toEqual([])
    expect(await shadowCounts(s.metrics)).toEqual([])
    expect(await clientRequests(s.metrics)).toBe(2)
  }, 20_000)

  it('no re-warm when the scheduler was built with rewarm: false', async () => {
    const s = await rewarmScene(['127.0.0.77', '127.0.0.78', '127.0.0.79'], {
      groupRequests: REWARM_MIN_COUNT + 1,
      rewarm: false,
    })
    expect(s.shadows).toEqual([])
    expect(await shadowCounts(s.metrics)).toEqual([])
    expect(await clientRequests(s.metrics)).toBe(4)
  }, 20_000)
})
