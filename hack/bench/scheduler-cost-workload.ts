// bench:scheduler-cost's traffic and engines, on a virtual clock: what a gateway in front of 64
// engines observes, so the decisions it times take the paths they take in production.
//
// Why a virtual clock: the decisions run back to back, thousands per second of wall time, far
// above what 64 engines serve. With the wall clock as the scheduler's, the scrape went stale
// after the first second (staleAfterMs 1 s: most decisions ran without engine metrics), every
// group's requests came so close together that a prefill of its own prefix was always running on
// its pod (no request ever measured prefill interference), and hot-group copies, gated on that
// measure, never started. Here requests arrive `rate` per second of virtual time, engines are
// scraped every SCRAPE_MS of it, answers come back when their duration has passed, and each
// answer is a stream whose first byte comes when this engine model says.
//
// The engines: per pod a batch limit (8-16) it runs near, at times full with a queue (so the
// limit is learned from its metrics), one of four GPU types (prefill speed ×1-×3), and a prefix
// cache of every prompt sent to it (no eviction: the fleet's caches are far larger than this
// traffic). A request's TTFT is overhead + the prompt tokens that cache misses × the GPU's
// prefill cost, ±5 %; prefills do not delay other requests (the engine overlaps them, as the
// routing simulator's default model), so predicted-latency measures an interference near 0 and
// starts copies. The traffic: half LoRA (12 adapters), half base-model; each base request either
// opens a conversation (a shared system prompt, 7/8 of the prompt, and a unique question) or is
// the next turn of one opened FOLLOW_UP_AFTER requests earlier (its prompt plus the answer and a
// short question: a prefix hit of all but ~70 tokens, the requests that measure interference).
// System prompts (prefix groups) churn: 32 live at a time, a new one every `groupEvery`
// requests replacing the oldest, so groups keep being placed, getting hot and being copied.

import type { SnapshotEndpoint, SnapshotScheduler, SnapshotServer } from '../../api/snapshot.js'
import type { EngineMetrics } from '../../dataplane/engines/view.js'
import type { DispatchOutcome, PickContext } from '../../dataplane/picker.js'
import { metrics, seeded } from '../../dataplane/scheduler/testkit.js'

/** Every plugin on (the profile bench:scheduler-cost and its in-process A/B time). */
export const ALL_PLUGINS: SnapshotScheduler = {
  plugins: [
    { name: 'predicted-latency', weight: 6, args: {} },
    { name: 'prefix-cache', weight: 3, args: {} },
    { name: 'least-pending', weight: 2, args: { maxWaitingRequests: 50 } },
    { name: 'least-kv-cache', weight: 1, args: {} },
    { name: 'least-latency', weight: 1, args: {} },
    { name: 'lora-affinity', weight: 3, args: {} },
    { name: 'session-affinity', weight: 4, args: {} },
    { name: 'gpu-aware', weight: 2, args: {} },
    { name: 'random', weight: 0.1, args: {} },
    { name: 'round-robin', weight: 0.1, args: {} },
    { name: 'fairness', weight: 0, args: {} },
  ],
}

/** Scrape interval (virtual ms): the scheduler's default. */
export const SCRAPE_MS = 200
/** Prefix groups live at a time. */
export const GROUPS = 32
/** A conversation's next turn comes this many requests after its first. */
export const FOLLOW_UP_AFTER = 400
/** Output tokens of every answer, and the engine's time per output token (ms). */
const OUTPUT_TOKENS = 20
const TPOT_MS = 10
const OVERHEAD_MS = 10
const PREFILL_MS_PER_TOKEN = 0.1
const GPUS = ['H100', 'A100', 'L40S', 'A10'] as const
/** Prefill slowdown per GPU type, in GPUS' order. */
const GPU_SLOWDOWN = [1, 1.5, 2, 3]

export type RequestKind = 'lora' | 'opening' | 'follow-up'

export interface WorkloadOptions {
  readonly endpoints: number
  readonly promptTokens: number
  /** Requests per second of virtual time. */
  readonly rate: number
  /** Requests between two new prefix groups. */
  readonly groupEvery: number
}

