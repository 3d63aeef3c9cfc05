// Our reading of vLLM's KV-event format checked against msgspec itself (PyPI, the library vLLM
// encodes with), using the Struct definitions of vllm/distributed/kv_events.py: batches msgspec
// writes are decoded by dataplane/kv-events/wire.ts, the simulator's batches are read back by
// msgspec's typed decoder, and our sha256_cbor block hashes equal cbor2 + hashlib's.

import { execFileSync } from 'node:child_process'
import { describe, expect, it } from 'vitest'
import { blockKeys, noneHash } from '../dataplane/kv-events/block-hash.js'
import { scanBatch } from '../dataplane/kv-events/scan.js'
import { wordTokenIds } from '../dataplane/kv-events/tokens.js'
import { decodeBatch, encodeBatch } from '../dataplane/kv-events/wire.js'

interface PyOut {
  read_back: { ts: number; rank: number | null; events: Record<string, unknown>[] }
  payloads: string[]
  sha_x_tail: string
  hashes: string[]
}

function python(): string {
  // Creates the venv (msgspec, cbor2 from PyPI) on first use; cached under ~/.cache/infer-gateway.
  return execFileSync('bash', ['hack/kv-events/ensure-venv.sh'], { encoding: 'utf8' }).trim()
}

describe('KV events against msgspec (vLLM structs)', () => {
  it('decodes msgspec batches, msgspec decodes ours, and block hashes match cbor2', () => {
    const ours = encodeBatch(3.5, [
      {
        type: 'BlockStored',
        hashes: [0xfffffffffffffff0n, 42n],
        parent: 0x8000000000000001n,
        tokenIds: [1, 2, 3],
        blockSize: 16,
        loraId: null,
        medium: 'GPU',
      },
      { type: 'BlockRemoved', hashes: [42n], medium: 'GPU' },
      { type: 'AllBlocksCleared' },
    ])
    const tokens = Array.from(
      wordTokenIds('The quick brown fox jumps over the lazy dog. '.repeat(8)),
    )
    const input = JSON.stringify({
      decode: Buffer.from(ours).toString('hex'),
      tokens,
      block_size: 16,
      seed: '0',
      extra: ['adapter-a'],
    })
    const out = JSON.parse(
      execFileSync(python(), ['hack/kv-events/msgspec_batches.py'], { input, encoding: 'utf8' }),
    ) as PyOut

    // msgspec reads the simulator's encoding as vLLM's types.
    expect(out.read_back.ts).toBe(3.5)
    expect(out.read_back.events.map((e) => e['type'])).toEqual([
      'BlockStored',
      'BlockRemoved',
      'AllBlocksCleared',
    ])
    const s = out.read_back.events[0] as Record<string, unknown>
    expect(s['block_hashes']).toEqual(['18446744073709551600', 42])
    expect(s['parent_block_hash']).toBe('9223372036854775809')
    expect(s['token_ids']).toEqual([1, 2, 3])
    expect(s['medium']).toBe('GPU')

    // We read msgspec's encoding.
    const [b1, b2] = out.payloads.map((h) => decodeBatch(Buffer.from(h, 'hex')))
    if (b1 === undefined || b2 === undefined) throw new Error('two payloads expected')
    expect(b1.ts).toBe(1700000000.25)
    const e1 = b1.events[0]
    if (e1?.type !== 'BlockStored') throw new Error('BlockStored expected')
    const big = (1n << 64n) - 3n
    expect([...e1.hashes]).toEqual([
      Number(big >> 32n),
      Number(big & 0xffffffffn),
      0,
      12345,
      256,
      0,
    ])
    expect(e1.tokenCount).toBe(48)
    expect(e1.parent).toBeNull()
    expect(b1.events[1]?.type).toBe('BlockRemoved')
    expect(b2.dataParallelRank).toBe(2)
    const e2 = b2.events[0]
    if (e2?.type !== 'BlockStored') throw new Error('BlockStored expected')
    const tail = Buffer.from(out.sha_x_tail, 'hex')
    expect([...e2.hashes]).toEqual([tail.readUInt32BE(0), tail.readUInt32BE(4)])
    expect(e2.parent).toEqual({ hi: Number(big >> 32n), lo: Number(big & 0xffffffffn) })
    expect(e2.medium).toBeNull()
    expect(b2.events[1]?.type).toBe('AllBlocksCleared')

    // The hot-path scanner reads msgspec's bytes the same way as the reference decoder.
    for (const hex of out.payloads) {
      const p = Buffer.from(hex, 'hex')
      const seen: number[][] = []
      scanBatch(p, {
        stored: (h, n) => seen.push([...h.subarray(0, 2 * n)]),
        removed: (h, n) => seen.push([...h.subarray(0, 2 * n)]),
        cleared: () => seen.push([]),
      })
      expect(seen).toEqual(decodeBatch(p).events.map((e) => ('hashes' in e ? [...e.hashes] : [])))
    }

    // Block hashes: vLLM's sha256_cbor chain, computed by cbor2 + hashlib.
    const keys = blockKeys(tokens, 16, noneHash('0'), ['adapter-a'], 1000)
    expect(out.hashes.length).toBe(Math.floor(tokens.length / 16))
    expect(out.hashes.length).toBeGreaterThan(3)
    const ourHashes: string[] = []
    for (let i = 0; i < keys.length; i += 2)
      ourHashes.push(String((BigInt(keys[i] as number) << 32n) | BigInt(keys[i + 1] as number)))
    expect(ourHashes).toEqual(out.hashes)
  }, 180_000)
})
