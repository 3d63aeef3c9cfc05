// Block hashes of a request's prompt, made once per request and mostly without rehashing text
// seen before. The values are exactly `blockHashes` of prompt.ts (the reference; tests compare
// both on every shape of input), computed faster in two ways:
//
// - Once per request: every plugin that cuts prompts the same way (prefix-cache, and
//   predicted-latency's prefix index) reads the same array, memoised on the request's scratch
//   (`requestBlocks`).
// - Once per distinct long piece: a prompt is read piece by piece (the chat template's pieces,
//   promptPieces), and a long piece that arrives in the same chain state as before (same model,
//   same text before it in its block) produces the same block hashes and leaves the same state.
//   Shared system prompts, documents and earlier turns are exactly such pieces, and they are most
//   of the bytes of a long prompt: hashing 28 KB of system prompt costs ~20 µs, comparing it
//   with the remembered copy ~1 µs. The cache is content-addressed (the piece's text and the
//   incoming state are compared in full), so it never needs invalidating: nothing about
//   endpoints, snapshots or restarts enters a hash.
//
// Bounded: pieces of at least CACHE_MIN_CHARS, admitted on their second sighting (a doorkeeper of
// fingerprints, so a stream of unique questions does not churn out the shared prompts), at most
// MAX_ENTRIES entries and MAX_BYTES of remembered data, least recently used out first. One text
// arriving in several chain states (a system prompt sent to the base model and to each LoRA
// adapter: each seeds its own chain) has an entry per state but is held once.

import { blockHashes, chainSeed, lanes, mixBlockBytes } from './prompt.js'
import { fmix32 } from './state.js'
import type { SchedRequest } from './types.js'

/** Pieces shorter than this are hashed directly: a lookup would cost about as much. */
export const CACHE_MIN_CHARS = 1024
export const MAX_ENTRIES = 512
/**
 * Bytes held at most: texts at 2 bytes a character (V8's widest) plus each entry's hashes. A
 * 28 KB system prompt under 7 models costs ~57 KB of text and ~13 KB of hashes. Filled by the
 * long pieces of real traffic over hours, so a process's heap keeps rising by up to this much
 * long after start (/metrics `infer_gateway_prompt_cache_bytes` shows where it stands).
 */
export const MAX_BYTES = 4 * 1024 * 1024
/** Fingerprints remembered by the doorkeeper before it starts over. */
const SEEN_MAX = 4096
/** Characters sampled into a piece's fingerprint (plus its length). */
const SAMPLES = 16
/**
 * Values per shared block of results (#result): 16 KB. A result is held as long as its request
 * (req.scratch, until completion), and holds its whole block: a long-running request can keep up
 * to 16 KB alive where its own array was 0.1-4 KB. Results up to IN_HEAP_VALUES (V8 keeps such
 * typed arrays inside the heap: cheap, nothing to share) and above RESULT_MAX_SHARED (at least
 * a quarter of a block on their own) are sliced as before.
 */
const RESULT_BLOCK = 4096
const RESULT_MAX_SHARED = 1024
const IN_HEAP_VALUES = 16

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1
const encoder = new TextEncoder()

/** A long piece hashed in a given chain state, and what it left behind. */
/** A remembered text, shared by its entries. */
interface Text {
  readonly text: string
  refs: number
}

interface Entry {
  readonly piece: Text
  /** Its key in #texts. */
  readonly textKey: number
  readonly blockBytes: number
  /** Chain state before the piece: the lanes and the bytes of the block not yet hashed. */
  readonly inH1: number
  readonly inH2: number
  readonly head: Uint8Array
  /** Block hashes completed inside the piece. */
  readonly hashes: Int32Array
  /** Chain state after it. */
  readonly outH1: number
  readonly outH2: number
  readonly tail: Uint8Array
  /** The piece's UTF-8 length. */
  readonly bytes: number
}

export interface PromptHasherStats {
  readonly hits: number
  readonly misses: number
  readonly entries: number
  /** Distinct texts held, and the bytes counted against MAX_BYTES. */
  readonly texts: number
  readonly bytes: number
}

