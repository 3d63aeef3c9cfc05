import { describe, expect, it } from 'vitest'
import { blockHashes, chainSeed, promptPieces } from './prompt.js'
import { CACHE_MIN_CHARS, PromptHasher, requestBlocks } from './prompt-hasher.js'
import { request, seeded } from './testkit.js'

const ALPHABET = ['a', 'b', 'c', ' ', 'é', 'ü', '✓', '中', '😀', '\n', '\u0000']

function text(r: () => number, n: number): string {
  let s = ''
  while (s.length < n) s += ALPHABET[Math.floor(r() * ALPHABET.length)]
  return s
}

/** A fresh copy of `s` (a distinct string object with the same text, as JSON.parse gives). */
function copy(s: string): string {
  return JSON.parse(JSON.stringify(s)) as string
}

const same = (a: Int32Array, b: Int32Array) => expect(Array.from(a)).toEqual(Array.from(b))

describe('PromptHasher', () => {
  it('keeps every result its own: results held across later hashes (shared blocks) stay unchanged', () => {
    const h = new PromptHasher()
    const r = seeded(11)
    const held: { got: Int32Array; want: number[] }[] = []
    // Sizes from in-heap (≤ 16 values) through shared (≤ 1024) to sliced (> 1024), enough of them
    // to fill several shared blocks; each compared again at the end, after all the others.
    for (let q = 0; q < 120; q++) {
      const chars = [40, 700, 3000, 9000, 30000, 70000][q % 6] as number
      const pieces = promptPieces({ messages: [{ role: 'user', content: text(r, chars) }] })
      const seed = chainSeed('m')
      const got = h.hash(pieces, 64, 2048, seed)
      const want = Array.from(blockHashes(pieces, 64, 2048, seed))
      expect(Array.from(got)).toEqual(want)
      held.push({ got, want })
    }
    for (const { got, want } of held) expect(Array.from(got)).toEqual(want)
  })

  it('equals blockHashes for chat prompts, first time and from the cache, any head length', () => {
    const h = new PromptHasher()
    const r = seeded(7)
    const systems = [text(r, 3000), text(r, CACHE_MIN_CHARS), text(r, 9000)]
    for (let q = 0; q < 60; q++) {
      // Role names of different lengths put the system prompt at different offsets in its block.
      const role = ['system', 'sys', 'developer'][q % 3] as string
      const pieces = promptPieces({
        messages: [
          { role, content: copy(systems[q % systems.length] as string) },
          { role: 'user', content: text(r, 1 + Math.floor(r() * 2500)) },
        ],
      })
      for (const [bb, mb] of [
        [64, 2048],
        [16, 4096],
        [128, 500],
      ] as const) {
        const seed = chainSeed(q % 2 === 0 ? 'base' : 'lora-a')
        same(h.hash(pieces, bb, mb, seed), blockHashes(pieces, bb, mb, seed))
      }
    }
    const s = h.stats()
    // The cache served the repeated system prompts (and could not have without equal results).
    expect(s.hits).toBeGreaterThan(100)
    expect(s.entries).toBeGreaterThan(0)
  })

  it('a hit needs the same text in the same chain state: other model, other head, other text', () => {
    const h = new PromptHasher()
    const doc = text(seeded(3), 4000)
    const a = ['<|im_start|>system\n', doc]
    // Twice to admit it (second sighting), once to hit.
    for (let i = 0; i < 3; i++) h.hash(a, 64, 2048, 1)
    expect(h.stats().hits).toBe(1)
    for (const [pieces, seed] of [
      [a, 2],
      [['<|im_start|>user\n', doc], 1],
      [['<|im_start|>system\n', `${doc.slice(0, 2000)}X${doc.slice(2001)}`], 1],
    ] as const) {
      same(h.hash(pieces, 64, 2048, seed), blockHashes(pieces, 64, 2048, seed))
    }
    expect(h.stats().hits).toBe(1)
  })

  it('several hits in one prompt, with blocks hashed before, between and after them, on each result path', () => {
    const r = seeded(17)
    // Block size and documents' length put the result in V8's heap (≤ 16 values), a shared
    // block (≤ 1024) or a slice of its own (> 1024).
    for (const [bb, chars] of [
      [512, 1500],
      [64, 3000],
      [64, 40_000],
    ] as const) {
      const h = new PromptHasher()
      const docs = [text(r, chars), text(r, chars)]
      // Hashed in every call (short), the same each time: the second document then arrives in
      // the same chain state and hits too.
      const between = text(r, 700)
      let hits = 0
      for (let round = 0; round < 4; round++) {
        const pieces = [
          '<|im_start|>system\n',
          copy(docs[0] as string),
          copy(between),
          copy(docs[1] as string),
          text(r, 1 + Math.floor(r() * 300)),
        ]
        const got = h.hash(pieces, bb, 4096, 9)
        same(got, blockHashes(pieces, bb, 4096, 9))
        hits = h.stats().hits
        // Another prompt as long, hashed in full: the hasher's working array no longer holds
        // this one's blocks (a hit must come from its entry).
        h.hash([text(r, 2 * chars + 1000)], bb, 4096, 10)
      }
      // Admitted on the second sighting: rounds 3 and 4 hit both documents.
      expect(hits).toBe(4)
    }
  })

  it('prompts longer than maxBlocks are cut exactly as blockHashes cuts them, cached or not', () => {
    const h = new PromptHasher()
    const r = seeded(11)
    const long = text(r, 5000)
    for (let i = 0; i < 4; i++) {
      for (const mb of [10, 40, 200, 1000]) {
        const pieces = ['head ', copy(long), text(r, 50)]
        same(h.hash(pieces, 64, mb, 5), blockHashes(pieces, 64, mb, 5))
      }
    }
    expect(h.stats().hits).toBeGreaterThan(0)
  })

  it('short pieces, ASCII or not, split anywhere, hash as the joined text does', () => {
    const h = new PromptHasher()
    const r = seeded(13)
    for (let i = 0; i < 200; i++) {
      const pieces = Array.from({ length: 1 + Math.floor(r() * 12) }, () =>
        text(r, Math.floor(r() * 90)),
      )
      same(h.hash(pieces, 16, 64, 3), blockHashes(pieces.join(''), 16, 64, 3))
    }
  })

  it('block sizes that are not a multiple of 8 take the reference path', () => {
    const h = new PromptHasher()
    const pieces = ['x', text(seeded(1), 2000)]
    for (let i = 0; i < 3; i++) same(h.hash(pieces, 12, 1000, 1), blockHashes(pieces, 12, 1000, 1))
    expect(h.stats()).toMatchObject({ hits: 0, misses: 0 })
  })

  it('holds a text once however many chain states it has entries for', () => {
    const h = new PromptHasher()
    const doc = text(seeded(21), 30_000)
    for (let round = 0; round < 3; round++) {
      for (let seed = 1; seed <= 7; seed++) {
        const pieces = ['<|im_start|>system\n', copy(doc)]
        same(h.hash(pieces, 64, 2048, seed), blockHashes(pieces, 64, 2048, seed))
      }
    }
    const s = h.stats()
    expect(s).toMatchObject({ entries: 7, texts: 1, hits: 7 })
    // One text at 2 bytes a character, plus 7 entries' hashes.
    expect(s.bytes).toBeLessThan(2 * 30_000 + 7 * 4 * 1000)
  })

  it('stays bounded under a stream of unique long pieces', () => {
    const h = new PromptHasher()
    const r = seeded(5)
    for (let i = 0; i < 120; i++) {
      const t = text(r, 20_000)
      h.hash([t], 64, 2048, 1)
      h.hash([copy(t)], 64, 2048, 1)
    }
    const s = h.stats()
    expect(s.bytes).toBeLessThanOrEqual(4 * 1024 * 1024)
    expect(s.entries).toBeLessThan(120)
    expect(s.texts).toBe(s.entries)
  })
})

describe('requestBlocks', () => {
  it('hashes a request once per cutting, seeded by its adapter', () => {
    const body = { messages: [{ role: 'user', content: 'hello '.repeat(100) }] }
    const base = request({ requestId: 'a', model: 'm', body } as never)
    const first = requestBlocks(base, 64, 2048)
    expect(requestBlocks(base, 64, 2048)).toBe(first)
    same(first, blockHashes(base.pieces, 64, 2048, chainSeed('m')))
    expect(requestBlocks(base, 32, 2048)).not.toBe(first)
    const lora = request({ requestId: 'b', model: 'ad', isLora: true, body } as never)
    same(requestBlocks(lora, 64, 2048), blockHashes(lora.pieces, 64, 2048, chainSeed('ad')))
  })
})
