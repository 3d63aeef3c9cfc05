// A vLLM-style paged KV cache with automatic prefix caching.
//
// Blocks of `blockSize` tokens. A full block gets a hash chained on its parent's hash (block i's
// hash covers block i-1's hash and its own tokens, plus an extra key such as the LoRA name), so a
// hash identifies the whole prefix up to that block, exactly like vLLM. Freed blocks keep their
// hash and stay reusable until evicted; the free queue is LRU (vLLM's FreeKVCacheBlockQueue):
// allocation takes from the head, freeing appends to the tail, and a sequence's blocks are freed
// tail-first so that its deepest (least shareable) blocks are evicted first.

import { createHash } from 'node:crypto'

/**
 * Chained hashes of the full blocks of `tokens`. `known` may hold already computed hashes of a
 * prefix of the same sequence (e.g. the prompt's when hashing prompt + output) to skip rehashing.
 */
export function blockHashes(
  tokens: readonly string[],
  blockSize: number,
  extraKey = '',
  known: readonly string[] = [],
): string[] {
  const full = Math.floor(tokens.length / blockSize)
  const out: string[] = known.slice(0, full)
  let parent = out.at(-1) ?? extraKey
  for (let b = out.length; b < full; b++) {
    const h = createHash('sha256')
    h.update(parent)
    h.update('\u0001')
    for (let i = b * blockSize; i < (b + 1) * blockSize; i++) {
      h.update(tokens[i] ?? '')
      h.update('\u0000')
    }
    parent = h.digest('hex').slice(0, 32)
    out.push(parent)
  }
  return out
}

interface Block {
  readonly id: number
  hash: string | null
  refs: number
  /** Engine-clock ms when this block's KV is computed (0: already is). */
  readyAt: number
}

/** Blocks held by one running request; opaque to callers. */
export interface KvAllocation {
  readonly blocks: readonly number[]
  /** Prompt tokens found in the cache (always a whole number of blocks, and < prompt length). */
  readonly cachedTokens: number
  /**
   * Engine-clock ms when the last of those cached blocks is computed: a block registered by a
   * prefill still running is a hit, but its KV exists only once that prefill ends (0: now).
   */
  readonly readyAt: number
}

export interface KvCacheStats {
  totalBlocks: number
  usedBlocks: number
  /** Unreferenced blocks that still hold a reusable hash (SGLang's "evictable"). */
  cachedFreeBlocks: number
  evictions: number
}

/** Sees blocks enter and leave the cache (hack/sim/kv-events.ts publishes them as vLLM does). */
export interface KvCacheListener {
  /** Blocks `stored` (indices into `hashes`) of a sequence became cached; tokens when known. */
  stored(
    hashes: readonly string[],
    stored: readonly number[],
    tokens: readonly string[] | undefined,
    lora: string | undefined,
  ): void
  removed(hash: string): void
}

export class KvCache {
  listener: KvCacheListener | null = null
  readonly numBlocks: number
  readonly blockSize: number
  private readonly blocks: Block[] = []
  // Insertion-ordered Map as the LRU free queue: first entry = next to be reused/evicted.
  private readonly free = new Map<number, Block>()
  private readonly byHash = new Map<string, Block>()
  private evictions = 0

  constructor(numBlocks: number, blockSize: number) {
    this.numBlocks = numBlocks
    this.blockSize = blockSize
    for (let id = 0; id < numBlocks; id++) {
      const b: Block = { id, hash: null, refs: 0, readyAt: 0 }
      this.blocks.push(b)
      this.free.set(id, b)
    }
  }

  blocksFor(tokens: number): number {
    return Math.ceil(tokens / this.blockSize)
  }

  /** How many leading prompt blocks are cached, capped so at least one prompt token is computed (as vLLM). */
  private hitBlocks(hashes: readonly string[], promptTokens: number): Block[] {
    const maxHit = Math.floor(Math.max(0, promptTokens - 1) / this.blockSize)
    const hits: Block[] = []
    for (const h of hashes) {
      if (hits.length >= maxHit) break
      const b = this.byHash.get(h)
      if (b === undefined) break
      hits.push(b)
    }
    return hits
  }

  /** Read-only peek (no side effects): prompt tokens that would hit the cache now. */
  peekCachedTokens(hashes: readonly string[], promptTokens: number): number {
    return this.hitBlocks(hashes, promptTokens).length * this.blockSize
  }

  /**
   * Reserve blocks for a whole sequence (`totalTokens` = prompt + max output), reusing cached
   * prefix blocks. Returns null when not enough free blocks exist; nothing is changed then.
   */
  allocate(
    hashes: readonly string[],
    promptTokens: number,
    totalTokens: number,
  ): KvAllocation | null {
    const needed = this.blocksFor(totalTokens)
    const hits = this.hitBlocks(hashes, promptTokens)
    const hitsInFree = hits.filter((b) => b.refs === 0).length
    const fresh = needed - hits.length
    if (fresh > this.free.size - hitsInFree) return null
    const ids: number[] = []
    let readyAt = 0
    for (const b of hits) {
      readyAt = Math.max(readyAt, b.readyAt)
      if (b.refs === 0) this.free.delete(b.id)
      b.refs++
      ids.push(b.id)
    }
    for (let i = 0; i < fresh; i++) {
      const first = this.free.values().next()
      if (first.done === true) throw new Error('kv free queue underflow')
      const b = first.value
      this.free.delete(b.id)
      if (b.hash !== null) {
        this.byHash.delete(b.hash)
        this.listener?.removed(b.hash)
        b.hash = null
        this.evictions++
      }
      b.refs = 1
      ids.push(b.id)
    }
    return { blocks: ids, cachedTokens: hits.length * this.blockSize, readyAt }
  }

  /**
   * Register the allocation's leading blocks under these hashes, making them reusable by later
   * requests; `readyAt` is when their KV is computed (a later hit waits for it). A hash already
   * cached by another block is skipped (vLLM keeps the first copy).
   */
  commit(
    alloc: KvAllocation,
    hashes: readonly string[],
    tokens?: readonly string[],
    lora?: string,
    readyAt = 0,
  ): void {
    const n = Math.min(hashes.length, alloc.blocks.length)
    const stored: number[] = []
    for (let i = 0; i < n; i++) {
      const b = this.blocks[alloc.blocks[i] ?? -1]
      const h = hashes[i]
      if (b === undefined || h === undefined || b.hash !== null || this.byHash.has(h)) continue
      b.hash = h
      b.readyAt = readyAt
      this.byHash.set(h, b)
      stored.push(i)
    }
    if (stored.length > 0) this.listener?.stored(hashes, stored, tokens, lora)
  }

  release(alloc: KvAllocation): void {
    for (let i = alloc.blocks.length - 1; i >= 0; i--) {
      const b = this.blocks[alloc.blocks[i] ?? -1]
      if (b === undefined || b.refs <= 0) continue
      b.refs--
      if (b.refs === 0) this.free.set(b.id, b)
    }
  }

  /** Fraction of blocks referenced by running requests (vLLM's kv_cache_usage_perc). */
  usage(): number {
    return this.numBlocks === 0 ? 0 : (this.numBlocks - this.free.size) / this.numBlocks
  }

  stats(): KvCacheStats {
    let cachedFree = 0
    for (const b of this.free.values()) if (b.hash !== null) cachedFree++
    return {
      totalBlocks: this.numBlocks,
      usedBlocks: this.numBlocks - this.free.size,
      cachedFreeBlocks: cachedFree,
      evictions: this.evictions,
    }
  }
}
