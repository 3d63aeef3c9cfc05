// kv-cache: send a prompt where the engine's KV events say its longest prefix is resident.
//
// Unlike prefix-cache (what we dispatched, remembered approximately), this reads the engine's own
// account: each endpoint's KV-event stream (dataplane/kv-events/) keeps an index of the blocks it
// holds, evictions included. The request is tokenized with the model's tokenizer and hashed block by
// block the way the engine hashes (vLLM's sha256_cbor chain with block size and PYTHONHASHSEED from
// the arguments, or SGLang's per-page sha256 chain with `engine: sglang`), and an endpoint scores the fraction of the prompt's blocks it holds without a gap.
//
// Endpoints whose stream has not delivered yet (just started, not configured for events, or the
// tokenizer still loading) are scored by the approximate prefix-cache index instead, which this
// plugin keeps fed at dispatch like prefix-cache does; the two scores are on the same 0..1 scale.
// Stickiness is bounded as in prefix-cache: an endpoint loaded `loadMargin` beyond the least loaded
// gets no credit, so a hot prefix spills over instead of queueing on one pod.

import {
  blockKeys,
  KV_ENGINES,
  type KvEngine,
  noneHash,
  sglangBlockKeys,
} from '../../kv-events/block-hash.js'
import { KvEventSubscriber } from '../../kv-events/subscriber.js'
import {
  chatTemplateError,
  chatTemplateFor,
  tokenizerError,
  tokenizerFor,
} from '../../kv-events/tokens.js'
import { intArg, numArg, strArg } from '../args.js'
import { rendezvous } from '../prompt.js'
import type { EndpointState } from '../state.js'
import type { Plugin, PluginArgs, SchedRequest } from '../types.js'
import { COLD_PLACEMENT_SCORE, PrefixCachePlugin } from './prefix-cache.js'

/** Prompts in flight tracked per endpoint (an engine runs a few hundred at most). */
const MAX_IN_FLIGHT = 4096

export class KvCachePlugin implements Plugin {
  readonly name = 'kv-cache'
  readonly eventsPort: number
  readonly replayPort: number
  readonly topic: string
  readonly blockSize: number
  readonly maxBlocks: number
  readonly indexCapacity: number
  readonly loadMargin: number
  readonly tokenizer: string
  /** Whose hashing the engines use: vLLM's sha256_cbor chain (seeded) or SGLang's page chain. */
  readonly engine: KvEngine
  readonly seed: Buffer
  readonly fallback: PrefixCachePlugin
  readonly #subs = new Map<EndpointState, KvEventSubscriber>()
  /** Block keys of the prompts dispatched to each endpoint and not finished yet. */
  readonly #inFlight = new Map<EndpointState, Set<Uint32Array>>()
  #fallbackOut = new Float64Array(64)
  /** Decisions made from events vs the approximate index (for /debug and tests). */
  readonly decisions = { events: 0, approximate: 0 }

  constructor(args: PluginArgs) {
    this.eventsPort = intArg(args, 'eventsPort', 5557, 1, 65_535)
    this.replayPort = intArg(args, 'replayPort', 0, 0, 65_535)
    this.topic = strArg(args, 'topic', '')
    this.blockSize = intArg(args, 'blockSize', 16, 1, 1024)
    this.maxBlocks = intArg(args, 'maxBlocks', 2048, 1, 16_384)
    this.indexCapacity = intArg(args, 'indexCapacity', 4_000_000, 16, 100_000_000)
    this.loadMargin = numArg(args, 'loadMargin', 8, 0, 100_000)
    this.tokenizer = strArg(args, 'tokenizer', 'words')
    const engine = strArg(args, 'engine', 'vllm')
    // The API schema admits only these; an unknown one falls back to vLLM's hashing.
    this.engine = (KV_ENGINES as readonly string[]).includes(engine) ? (engine as KvEngine) : 'vllm'
    this.seed = noneHash(strArg(args, 'hashSeed', '0'))
    this.fallback = new PrefixCachePlugin({
      blockSizeTokens: this.blockSize,
      maxBlocks: this.maxBlocks,
      loadMargin: this.loadMargin,
    })
  }

