// The hot path of KV-event handling: one pass over a KVEventBatch payload's msgpack bytes that hands
// each event's block hashes to a sink, without building objects (no token-id arrays, no bigints).
// decodeBatch (wire.ts) is the readable reference; this must agree with it (scan.test.ts), and it
// is checked against msgspec's own encoding too (test/kv-events-msgspec.test.ts).

import { KvWireError } from './wire.js'

export interface ScanSink {
  /** Flattened (hi, lo) pairs in `h[0 .. 2n)`; valid only during the call. */
  stored(h: Uint32Array, n: number, medium: string | null, blockSize: number): void
  removed(h: Uint32Array, n: number, medium: string | null): void
  cleared(): void
}

const td = new TextDecoder()
let scratch = new Uint32Array(256)

class Reader {
  b: Uint8Array
  v: DataView
  p = 0
  constructor(b: Uint8Array) {
    this.b = b
    this.v = new DataView(b.buffer, b.byteOffset, b.byteLength)
  }
  byte(): number {
    if (this.p >= this.b.length) throw new KvWireError('truncated payload')
    return this.b[this.p++] as number
  }
  /** Array length, or -1 for nil. */
  arrayLen(): number {
    const t = this.byte()
    if (t >= 0x90 && t <= 0x9f) return t & 0x0f
    if (t === 0xdc) return this.u16()
    if (t === 0xdd) return this.u32()
    if (t === 0xc0) return -1
    throw new KvWireError('expected an array')
  }
  u16(): number {
    const x = this.v.getUint16(this.p)
    this.p += 2
    return x
  }
  u32(): number {
    const x = this.v.getUint32(this.p)
    this.p += 4
    return x
  }
  /** str or nil. */
  strOrNil(): string | null {
    const t = this.byte()
    let n: number
    if (t >= 0xa0 && t <= 0xbf) n = t & 0x1f
    else if (t === 0xd9) n = this.byte()
    else if (t === 0xda) n = this.u16()
    else if (t === 0xdb) n = this.u32()
    else if (t === 0xc0) return null
    else throw new KvWireError('expected a string')
    const b = this.b
    const p = this.p
    this.p += n
    // The tags and media seen on every event, without TextDecoder (which dominates otherwise).
    if (n === 3 && b[p + 1] === 0x50 && b[p + 2] === 0x55) {
      if (b[p] === 0x47) return 'GPU'
      if (b[p] === 0x43) return 'CPU'
    }
    if (b[p] === 0x42 && b[p + 1] === 0x6c && b[p + 4] === 0x6b) {
      // "Block…": BlockStored / BlockRemoved by length and the letter after "Block".
      if (n === 11 && b[p + 5] === 0x53 && b[p + 10] === 0x64) return 'BlockStored'
      if (n === 12 && b[p + 5] === 0x52 && b[p + 11] === 0x64) return 'BlockRemoved'
    }
    return n === 0 ? '' : td.decode(b.subarray(p, p + n))
  }
  /** A small non-negative int (block size); 0 for anything else, which is skipped. */
  smallInt(): number {
    const t = this.b[this.p] as number
    if (t <= 0x7f) {
      this.p++
      return t
    }
    if (t === 0xcc) {
      this.p++
      return this.byte()
    }
    if (t === 0xcd) {
      this.p++
      return this.u16()
    }
    if (t === 0xce) {
      this.p++
      return this.u32()
    }
    this.skip()
    return 0
  }
  /** A block hash (int of any width, or bytes: the last 8) into out[at], out[at+1]. */
  hash(out: Uint32Array, at: number): void {
    const t = this.byte()
    const v = this.v
    if (t <= 0x7f) {
      out[at] = 0
      out[at + 1] = t
    } else if (t >= 0xe0) {
      out[at] = 0xffffffff
      out[at + 1] = (t - 0x100) >>> 0
    } else {
      switch (t) {
        case 0xcc:
          out[at] = 0
          out[at + 1] = this.byte()
          return
        case 0xcd:
          out[at] = 0
          out[at + 1] = this.u16()
          return
        case 0xce:
          out[at] = 0
          out[at + 1] = this.u32()
          return
        case 0xcf:
        case 0xd3:
          out[at] = v.getUint32(this.p)
          out[at + 1] = v.getUint32(this.p + 4)
          this.p += 8
          return
        case 0xd0: {
          const x = v.getInt8(this.p++)
          out[at] = x < 0 ? 0xffffffff : 0
          out[at + 1] = x >>> 0
          return
        }
        case 0xd1: {
          const x = v.getInt16(this.p)
          this.p += 2
          out[at] = x < 0 ? 0xffffffff : 0
          out[at + 1] = x >>> 0
          return
        }
        case 0xd2: {
          const x = v.getInt32(this.p)
          this.p += 4
          out[at] = x < 0 ? 0xffffffff : 0
          out[at + 1] = x >>> 0
          return
        }
        case 0xc4:
        case 0xc5:
        case 0xc6: {
          const n = t === 0xc4 ? this.byte() : t === 0xc5 ? this.u16() : this.u32()
          if (n < 8) throw new KvWireError('block hash has fewer than 8 bytes')
          const end = this.p + n
          out[at] = v.getUint32(end - 8)
          out[at + 1] = v.getUint32(end - 4)
          this.p = end
          return
        }
        case 0xcb: {
          // Not from msgspec (ints stay ints) but from JS encoders writing large numbers as doubles.
          const d = v.getFloat64(this.p)
          this.p += 8
          if (!Number.isInteger(d)) throw new KvWireError('block hash is not an integer')
          const b = BigInt.asUintN(64, BigInt(d))
          out[at] = Number(b >> 32n)
          out[at + 1] = Number(b & 0xffffffffn)
          return
        }
        default:
          throw new KvWireError('block hash is neither int nor bytes')
      }
    }
  }
  /** Skips one value of any type. */
  skip(): void {
    const t = this.byte()
    if (t <= 0x7f || t >= 0xe0 || t === 0xc0 || t === 0xc2 || t === 0xc3) return
    if (t >= 0x80 && t <= 0x8f) {
      this.skipN((t & 0x0f) * 2)
      return
    }
    if (t >= 0x90 && t <= 0x9f) {
      this.skipN(t & 0x0f)
      return
    }
    if (t >= 0xa0 && t <= 0xbf) {
      this.p += t & 0x1f
      return
    }
    switch (t) {
      case 0xcc:
      case 0xd0:
        this.p += 1
        return
      case 0xcd:
      case 0xd1:
        this.p += 2
        return
      case 0xce:
      case 0xd2:
      case 0xca:
        this.p += 4
        return
      case 0xcf:
      case 0xd3:
      case 0xcb:
        this.p += 8
        return
      case 0xc4:
      case 0xd9:
        this.p += this.byte()
        return
      case 0xc5:
      case 0xda:
        this.p += this.u16()
        return
      case 0xc6:
      case 0xdb:
        this.p += this.u32()
        return
      case 0xdc:
        this.skipN(this.u16())
        return
      case 0xdd:
        this.skipN(this.u32())
        return
      case 0xde:
        this.skipN(this.u16() * 2)
        return
      case 0xdf:
        this.skipN(this.u32() * 2)
        return
      case 0xd4:
        this.p += 2
        return
      case 0xd5:
        this.p += 3
        return
      case 0xd6:
        this.p += 5
        return
      case 0xd7:
        this.p += 9
        return
      case 0xd8:
        this.p += 17
        return
      case 0xc7:
        this.p += 1 + this.byte()
        return
      case 0xc8:
        this.p += 1 + this.u16()
        return
      case 0xc9:
        this.p += 1 + this.u32()
        return
      default:
        throw new KvWireError(`invalid msgpack byte 0x${t.toString(16)}`)
    }
  }
  /** token_ids: an array of small ints, skipped without a call per element. */
  skipIntArray(): void {
    const n = this.arrayLen()
    const b = this.b
    let p = this.p
    for (let i = 0; i < n; i++) {
      const t = b[p] as number
      if (t <= 0x7f) p += 1
      else if (t === 0xcd) p += 3
      else if (t === 0xce) p += 5
      else if (t === 0xcc) p += 2
      else {
        this.p = p
        this.skip()
        p = this.p
      }
    }
    if (p > b.length) throw new KvWireError('truncated payload')
    this.p = p
  }
  skipN(n: number): void {
    for (let i = 0; i < n; i++) this.skip()
  }
  hashes(): number {
    const n = this.arrayLen()
    if (n < 0) throw new KvWireError('block_hashes is not a list')
    if (scratch.length < n * 2) scratch = new Uint32Array(n * 4)
    for (let i = 0; i < n; i++) this.hash(scratch, i * 2)
    return n
  }
}

