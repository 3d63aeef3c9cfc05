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
import type { PickContext } from '../picker.js'
import { DEFAULT_PROFILE } from './profile.js'
import type { Scheduler } from './scheduler.js'

/** What the warm-up drives: the throwaway Scheduler. */
export type WarmupTarget = Pick<
  Scheduler,
  'onSnapshot' | 'admit' | 'pick' | 'onDispatch' | 'onComplete' | 'ingestScrape' | 'close'
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

/** A small deterministic generator (mulberry32): the same synthetic prompts in every process. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296
  }
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
      for (let i = 0; i < opts.decisions && !cancelled; i++) {
        if (i % batch === 0) {
          await new Promise((res) => setImmediate(res))
          if (cancelled) break
          // Engine numbers as a scrape brings them, moving so the load paths see change.
          for (const s of servers)
            for (const [k, ep] of s.endpoints.entries())
              target.ingestScrape(`${ep.address}:${ep.port}`, {
                ok: true,
                durationMs: 1,
                metrics: {
                  waiting: (i + k) % 3,
                  running: (i + k) % 8,
                  missing: [],
                  kvCacheUsage: ((i + k) % 10) / 10,
                  blockSize: 16,
                  numGpuBlocks: 1024,
                  ttftMeanSec: 0.05,
                  tpotMeanSec: 0.01,
                  engineType: s.engine,
                },
              })
        }
        for (const s of servers) {
          const ctx = warmupContext(s, i, systems)
          const a = target.admit(ctx, signal)
          const chosen = target.pick(ctx)[0]
          if (chosen !== undefined) {
            target.onDispatch(ctx, chosen)
            target.onComplete(ctx, chosen, {
              status: 200,
              firstByteMs: 20 + (i % 7),
              durationMs: 200 + (i % 13),
              promptTokens: 1100,
              completionTokens: 16,
            })
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
