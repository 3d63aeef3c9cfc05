// vLLM's KV-event wire format (vllm/distributed/kv_events.py), decoded and encoded. SGLang's
// publisher (sglang/srt/disaggregation/kv_events.py) copies it: the same PUB/ROUTER sockets and
// frames, the same tagged array-like structs, minus vLLM's later fields (`medium` optional and
// omitted when None, no `lora_name`), block hashes as signed int64 — all read by the same decoder.
//
// A ZMQ PUB message is three frames: topic, an 8-byte big-endian sequence number, and the payload:
// msgpack of a `KVEventBatch`, a msgspec Struct with `array_like=True, omit_defaults=True`, i.e. an
// array `[ts, events, data_parallel_rank?]` (the trailing default is omitted). Each event is a
// tagged array-like Struct (`tag=True`): its class name first, then its fields in order:
//   ["BlockStored", block_hashes, parent_block_hash, token_ids, block_size, lora_id, medium, lora_name]
//   ["BlockRemoved", block_hashes, medium]
//   ["AllBlocksCleared"]
// Trailing fields equal to their default may be absent (omit_defaults), so every field after the
// required ones is optional here. A block hash (`ExternalBlockHash = bytes | int`) is an int (the
// low 8 bytes of the engine's hash, VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES, the default) or bytes;
// both are reduced to 64 bits held as two uint32 halves, which is what the index stores.

import { Decoder, Encoder } from '@msgpack/msgpack'

/** A 64-bit block hash as two unsigned 32-bit halves (no bigint on the hot path). */
export interface Hash64 {
  hi: number
  lo: number
}

export type KvEvent =
  | {
      readonly type: 'BlockStored'
      /** Flattened hi,lo pairs, one per block. */
      readonly hashes: Uint32Array
      readonly parent: Hash64 | null
      readonly tokenCount: number
      readonly blockSize: number
      readonly medium: string | null
    }
  | { readonly type: 'BlockRemoved'; readonly hashes: Uint32Array; readonly medium: string | null }
  | { readonly type: 'AllBlocksCleared' }

export interface KvEventBatch {
  readonly ts: number
  readonly events: readonly KvEvent[]
  readonly dataParallelRank: number | null
}

/** Malformed payloads: the subscriber counts and drops them (and resyncs on the next gap). */
export class KvWireError extends Error {
  readonly code = 'kv_events_malformed'
}

const decoder = new Decoder({ useBigInt64: true })

const MASK32 = 0xffffffffn

/** Writes `h` into out[at], out[at+1] (hi, lo). Bytes: their last 8 (big-endian), as vLLM's int form. */
function putHash(h: unknown, out: Uint32Array, at: number): void {
  if (typeof h === 'number') {
    if (!Number.isInteger(h)) throw new KvWireError('block hash is not an integer')
    // Negative ints come from signed encoders; keep the two's-complement bits as vLLM's would.
    const b = BigInt.asUintN(64, BigInt(h))
    out[at] = Number(b >> 32n)
    out[at + 1] = Number(b & MASK32)
    return
  }
  if (typeof h === 'bigint') {
    const b = BigInt.asUintN(64, h)
    out[at] = Number(b >> 32n)
    out[at + 1] = Number(b & MASK32)
    return
  }
  if (h instanceof Uint8Array) {
    if (h.length < 8) throw new KvWireError('block hash has fewer than 8 bytes')
    const v = new DataView(h.buffer, h.byteOffset + h.length - 8, 8)
    out[at] = v.getUint32(0)
    out[at + 1] = v.getUint32(4)
    return
  }
  throw new KvWireError('block hash is neither int nor bytes')
}

function hashList(v: unknown, field: string): Uint32Array {
  if (!Array.isArray(v)) throw new KvWireError(`${field} is not a list`)
  const out = new Uint32Array(v.length * 2)
  for (let i = 0; i < v.length; i++) putHash(v[i], out, i * 2)
  return out
}

function optString(v: unknown): string | null {
  return typeof v === 'string' ? v : null
}

