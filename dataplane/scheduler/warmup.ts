// Synthetic decisions at start-up, on a throwaway scheduler, so the first real requests run
// optimised code (issue 9). A fresh data plane runs the scheduler's code in V8's interpreter: the
// first decision compiles every function it meets (2-10 ms measured), and at a few requests per
// second the decision stays unoptimised for thousands of requests (bench:decision-live: 16 req/s
// for 10 s, p50 220-230 µs cold against 107-122 µs after 600 requests had warmed it). V8's
// optimised code and type feedback belong to the functions (class methods, shared by every
// instance), so decisions made on another Scheduler instance warm the same code.
//
// Nothing real is touched: the throwaway scheduler has its own endpoint states, plugin instances
// (prefix index, sessions, learned latency) and decision sample, scrapes nothing and reports no
// metrics; its endpoints are synthetic (never contacted). Only the process-wide prompt-hash cache
// sees its prompts, which real prompts push out. Profiles with kv-cache are not warmed: that
// plugin subscribes to its endpoints' KV-event streams.

import { canonicalJson } from '../../api/canonical-json.js'
import type { RoutingSnapshot, SnapshotServer } from '../../api/snapshot.js'
import { EngineMetricsTracker } from '../engines/tracker.js'
import { dispatchOutcome, type PickContext } from '../picker.js'
import { seededRandom } from '../seeded-random.js'
import { DEFAULT_PROFILE } from './profile.js'
import type { Scheduler } from './scheduler.js'

/** What the warm-up drives: the throwaway Scheduler. */
export type WarmupTarget = Pick<
  Scheduler,
  | 'onSnapshot'
  | 'admit'
  | 'pick'
  | 'onDispatch'
  | 'onComplete'
  | 'scrapeStarted'
  | 'ingestScrape'
  | 'close'
>

/** Synthetic endpoints per warmed server: enough for the scoring loops, as a small pool has. */
const ENDPOINTS = 4
/** Shared system prompts and their length in characters (a few KiB, as chat prompts are). */
const GROUPS = 8
const SYSTEM_CHARS = 4096
const QUESTION_CHARS = 256

/**
 * One synthetic server per distinct profile of `snapshot` not in `done` (profiles are added to
 * it), on four synthetic endpoints; none for profiles with kv-cache, nor for prefill/decode
 * servers (their roles are derived servers of the same profiles).
 */
export function warmupServers(snapshot: RoutingSnapshot, done: Set<string>): SnapshotServer[] {
  const out: SnapshotServer[] = []
  for (const s of Object.values(snapshot.servers)) {
    const profile = s.scheduler ?? DEFAULT_PROFILE
    if (profile.plugins.some((p) => p.name === 'kv-cache')) continue
    const key = canonicalJson(profile)
    if (done.has(key)) continue
    done.add(key)
    const name = `warmup-${out.length}`
    out.push({
      key: `warmup/${name}`,
      namespace: 'warmup',
      name,
      engine: s.engine,
      protocol: 'http',
      port: 8000,
      trafficPolicy: s.trafficPolicy,
      endpoints: Array.from({ length: ENDPOINTS }, (_, i) => ({
        name: `${name}-${i}`,
        // TEST-NET-1 (RFC 5737): an address nothing answers on, in case anything ever tried.
        address: `192.0.2.${i + 1}`,
        port: 8000,
        ready: true,
        labels: {},
      })),
      ...(s.scheduler !== undefined ? { scheduler: s.scheduler } : {}),
    })
  }
  return out
}

/**
 * The i-th scrape of a synthetic vLLM engine: what the metrics go through is the real path (the
 * parser, the engine's adapter, the interval arithmetic), so the objects the scheduler's code
 * meets have the shapes real scrapes give it. Synthetic objects of other shapes made V8
 * deoptimise the warmed code on the first real requests ("wrong map", bench:decision-live
 * --node-args=--trace-deopt).
 */
export function warmupMetricsText(i: number, k: number): string {
  const m = 'model_name="warmup"'
  const done = 10 * i + k
  return [
    `vllm:num_requests_running{${m}} ${(i + k) % 8}`,
    `vllm:num_requests_waiting{${m}} ${(i + k) % 3}`,
    `vllm:kv_cache_usage_perc{${m}} ${((i + k) % 10) / 10}`,
    `vllm:prefix_cache_queries_total{${m}} ${1600 * done}`,
    `vllm:prefix_cache_hits_total{${m}} ${1200 * done}`,
    'vllm:cache_config_info{block_size="16",num_gpu_blocks="1024"} 1',
    `vllm:time_to_first_token_seconds_count{${m}} ${done}`,
    `vllm:time_to_first_token_seconds_sum{${m}} ${0.05 * done}`,
    `vllm:time_per_output_token_seconds_count{${m}} ${16 * done}`,
    `vllm:time_per_output_token_seconds_sum{${m}} ${0.16 * done}`,
    `vllm:prompt_tokens_total{${m}} ${1100 * done}`,
    `vllm:request_success_total{${m}} ${done}`,
    'process_start_time_seconds 1700000000',
    '',
  ].join('\n')
}

