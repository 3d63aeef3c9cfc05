// The routing benchmark's regimes on virtual time: the real scheduler (dataplane/scheduler) and
// the real simulated engines (hack/sim Engine + its vLLM /metrics exposition, parsed by the real
// engine-metrics tracker) in one process, driven by a fake clock instead of the wall clock.
//
// Why: `npm run bench:routing` runs processes on a shared two-core machine, so its figures move
// with whatever else runs (a busy machine makes scrapes time out and engines look slow). Here a
// run is deterministic and takes well under a second, so a routing regime can be a unit test that
// fails before a fix and passes after it. What is simulated is what the scheduler sees in a
// deployment: a scrape of /metrics every `scrapeMs` per endpoint (same exposition text, same
// parser), and per request the time to first byte and the duration the proxy would report.
// Not simulated: HTTP and the proxy itself, retries beyond the next candidate on a refused
// connection, network time. A stream cut by a killed engine is reported as the proxy reports it
// (a reset before the first token, a broken body after). Admission (a `fairness` plugin) runs
// as the proxy runs it: before the pick, possibly queued, released when the response ends.
//
// Time: the caller installs fake timers (vitest `vi.useFakeTimers` faking setTimeout and Date)
// and passes `advance` (e.g. `vi.advanceTimersByTimeAsync`); the engine's `performance.now()` is
// routed to `Date.now()` for the duration of the run.
import { performance } from 'node:perf_hooks'
import type {
  SnapshotEndpoint,
  SnapshotScheduler,
  SnapshotSchedulerPlugin,
} from '../../api/snapshot.js'
import { EngineMetricsTracker } from '../../dataplane/engines/tracker.js'
import { encodeBatch, type WireEvent } from '../../dataplane/kv-events/wire.js'
import type { Admission, DispatchOutcome, ShadowPlan } from '../../dataplane/picker.js'
import { KvCachePlugin } from '../../dataplane/scheduler/plugins/kv-cache.js'
import { Scheduler } from '../../dataplane/scheduler/scheduler.js'
import {
  endpoint,
  pickContext,
  seeded,
  server,
  snapshot,
} from '../../dataplane/scheduler/testkit.js'
import { nextRewarm, RewarmStore } from '../../dataplane/serve/rewarm.js'
import { ShadowGate } from '../../dataplane/serve/shadow.js'
import { Engine, type EngineConfig, type EngineObserver } from '../sim/engine.js'
import { kvEventListener } from '../sim/kv-events.js'
import { SimMetrics } from '../sim/metrics.js'
import { generateWords } from '../sim/rng.js'
import { applyChatTemplate, tokenize } from '../sim/tokenizer.js'

export type EngineShape = Pick<
  EngineConfig,
  | 'maxNumSeqs'
  | 'blockSize'
  | 'numGpuBlocks'
  | 'prefillOverheadMs'
  | 'prefillMsPerToken'
  | 'decodeMsPerToken'
  | 'batchSlowdown'
  | 'loraLoadMs'
  | 'prefillInterference'
>

/** The two shapes of `npm run bench:routing` (hack/bench/routing.ts). */
export const PREFILL_BOUND: EngineShape = {
  maxNumSeqs: 8,
  blockSize: 16,
  numGpuBlocks: 1024,
  prefillOverheadMs: 10,
  prefillMsPerToken: 0.25,
  decodeMsPerToken: 10,
  batchSlowdown: 0.02,
  loraLoadMs: 50,
}
export const DECODE_BOUND: EngineShape = {
  ...PREFILL_BOUND,
  maxNumSeqs: 4,
  prefillMsPerToken: 0.1,
  decodeMsPerToken: 15,
}

export interface VirtualRequest {
  /** ms after the start. */
  readonly at: number
  readonly system?: string
  readonly user: string
  readonly maxTokens: number
  /** An adapter name (served as a LoRA of the base model). */
  readonly lora?: string
  /** Carried to the result (e.g. the prefix group), for per-class statistics. */
  readonly tag?: string
  /** Request headers the scheduler reads (e.g. a tenant header for `fairness`). */
  readonly headers?: Readonly<Record<string, string>>
}

