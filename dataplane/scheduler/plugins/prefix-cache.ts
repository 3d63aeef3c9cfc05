// prefix-cache: send a prompt where its longest prefix is already in the engine's KV cache.
//
// - The prompt (chat template applied) is cut into blocks with chained hashes (prompt.ts); the
//   score is the fraction of the prompt's blocks an endpoint is believed to hold.
// - Beliefs are recorded AT DISPATCH, not when the response ends: a burst of requests sharing a
//   new prefix then follows the first one instead of scattering before any of them finished.
// - Each endpoint remembers at most as many blocks as its KV cache holds (num_gpu_blocks ×
//   block_size from the engine's metrics, in engine tokens; our blocks are `blockChars` characters,
//   and how many tokens that is depends on the tokenizer and the text, so it is learned: the
//   engine's prompt tokens per finished request over our blocks per completed request, see
//   #learn. Assuming 4 characters a token where text runs at 6 made the index drop groups the
//   engine still held at two thirds of its cache, and each such group paid a needless cold
//   prefill elsewhere). Recording walks a prompt tail first, so its head is
//   the most recent and eviction drops a prompt's tail before its head, as the engine's cache
//   does. That keeps every endpoint's set prefix-closed along each hash chain (holding block d
//   implies holding blocks 0..d-1), so the match length is found by binary search: O(log n)
//   lookups per endpoint instead of a walk over every block.
// - Recency is approximated CLOCK-style in a fixed typed-array table per endpoint
//   (block-table.ts): re-touching a hot prefix sets a bit, nothing is reordered or allocated.
// - A prefix nobody holds yet is placed by rendezvous hashing of its first blocks among the
//   endpoints near the least-loaded one: every data-plane replica ranks pods the same way for the
//   same prefix, so their caches converge on one pod without talking to each other. (Not for
//   LoRA requests, which lora-affinity places.)
// - Stickiness is bounded: an endpoint whose outstanding requests exceed the least-loaded
//   candidate's by more than `loadMargin` gets no prefix credit (sticky until saturated), so a
//   hot prefix spills to a second pod, which then caches it too, instead of queueing on one.

import type { DispatchOutcome } from '../../picker.js'
import { intArg, numArg } from '../args.js'
import { BlockTable } from '../block-table.js'
import { rendezvous } from '../prompt.js'
import { requestBlocks } from '../prompt-hasher.js'
import type { EndpointState } from '../state.js'
import type { Plugin, PluginArgs, SchedRequest } from '../types.js'

export interface PrefixCacheStats {
  /** Blocks remembered, summed over endpoints. */
  readonly blocksIndexed: number
  readonly endpoints: number
}

/**
 * Score of the rendezvous choice for a prefix nobody holds. Small on purpose: it only has to break
 * ties among the least-loaded endpoints the same way on every replica, not outweigh what other
 * plugins know (GPU capacity, KV headroom) about those endpoints.
 */
export const COLD_PLACEMENT_SCORE = 0.25

/** Weight of one new sample in the running means of #learn (about the last 50 count). */
const LEARN_ALPHA = 0.02
/** Samples of each side (completions, engine scrapes) before the learned ratio is used. */
const LEARN_MIN_SAMPLES = 20
/** Relative change of the learned ratio that resizes the tables (each resize copies them). */
const LEARN_STEP = 0.05

export class PrefixCachePlugin implements Plugin {
  readonly name = 'prefix-cache'
  readonly blockChars: number
  readonly blockTokens: number
  readonly maxBlocks: number
  readonly lruCapacity: number
  readonly loadMargin: number
  readonly affinityBlocks: number
  readonly coldLoadMargin: number
  readonly #blocks = new Map<EndpointState, BlockTable>()
  /** Match depth by endpoint slot, reused across decisions. */
  #match = new Int32Array(64)
  #loads = new Float64Array(64)
  /** Running mean of our blocks per completed request, and its sample count. */
  #blocksPerReq = 0
  #blocksN = 0
  /** Running mean of the engines' prompt tokens per finished request, and its sample count. */
  #tokensPerReq = 0
  #tokensN = 0
  /** The scrape each endpoint's prompt-token mean was last taken from. */
  readonly #seenScrape = new WeakMap<EndpointState, number>()
  /** Engine tokens one of our blocks stands for: `blockTokens` until learned (#learn). */
  tokensPerBlock: number