/** A request made by `next`, with what the engine model needs to answer it. */
export interface WorkloadRequest {
  readonly ctx: PickContext
  readonly kind: RequestKind
  /** Its group's first request: a prefix no pod holds yet. */
  readonly opensGroup: boolean
}

export class CostWorkload {
  readonly opts: WorkloadOptions
  /** Virtual time (ms): the scheduler's clock. */
  now = 0
  readonly endpoints: SnapshotEndpoint[]
  readonly #chars: number
  readonly #systems = new Map<number, string>()
  readonly #cached: Set<string>[]
  readonly #capacity: number[]
  readonly #noise = seeded(7)
  readonly #opened = new Set<number>()
  #q = 0
  #scrapes = 0
  /**
   * What each request asked the engine for: its cache keys, longest prefix first, the prompt
   * tokens each leaves to compute, and the whole prompt's.
   */
  readonly #asks = new WeakMap<PickContext, { keys: string[]; tokens: number[]; total: number }>()

  constructor(opts: WorkloadOptions) {
    this.opts = opts
    this.#chars = opts.promptTokens * 4
    this.endpoints = Array.from({ length: opts.endpoints }, (_, i) => ({
      name: `pod-${i}`,
      address: `10.0.${Math.floor(i / 250)}.${(i % 250) + 1}`,
      port: 8000,
      ready: true,
      labels: { 'nvidia.com/gpu.product': `NVIDIA-${GPUS[i % GPUS.length]}` },
    }))
    this.#cached = this.endpoints.map(() => new Set())
    this.#capacity = this.endpoints.map((_, i) => 8 + (i % 9))
  }

  /** Pod i's metrics at the k-th scrape: near its batch limit, at it (queueing) one in 7. */
  metricsOf(i: number, k: number): EngineMetrics {
    const cap = this.#capacity[i] as number
    const running = cap - ((i * 5 + k * 3) % 7)
    return metrics({
      running,
      waiting: running === cap ? 1 + ((i + k) % 3) : 0,
      kvCacheUsage: ((i + k) % 10) / 10,
      ttftMeanSec: 0.05 + (i % 7) / 100,
      tpotMeanSec: 0.01 + (i % 5) / 1000,
      numGpuBlocks: 30_000,
      blockSize: 16,
      lora: { maxLora: 4, running: [`lora-${i % 12}`], waiting: [] },
    })
  }