export class PromptHasher {
  #buf = new Uint8Array(64 * 1024)
  #words = new Int32Array(this.#buf.buffer)
  #out = new Int32Array(2048)
  readonly #entries = new Map<number, Entry>()
  readonly #seen = new Set<number>()
  readonly #texts = new Map<number, Text>()
  #bytes = 0
  #hits = 0
  #misses = 0
  /**
   * This call's hits: where each one's hashes go in the result and the entry's array. They are
   * copied once, into the result (#result), not into #out first and from there again.
   */
  readonly #hitAt: number[] = []
  readonly #hitOf: Int32Array[] = []
  #hitN = 0

  /** `blockHashes(pieces, blockBytes, maxBlocks, seed)`, reusing long pieces hashed before. */
  hash(pieces: readonly string[], blockBytes: number, maxBlocks: number, seed: number): Int32Array {
    // The streaming path reads whole aligned words; other cuttings take the reference path.
    if (!LITTLE_ENDIAN || blockBytes % 8 !== 0) {
      return blockHashes(pieces, blockBytes, maxBlocks, seed)
    }
    const max = blockBytes * maxBlocks
    if (this.#out.length < maxBlocks) this.#out = new Int32Array(maxBlocks)
    const out = this.#out
    let h1 = seed | 0
    let h2 = (seed ^ 0x5bd1e995) | 0
    /** Bytes of the current block not hashed yet, at the start of #buf. */
    let pend = 0
    let total = 0
    let k = 0
    this.#hitN = 0
    for (const p of pieces) {
      if (p.length === 0) continue
      let key = 0
      let textKey = 0
      const cacheable = p.length >= CACHE_MIN_CHARS
      if (cacheable) {
        textKey = textFingerprint(p)
        key = stateKey(textKey, h1, h2, pend, blockBytes)
        const e = this.#entries.get(key)
        if (e !== undefined && this.#matches(e, p, h1, h2, pend, blockBytes)) {
          // A prompt longer than maxBlocks is cut mid-piece: the reference path does that.
          if (total + e.bytes > max) return blockHashes(pieces, blockBytes, maxBlocks, seed)
          this.#hitAt[this.#hitN] = k
          this.#hitOf[this.#hitN] = e.hashes
          this.#hitN++
          k += e.hashes.length
          h1 = e.outH1
          h2 = e.outH2
          this.#buf.set(e.tail, 0)
          pend = e.tail.length
          total += e.bytes
          this.#entries.delete(key)
          this.#entries.set(key, e)
          this.#hits++
          continue
        }
        this.#misses++
      }
      // Room for the whole piece, or just past the cut (then the reference path takes over).
      const room = Math.min(p.length * 3, max - total + 4)
      if (this.#buf.length < pend + room) this.#grow(pend + room)
      const buf = this.#buf
      const admit = cacheable && this.#admit(key)
      const head = admit ? buf.slice(0, pend) : undefined
      const inH1 = h1
      const inH2 = h2
      const written = encode(p, buf, pend, room)
      if (written < 0 || total + written > max) {
        return blockHashes(pieces, blockBytes, maxBlocks, seed)
      }
      const len = pend + written
      const full = Math.floor(len / blockBytes)
      const k0 = k
      // Whole blocks, word by word in two lanes: mixBlockWords (prompt.ts) written out here, the
      // lanes in locals. Calling it per block read 2-3 % slower decisions in 3 of 4 in-process
      // A/B pairs (bench:scheduler-cost-ab, 2026-12-03); tests hold both to blockHashes.
      const words = this.#words
      const wordsPerBlock = blockBytes >>> 2
      let w = 0
      for (let b = 0; b < full; b++) {
        const end = w + wordsPerBlock
        for (; w < end; w += 2) {
          h1 = Math.imul(h1 ^ (words[w] as number), 0x9e3779b1)
          h2 = Math.imul(h2 ^ (words[w + 1] as number), 0x85ebca77)
          h1 ^= h1 >>> 15
          h2 ^= h2 >>> 13
        }
        out[k++] = fmix32(h1 ^ Math.imul(h2, 0xc2b2ae3d)) & 0x3fffffff
      }
      // The unhashed rest to the front; a piece that completed no block left it there already
      // (most pieces: the template's framing), and the call was ~4 % of hashing a prompt.
      if (full > 0) buf.copyWithin(0, full * blockBytes, len)
      pend = len - full * blockBytes
      total += written
      if (head !== undefined) {
        this.#store(key, {
          piece: this.#intern(textKey, p),
          textKey,
          blockBytes,
          inH1,
          inH2,
          head,
          hashes: out.slice(k0, k),
          outH1: h1,
          outH2: h2,
          tail: buf.slice(0, pend),
          bytes: written,
        })
      }
    }
    if (pend > 0) {
      // The partial tail block: blockHashes' byte path (zero padding, the length mixed in). The
      // block starts at a multiple of 8 bytes, so its end's low bits are pend's.
      lanes[0] = h1
      lanes[1] = h2
      out[k++] = mixBlockBytes(this.#buf, 0, pend)
    }
    return this.#result(out, k)
  }

  /** Results share blocks of RESULT_BLOCK values (see there); the next free one at #resultAt. */
  #results = resultBlock()
  #resultAt = 0

  /**
   * `out.slice(0, k)`, as a view of a shared block for mid-sized results: a slice past 64 bytes
   * is an ArrayBuffer of its own outside the heap (an allocation, its accounting, and sweeping
   * once dead), ~1.5-2 µs for 512 values on this machine against ~0.5 for a view and a copy.
   * Results never overlap (a block only fills up), so one request's array is never another's.
   */
  #result(out: Int32Array, k: number): Int32Array {
    const hits = this.#hitN
    if (k <= IN_HEAP_VALUES || k > RESULT_MAX_SHARED) {
      for (let h = 0; h < hits; h++) out.set(this.#hitOf[h] as Int32Array, this.#hitAt[h] as number)
      return out.slice(0, k)
    }
    if (this.#resultAt + k > this.#results.length) {
      this.#results = resultBlock()
      this.#resultAt = 0
    }
    const at = this.#resultAt
    this.#resultAt = at + k
    const r = this.#results.subarray(at, at + k)
    // The hits' hashes from their entries, the blocks hashed in this call from #out between them.
    let from = 0
    for (let h = 0; h < hits; h++) {
      const to = this.#hitAt[h] as number
      const src = this.#hitOf[h] as Int32Array
      if (to > from) r.set(out.subarray(from, to), from)
      r.set(src, to)
      from = to + src.length
    }
    if (k > from) r.set(out.subarray(from, k), from)
    return r
  }

  stats(): PromptHasherStats {
    return {
      hits: this.#hits,
      misses: this.#misses,
      entries: this.#entries.size,
      texts: this.#texts.size,
      bytes: this.#bytes,
    }
  }

  /** The same piece (compared in full) arriving in the same chain state. */
  #matches(e: Entry, p: string, h1: number, h2: number, pend: number, bb: number): boolean {
    if (e.blockBytes !== bb || e.inH1 !== h1 || e.inH2 !== h2 || e.head.length !== pend) {
      return false
    }
    const buf = this.#buf
    for (let i = 0; i < pend; i++) if (e.head[i] !== buf[i]) return false
    return e.piece.text === p
  }

