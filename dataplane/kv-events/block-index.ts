// The blocks one engine holds, as reported by its KV events: a set of 64-bit hashes in one
// open-addressing table on a Uint32Array (hi, lo per slot), linear probing with backward-shift
// deletion (no tombstones, so lookups stay short however many stores and removals go through).
// Load is kept ≤ 1/2, so a resident block costs at most 16 bytes of table (8 per slot, 2 slots).
//
// Bounded: at most `maxBlocks` resident. More than that means we missed removals (an engine cannot
// hold more blocks than it has), so the index is stale: it is cleared and rebuilt from the events
// that follow, which is safer than guessing which entries are wrong.

/** (0, 0) marks an empty slot; a real all-zero hash is held by a flag instead. */
export class BlockIndex {
  readonly maxBlocks: number
  #slots: Uint32Array
  #mask: number
  #size = 0
  #zero = false
  /** Times the index was cleared for exceeding maxBlocks. */
  overflows = 0

  constructor(maxBlocks: number, initialSlots = 1024) {
    this.maxBlocks = maxBlocks
    let n = 16
    while (n < initialSlots) n *= 2
    this.#slots = new Uint32Array(n * 2)
    this.#mask = n - 1
  }

  get size(): number {
    return this.#size + (this.#zero ? 1 : 0)
  }

  /** Bytes of the table (for the memory-per-block measurement). */
  get bytes(): number {
    return this.#slots.byteLength
  }

  #home(hi: number, lo: number): number {
    let h = Math.imul(lo ^ Math.imul(hi, 0x9e3779b1), 0x85ebca6b)
    h ^= h >>> 15
    return h & this.#mask
  }

  has(hi: number, lo: number): boolean {
    if (hi === 0 && lo === 0) return this.#zero
    const s = this.#slots
    let i = this.#home(hi, lo)
    for (;;) {
      const h = s[2 * i] as number
      const l = s[2 * i + 1] as number
      if (h === 0 && l === 0) return false
      if (h === hi >>> 0 && l === lo >>> 0) return true
      i = (i + 1) & this.#mask
    }
  }

  add(hi: number, lo: number): void {
    if (hi === 0 && lo === 0) {
      this.#zero = true
      return
    }
    if (this.size >= this.maxBlocks && !this.has(hi, lo)) {
      this.clear()
      this.overflows++
    }
    if ((this.#size + 1) * 2 > this.#mask + 1) this.#grow()
    this.#insert(hi >>> 0, lo >>> 0)
  }

  #insert(hi: number, lo: number): void {
    const s = this.#slots
    let i = this.#home(hi, lo)
    for (;;) {
      const h = s[2 * i] as number
      const l = s[2 * i + 1] as number
      if (h === 0 && l === 0) {
        s[2 * i] = hi
        s[2 * i + 1] = lo
        this.#size++
        return
      }
      if (h === hi && l === lo) return
      i = (i + 1) & this.#mask
    }
  }

  #grow(): void {
    const old = this.#slots
    const n = (this.#mask + 1) * 2
    this.#slots = new Uint32Array(n * 2)
    this.#mask = n - 1
    this.#size = 0
    for (let i = 0; i < old.length; i += 2) {
      const h = old[i] as number
      const l = old[i + 1] as number
      if (h !== 0 || l !== 0) this.#insert(h, l)
    }
  }

  delete(hi: number, lo: number): boolean {
    if (hi === 0 && lo === 0) {
      const had = this.#zero
      this.#zero = false
      return had
    }
    hi >>>= 0
    lo >>>= 0
    const s = this.#slots
    const mask = this.#mask
    let i = this.#home(hi, lo)
    for (;;) {
      const h = s[2 * i] as number
      const l = s[2 * i + 1] as number
      if (h === 0 && l === 0) return false
      if (h === hi && l === lo) break
      i = (i + 1) & mask
    }
    // Backward shift: pull later entries of the probe run into the hole when their home allows.
    let hole = i
    let j = i
    for (;;) {
      j = (j + 1) & mask
      const h = s[2 * j] as number
      const l = s[2 * j + 1] as number
      if (h === 0 && l === 0) break
      const home = this.#home(h, l)
      // Movable iff home is not cyclically in (hole, j].
      const inRange = hole <= j ? home > hole && home <= j : home > hole || home <= j
      if (!inRange) {
        s[2 * hole] = h
        s[2 * hole + 1] = l
        hole = j
      }
    }
    s[2 * hole] = 0
    s[2 * hole + 1] = 0
    this.#size--
    return true
  }

  /** Leading entries of `keys` (flattened hi, lo pairs) held without a gap. */
  prefixRun(keys: Uint32Array): number {
    const n = keys.length >>> 1
    for (let i = 0; i < n; i++)
      if (!this.has(keys[2 * i] as number, keys[2 * i + 1] as number)) return i
    return n
  }

  clear(): void {
    this.#slots.fill(0)
    this.#size = 0
    this.#zero = false
  }
}