export interface VirtualFleetOptions {
  readonly shape: EngineShape
  readonly pods: number
  readonly timeScale?: number
  readonly loras?: readonly string[]
  readonly maxLoras?: number
  /** Our plugins; undefined = the default profile. */
  readonly plugins?: readonly SnapshotSchedulerPlugin[]
  /** Independent schedulers (data-plane replicas) taking requests in turn. Default 1. */
  readonly replicas?: number
  readonly scrapeMs?: number
  readonly requests: readonly VirtualRequest[]
  /** Engines restarted in place: down (connections refused) for `downMs` from `at`. */
  readonly restarts?: readonly {
    readonly pod: number
    readonly at: number
    readonly downMs: number
  }[]
  readonly advance: (ms: number) => Promise<unknown>
  /** Keep each decision's explain line (the scores per pod) on its result, for diagnosis. */
  readonly explain?: boolean
  /**
   * Engines publish KV events (vLLM's format, hack/sim/kv-events.ts) to every replica's `kv-cache`
   * plugin, `delayMs` after the engine stores or evicts (one batch per engine per delivery).
   */
  readonly kvEvents?: { readonly hashSeed?: string; readonly delayMs?: number }
  /**
   * Send the shadow requests the scheduler asks for (hot groups' warm copies, predicted-latency
   * #replicate), as the proxy does (dataplane/serve/shadow.ts: the prompt with one output token,
   * not streamed, at most MAX_SHADOWS_IN_FLIGHT per replica). Default true, as the data plane;
   * false = as the EPP (Envoy sends the requests, nobody sends shadows).
   */
  readonly shadows?: boolean
  /**
   * Re-warm the groups a dead or restarted engine held (scheduler/plugins/rewarm.ts), as the
   * proxy does (serve/shadow.ts serveShadow): each replica keeps its warm groups' last prompts in
   * a RewarmStore and, after each pick, sends the one re-warm its scheduler plans. Default true,
   * as the data plane (only with `shadows`).
   */
  readonly rewarm?: boolean
}

export interface VirtualResult {
  readonly at: number
  readonly tag?: string
  readonly pod: string
  readonly ttftMs: number
  readonly e2eMs: number
  readonly ok: boolean
  /** Prompt tokens the engine found in its prefix cache. */
  readonly cachedTokens: number
  /** Prompt tokens as the engine counted them (0 when it did not answer). */
  readonly promptTokens: number
  /** Endpoints tried (1 = the first pick answered; more = refused connections before). */
  readonly attempts: number
  /** The scheduler's explain line for the decision (with `explain`). */
  readonly explain?: string
  /** ms the request waited in admission (a fairness queue) before its pick. */
  readonly queuedMs: number
  /**
   * Adapter requests: whether the engine it was sent to had the adapter in a slot at that moment,
   * and the pods that had (engine truth, for diagnosing misses; the scheduler never reads it).
   */
  readonly adapter?: { readonly loaded: boolean; readonly homes: readonly string[] }
}

export interface VirtualRun {
  readonly results: readonly VirtualResult[]
  /**
   * Cached prompt tokens / prompt tokens over all engines (restarted ones included), as the
   * engines count them: shadow requests' prompts included (a copy's prefill is a miss).
   */
  readonly prefixHitRate: number
  /** The same over the client requests that were answered only. */
  readonly clientPrefixHitRate: number
  /** Requests that did not have to load their adapter (when adapters are requested). */
  readonly adapterHitRate: number
  readonly perPod: Record<string, number>
  /**
   * Shadow requests started (all replicas), and those the in-flight bound dropped; `rewarms`: how
   * many of the started ones were re-warms (the rest hot-group copies).
   */
  readonly shadows: { readonly sent: number; readonly dropped: number; readonly rewarms: number }
}

const MODEL = 'bench-llm'
const BASE_HOST = 150

interface Pod {
  readonly ep: SnapshotEndpoint
  engine: Engine
  metrics: SimMetrics
  up: boolean
  /** Counters of earlier incarnations plus the live one's, read at the end. */
  prefixQueried: number
  prefixHit: number
  loraLoads: number
  /** Cuts the streams in flight (the engine went down under them). */
  inflight: Set<() => void>
  /** Ends the shadows in flight there (failed: the engine went down, or the run ended). */
  shadowsInFlight: Set<() => void>
}

