// The approximate prefix index: which of a prompt's blocks each endpoint is believed to hold, as
// prefix-cache records them at dispatch (see plugins/prefix-cache.ts for the policy). Split from
// the plugin so that plugins of one profile that cut prompts the same way share one index
// (prefix-cache and predicted-latency's index in the same profile): each endpoint has one table,
// a dispatch is recorded once, and a decision matches the prompt against the tables once.
// Before, each kept its own copy and recorded the same blocks twice; that dispatch-time work was
// the largest item in the scheduler's CPU profile.
//
// Sharing is arranged by the profile (profile.ts `shareIndexes`): it attaches every user of an
// equal cutting to one index and names the first in profile order its `owner`. Only the owner
// feeds it from the request events (dispatch, completion, another worker's dispatch), so each
// event counts once however many plugins read the index.

import { BlockTable } from './block-table.js'
import type { EndpointState } from './state.js'

/** Weight of one new sample in the running means of #learn (about the last 50 count). */
const LEARN_ALPHA = 0.02
/** Samples of each side (completions, engine scrapes) before the learned ratio is used. */
const LEARN_MIN_SAMPLES = 20
/** Relative change of the learned ratio that resizes the tables (each resize copies them). */
const LEARN_STEP = 0.05
/** First blocks whose last match depth is kept as matchDepths' first guess (then started over). */
const MAX_DEPTH_GUESSES = 4096
/** Buckets of the first-block filter (#firstCounts): 2^FIRST_BITS. */
const FIRST_BITS = 12
const FIRST_BUCKETS = 1 << FIRST_BITS
/** A filter count at this value stays there (correct: it can only answer "maybe held"). */
const FIRST_SATURATED = 255

export interface PrefixIndexConfig {
  /** Engine tokens per block assumed until learned. */
  readonly blockTokens: number
  /** Characters (UTF-8 bytes) per block of ours. */
  readonly blockChars: number
  readonly maxBlocks: number
  /** Table size per endpoint when the engine does not report its cache size. */
  readonly lruCapacity: number
}

export class PrefixIndex {
  readonly config: PrefixIndexConfig
  /** Indexes with equal keys cut and size identically: they may be shared. */
  readonly key: string
  /** The user that feeds this index from request events (see the header); any object. */
  owner: object | undefined
  readonly #blocks = new Map<EndpointState, BlockTable>()
  /**
   * Each table's size by its endpoint's slot, and the state it is for (see occupancy): read for
   * most candidates of a decision, the Map entry and the table object were two cache misses each.
   */
  #sizeOf = new Int32Array(64)
  readonly #sizeEp: (EndpointState | undefined)[] = []
  /** Match depth by endpoint slot, reused across decisions. */
  #match = new Int32Array(64)
  /** What #match holds: depths of `#memoHashes` for `#memoEps` as of `#memoGen`. */
  #memoHashes: ArrayLike<number> | undefined
  #memoEps: readonly EndpointState[] | undefined
  #memoGen = -1
  /** Depth found last for prompts starting with a block (first block → depth; matchDepths). */
  readonly #depthOf = new Map<number, number>()
  /** Bumped on every change to any table: a memoised match is valid only at the same value. */
  #gen = 0
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
  /** heldOutside's marks of the candidates by slot: the state and the call that marked it. */
  readonly #markedEp: (EndpointState | undefined)[] = []
  readonly #markedAt: number[] = []
  #markEpoch = 0
  /**
   * The first-block filter. Every match starts with the prompt's first block, and a table that
   * does not hold it matches nothing; most candidates of a long shared prompt hold none of it, and
   * probing each one's table was a cache miss per candidate (the tables of a fleet do not fit in
   * the CPU's caches). So per bucket of a block hash (FIRST_BUCKETS) and endpoint slot, a count
   * of the slot's table entries marked as a recorded prompt's first block (BlockTable.markFirst)
   * in that bucket: with a count of 0 the table is not probed. Laid out by bucket, a row holding
   * a column per endpoint slot that has any (`#colOf`: slot → column + 1), so one decision reads
   * one row: a cache line for 64 candidates. Kept exact by the tables' marks (a mark set: +1; a
   * marked slot evicted, a table dropped, or resized without it: -1), so a 0 is never wrong; two
   * hashes in one bucket or two states in one slot (a throwaway state) only cost a probe. A count
   * that reaches FIRST_SATURATED stays there (a probe every time). Allocated on the first record.
   */
  #firstCounts = new Uint8Array(0)
  /** Columns a row has room for (a power of two), and the columns in use or free. */
  #firstStride = 0
  #firstCols = 0
  readonly #freeCols: number[] = []
  /** Column + 1 by endpoint slot (0: none), and per column the marks counted in it. */
  #colOf = new Int32Array(64)
  #colMarks = new Int32Array(0)

