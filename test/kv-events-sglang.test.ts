// SGLang's KV-event variant checked against msgspec (PyPI) with the Struct definitions of
// sglang/srt/disaggregation/kv_events.py, and SGLang's page-hash chain against hashlib
// (hack/kv-events/msgspec_sglang.py): batches msgspec writes are read by our scanner and decoder,
// the simulator's SGLang encoding is read by msgspec's typed decoder, and our request-side keys
// equal SGLang's event hashes.

import { execFileSync } from 'node:child_process'
import { describe, expect, it } from 'vitest'
import { compileScheduler } from '../api/compile.js'
import { schedulerSchema } from '../api/schema.js'
import { sglangBlockKeys } from '../dataplane/kv-events/block-hash.js'
import { EndpointKvIndex } from '../dataplane/kv-events/endpoint-index.js'
import { scanBatch } from '../dataplane/kv-events/scan.js'
import { wordTokenIds } from '../dataplane/kv-events/tokens.js'
import { decodeBatch, encodeBatch } from '../dataplane/kv-events/wire.js'

interface PyOut {
  read_back: { ts: number; events: Record<string, unknown>[] }
  payloads: string[]
  hashes: string[]
}

function python(): string {
  return execFileSync('bash', ['hack/kv-events/ensure-venv.sh'], { encoding: 'utf8' }).trim()
}

/** Our (hi, lo) key of a signed int64 event hash. */
function key(h: bigint): [number, number] {
  const u = BigInt.asUintN(64, h)
  return [Number(u >> 32n), Number(u & 0xffffffffn)]
}

describe('KV events against msgspec (SGLang structs)', () => {
  it('reads msgspec batches, msgspec reads ours, and page hashes match SGLang', () => {
    const ours = encodeBatch(
      4.25,
      [
        {
          type: 'BlockStored',
          hashes: [-5n, -(2n ** 63n)],
          parent: 7n,
          tokenIds: [1, 2],
          blockSize: 1,
          loraId: null,
          medium: null,
        },
        { type: 'BlockRemoved', hashes: [-5n], medium: null },
        { type: 'AllBlocksCleared' },
      ],
      'sglang',
    )
    const tokens = Array.from(wordTokenIds('Pack my box with five dozen liquor jugs. '.repeat(10)))
    const input = JSON.stringify({
      decode: Buffer.from(ours).toString('hex'),
      tokens,
      page_size: 16,
    })
    const out = JSON.parse(
      execFileSync(python(), ['hack/kv-events/msgspec_sglang.py'], { input, encoding: 'utf8' }),
    ) as PyOut

    // msgspec reads our SGLang encoding with SGLang's types: signed hashes, medium left at None.
    expect(out.read_back.ts).toBe(4.25)
    expect(out.read_back.events.map((e) => e['type'])).toEqual([
      'BlockStored',
      'BlockRemoved',
      'AllBlocksCleared',
    ])
    const st = out.read_back.events[0] as Record<string, unknown>
    expect(st['block_hashes']).toEqual([-5, '-9223372036854775808'])
    expect(st['medium']).toBeNull()

    // Our request-side keys are SGLang's page hashes.
    expect(out.hashes.length).toBe(Math.floor(tokens.length / 16))
    expect(out.hashes.length).toBeGreaterThan(3)
    const keys = sglangBlockKeys(tokens, 16, 1000)
    const theirs = out.hashes.flatMap((h) => key(BigInt(h)))
    expect([...keys]).toEqual(theirs)

    // msgspec's SGLang batch: the reference decoder and the scanner agree, and the index keeps
    // GPU pages (medium absent or "GPU") but not CPU_PINNED ones.
    const p = Buffer.from(out.payloads[0] as string, 'hex')
    const b = decodeBatch(p)
    expect(b.ts).toBe(1700000000.5)
    expect(b.dataParallelRank).toBeNull()
    const seen: number[][] = []
    scanBatch(p, {
      stored: (h, n) => seen.push([...h.subarray(0, 2 * n)]),
      removed: (h, n) => seen.push([...h.subarray(0, 2 * n)]),
      cleared: () => seen.push([]),
    })
    expect(seen).toEqual(b.events.map((e) => ('hashes' in e ? [...e.hashes] : [])))
    expect(seen[2]).toEqual([...key(-(2n ** 63n)), ...key(2n ** 63n - 1n)])
    const ix = new EndpointKvIndex(1000)
    // Without the trailing AllBlocksCleared: apply the stores and the removal only.
    const partial = encodeBatch(
      0,
      b.events.flatMap((e) =>
        e.type === 'AllBlocksCleared'
          ? []
          : [
              e.type === 'BlockStored'
                ? {
                    type: 'BlockStored' as const,
                    hashes: pairs(e.hashes),
                    parent: null,
                    tokenIds: [],
                    blockSize: e.blockSize,
                    loraId: null,
                    medium: e.medium,
                  }
                : { type: 'BlockRemoved' as const, hashes: pairs(e.hashes), medium: e.medium },
            ],
      ),
      'sglang',
    )
    expect(ix.onMessage(0n, partial)).toBe('applied')
    // Page 0 stored (no medium), page 1 stored then removed, the CPU_PINNED pair never indexed.
    expect(ix.index.size).toBe(1)
    expect(ix.index.prefixRun(keys)).toBe(1)
  }, 180_000)
})

describe('kv-cache on an SGLang ModelServer', () => {
  it("defaults the scorer's engine to sglang from inferenceEngine, and keeps an explicit one", () => {
    // Through the API schema, as a ModelServer's spec.scheduler arrives.
    const plain = schedulerSchema.parse({
      plugins: [{ name: 'kv-cache', weight: 10, args: { blockSize: 16 } }],
    })
    expect(compileScheduler(plain, 'SGLang').plugins[0]?.args).toEqual({
      blockSize: 16,
      engine: 'sglang',
    })
    expect(compileScheduler(plain, 'vLLM').plugins[0]?.args).toEqual({ blockSize: 16 })
    const explicit = schedulerSchema.parse({
      plugins: [{ name: 'kv-cache', weight: 10, args: { engine: 'vllm' } }],
    })
    expect(compileScheduler(explicit, 'SGLang').plugins[0]?.args).toEqual({
      engine: 'vllm',
    })
  })
})

function pairs(h: Uint32Array): bigint[] {
  const out: bigint[] = []
  for (let i = 0; i < h.length; i += 2)
    out.push(BigInt.asIntN(64, (BigInt(h[i] as number) << 32n) | BigInt(h[i + 1] as number)))
  return out
}