/** Runs `opts.requests` through the fleet on virtual time; resolves when all have finished. */
export async function runVirtualFleet(opts: VirtualFleetOptions): Promise<VirtualRun> {
  const realNow = performance.now
  // The engine reads performance.now(); on virtual time that is Date.now() (faked by the caller).
  performance.now = () => Date.now()
  try {
    return await run(opts)
  } finally {
    performance.now = realNow
  }
}

async function run(opts: VirtualFleetOptions): Promise<VirtualRun> {
  const scrapeMs = opts.scrapeMs ?? 200
  const loras = opts.loras ?? []
  const start = Date.now()
  const now = () => Date.now() - start
  const endpoints = Array.from({ length: opts.pods }, (_, i) => endpoint(`pod-${i}`, BASE_HOST + i))
  const counting = (p: Pod): EngineObserver => ({
    prefix: (q, h) => {
      p.prefixQueried += q
      p.prefixHit += h
      p.metrics.prefix(q, h)
    },
    firstToken: (a, b, c) => p.metrics.firstToken(a, b, c),
    interToken: (s) => p.metrics.interToken(s),
    finished: (r, s) => p.metrics.finished(r, s),
    aborted: () => p.metrics.aborted(),
  })
  const config: EngineConfig = {
    ...opts.shape,
    timeScale: opts.timeScale ?? 1,
    zeroLatency: false,
    maxModelLen: 32_768,
    loras,
    maxLoras: opts.maxLoras ?? 2,
  }
  const boot = (p: Pod): void => {
    p.metrics = new SimMetrics({
      model: MODEL,
      format: 'vllm',
      maxModelLen: config.maxModelLen,
      loraEnabled: loras.length > 0,
      startTimeSeconds: Date.now() / 1000,
    })
    p.engine = new Engine(config, counting(p))
    p.up = true
    if (opts.kvEvents !== undefined) publish(p)
  }
  // KV events: each engine's stores and evictions, batched and numbered per engine incarnation as
  // its publisher would, applied to every replica's kv-cache index through the wire decoder.
  const kvTimers = new Set<NodeJS.Timeout>()
  const publish = (p: Pod): void => {
    const engine = p.engine
    let seq = 0n
    let pending: WireEvent[] = []
    engine.kv.listener = kvEventListener(
      engine.kv,
      { hashSeed: opts.kvEvents?.hashSeed ?? '0' },
      (e) => {
        if (pending.length === 0) {
          const t = setTimeout(() => {
            kvTimers.delete(t)
            if (p.engine !== engine) return
            const payload = encodeBatch(Date.now() / 1000, pending)
            pending = []
            const s = seq++
            for (const rep of replicas) {
              const st = rep.sch.state(`${p.ep.address}:${p.ep.port}`)
              if (st === undefined) continue
              for (const plugin of rep.sch.plugins(srv.key)) {
                if (!(plugin instanceof KvCachePlugin)) continue
                plugin.subscriber(st).state.onMessage(s, payload)
              }
            }
          }, opts.kvEvents?.delayMs ?? 5)
          kvTimers.add(t)
        }
        pending.push(e)
      },
    )
  }
  const pods: Pod[] = endpoints.map((ep) => {
    const p: Pod = {
      ep,
      engine: new Engine(config),
      metrics: new SimMetrics({ model: MODEL, format: 'vllm', maxModelLen: 1, loraEnabled: false }),
      up: false,
      prefixQueried: 0,
      prefixHit: 0,
      loraLoads: 0,
      inflight: new Set(),
      shadowsInFlight: new Set(),
    }
    boot(p)
    return p
  })
  const srv = server(endpoints, {
    name: 'pool',
    ...(opts.plugins !== undefined
      ? { scheduler: { plugins: opts.plugins } satisfies SnapshotScheduler }
      : {}),
  })
  const replicas = Array.from({ length: opts.replicas ?? 1 }, (_, i) => {
    // Scraped from outside (the loops below) but scraped all the same: an ejected endpoint is
    // readmitted on its first answer, as with the real scraper (with `scrape: false` it came
    // back blind when its ejection period ran out, before the scrape that shows its restart).
    const sch = new Scheduler({
      scrape: { external: true, intervalMs: scrapeMs },
      now: () => Date.now(),
      random: seeded(1 + i),
    })
    sch.onSnapshot(snapshot([srv]))
    // One tracker per replica and endpoint: each scraper keeps its own interval state.
    const trackers = pods.map(() => new EngineMetricsTracker('vLLM'))
    return { sch, trackers, gate: new ShadowGate(), kept: new RewarmStore<string>() }
  })
  const timers: NodeJS.Timeout[] = []
  // Scrapes: every endpoint every `scrapeMs`, replicas and endpoints staggered as independent
  // scrape loops are.
  let scraping = true
  for (const [r, rep] of replicas.entries()) {
    for (const [i, p] of pods.entries()) {
      const id = `${p.ep.address}:${p.ep.port}`
      const loop = (): void => {
        if (!scraping) return
        rep.sch.scrapeStarted(id)
        if (p.up) {
          const text = p.metrics.render(p.engine.gauges(), Date.now() / 1000)
          const got = rep.trackers[i]?.ingestText(text)
          if (got !== undefined) {
            rep.sch.ingestScrape(id, {
              ok: true,
              metrics: got.metrics,
              durationMs: 1,
              ...(got.restart !== undefined ? { restart: got.restart } : {}),
            })
          }
        } else {
          rep.sch.ingestScrape(id, {
            ok: false,
            kind: 'unreachable',
            error: 'ECONNREFUSED',
            durationMs: 1,
          })
        }
        setTimeout(loop, scrapeMs)
      }
      setTimeout(loop, ((i + r / replicas.length) * scrapeMs) / pods.length)
    }
  }
  for (const x of opts.restarts ?? []) {
    timers.push(
      setTimeout(() => {
        const p = pods[x.pod] as Pod
        p.loraLoads += p.engine.lora.counters().loads
        p.up = false
        // Streams in flight are cut; the sinks of a closed engine are never called again.
        p.engine.close()
        for (const cut of [...p.inflight]) cut()
        for (const cut of [...p.shadowsInFlight]) cut()
        timers.push(setTimeout(() => boot(p), x.downMs))
      }, x.at),
    )
  }
  // Shadows as the proxy sends them (serve/shadow.ts sendShadow): right after the pick, bounded in
  // flight per replica, counted in flight by the scheduler while they run, never retried.
  const shadowsOn = opts.shadows !== false
  const rewarmOn = shadowsOn && opts.rewarm !== false
  let shadowsSent = 0
  let shadowsDropped = 0
  let rewarms = 0
  const sendShadow = (
    rep: (typeof replicas)[number],
    ctx: ReturnType<typeof pickContext>,
    prompt: string,
  ): void => {
    const plan = shadowsOn ? rep.sch.shadow(ctx) : undefined
    if (plan !== undefined) sendPlan(rep, plan, prompt)
    if (!rewarmOn) return
    const re = nextRewarm(rep.sch, rep.kept, ctx, srv, prompt, prompt.length, Date.now())
    if (re !== undefined && sendPlan(rep, re.plan, re.kept)) rewarms++
  }
  const sendPlan = (rep: (typeof replicas)[number], plan: ShadowPlan, prompt: string): boolean => {
    if (!rep.gate.tryAcquire()) {
      shadowsDropped++
      return false
    }
    shadowsSent++
    const end = plan.start()
    const pod = pods.find((p) => p.ep.name === plan.endpoint.name) as Pod
    let settled = false
    const finish = (ok: boolean): void => {
      if (settled) return
      settled = true
      pod.shadowsInFlight.delete(cut)
      rep.gate.release()
      end(ok)
    }
    const cut = (): void => finish(false)
    if (!pod.up) {
      finish(false)
      return true
    }
    pod.shadowsInFlight.add(cut)
    pod.engine.submit(
      {
        lora: null,
        promptTokens: tokenize(prompt),
        outputTokens: ['x'],
        finishReason: 'length',
        streaming: false,
      },
      { token: () => {}, finish: () => finish(true) },
    )
    return true
  }
  const results: VirtualResult[] = []
  const done: Promise<void>[] = []
  let turn = 0
  const send = (q: VirtualRequest): Promise<void> =>
    new Promise<void>((resolve) => {
      const rep = replicas[turn++ % replicas.length] as (typeof replicas)[number]
      const messages = [
        ...(q.system !== undefined ? [{ role: 'system', content: q.system }] : []),
        { role: 'user', content: q.user },
      ]
      const model = q.lora ?? MODEL
      const sink: { text?: string } = {}
      const ctx = pickContext(
        srv,
        { model, messages, max_tokens: q.maxTokens, stream: true },
        { ...q.headers },
        {
          isLora: q.lora !== undefined,
          model,
          ...(opts.explain === true ? { explain: sink } : {}),
        },
      )
      const explained = (): { explain?: string } =>
        sink.text !== undefined ? { explain: sink.text } : {}
      const t0 = Date.now()
      let admission: Admission | undefined
      let list: readonly SnapshotEndpoint[] = []
      let queuedMs = 0
      const attempt = (k: number): void => {
        const target = list[k]
        if (target === undefined) {
          admission?.release()
          results.push({
            at: q.at,
            ...(q.tag !== undefined ? { tag: q.tag } : {}),
            pod: '?',
            ttftMs: Number.NaN,
            e2eMs: Date.now() - t0,
            ok: false,
            cachedTokens: 0,
            promptTokens: 0,
            attempts: k,
            queuedMs,
            ...explained(),
          })
          resolve()
          return
        }
        const pod = pods.find((p) => p.ep.name === target.name) as Pod
        rep.sch.onDispatch(ctx, target)
        const sent = Date.now()
        if (!pod.up) {
          // Refused: the proxy moves on to the next candidate.
          rep.sch.onComplete(ctx, target, { status: 0, failure: 'connect', durationMs: 0 })
          attempt(k + 1)
          return
        }
        const prompt = applyChatTemplate(messages)
        const lora = q.lora
        const adapter =
          lora === undefined
            ? {}
            : {
                adapter: {
                  loaded: pod.engine.lora.loaded().includes(lora),
                  homes: pods
                    .filter((p) => p.up && p.engine.lora.loaded().includes(lora))
                    .map((p) => p.ep.name),
                },
              }
        let first = Number.NaN
        let settled = false
        const finish = (
          o: DispatchOutcome,
          ok: boolean,
          cachedTokens = 0,
          promptTokens = 0,
        ): void => {
          if (settled) return
          settled = true
          pod.inflight.delete(cut)
          rep.sch.onComplete(ctx, target, o)
          admission?.release()
          results.push({
            at: q.at,
            ...(q.tag !== undefined ? { tag: q.tag } : {}),
            pod: pod.ep.name,
            ttftMs: Number.isNaN(first) ? Number.NaN : first - t0,
            e2eMs: Date.now() - t0,
            ok,
            cachedTokens,
            promptTokens,
            attempts: k + 1,
            queuedMs,
            ...adapter,
            ...explained(),
          })
          resolve()
        }
        // As the proxy reports it: the engine sends its headers with the first token, so a stream
        // cut before that is a connection reset with no response (forward.ts: 'reset', not held
        // against the engine, not retried), one cut after it a broken body.
        const cut = (): void =>
          finish(
            Number.isNaN(first)
              ? { status: 0, failure: 'other', durationMs: Date.now() - sent }
              : {
                  status: 200,
                  failure: 'stream_cut',
                  durationMs: Date.now() - sent,
                  firstByteMs: first - sent,
                },
            false,
          )
        pod.inflight.add(cut)
        pod.engine.submit(
          {
            lora: q.lora ?? null,
            promptTokens: tokenize(prompt),
            outputTokens: generateWords(1, `${model}\u0000${prompt}`, q.maxTokens),
            finishReason: 'length',
            streaming: true,
          },
          {
            token: () => {
              if (Number.isNaN(first)) first = Date.now()
            },
            // As the proxy reports a stream: first byte and duration, no usage (the client did
            // not ask for it).
            finish: (r) =>
              finish(
                { status: 200, firstByteMs: first - sent, durationMs: Date.now() - sent },
                true,
                r.cachedTokens,
                r.promptTokens,
              ),
          },
        )
      }
      // As the proxy does (serve/server-target.ts): admission first (it may wait in a queue), the
      // pick after it, on the view of the endpoints at that time.
      const start = (a: Admission | undefined): void => {
        admission = a
        queuedMs = Date.now() - t0
        list = rep.sch.pick(ctx)
        sendShadow(rep, ctx, applyChatTemplate(messages))
        attempt(0)
      }
      const admitted = rep.sch.admit(ctx, new AbortController().signal)
      if (admitted instanceof Promise) {
        admitted.then(start, () => {
          results.push({
            at: q.at,
            ...(q.tag !== undefined ? { tag: q.tag } : {}),
            pod: '-',
            ttftMs: Number.NaN,
            e2eMs: Date.now() - t0,
            ok: false,
            cachedTokens: 0,
            promptTokens: 0,
            attempts: 0,
            queuedMs: Date.now() - t0,
          })
          resolve()
        })
      } else start(admitted)
    })
  // One arrival timer at a time: fake timers look for the next one among all pending.
  const queue = [...opts.requests].sort((a, b) => a.at - b.at)
  let next = 0
  const arrive = (): void => {
    while (next < queue.length && (queue[next] as VirtualRequest).at <= now()) {
      done.push(send(queue[next++] as VirtualRequest))
    }
    if (next < queue.length) {
      arrival = setTimeout(arrive, Math.max(0, (queue[next] as VirtualRequest).at - now()))
    }
  }
  let arrival = setTimeout(arrive, queue[0]?.at ?? 0)
  const last = Math.max(0, ...opts.requests.map((q) => q.at))
  await opts.advance(last + 1)
  // Drain: keep the clock moving until every request has finished (bounded).
  for (let k = 0; k < 600 && results.length < opts.requests.length; k++) await opts.advance(100)
  scraping = false
  clearTimeout(arrival)
  for (const t of timers) clearTimeout(t)
  for (const t of kvTimers) clearTimeout(t)
  for (const p of pods) {
    p.engine.close()
    for (const cut of [...p.shadowsInFlight]) cut()
  }
  await Promise.all(done)
  const perPod: Record<string, number> = {}
  for (const r of results) if (r.ok) perPod[r.pod] = (perPod[r.pod] ?? 0) + 1
  const queried = pods.reduce((n, p) => n + p.prefixQueried, 0)
  const hit = pods.reduce((n, p) => n + p.prefixHit, 0)
  const loads = pods.reduce((n, p) => n + p.loraLoads + p.engine.lora.counters().loads, 0)
  for (const rep of replicas) await rep.sch.close()
  return {
    results,
    prefixHitRate: queried > 0 ? hit / queried : 0,
    clientPrefixHitRate: clientHitRate(results),
    adapterHitRate: 1 - loads / Math.max(1, opts.requests.length),
    perPod,
    shadows: { sent: shadowsSent, dropped: shadowsDropped, rewarms },
  }
}

function clientHitRate(rs: readonly VirtualResult[]): number {
  let q = 0
  let h = 0
  for (const r of rs) {
    if (!r.ok) continue
    q += r.promptTokens
    h += r.cachedTokens
  }
  return q > 0 ? h / q : 0
}

/** p-th percentile (nearest rank) of the TTFTs of the successful results from `fromMs` on. */
export function ttftPercentile(rs: readonly VirtualResult[], p: number, fromMs = 0): number {
  const xs = rs
    .filter((r) => r.ok && r.at >= fromMs)
    .map((r) => r.ttftMs)
    .sort((a, b) => a - b)
  if (xs.length === 0) return Number.NaN
  return xs[Math.min(xs.length - 1, Math.max(0, Math.ceil((p / 100) * xs.length) - 1))] as number
}
