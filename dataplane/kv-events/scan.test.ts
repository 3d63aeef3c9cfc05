import { Encoder } from '@msgpack/msgpack'
import { describe, expect, it } from 'vitest'
import { type ScanSink, scanBatch } from './scan.js'
import { decodeBatch, encodeBatch, type KvEvent, KvWireError } from './wire.js'

/** What scanBatch reports, in decodeBatch's shape, to compare the two readers. */
function scanned(payload: Uint8Array): unknown[] {
  const out: unknown[] = []
  const sink: ScanSink = {
    stored: (h, n, medium, blockSize) =>
      out.push({ type: 'BlockStored', hashes: [...h.subarray(0, 2 * n)], medium, blockSize }),
    removed: (h, n, medium) =>
      out.push({ type: 'BlockRemoved', hashes: [...h.subarray(0, 2 * n)], medium }),
    cleared: () => out.push({ type: 'AllBlocksCleared' }),
  }
  scanBatch(payload, sink)
  return out
}

function reference(payload: Uint8Array): unknown[] {
  return decodeBatch(payload).events.map((e: KvEvent) =>
    e.type === 'BlockStored'
      ? { type: e.type, hashes: [...e.hashes], medium: e.medium, blockSize: e.blockSize }
      : e.type === 'BlockRemoved'
        ? { type: e.type, hashes: [...e.hashes], medium: e.medium }
        : { type: e.type },
  )
}

describe('scanBatch', () => {
  it('agrees with decodeBatch on every int width, bytes hashes, omitted and extra fields', () => {
    const bytes = Uint8Array.from({ length: 32 }, (_, i) => i * 7)
    const hashes = [
      0,
      5,
      200,
      70_000,
      4_000_000_000,
      -1,
      -200,
      -70_000,
      2 ** 40,
      2n ** 64n - 1n,
      bytes,
    ]
    const enc = new Encoder({ useBigInt64: true })
    const payloads = [
      enc.encode([1.25, [['BlockStored', hashes, null, [1, 2, 3], 16, null, 'GPU']], 3]),
      enc.encode([
        1,
        [['BlockStored', [1, 2], 9, Array(64).fill(150_000), 300, 7, null, 'lora-x']],
      ]),
      enc.encode([1, [['BlockStored', [3], null, [], 16]], ['BlockRemoved', hashes]]),
      enc.encode([
        1,
        [['BlockRemoved', [4], 'CPU'], ['AllBlocksCleared'], { extra: [1, 'x'] }].slice(0, 2),
      ]),
      encodeBatch(2, [
        {
          type: 'BlockStored',
          hashes: [2n ** 63n + 5n],
          parent: 1n,
          tokenIds: [9],
          blockSize: 16,
          loraId: null,
          medium: null,
        },
        { type: 'AllBlocksCleared' },
      ]),
    ]
    for (const p of payloads) expect(scanned(p)).toEqual(reference(p))
    expect(scanned(payloads[0] as Uint8Array)).toHaveLength(1)
  })

  it('fails with a typed error on what decodeBatch refuses', () => {
    const enc = new Encoder()
    for (const bad of [
      new Uint8Array([0x92, 0x01]),
      enc.encode([1, [['Nope']]]),
      enc.encode([1, [['BlockRemoved', ['x']]]]),
      enc.encode({ ts: 1 }),
    ]) {
      expect(() => scanned(bad)).toThrow(KvWireError)
      expect(() => decodeBatch(bad)).toThrow(KvWireError)
    }
  })
})
