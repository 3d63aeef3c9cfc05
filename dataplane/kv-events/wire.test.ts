import { Encoder } from '@msgpack/msgpack'
import { describe, expect, it } from 'vitest'
import { decodeBatch, decodeSeq, encodeBatch, encodeSeq, KvWireError } from './wire.js'

describe('KV-event wire format', () => {
  it('round-trips a batch of each event kind, 64-bit hashes above 2^63 included', () => {
    const big = 0xfedcba9876543210n
    const payload = encodeBatch(1.5, [
      {
        type: 'BlockStored',
        hashes: [big, 5n],
        parent: 7n,
        tokenIds: [1, 2, 3, 4],
        blockSize: 2,
        loraId: null,
        medium: 'GPU',
      },
      { type: 'BlockRemoved', hashes: [5n], medium: null },
      { type: 'AllBlocksCleared' },
    ])
    const b = decodeBatch(payload)
    expect(b.ts).toBe(1.5)
    expect(b.dataParallelRank).toBeNull()
    expect(b.events.map((e) => e.type)).toEqual(['BlockStored', 'BlockRemoved', 'AllBlocksCleared'])
    const stored = b.events[0]
    if (stored?.type !== 'BlockStored') throw new Error('expected BlockStored')
    expect([...stored.hashes]).toEqual([0xfedcba98, 0x76543210, 0, 5])
    expect(stored.parent).toEqual({ hi: 0, lo: 7 })
    expect(stored.blockSize).toBe(2)
    expect(stored.tokenCount).toBe(4)
    expect(stored.medium).toBe('GPU')
  })

  it('reads bytes hashes by their last 8 bytes and omitted trailing fields', () => {
    const h = new Uint8Array(32)
    h[31] = 9
    h[24] = 1
    const payload = new Encoder().encode([
      2,
      [
        ['BlockRemoved', [h]],
        ['BlockStored', [3], null, [], 16],
      ],
      1,
    ])
    const b = decodeBatch(payload)
    expect(b.dataParallelRank).toBe(1)
    const r = b.events[0]
    if (r?.type !== 'BlockRemoved') throw new Error('expected BlockRemoved')
    expect([...r.hashes]).toEqual([0x01000000, 9])
    expect(r.medium).toBeNull()
    const s = b.events[1]
    if (s?.type !== 'BlockStored') throw new Error('expected BlockStored')
    expect(s.medium).toBeNull()
  })

  it('rejects what is not a batch with a typed error', () => {
    expect(() => decodeBatch(new Uint8Array([0xc1]))).toThrow(KvWireError)
    expect(() => decodeBatch(new Encoder().encode({ ts: 1 }))).toThrow(/batch is not/)
    expect(() => decodeBatch(new Encoder().encode([1, [['Nope']]]))).toThrow(/unknown event tag/)
    expect(() => decodeBatch(new Encoder().encode([1, [['BlockRemoved', ['x']]]]))).toThrow(
      /neither int nor bytes/,
    )
  })

  it('sequence frames are 8-byte big-endian signed, -1 included', () => {
    expect([...encodeSeq(258n)]).toEqual([0, 0, 0, 0, 0, 0, 1, 2])
    expect(decodeSeq(encodeSeq(-1n))).toBe(-1n)
    expect(decodeSeq(encodeSeq(123456789012n))).toBe(123456789012n)
    expect(() => decodeSeq(new Uint8Array(4))).toThrow(KvWireError)
  })
})
