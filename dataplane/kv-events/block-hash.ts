// Block hashes computed the way vLLM's prefix cache computes them (vllm/v1/core/kv_cache_utils.py),
// so a request's blocks can be looked up in the index built from the engine's own events.
//
//   hash(block i) = H((hash(block i-1), tuple(token_ids of block i), extra_keys))
//   hash(block -1) = NONE_HASH = H(PYTHONHASHSEED as str)   (random per process when unset)
//   H = sha256_cbor: sha256 of the canonical CBOR of that 3-tuple (bytes, array of uints, null|array)
//
// Only full blocks are hashed (vLLM caches only full blocks). The event carries the low 8 bytes
// as an int, so the 64-bit halves of each digest's tail are what is returned. Engines must run with
// a fixed PYTHONHASHSEED (and `--prefix-caching-hash-algo sha256_cbor`) for a router to match them;
// the `pickle`-based `sha256` algorithm is Python-specific and not reproducible here.

import { createHash } from 'node:crypto'

export const HASH_ALGOS = ['sha256_cbor'] as const
export type HashAlgo = (typeof HASH_ALGOS)[number]

/** Engines whose KV events and block hashing we follow. */
export const KV_ENGINES = ['vllm', 'sglang'] as const
export type KvEngine = (typeof KV_ENGINES)[number]

/** Minimal CBOR writer for the shapes above (major types 0, 2, 3, 4 and null). */
class Cbor {
  buf = new Uint8Array(1024)
  len = 0
  reset(): void {
    this.len = 0
  }
  #room(n: number): void {
    if (this.len + n <= this.buf.length) return
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.len + n))
    next.set(this.buf.subarray(0, this.len))
    this.buf = next
  }
  head(major: number, n: number): void {
    this.#room(9)
    const m = major << 5
    const b = this.buf
    if (n < 24) b[this.len++] = m | n
    else if (n < 0x100) {
      b[this.len++] = m | 24
      b[this.len++] = n
    } else if (n < 0x10000) {
      b[this.len++] = m | 25
      b[this.len++] = n >>> 8
      b[this.len++] = n & 0xff
    } else if (n < 0x1_0000_0000) {
      b[this.len++] = m | 26
      b[this.len++] = n >>> 24
      b[this.len++] = (n >>> 16) & 0xff
      b[this.len++] = (n >>> 8) & 0xff
      b[this.len++] = n & 0xff
    } else {
      b[this.len++] = m | 27
      const hi = Math.floor(n / 0x1_0000_0000)
      const lo = n >>> 0
      b[this.len++] = hi >>> 24
      b[this.len++] = (hi >>> 16) & 0xff
      b[this.len++] = (hi >>> 8) & 0xff
      b[this.len++] = hi & 0xff
      b[this.len++] = lo >>> 24
      b[this.len++] = (lo >>> 16) & 0xff
      b[this.len++] = (lo >>> 8) & 0xff
      b[this.len++] = lo & 0xff
    }
  }
  bytes(v: Uint8Array): void {
    this.head(2, v.length)
    this.#room(v.length)
    this.buf.set(v, this.len)
    this.len += v.length
  }
  text(s: string): void {
    const enc = Buffer.from(s, 'utf8')
    this.head(3, enc.length)
    this.#room(enc.length)
    this.buf.set(enc, this.len)
    this.len += enc.length
  }
  nil(): void {
    this.#room(1)
    this.buf[this.len++] = 0xf6
  }
  view(): Uint8Array {
    return this.buf.subarray(0, this.len)
  }
}

const cbor = new Cbor()

function sha256(data: Uint8Array): Buffer {
  return createHash('sha256').update(data).digest()
}

/** vLLM's NONE_HASH for a given PYTHONHASHSEED (sha256_cbor of the seed string). */
export function noneHash(seed: string): Buffer {
  cbor.reset()
  cbor.text(seed)
  return sha256(cbor.view())
}

export type ExtraKey = string | number

/** One block's full 32-byte hash: H((parent, tokens, extra)). */
export function hashBlock(
  parent: Uint8Array,
  tokens: ArrayLike<number>,
  from: number,
  to: number,
  extra: readonly ExtraKey[] | null,
): Buffer {
  cbor.reset()
  cbor.head(4, 3)
  cbor.bytes(parent)
  cbor.head(4, to - from)
  for (let i = from; i < to; i++) cbor.head(0, tokens[i] as number)
  if (extra === null) cbor.nil()
  else {
    cbor.head(4, extra.length)
    for (const k of extra) {
      if (typeof k === 'string') cbor.text(k)
      else cbor.head(0, k)
    }
  }
  return sha256(cbor.view())
}