function text(chars: number, r: () => number): string {
  let s = ''
  while (s.length < chars) s += `w${Math.floor(r() * 5000)} `
  return s.slice(0, chars)
}

/**
 * The i-th synthetic request's context on `server`. The body goes through JSON as a client's
 * does, so its strings are the parser's (flat) strings, not concatenations: type feedback then
 * matches what real requests bring.
 */
export function warmupContext(
  server: SnapshotServer,
  i: number,
  systems: readonly string[],
): PickContext {
  const r = seededRandom(i + 1)
  const body = JSON.parse(
    JSON.stringify({
      model: 'warmup',
      messages: [
        { role: 'system', content: systems[i % systems.length] },
        { role: 'user', content: text(QUESTION_CHARS, r) },
      ],
      max_tokens: 16,
      stream: i % 2 === 0,
    }),
  ) as Record<string, unknown>
  return {
    requestId: `warmup-${i}`,
    model: 'warmup',
    isLora: false,
    server,
    body,
    header: () => undefined,
  }
}

export interface WarmupOptions {
  /** Synthetic decisions per server. */
  readonly decisions: number
  /** Decisions per turn of the event loop: requests arriving meanwhile wait at most one batch. */
  readonly batch?: number
}

/**
 * Runs `decisions` synthetic requests (admit, pick, dispatch, complete) per server through
 * `target`, `batch` per macrotask, then closes it. `cancel()` stops it at the next turn. The
 * returned promise settles when it has finished or been cancelled; it never rejects (a failing
 * warm-up only leaves the code cold).
 */
export function runWarmup(
  target: WarmupTarget,
  servers: readonly SnapshotServer[],
  opts: WarmupOptions,
): { readonly done: Promise<number>; cancel(): void } {
  let cancelled = false
  const batch = Math.max(1, opts.batch ?? 16)
  const done = (async (): Promise<number> => {
    let made = 0
    try {
      if (servers.length === 0 || opts.decisions <= 0) return 0
      target.onSnapshot({
        schemaVersion: 1,
        version: 0,
        hash: '0'.repeat(64),
        routes: [],
        servers: Object.fromEntries(servers.map((s) => [s.key, s])),
      })
      const r = seededRandom(7)
      const systems = Array.from({ length: GROUPS }, () => text(SYSTEM_CHARS, r))
      const signal = new AbortController().signal
      const trackers = servers.map((s) => s.endpoints.map(() => new EngineMetricsTracker(s.engine)))
      for (let i = 0; i < opts.decisions && !cancelled; i++) {
        if (i % batch === 0) {
          await new Promise((res) => setImmediate(res))
          if (cancelled) break
          // Engine numbers as a scrape brings them, moving so the load paths see change.
          for (const [j, s] of servers.entries())
            for (const [k, ep] of s.endpoints.entries()) {
              const id = `${ep.address}:${ep.port}`
              const tracker = trackers[j]?.[k]
              if (tracker === undefined) continue
              target.scrapeStarted(id)
              const { metrics } = tracker.ingestText(warmupMetricsText(i / batch, k))
              // Keys in the scraper's order (engines/scraper.ts), for the same object shape.
              target.ingestScrape(id, { ok: true, metrics, durationMs: 1 })
            }
        }
        for (const s of servers) {
          const ctx = warmupContext(s, i, systems)
          const a = target.admit(ctx, signal)
          const chosen = target.pick(ctx)[0]
          if (chosen !== undefined) {
            const at = performance.now()
            target.onDispatch(ctx, chosen)
            // Made by the proxy's own function, as a real completion is.
            target.onComplete(
              ctx,
              chosen,
              dispatchOutcome(
                {
                  status: 200,
                  usage: { promptTokens: 1100, completionTokens: 16 },
                  firstByteMs: 20 + (i % 7),
                  bytes: 2048,
                  stream: i % 2 === 0,
                },
                at,
                at,
              ),
            )
          }
          releaseAdmission(a)
          made++
        }
      }
    } catch {
      // A warm-up that fails leaves the code as cold as without it; nothing else depends on it.
    } finally {
      await target.close().catch(() => undefined)
    }
    return made
  })()
  return {
    done,
    cancel: () => {
      cancelled = true
    },
  }
}

/** An admission the warm-up got (now, or once a queue lets it in) is given back. */
function releaseAdmission(a: unknown): void {
  if (a instanceof Promise) {
    a.then(releaseAdmission, () => undefined)
    return
  }
  if (typeof a === 'object' && a !== null && 'release' in a && typeof a.release === 'function')
    a.release()
}