  constructor(args: PluginArgs) {
    this.blockTokens = intArg(args, 'blockSizeTokens', 16, 1, 1024)
    this.blockChars = this.blockTokens * intArg(args, 'charsPerToken', 4, 1, 16)
    this.maxBlocks = intArg(args, 'maxBlocks', 2048, 1, 16_384)
    this.lruCapacity = intArg(args, 'lruCapacity', 31_250, 16, 10_000_000)
    this.loadMargin = numArg(args, 'loadMargin', 8, 0, 100_000)
    this.affinityBlocks = intArg(args, 'affinityBlocks', 8, 1, 1024)
    this.coldLoadMargin = numArg(args, 'coldLoadMargin', 0, 0, 100_000)
    this.tokensPerBlock = this.blockTokens
  }

  /** The request's block hashes, made once per request (shared with every same-cut index). */
  hashes(req: SchedRequest): Int32Array {
    return requestBlocks(req, this.blockChars, this.maxBlocks)
  }

  /** How many leading blocks of `hashes` each endpoint holds, by slot (valid for `eps`). */
  matchDepths(hashes: ArrayLike<number>, eps: readonly EndpointState[]): Int32Array {
    let maxSlot = 0
    for (const e of eps) if (e.slot > maxSlot) maxSlot = e.slot
    if (this.#match.length <= maxSlot) this.#match = new Int32Array((maxSlot + 1) * 2)
    const match = this.#match
    const n = hashes.length
    for (const e of eps) {
      const set = this.#blocks.get(e)
      if (set === undefined || n === 0 || !set.has(hashes[0] as number)) {
        match[e.slot] = 0
        continue
      }
      // Largest d with block d-1 held; prefix-closed sets make "held" monotone in d.
      let lo = 1
      let hi = n
      while (lo < hi) {
        const mid = (lo + hi + 1) >>> 1
        if (set.has(hashes[mid - 1] as number)) lo = mid
        else hi = mid - 1
      }
      match[e.slot] = lo
    }
    return match
  }

  score(req: SchedRequest, eps: readonly EndpointState[], out: Float64Array): boolean {
    const hashes = this.hashes(req)
    const n = hashes.length
    if (n === 0) return false
    const match = this.matchDepths(hashes, eps)
    if (this.#loads.length < eps.length) this.#loads = new Float64Array(eps.length * 2)
    const loads = this.#loads
    let minLoad = Number.POSITIVE_INFINITY
    for (let i = 0; i < eps.length; i++) {
      const l = (eps[i] as EndpointState).pending(req.now)
      loads[i] = l
      if (l < minLoad) minLoad = l
    }
    let bestDepth = 0
    for (let i = 0; i < eps.length; i++) {
      const e = eps[i] as EndpointState
      const d = match[e.slot] ?? 0
      if (d > bestDepth) bestDepth = d
      out[i] = (loads[i] as number) - minLoad <= this.loadMargin ? d / n : 0
    }
    // Nobody holds more than a generic header of this prompt: place it where every replica would.
    // Not for adapter requests: where the adapter is loaded matters more, and a second affinity
    // pulling elsewhere would only fight lora-affinity.
    const keyDepth = Math.min(this.affinityBlocks, n)
    if (bestDepth < keyDepth && req.lora === undefined) {
      const key = hashes[keyDepth - 1] as number
      let best = -1
      let bestWeight = -1
      for (let i = 0; i < eps.length; i++) {
        if ((loads[i] as number) - minLoad > this.coldLoadMargin) continue
        const w = rendezvous(key, (eps[i] as EndpointState).nameHash)
        if (w > bestWeight) {
          bestWeight = w
          best = i
        }
      }
      if (best >= 0) out[best] = Math.max(out[best] as number, COLD_PLACEMENT_SCORE)
    }
    return true
  }

  onDispatch(req: SchedRequest, ep: EndpointState): void {
    this.record(ep, this.hashes(req))
  }

  blocksOf(req: SchedRequest): ArrayLike<number> {
    return this.hashes(req)
  }

  recordPeer(ep: EndpointState, hashes: ArrayLike<number>): void {
    this.record(ep, hashes)
  }

  /** A completed request: its blocks are one sample of our side of the tokens-per-block ratio. */
  onComplete(req: SchedRequest, _ep: EndpointState, o: DispatchOutcome): void {
    if (o.failure !== undefined || o.status < 200 || o.status >= 300) return
    const n = this.hashes(req).length
    // A prompt cut at maxBlocks would understate its length; the engine counted all of it.
    if (n === 0 || n >= this.maxBlocks) return
    this.#blocksN++
    this.#blocksPerReq += (n - this.#blocksPerReq) * Math.max(LEARN_ALPHA, 1 / this.#blocksN)
    this.#learn()
  }

  /**
   * Engine tokens per block of ours: the engines' mean prompt tokens per finished request over
   * our mean blocks per completed request. Both sides see the same requests (every replica's
   * share of them has the same mix), so the ratio holds with several data-plane replicas too.
   * Bounded to 1..16 characters a token, and moved only by more than LEARN_STEP at a time.
   */
  #learn(): void {
    if (this.#blocksN < LEARN_MIN_SAMPLES || this.#tokensN < LEARN_MIN_SAMPLES) return
    const chars = this.blockChars
    const t = Math.min(chars, Math.max(chars / 16, this.#tokensPerReq / this.#blocksPerReq))
    if (Math.abs(t - this.tokensPerBlock) > LEARN_STEP * this.tokensPerBlock) {
      this.tokensPerBlock = t
    }
  }

  /** The engine's side of #learn: its latest interval mean, once per scrape. */
  #observe(ep: EndpointState): void {
    const v = ep.metrics?.promptTokensPerRequest
    if (v === undefined || this.#seenScrape.get(ep) === ep.scrapedAt) return
    this.#seenScrape.set(ep, ep.scrapedAt)
    this.#tokensN++
    this.#tokensPerReq += (v - this.#tokensPerReq) * Math.max(LEARN_ALPHA, 1 / this.#tokensN)
    this.#learn()
  }

  /** Remember that `ep` now holds these blocks (tail first, so the head is the most recent). */
  record(ep: EndpointState, hashes: ArrayLike<number>): void {
    this.#observe(ep)
    const cap = this.capacityOf(ep)
    let table = this.#blocks.get(ep)
    if (table === undefined || table.capacity !== cap) {
      // First dispatch, or the engine reported its real cache size: carry what is known over.
      const next = new BlockTable(cap)
      if (table !== undefined) for (const h of table.hashes()) next.touch(h)
      table = next
      this.#blocks.set(ep, table)
    }
    for (let i = hashes.length - 1; i >= 0; i--) table.touch(hashes[i] as number)
  }

  /** Blocks of ours that fit in the endpoint's KV cache, when the engine says how big it is. */
  capacityOf(ep: EndpointState): number {
    const m = ep.metrics
    if (m?.numGpuBlocks !== undefined) {
      const tokens = m.numGpuBlocks * (m.blockSize ?? this.blockTokens)
      return Math.max(16, Math.ceil(tokens / this.tokensPerBlock))
    }
    return this.lruCapacity
  }

  /**
   * Share of the endpoint's KV cache the blocks remembered for it fill (0..1): how much a new
   * prefix placed there would evict of what it holds. 0 for an endpoint nothing was sent to (or
   * that restarted).
   */
  occupancy(ep: EndpointState): number {
    const t = this.#blocks.get(ep)
    return t === undefined ? 0 : Math.min(1, t.size / this.capacityOf(ep))
  }

  /**
   * Whether an endpoint outside `eps` (ejected, down, filtered out) holds the block `hash`: a
   * prefix that had a home and lost it, not a new one.
   */
  heldOutside(hash: number, eps: readonly EndpointState[]): boolean {
    for (const [ep, table] of this.#blocks) {
      if (table.has(hash) && !eps.includes(ep)) return true
    }
    return false
  }

  forget(ep: EndpointState): void {
    this.#blocks.delete(ep)
  }

  /** A restarted engine's KV cache is empty: nothing of ours is there any more. */
  onEndpointReset(ep: EndpointState): void {
    this.#blocks.delete(ep)
  }

  stats(): PrefixCacheStats {
    let blocks = 0
    for (const set of this.#blocks.values()) blocks += set.size
    return { blocksIndexed: blocks, endpoints: this.#blocks.size }
  }

  debug(): Record<string, unknown> {
    const perEndpoint: Record<string, number> = {}
    for (const [ep, set] of this.#blocks) perEndpoint[ep.name] = set.size
    return {
      blockChars: this.blockChars,
      tokensPerBlock: Math.round(this.tokensPerBlock * 100) / 100,
      loadMargin: this.loadMargin,
      blocksPerEndpoint: perEndpoint,
    }
  }
}

export function prefixCache(args: PluginArgs): Plugin {
  return new PrefixCachePlugin(args)
}