/** Full 32-byte hashes of the full blocks of `tokens`, at most `maxBlocks`. */
export function blockHashesFull(
  tokens: ArrayLike<number>,
  blockSize: number,
  seed: Uint8Array,
  extra: readonly ExtraKey[] | null,
  maxBlocks = Number.MAX_SAFE_INTEGER,
): Buffer[] {
  const n = Math.min(Math.floor(tokens.length / blockSize), maxBlocks)
  const out: Buffer[] = []
  let parent: Uint8Array = seed
  for (let b = 0; b < n; b++) {
    const h = hashBlock(parent, tokens, b * blockSize, (b + 1) * blockSize, extra)
    out.push(h)
    parent = h
  }
  return out
}

/** The event form of a full hash: its last 8 bytes, big-endian, as (hi, lo) into out[at..at+1]. */
export function tail64(h: Uint8Array, out: Uint32Array, at: number): void {
  const v = new DataView(h.buffer, h.byteOffset + h.length - 8, 8)
  out[at] = v.getUint32(0)
  out[at + 1] = v.getUint32(4)
}

/** The same as a bigint (the simulator's publisher writes uint64 ints). */
export function tail64n(h: Uint8Array): bigint {
  return new DataView(h.buffer, h.byteOffset + h.length - 8, 8).getBigUint64(0)
}

// SGLang (python/sglang/srt/mem_cache: get_hash_str, hash_str_to_int64): one hash per page of
// `page_size` tokens, chained: page i = sha256(digest of page i-1 (nothing for the first page) ‖
// each token id as 4 bytes little-endian). The event carries the digest's FIRST 8 bytes as a signed
// int64 (the first 16 hex characters), so (hi, lo) are those bytes read big-endian. No seed: the
// chain is the same in every process. Only full pages are cached, as in SGLang's paged radix cache.

/** SGLang's page hashes of `tokens` (full 32-byte digests), at most `maxBlocks`. */
export function sglangHashesFull(
  tokens: ArrayLike<number>,
  pageSize: number,
  maxBlocks = Number.MAX_SAFE_INTEGER,
): Buffer[] {
  const n = Math.min(Math.floor(tokens.length / pageSize), maxBlocks)
  const out: Buffer[] = []
  const page = Buffer.alloc(4 * pageSize)
  let prior: Buffer | undefined
  for (let b = 0; b < n; b++) {
    for (let i = 0; i < pageSize; i++)
      page.writeUInt32LE((tokens[b * pageSize + i] as number) >>> 0, 4 * i)
    const h = createHash('sha256')
    if (prior !== undefined) h.update(prior)
    prior = h.update(page).digest()
    out.push(prior)
  }
  return out
}

/** The event form of an SGLang digest: its first 8 bytes, big-endian, as (hi, lo). */
export function head64(h: Uint8Array, out: Uint32Array, at: number): void {
  const v = new DataView(h.buffer, h.byteOffset, 8)
  out[at] = v.getUint32(0)
  out[at + 1] = v.getUint32(4)
}

/** The same as SGLang writes it: a signed int64. */
export function head64n(h: Uint8Array): bigint {
  return new DataView(h.buffer, h.byteOffset, 8).getBigInt64(0)
}

/** Request-side SGLang hashes as flattened (hi, lo) pairs. */
export function sglangBlockKeys(
  tokens: ArrayLike<number>,
  pageSize: number,
  maxBlocks: number,
): Uint32Array {
  const full = sglangHashesFull(tokens, pageSize, maxBlocks)
  const out = new Uint32Array(full.length * 2)
  for (let i = 0; i < full.length; i++) head64(full[i] as Buffer, out, i * 2)
  return out
}

/** Request-side hashes as flattened (hi, lo) pairs, ready for index lookups. */
export function blockKeys(
  tokens: ArrayLike<number>,
  blockSize: number,
  seed: Uint8Array,
  extra: readonly ExtraKey[] | null,
  maxBlocks: number,
): Uint32Array {
  const full = blockHashesFull(tokens, blockSize, seed, extra, maxBlocks)
  const out = new Uint32Array(full.length * 2)
  for (let i = 0; i < full.length; i++) tail64(full[i] as Buffer, out, i * 2)
  return out
}