  /** The subscriber of `ep`, started on first sight. */
  subscriber(ep: EndpointState): KvEventSubscriber {
    let s = this.#subs.get(ep)
    if (s === undefined) {
      s = new KvEventSubscriber({
        endpoint: `tcp://${ep.address}:${this.eventsPort}`,
        ...(this.replayPort > 0
          ? { replayEndpoint: `tcp://${ep.address}:${this.replayPort}` }
          : {}),
        topic: this.topic,
        maxBlocks: this.indexCapacity,
      })
      this.#subs.set(ep, s)
    }
    return s
  }

  /** The request's block keys (hi, lo pairs), or undefined while the tokenizer loads. */
  keys(req: SchedRequest): Uint32Array | undefined {
    const have = req.scratch.get(this)
    if (have instanceof Uint32Array) return have
    const ids = tokenizerFor(this.tokenizer)
    if (ids === undefined) return undefined
    // A chat request through the model's own template when one came with the tokenizer; the
    // ChatML-shaped flattened prompt otherwise (and when the template fails on this request).
    const text = chatTemplateFor(this.tokenizer)?.render(req.ctx.body) ?? req.text()
    const tokens = ids(text)
    // SGLang keys its radix cache by token ids alone (no adapter in the chain).
    const k =
      this.engine === 'sglang'
        ? sglangBlockKeys(tokens, this.blockSize, this.maxBlocks)
        : blockKeys(
            tokens,
            this.blockSize,
            this.seed,
            req.lora === undefined ? null : [req.lora],
            this.maxBlocks,
          )
    req.scratch.set(this, k)
    return k
  }

  score(req: SchedRequest, eps: readonly EndpointState[], out: Float64Array): boolean {
    let live = 0
    for (const e of eps) if (this.subscriber(e).state.lastSeq !== null) live++
    const keys = live > 0 ? this.keys(req) : undefined
    if (keys === undefined) {
      this.decisions.approximate++
      return this.fallback.score(req, eps, out)
    }
    const n = keys.length >>> 1
    if (n === 0) return false
    this.decisions.events++
    let fb: Float64Array | undefined
    if (live < eps.length) {
      if (this.#fallbackOut.length < eps.length)
        this.#fallbackOut = new Float64Array(eps.length * 2)
      fb = this.#fallbackOut
      if (!this.fallback.score(req, eps, fb)) fb.fill(0, 0, eps.length)
    }
    let minLoad = Number.POSITIVE_INFINITY
    for (const e of eps) minLoad = Math.min(minLoad, e.pending(req.now))
    let bestRun = 0
    for (let i = 0; i < eps.length; i++) {
      const e = eps[i] as EndpointState
      const st = this.subscriber(e).state
      if (st.lastSeq === null) {
        out[i] = fb?.[i] ?? 0
        continue
      }
      const run = Math.max(st.index.prefixRun(keys), this.#inFlightRun(e, keys))
      if (run > bestRun) bestRun = run
      out[i] = e.pending(req.now) - minLoad > this.loadMargin ? 0 : run / n
    }
    // (With some endpoints scored by the approximate index, that index placed it already.)
    if (fb === undefined) this.#placeCold(req, eps, keys, bestRun, minLoad, out)
    return true
  }

  /**
   * A prompt no engine holds (nor has in flight from this replica) goes where every data-plane
   * replica would put it: rendezvous hashing of its head over the least-loaded endpoints, as
   * prefix-cache places cold prefixes. Each replica knows only its own prompts in flight and the
   * engine reports blocks only after prefill, so without this a new prefix arriving at several
   * replicas at once was computed on several pods (each replica saw no holder and went by load).
   * Not for adapter requests, which lora-affinity places.
   */
  #placeCold(
    req: SchedRequest,
    eps: readonly EndpointState[],
    keys: Uint32Array,
    bestRun: number,
    minLoad: number,
    out: Float64Array,
  ): void {
    const keyDepth = Math.min(this.fallback.affinityBlocks, keys.length >>> 1)
    if (bestRun >= keyDepth || req.lora !== undefined) return
    // The low 32 bits of the head's chained hash: equal on every replica for the same prompt head.
    const key = keys[2 * keyDepth - 1] as number
    let best = -1
    let bestWeight = -1
    for (let i = 0; i < eps.length; i++) {
      const e = eps[i] as EndpointState
      if (e.pending(req.now) - minLoad > this.fallback.coldLoadMargin) continue
      const w = rendezvous(key, e.nameHash)
      if (w > bestWeight) {
        bestWeight = w
        best = i
      }
    }
    if (best >= 0) out[best] = Math.max(out[best] as number, COLD_PLACEMENT_SCORE)
  }

  /**
   * Leading blocks of `keys` shared with a prompt sent to `ep` that is still in flight. The engine
   * reports a prompt's blocks only once it has computed them (after its queue wait and prefill),
   * so without this a burst of one new prefix would scatter over the fleet — each request seeing
   * no holder — and compute it once per pod. The prompt is on its way there: as good as resident.
   */
  #inFlightRun(ep: EndpointState, keys: Uint32Array): number {
    const set = this.#inFlight.get(ep)
    if (set === undefined || keys.length < 2) return 0
    let best = 0
    for (const k of set) {
      if (k[0] !== keys[0] || k[1] !== keys[1]) continue
      const m = Math.min(k.length, keys.length)
      let j = 2
      while (j < m && k[j] === keys[j]) j++
      best = Math.max(best, j >>> 1)
    }
    return best
  }