/** Scans one KVEventBatch payload into `sink`; returns the number of events. */
export function scanBatch(payload: Uint8Array, sink: ScanSink): number {
  const r = new Reader(payload)
  const top = r.arrayLen()
  if (top < 2) throw new KvWireError('batch is not [ts, events, ...]')
  r.skip() // ts
  const count = r.arrayLen()
  if (count < 0) throw new KvWireError('batch events is not a list')
  for (let e = 0; e < count; e++) {
    const fields = r.arrayLen()
    if (fields < 1) throw new KvWireError('event is not a tagged array')
    const tag = r.strOrNil()
    if (tag === 'BlockStored') {
      const n = r.hashes()
      let left = fields - 2
      let blockSize = 0
      let medium: string | null = null
      // parent_block_hash, token_ids (skipped), block_size, lora_id, medium, later fields.
      if (left-- > 0) r.skip()
      if (left-- > 0) r.skipIntArray()
      if (left-- > 0) blockSize = r.smallInt()
      if (left-- > 0) r.skip()
      if (left-- > 0) medium = r.strOrNil()
      r.skipN(Math.max(0, left))
      sink.stored(scratch, n, medium, blockSize)
    } else if (tag === 'BlockRemoved') {
      const n = r.hashes()
      const medium = fields > 2 ? r.strOrNil() : null
      r.skipN(Math.max(0, fields - 3))
      sink.removed(scratch, n, medium)
    } else if (tag === 'AllBlocksCleared') {
      r.skipN(fields - 1)
      sink.cleared()
    } else {
      throw new KvWireError(`unknown event tag ${JSON.stringify(tag).slice(0, 40)}`)
    }
  }
  return count
}
