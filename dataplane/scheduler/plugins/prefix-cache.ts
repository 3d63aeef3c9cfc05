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
//   prefix-index.ts #learn. Assuming 4 characters a token where text runs at 6 made the index drop groups the
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
import { PrefixIndex } from '../prefix-index.js'
import { rendezvous } from '../prompt.js'
import { requestBlocks } from '../prompt-hasher.js'
import { noScoreEffects } from '../scores.js'
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

export class PrefixCachePlugin implements Plugin {
  readonly name = 'prefix-cache'
  readonly blockChars: number
  readonly blockTokens: number
  readonly maxBlocks: number
  readonly lruCapacity: number
  readonly loadMargin: number
  readonly affinityBlocks: number
  readonly coldLoadMargin: number
  /** The tables of what each endpoint holds: this plugin's own, or shared (prefix-index.ts). */
  index: PrefixIndex
  #loads = new Float64Array(64)

  constructor(args: PluginArgs) {
    this.blockTokens = intArg(args, 'blockSizeTokens', 16, 1, 1024)
    this.blockChars = this.blockTokens * intArg(args, 'charsPerToken', 4, 1, 16)
    this.maxBlocks = intArg(args, 'maxBlocks', 2048, 1, 16_384)
    this.lruCapacity = intArg(args, 'lruCapacity', 31_250, 16, 10_000_000)
    this.loadMargin = numArg(args, 'loadMargin', 8, 0, 100_000)
    this.affinityBlocks = intArg(args, 'affinityBlocks', 8, 1, 1024)
    this.coldLoadMargin = numArg(args, 'coldLoadMargin', 0, 0, 100_000)
    this.index = new PrefixIndex(
      {
        blockTokens: this.blockTokens,
        blockChars: this.blockChars,
        maxBlocks: this.maxBlocks,
        lruCapacity: this.lruCapacity,
      },
      this,
    )
  }

  /** Engine tokens one of our blocks stands for: `blockTokens` until learned (prefix-index.ts). */
  get tokensPerBlock(): number {
    return this.index.tokensPerBlock
  }

  /** Whether this plugin feeds its index from request events (it may be shared, see profile.ts). */
  get #feeds(): boolean {
    return this.index.owner === this
  }

  /** The request's block hashes, made once per request (shared with every same-cut index). */
  hashes(req: SchedRequest): Int32Array {
    return requestBlocks(req, this.blockChars, this.maxBlocks)
  }

  /** How many leading blocks of `hashes` each endpoint holds, by slot (valid for `eps`). */
  matchDepths(hashes: ArrayLike<number>, eps: readonly EndpointState[]): Int32Array {
    return this.index.matchDepths(hashes, eps)
  }

  readonly single = noScoreEffects

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
    if (this.#feeds) this.record(ep, this.hashes(req))
  }

  /** Blocks for the other workers: from the index's owner only, so each dispatch is sent once. */
  blocksOf(req: SchedRequest): ArrayLike<number> | undefined {
    return this.#feeds ? this.hashes(req) : undefined
  }

  recordPeer(ep: EndpointState, hashes: ArrayLike<number>): void {
    this.record(ep, hashes)
  }

  /** A completed request: its blocks are one sample of our side of the tokens-per-block ratio. */
  onComplete(req: SchedRequest, _ep: EndpointState, o: DispatchOutcome): void {
    if (!this.#feeds || o.failure !== undefined || o.status < 200 || o.status >= 300) return
    this.index.completed(this.hashes(req).length)
  }

  /**
   * Remember that `ep` now holds these blocks (tail first, so the head is the most recent). Only
   * by the index's owner: a shared index hears of each dispatch, own or another worker's, once.
   */
  record(ep: EndpointState, hashes: ArrayLike<number>): void {
    if (this.#feeds) this.index.record(ep, hashes)
  }

  /** Blocks of ours that fit in the endpoint's KV cache, when the engine says how big it is. */
  capacityOf(ep: EndpointState): number {
    return this.index.capacityOf(ep)
  }

  /**
   * Share of the endpoint's KV cache the blocks remembered for it fill (0..1): how much a new
   * prefix placed there would evict of what it holds. 0 for an endpoint nothing was sent to (or
   * that restarted).
   */
  occupancy(ep: EndpointState): number {
    return this.index.occupancy(ep)
  }

  /**
   * Whether an endpoint outside `eps` (ejected, down, filtered out) holds the block `hash`: a
   * prefix that had a home and lost it, not a new one.
   */
  heldOutside(hash: number, eps: readonly EndpointState[]): boolean {
    return this.index.heldOutside(hash, eps)
  }

  forget(ep: EndpointState): void {
    this.index.drop(ep)
  }

  /** A restarted engine's KV cache is empty: nothing of ours is there any more. */
  onEndpointReset(ep: EndpointState): void {
    this.index.drop(ep)
  }

  stats(): PrefixCacheStats {
    return this.index.stats()
  }

  debug(): Record<string, unknown> {
    return {
      blockChars: this.blockChars,
      tokensPerBlock: Math.round(this.tokensPerBlock * 100) / 100,
      loadMargin: this.loadMargin,
      blocksPerEndpoint: this.index.blocksPerEndpoint(),
    }
  }
}

export function prefixCache(args: PluginArgs): Plugin {
  return new PrefixCachePlugin(args)
}