  /**
   * Scrapes due by `now`: calls `scrape(i, metrics)` for each pod, once per SCRAPE_MS. Returns
   * how many rounds it made.
   */
  scrapeDue(scrape: (i: number, m: EngineMetrics) => void): number {
    let rounds = 0
    while (this.#scrapes * SCRAPE_MS <= this.now) {
      for (let i = 0; i < this.endpoints.length; i++) scrape(i, this.metricsOf(i, this.#scrapes))
      this.#scrapes++
      rounds++
    }
    return rounds
  }

  /** The prefix group of request q: slot q % GROUPS, renewed every GROUPS × groupEvery requests. */
  groupOf(q: number): number {
    const slot = q % GROUPS
    const span = GROUPS * this.opts.groupEvery
    return slot + GROUPS * Math.floor((q + slot * this.opts.groupEvery) / span)
  }

  #system(g: number): string {
    let s = this.#systems.get(g)
    if (s === undefined) {
      s = words(Math.floor(this.#chars * 0.875), g + 1)
      this.#systems.set(g, s)
      // Groups of slots that renewed since are not asked for again.
      for (const k of this.#systems.keys()) if (k < g - 2 * GROUPS) this.#systems.delete(k)
    }
    return s
  }

  /** The next request to `server`, the clock moved to its arrival. */
  next(server: SnapshotServer): WorkloadRequest {
    const q = ++this.#q
    this.now = q * (1000 / this.opts.rate)
    const lora = q % 2 === 0
    const model = lora ? `lora-${q % 12}` : 'base'
    // Base requests alternate: a conversation's opening, the next turn of an earlier one.
    const followUp = !lora && q % 4 === 3 && q > FOLLOW_UP_AFTER
    const opened = followUp ? q - FOLLOW_UP_AFTER : q
    const g = this.groupOf(opened)
    const question = words(Math.floor(this.#chars * 0.125), 100_000 + opened)
    const messages: { role: string; content: string }[] = [
      { role: 'system', content: this.#system(g) },
      { role: 'user', content: question },
    ]
    const extra = followUp ? words(240, 200_000 + q) : ''
    if (followUp) {
      messages.push({ role: 'assistant', content: words(80, 300_000 + opened) })
      messages.push({ role: 'user', content: extra })
    }
    const headers: Record<string, string> = {
      'x-session-id': `s-${opened % 500}`,
      'x-tenant-id': `t-${q % 7}`,
    }
    const ctx: PickContext = {
      requestId: `r${q}`,
      model,
      isLora: lora,
      server,
      // Parsed from JSON as the proxy parses a request: every request's strings are its own
      // objects, as in production, not the same system-prompt string shared by reference.
      body: JSON.parse(
        JSON.stringify({ model, max_tokens: 128, stream: true, messages }),
      ) as Record<string, unknown>,
      header: (n) => headers[n],
    }
    // The engine's cache keys (KV is per model/adapter), longest prefix first, with the prompt
    // tokens each leaves to compute.
    const sys = Math.ceil(this.#system(g).length / 4)
    const conv = sys + Math.ceil(question.length / 4)
    const total = followUp ? conv + Math.ceil((80 + extra.length) / 4) + 8 : conv
    const keys = [`c${opened}@${model}`, `g${g}@${model}`]
    this.#asks.set(ctx, { keys, tokens: [total - conv, total - sys], total })
    const opensGroup = !lora && !followUp && !this.#opened.has(g)
    if (opensGroup) {
      this.#opened.add(g)
      for (const k of this.#opened) if (k < g - 2 * GROUPS) this.#opened.delete(k)
    }
    return { ctx, kind: lora ? 'lora' : followUp ? 'follow-up' : 'opening', opensGroup }
  }

  /**
   * The engine's answer to a request sent to `pod`: its TTFT from what that pod's cache misses,
   * then OUTPUT_TOKENS streamed. Caches the prompt there (from now on, as the engine does once
   * the prefill has run; a request arriving meanwhile would wait for it, not recompute it).
   */
  answer(ctx: PickContext, pod: number): DispatchOutcome {
    const ask = this.#asks.get(ctx)
    if (ask === undefined) throw new Error('not a workload request')
    const cache = this.#cached[pod] as Set<string>
    let uncached = ask.total
    for (let i = 0; i < ask.keys.length; i++) {
      if (cache.has(ask.keys[i] as string)) {
        uncached = ask.tokens[i] as number
        break
      }
    }
    for (const k of ask.keys) cache.add(k)
    const gpu = GPU_SLOWDOWN[pod % GPUS.length] as number
    const ttft =
      (OVERHEAD_MS + uncached * PREFILL_MS_PER_TOKEN * gpu) * (0.95 + 0.1 * this.#noise())
    return {
      status: 200,
      firstByteMs: ttft,
      durationMs: ttft + (OUTPUT_TOKENS - 1) * TPOT_MS,
      promptTokens: ask.total,
      completionTokens: OUTPUT_TOKENS,
    }
  }

  /** A hot-group copy of `ctx`'s prompt sent to `pod`: cached there; how long its prefill runs. */
  copied(ctx: PickContext, pod: number): number {
    return this.answer(ctx, pod).firstByteMs as number
  }

  /** The pod index of an endpoint. */
  podOf(e: SnapshotEndpoint): number {
    return Number(e.name.slice(4))
  }
}

/** `n` characters of space-separated words, the same for the same seed. */
export function words(n: number, seed: number): string {
  const r = seeded(seed)
  let s = ''
  while (s.length < n) s += `w${Math.floor(r() * 5000)} `
  return s.slice(0, n)
}