function decodeEvent(e: unknown): KvEvent {
  if (!Array.isArray(e) || typeof e[0] !== 'string')
    throw new KvWireError('event is not a tagged array')
  switch (e[0]) {
    case 'BlockStored': {
      const parentRaw: unknown = e[2]
      let parent: Hash64 | null = null
      if (parentRaw !== null && parentRaw !== undefined) {
        const p = new Uint32Array(2)
        putHash(parentRaw, p, 0)
        parent = { hi: p[0] as number, lo: p[1] as number }
      }
      const tokens: unknown = e[3]
      const bs: unknown = e[4]
      return {
        type: 'BlockStored',
        hashes: hashList(e[1], 'BlockStored.block_hashes'),
        parent,
        tokenCount: Array.isArray(tokens) ? tokens.length : 0,
        blockSize: typeof bs === 'number' ? bs : 0,
        medium: optString(e[6]),
      }
    }
    case 'BlockRemoved':
      return {
        type: 'BlockRemoved',
        hashes: hashList(e[1], 'BlockRemoved.block_hashes'),
        medium: optString(e[2]),
      }
    case 'AllBlocksCleared':
      return { type: 'AllBlocksCleared' }
    default:
      throw new KvWireError(`unknown event tag ${JSON.stringify(e[0]).slice(0, 40)}`)
  }
}

/** Decodes one `KVEventBatch` payload (the third frame). Unknown tags fail the whole batch. */
export function decodeBatch(payload: Uint8Array): KvEventBatch {
  let v: unknown
  try {
    v = decoder.decode(payload)
  } catch (e) {
    throw new KvWireError(`not msgpack: ${(e as Error).message}`)
  }
  if (!Array.isArray(v) || v.length < 2) throw new KvWireError('batch is not [ts, events, ...]')
  const ts: unknown = v[0]
  const events: unknown = v[1]
  if (!Array.isArray(events)) throw new KvWireError('batch events is not a list')
  const rank: unknown = v[2]
  return {
    ts: typeof ts === 'number' ? ts : typeof ts === 'bigint' ? Number(ts) : 0,
    events: events.map(decodeEvent),
    dataParallelRank: typeof rank === 'number' ? rank : null,
  }
}

/** The sequence frame: 8 bytes, big-endian signed (vLLM: `seq.to_bytes(8, "big")`; -1 ends a replay). */
export function decodeSeq(frame: Uint8Array): bigint {
  if (frame.length !== 8) throw new KvWireError('sequence frame is not 8 bytes')
  return new DataView(frame.buffer, frame.byteOffset, 8).getBigInt64(0)
}

export function encodeSeq(seq: bigint): Uint8Array {
  const b = new Uint8Array(8)
  new DataView(b.buffer).setBigInt64(0, seq)
  return b
}

// Encoding, for the simulator's publisher: the same shapes msgspec writes. Hashes are uint64
// (bigint); everything else as msgspec would (ints minimal, trailing defaults omitted).
export type WireEvent =
  | {
      readonly type: 'BlockStored'
      readonly hashes: readonly bigint[]
      readonly parent: bigint | null
      readonly tokenIds: readonly number[]
      readonly blockSize: number
      readonly loraId: number | null
      readonly medium: string | null
    }
  | {
      readonly type: 'BlockRemoved'
      readonly hashes: readonly bigint[]
      readonly medium: string | null
    }
  | { readonly type: 'AllBlocksCleared' }

const encoder = new Encoder({ useBigInt64: true })

/** msgspec writes an int in the fewest bytes; a bigint that fits a double's safe range goes as number. */
function wireInt(h: bigint): bigint | number {
  const safe = BigInt(Number.MAX_SAFE_INTEGER)
  return h <= safe && h >= -safe ? Number(h) : h
}

/**
 * `engine` picks the struct shape: vLLM's `medium` has no default (always written); SGLang's
 * (sglang/srt/disaggregation/kv_events.py) defaults to None and is omitted then (omit_defaults),
 * and SGLang's hashes are signed int64 (pass them signed).
 */
export function encodeBatch(
  ts: number,
  events: readonly WireEvent[],
  engine: 'vllm' | 'sglang' = 'vllm',
): Uint8Array {
  const medium = (m: string | null): unknown[] => (engine === 'sglang' && m === null ? [] : [m])
  const out: unknown[] = events.map((e): unknown[] => {
    if (e.type === 'BlockStored') {
      return [
        'BlockStored',
        e.hashes.map(wireInt),
        e.parent === null ? null : wireInt(e.parent),
        e.tokenIds,
        e.blockSize,
        e.loraId,
        ...medium(e.medium),
      ]
    }
    if (e.type === 'BlockRemoved')
      return ['BlockRemoved', e.hashes.map(wireInt), ...medium(e.medium)]
    return ['AllBlocksCleared']
  })
  return encoder.encode([ts, out])
}
