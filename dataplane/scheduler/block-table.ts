// A fixed-capacity set of block hashes with CLOCK eviction, in typed arrays: what prefix-cache
// remembers per endpoint. A Map of tens of thousands of entries per endpoint, churned on every
// dispatch, costs rehashing and garbage-collection pauses on the request path; this table
// allocates once and does O(1) work per insert and lookup.
//
// Layout: `keys[slot]` holds hash+1 (0 = empty) and `ref[slot]` the CLOCK reference bit; an
// open-addressing index (linear probing, power-of-two size ≥ 2 × capacity) holds pairs of
// hash+1 and slot side by side, so a lookup reads one cache line: the tables of a large fleet
// do not fit in the CPU's caches, and with the key behind the slot (`keys[index[i]]`) each
// probe of a decision's match and each block of a dispatch's record cost two misses instead of
// one. Evicting a slot deletes its index entry with backward-shift deletion, so the index never
// fills with tombstones. Hashes must be integers in [0, 2^30) (prompt.ts makes them so).
//
// A slot may be marked as holding a recorded prompt's first block (`markFirst`): the prefix
// index keeps a filter of those per endpoint (prefix-index.ts), and hears of a marked slot's
// eviction through `onEvictFirst`.

export class BlockTable {
  readonly capacity: number
  readonly #keys: Int32Array
  readonly #ref: Uint8Array
  /** 1: the slot holds a recorded prompt's first block (markFirst). */
  readonly #first: Uint8Array
  /** Called with the hash of a marked slot as it is evicted. */
  onEvictFirst: ((hash: number) => void) | undefined = undefined
  /** [hash+1, slot] per position; hash+1 = 0: empty. */
  readonly #index: Int32Array
  readonly #mask: number
  #size = 0
  #hand = 0

  constructor(capacity: number) {
    this.capacity = Math.max(1, Math.floor(capacity))
    this.#keys = new Int32Array(this.capacity)
    this.#ref = new Uint8Array(this.capacity)
    this.#first = new Uint8Array(this.capacity)
    let n = 2
    while (n < this.capacity * 2) n *= 2
    this.#index = new Int32Array(2 * n)
    this.#mask = n - 1
  }

  get size(): number {
    return this.#size
  }

  has(hash: number): boolean {
    return this.#find(hash) >= 0
  }

  /**
   * Insert `hash`, or mark it referenced if present; returns its slot. When full, the CLOCK hand
   * clears reference bits until it finds an unreferenced slot and reuses it: blocks touched since
   * the hand last passed survive one more round, blocks inserted together leave in insertion order.
   *
   * `hint`: a slot where `hash` may be (-1: none). Blocks recorded together take consecutive
   * slots, so a prompt recorded again finds block i-1 in the slot after block i's: checking
   * that slot's key first reads memory next to the last block's instead of a random line of the
   * index (each a cache miss: the tables of a fleet do not fit in the CPU's caches). A hash is in
   * at most one slot, so a matching key there is exactly what the index would have found.
   */
  touch(hash: number, hint = -1): number {
    if (hint >= 0 && hint < this.#size && this.#keys[hint] === hash + 1) {
      this.#ref[hint] = 1
      return hint
    }
    const at = this.#find(hash)
    if (at >= 0) {
      this.#ref[at] = 1
      return at
    }
    let slot: number
    if (this.#size < this.capacity) {
      slot = this.#size++
    } else {
      while (this.#ref[this.#hand] === 1) {
        this.#ref[this.#hand] = 0
        this.#hand = this.#hand + 1 === this.capacity ? 0 : this.#hand + 1
      }
      slot = this.#hand
      this.#hand = this.#hand + 1 === this.capacity ? 0 : this.#hand + 1
      this.#evicted(slot)
    }
    this.#keys[slot] = hash + 1
    this.#ref[slot] = 0
    const index = this.#index
    let i = mix(hash) & this.#mask
    while (index[2 * i] !== 0) i = (i + 1) & this.#mask
    index[2 * i] = hash + 1
    index[2 * i + 1] = slot
    return slot
  }

  /** Slot of `hash`, or -1 when it is not held. */
  slotOf(hash: number): number {
    return this.#find(hash)
  }

  /** Marks `slot` (a held one) as holding a prompt's first block; false if it was marked already. */
  markFirst(slot: number): boolean {
    if (this.#first[slot] === 1) return false
    this.#first[slot] = 1
    return true
  }

  /**
   * Slot `slot` is taken for another block: its block's index entry (and mark) go. Apart from
   * touch, which must stay under V8's inlining limit (460 bytes of bytecode) to be inlined into
   * a record's loop over every block of a prompt: a call per block otherwise.
   */
  #evicted(slot: number): void {
    const old = (this.#keys[slot] as number) - 1
    this.#unindex(old)
    if (this.#first[slot] === 1) {
      this.#first[slot] = 0
      this.onEvictFirst?.(old)
    }
  }

  /** The hashes in marked slots (resizing, dropping an endpoint). */
  *firstHashes(): IterableIterator<number> {
    for (let s = 0; s < this.#size; s++) {
      if (this.#first[s] === 1) yield (this.#keys[s] as number) - 1
    }
  }

  /** Every hash held (tests, resizing). */
  *hashes(): IterableIterator<number> {
    for (let s = 0; s < this.#size; s++) yield (this.#keys[s] as number) - 1
  }

  #find(hash: number): number {
    const index = this.#index
    const key = hash + 1
    let i = mix(hash) & this.#mask
    for (;;) {
      const k = index[2 * i] as number
      if (k === key) return index[2 * i + 1] as number
      if (k === 0) return -1
      i = (i + 1) & this.#mask
    }
  }

  /** Backward-shift deletion: later entries of the probe run move up into the hole. */
  #unindex(hash: number): void {
    const mask = this.#mask
    const index = this.#index
    let i = mix(hash) & mask
    for (;;) {
      const k = index[2 * i] as number
      if (k === 0) return
      if (k === hash + 1) break
      i = (i + 1) & mask
    }
    let hole = i
    let j = (i + 1) & mask
    for (;;) {
      const k = index[2 * j] as number
      if (k === 0) break
      const home = mix(k - 1) & mask
      // Move the entry at j into the hole unless its home lies cyclically in (hole, j].
      const inRange = hole <= j ? home > hole && home <= j : home > hole || home <= j
      if (!inRange) {
        index[2 * hole] = k
        index[2 * hole + 1] = index[2 * j + 1] as number
        hole = j
      }
      j = (j + 1) & mask
    }
    index[2 * hole] = 0
  }
}

/** Hashes arrive well mixed already; one multiply spreads sequential test values too. */
function mix(h: number): number {
  return Math.imul(h, 0x9e3779b1) >>> 0
}