  onDispatch(req: SchedRequest, ep: EndpointState): void {
    this.fallback.onDispatch(req, ep)
    const keys = req.scratch.get(this)
    if (!(keys instanceof Uint32Array) || keys.length === 0) return
    let set = this.#inFlight.get(ep)
    if (set === undefined) {
      set = new Set()
      this.#inFlight.set(ep, set)
    }
    // Bounded: past this many concurrent prompts per pod, later ones are simply not tracked.
    if (set.size < MAX_IN_FLIGHT) set.add(keys)
  }

  /** Finished (or failed): its blocks are in the engine's events by now, or never will be. */
  onComplete(req: SchedRequest, ep: EndpointState): void {
    const keys = req.scratch.get(this)
    if (keys instanceof Uint32Array) this.#inFlight.get(ep)?.delete(keys)
  }

  forget(ep: EndpointState): void {
    this.#subs.get(ep)?.close()
    this.#subs.delete(ep)
    this.#inFlight.delete(ep)
    this.fallback.forget(ep)
  }

  /** A restarted engine's cache is empty; its publisher starts its numbering over too. */
  onEndpointReset(ep: EndpointState): void {
    this.#subs.get(ep)?.state.reset()
    this.#inFlight.delete(ep)
    this.fallback.onEndpointReset(ep)
  }

  debug(): Record<string, unknown> {
    const perEndpoint: Record<string, unknown> = {}
    for (const [ep, s] of this.#subs) {
      perEndpoint[ep.name] = {
        blocks: s.state.index.size,
        lastSeq: s.state.lastSeq === null ? null : String(s.state.lastSeq),
        ...s.state.stats,
        ...(s.lastError !== undefined ? { lastError: s.lastError } : {}),
      }
    }
    const err = tokenizerError(this.tokenizer)
    const chat = chatTemplateFor(this.tokenizer)
    const chatErr = chatTemplateError(this.tokenizer)
    return {
      engine: this.engine,
      blockSize: this.blockSize,
      decisions: { ...this.decisions },
      endpoints: perEndpoint,
      ...(err !== undefined ? { tokenizerError: err } : {}),
      ...(chat !== undefined
        ? {
            chatTemplate: {
              renderErrors: chat.renderErrors,
              ...(chat.lastError !== undefined ? { lastError: chat.lastError } : {}),
            },
          }
        : {}),
      ...(chatErr !== undefined ? { chatTemplateError: chatErr } : {}),
    }
  }

  close(): void {
    for (const s of this.#subs.values()) s.close()
    this.#subs.clear()
  }
}

export function kvCache(args: PluginArgs): Plugin {
  return new KvCachePlugin(args)
}