  /** Second sighting of a fingerprint: worth remembering. */
  #admit(key: number): boolean {
    if (this.#seen.has(key)) return true
    if (this.#seen.size >= SEEN_MAX) this.#seen.clear()
    this.#seen.add(key)
    return false
  }

  /** The held copy of text `p` (shared with the entries of other chain states), or a new one. */
  #intern(textKey: number, p: string): Text {
    const t = this.#texts.get(textKey)
    if (t !== undefined && t.text === p) {
      t.refs++
      return t
    }
    const n: Text = { text: p, refs: 1 }
    // A different text with the same fingerprint: the newer one is kept for new entries; the
    // older one's entries keep their own reference and count.
    this.#texts.set(textKey, n)
    this.#bytes += 2 * p.length
    return n
  }

  #store(key: number, e: Entry): void {
    const old = this.#entries.get(key)
    if (old !== undefined) this.#drop(key, old)
    this.#entries.set(key, e)
    this.#bytes += 4 * e.hashes.length
    while (this.#entries.size > MAX_ENTRIES || this.#bytes > MAX_BYTES) {
      const first = this.#entries.entries().next().value
      if (first === undefined) break
      this.#drop(first[0], first[1])
    }
  }

  #drop(key: number, e: Entry): void {
    this.#entries.delete(key)
    this.#bytes -= 4 * e.hashes.length
    if (--e.piece.refs === 0) {
      this.#bytes -= 2 * e.piece.text.length
      if (this.#texts.get(e.textKey) === e.piece) this.#texts.delete(e.textKey)
    }
  }

  #grow(n: number): void {
    const next = new Uint8Array(Math.max(n, this.#buf.length * 2))
    next.set(this.#buf)
    this.#buf = next
    this.#words = new Int32Array(next.buffer)
  }
}

/** Pieces up to this long are copied byte by byte when ASCII (the template's framing pieces). */
const SHORT_PIECE = 64

/**
 * UTF-8 of `p` into `buf` from `at`, at most `room` bytes: the bytes written, or -1 when `p` did
 * not fit. Short ASCII pieces (ChatML's `<|im_start|>`, role names, newlines: most of a prompt's
 * pieces) are copied directly: each encodeInto call crosses into C++ and allocates its result.
 */
function encode(p: string, buf: Uint8Array, at: number, room: number): number {
  const n = p.length
  if (n <= SHORT_PIECE && n <= room) {
    let i = 0
    for (; i < n; i++) {
      const c = p.charCodeAt(i)
      if (c >= 0x80) break
      buf[at + i] = c
    }
    if (i === n) return n
  }
  const r = encoder.encodeInto(p, buf.subarray(at, at + room))
  return r.read < n ? -1 : r.written
}

/**
 * A block of RESULT_BLOCK values for #result, not zero-filled: a result is a view of values
 * written before it is handed out, and nothing reads the rest. `new Int32Array(RESULT_BLOCK)`
 * zero-fills through calloc: 1.6-2.6 µs a block in a loop against 0.8-1.0 for this, once every
 * eight 512-block prompts, inside their decision.
 */
function resultBlock(): Int32Array {
  const b = Buffer.allocUnsafeSlow(RESULT_BLOCK * 4)
  return new Int32Array(b.buffer, b.byteOffset, RESULT_BLOCK)
}

/**
 * Cache keys are kept to 30 bits (`& SMI_KEY`): V8 stores such a number as a small integer, so
 * the Map and Set lookups of every long piece neither box the key nor hash a double. Collisions
 * only cost a miss (entries are compared in full).
 */
const SMI_KEY = 0x3fffffff

/** Length and sampled characters of a text: its key among held texts. */
function textFingerprint(p: string): number {
  const n = p.length
  let h = Math.imul(n, 0x9e3779b1)
  const step = (n - 1) / (SAMPLES - 1)
  for (let i = 0; i < SAMPLES; i++) {
    h = Math.imul(h ^ p.charCodeAt(Math.floor(i * step)), 0x01000193)
  }
  return fmix32(h) & SMI_KEY
}

/**
 * A text's fingerprint and the incoming chain state, mixed: the cache key. Collisions only cost
 * a miss (entries are compared in full).
 */
function stateKey(text: number, h1: number, h2: number, pend: number, bb: number): number {
  return (
    fmix32(Math.imul(text ^ h1, 0x9e3779b1) ^ Math.imul(h2, 0x85ebca77) ^ Math.imul(pend + 1, bb)) &
    SMI_KEY
  )
}

/** The process's hasher: the cache pays off across requests and servers alike. */
export const promptHasher = new PromptHasher()

/** One memo key per cutting (block size × block limit), shared by every plugin that uses it. */
const cuttings = new Map<number, object>()

/**
 * The request's chained block hashes for this cutting, seeded by its adapter (else model): made
 * on first use and shared by every plugin of the request that cuts prompts the same way.
 */
export function requestBlocks(
  req: SchedRequest,
  blockBytes: number,
  maxBlocks: number,
): Int32Array {
  const id = blockBytes * 65_536 + maxBlocks
  let memoKey = cuttings.get(id)
  if (memoKey === undefined) {
    memoKey = { blockBytes, maxBlocks }
    cuttings.set(id, memoKey)
  }
  const have = req.scratch.get(memoKey)
  if (have instanceof Int32Array) return have
  const h = promptHasher.hash(
    req.pieces,
    blockBytes,
    maxBlocks,
    chainSeed(req.lora ?? req.ctx.model),
  )
  req.scratch.set(memoKey, h)
  return h
}