  constructor(config: PrefixIndexConfig, owner?: object) {
    this.config = config
    this.key = `${config.blockTokens}:${config.blockChars}:${config.maxBlocks}:${config.lruCapacity}`
    this.owner = owner
    this.tokensPerBlock = config.blockTokens
  }

  /**
   * How many leading blocks of `hashes` each endpoint holds, by slot (valid for `eps`). Asked
   * again for the same hashes and candidates with no table changed since, the answer is reused:
   * every plugin of a decision that reads the index pays for one match.
   */
  matchDepths(hashes: ArrayLike<number>, eps: readonly EndpointState[]): Int32Array {
    if (hashes === this.#memoHashes && eps === this.#memoEps && this.#gen === this.#memoGen) {
      return this.#match
    }
    let maxSlot = 0
    for (const e of eps) if (e.slot > maxSlot) maxSlot = e.slot
    if (this.#match.length <= maxSlot) {
      this.#match = new Int32Array((maxSlot + 1) * 2)
      this.#memoEps = undefined
    }
    const match = this.#match
    const n = hashes.length
    const counts = this.#firstCounts
    const colOf = this.#colOf
    const row = n === 0 ? 0 : firstBucket(hashes[0] as number) * this.#firstStride
    const first = n === 0 ? 0 : (hashes[0] as number)
    let guess = n === 0 ? 0 : (this.#depthOf.get(first) ?? 0)
    const guessed = guess
    for (const e of eps) {
      // No prompt recorded on this slot starts with the block: no table to probe (see
      // #firstCounts). The one case that answers differently from a probe: a table holding the
      // block only inside another prompt (a 30-bit hash collision), which matched one block.
      const col = e.slot < colOf.length ? (colOf[e.slot] as number) : 0
      if (n === 0 || col === 0 || counts[row + col - 1] === 0) {
        match[e.slot] = 0
        continue
      }
      const set = this.#blocks.get(e)
      if (set === undefined || !set.has(hashes[0] as number)) {
        match[e.slot] = 0
        continue
      }
      // Largest d with block d-1 held; prefix-closed sets make "held" monotone in d. Tried first
      // at the depth the last holder of a prompt with this first block had (`guess`, this
      // decision's or an earlier one's): the holders of a shared prefix mostly hold the same part
      // of it, so two probes settle it where a bisection of a long prompt takes about ten, each a
      // cache miss in a table the CPU's caches do not hold.
      let lo = 1
      let hi = n
      if (guess > 1 && guess <= n) {
        if (set.has(hashes[guess - 1] as number)) {
          lo = guess
          if (guess < n && !set.has(hashes[guess] as number)) hi = guess
        } else hi = guess - 1
      }
      while (lo < hi) {
        const mid = (lo + hi + 1) >>> 1
        if (set.has(hashes[mid - 1] as number)) lo = mid
        else hi = mid - 1
      }
      match[e.slot] = lo
      guess = lo
    }
    if (guess !== guessed) {
      if (this.#depthOf.size >= MAX_DEPTH_GUESSES) this.#depthOf.clear()
      this.#depthOf.set(first, guess)
    }
    // Only whole candidate lists are remembered (a one-endpoint query leaves the others' depths,
    // which are still right while no table changes).
    if (eps.length > 1) {
      this.#memoHashes = hashes
      this.#memoEps = eps
      this.#memoGen = this.#gen
    }
    return match
  }

  /** Remember that `ep` now holds these blocks (tail first, so the head is the most recent). */
  record(ep: EndpointState, hashes: ArrayLike<number>): void {
    this.#observe(ep)
    const cap = this.capacityOf(ep)
    let table = this.#blocks.get(ep)
    if (table === undefined || table.capacity !== cap) table = this.#newTable(ep, table, cap)
    this.#gen++
    // Each block's slot hints the next one's (tail first: they were inserted in this order).
    let slot = -2
    for (let i = hashes.length - 1; i >= 0; i--) slot = table.touch(hashes[i] as number, slot + 1)
    // The head, touched last, is in `slot` (an earlier touch may have evicted its old place).
    if (hashes.length > 0 && table.markFirst(slot)) this.#firstAdd(hashes[0] as number, ep.slot)
    this.#sized(ep, table.size)
  }

  /** `ep`'s table now holds `size` blocks (see #sizeOf). */
  #sized(ep: EndpointState, size: number): void {
    const s = ep.slot
    if (s >= this.#sizeOf.length) {
      const grown = new Int32Array(Math.max(s + 1, this.#sizeOf.length * 2))
      grown.set(this.#sizeOf)
      this.#sizeOf = grown
    }
    this.#sizeOf[s] = size
    this.#sizeEp[s] = ep
  }

  /**
   * A table for `ep` of `cap` blocks: its first, or the engine reported its real cache size and
   * what is known is carried over. (Apart from record, which must stay small enough for V8 to
   * inline BlockTable.touch into its loop: a call per block otherwise.)
   */
  #newTable(ep: EndpointState, table: BlockTable | undefined, cap: number): BlockTable {
    const next = new BlockTable(cap)
    if (table !== undefined) {
      for (const h of table.hashes()) next.touch(h)
      // First-block marks move along; a first block that no longer fits leaves the filter.
      for (const h of table.firstHashes()) {
        const at = next.slotOf(h)
        if (at >= 0) next.markFirst(at)
        else this.#firstRemove(h, ep.slot)
      }
      table.onEvictFirst = undefined
    }
    const slotOfEp = ep.slot
    next.onEvictFirst = (h) => this.#firstRemove(h, slotOfEp)
    this.#blocks.set(ep, next)
    return next
  }

  /** A table of slot `slot` marked `hash` as a first block (see #firstCounts). */
  #firstAdd(hash: number, slot: number): void {
    if (slot >= this.#colOf.length) {
      const grown = new Int32Array(Math.max(slot + 1, this.#colOf.length * 2))
      grown.set(this.#colOf)
      this.#colOf = grown
    }
    let col = (this.#colOf[slot] as number) - 1
    if (col < 0) {
      col = this.#freeCols.pop() ?? this.#firstCols++
      if (this.#firstCols > this.#firstStride) this.#widen()
      this.#colOf[slot] = col + 1
    }
    this.#colMarks[col] = (this.#colMarks[col] as number) + 1
    const i = firstBucket(hash) * this.#firstStride + col
    const c = this.#firstCounts[i] as number
    if (c < FIRST_SATURATED) this.#firstCounts[i] = c + 1
  }

  /**
   * A table of slot `slot` no longer holds `hash` as a marked first block. A column left with no
   * marks is cleared and freed (endpoints come and go; slots are reused).
   */
  #firstRemove(hash: number, slot: number): void {
    const col = slot < this.#colOf.length ? (this.#colOf[slot] as number) - 1 : -1
    if (col < 0) return
    const stride = this.#firstStride
    const i = firstBucket(hash) * stride + col
    const c = this.#firstCounts[i] as number
    if (c > 0 && c < FIRST_SATURATED) this.#firstCounts[i] = c - 1
    const left = (this.#colMarks[col] as number) - 1
    this.#colMarks[col] = left
    if (left > 0) return
    // Saturated counts may remain: a column is handed out again only cleared.
    for (let b = col; b < this.#firstCounts.length; b += stride) this.#firstCounts[b] = 0
    this.#colOf[slot] = 0
    this.#freeCols.push(col)
  }

  /** Rows with room for every column: the counts copied into rows twice as wide (16 at first). */
  #widen(): void {
    const was = this.#firstStride
    const stride = Math.max(16, was * 2)
    const next = new Uint8Array(FIRST_BUCKETS * stride)
    if (was > 0) {
      const old = this.#firstCounts
      for (let b = 0; b < FIRST_BUCKETS; b++) {
        next.set(old.subarray(b * was, (b + 1) * was), b * stride)
      }
    }
    const marks = new Int32Array(stride)
    marks.set(this.#colMarks)
    this.#firstCounts = next
    this.#firstStride = stride
    this.#colMarks = marks
  }

  /** Sum of the first-block filter's counts (tests: it must follow the tables exactly). */
  firstBlocksTracked(): number {
    let sum = 0
    for (const c of this.#firstCounts) sum += c
    return sum
  }

  /** Whether `ep`'s table holds block `hash` (tests, debug). */
  holds(ep: EndpointState, hash: number): boolean {
    return this.#blocks.get(ep)?.has(hash) === true
  }

  /** A completed request of `blocks` blocks: one sample of our side of the tokens-per-block ratio. */
  completed(blocks: number): void {
    // A prompt cut at maxBlocks would understate its length; the engine counted all of it.
    if (blocks === 0 || blocks >= this.config.maxBlocks) return
    this.#blocksN++
    this.#blocksPerReq += (blocks - this.#blocksPerReq) * Math.max(LEARN_ALPHA, 1 / this.#blocksN)
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
    const chars = this.config.blockChars
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

  /** Blocks of ours that fit in the endpoint's KV cache, when the engine says how big it is. */
  capacityOf(ep: EndpointState): number {
    const m = ep.metrics
    if (m?.numGpuBlocks !== undefined) {
      const tokens = m.numGpuBlocks * (m.blockSize ?? this.config.blockTokens)
      return Math.max(16, Math.ceil(tokens / this.tokensPerBlock))
    }
    return this.config.lruCapacity
  }

  /** Share of the endpoint's KV cache the blocks remembered for it fill (0..1). */
  occupancy(ep: EndpointState): number {
    // A state sharing its slot with another (a throwaway one) looks its table up.
    const size =
      this.#sizeEp[ep.slot] === ep
        ? (this.#sizeOf[ep.slot] as number)
        : (this.#blocks.get(ep)?.size ?? 0)
    return size === 0 ? 0 : Math.min(1, size / this.capacityOf(ep))
  }

  /**
   * Whether an endpoint outside `eps` holds the block `hash`. Only the tables of endpoints outside
   * `eps` are probed (usually none: the candidates are every ready pod), each probe being a cache
   * miss in a fleet's tables; the candidates are marked by slot first, and marks are checked
   * against the state in the slot (a throwaway state may share a live one's slot; two candidates
   * in one slot take the old way: every holding table, looked up among the candidates).
   */
  heldOutside(hash: number, eps: readonly EndpointState[]): boolean {
    const epoch = ++this.#markEpoch
    for (const e of eps) {
      if (this.#markedAt[e.slot] === epoch && this.#markedEp[e.slot] !== e) {
        // Two candidates in one slot: marks cannot tell them apart.
        for (const [ep, table] of this.#blocks)
          if (table.has(hash) && !eps.includes(ep)) return true
        return false
      }
      this.#markedEp[e.slot] = e
      this.#markedAt[e.slot] = epoch
    }
    for (const [ep, table] of this.#blocks) {
      if (this.#markedAt[ep.slot] === epoch && this.#markedEp[ep.slot] === ep) continue
      if (table.has(hash)) return true
    }
    return false
  }

  /** Nothing of ours is on `ep` any more (it left, or its engine restarted empty). */
  drop(ep: EndpointState): void {
    const table = this.#blocks.get(ep)
    if (table === undefined) return
    for (const h of table.firstHashes()) this.#firstRemove(h, ep.slot)
    table.onEvictFirst = undefined
    this.#blocks.delete(ep)
    if (this.#sizeEp[ep.slot] === ep) this.#sized(ep, 0)
    this.#gen++
  }

  /** Blocks remembered, summed over endpoints, and the endpoints with any. */
  stats(): { blocksIndexed: number; endpoints: number } {
    let blocks = 0
    for (const set of this.#blocks.values()) blocks += set.size
    return { blocksIndexed: blocks, endpoints: this.#blocks.size }
  }

  blocksPerEndpoint(): Record<string, number> {
    const out: Record<string, number> = {}
    for (const [ep, set] of this.#blocks) out[ep.name] = set.size
    return out
  }
}

/** Bucket of a block hash in the first-block filter (the top bits of a multiplicative hash). */
function firstBucket(hash: number): number {
  return Math.imul(hash, 0x9e3779b1) >>> (32 - FIRST_BITS)
}
