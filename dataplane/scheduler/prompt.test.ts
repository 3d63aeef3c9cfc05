import { describe, expect, it } from 'vitest'
import {
  blockHashes,
  chainSeed,
  expectedOutputTokens,
  flattenPrompt,
  headHash,
  rendezvous,
} from './prompt.js'

describe('flattenPrompt', () => {
  it('applies a ChatML-style template so each turn extends the previous prompt', () => {
    const t1 = flattenPrompt({
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'Hi' },
      ],
    })
    expect(t1).toBe(
      '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n',
    )
    const t2 = flattenPrompt({
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'Hi' },
        { role: 'assistant', content: 'Hello' },
        { role: 'user', content: 'More' },
      ],
    })
    expect(t2.startsWith(t1)).toBe(true)
  })

  it('reads text parts, summarises long image URLs, and handles completions and embeddings', () => {
    const big = `data:image/png;base64,${'A'.repeat(10_000)}`
    const t = flattenPrompt({
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'look' },
            { type: 'image_url', image_url: { url: big } },
          ],
        },
      ],
    })
    expect(t).toContain('look<image:10022:data:image/png')
    expect(t.length).toBeLessThan(400)
    expect(flattenPrompt({ prompt: 'Once upon' })).toBe('Once upon')
    expect(flattenPrompt({ prompt: ['first', 'second'] })).toBe('first')
    expect(flattenPrompt({ prompt: [1, 2, 3] })).toBe('1,2,3')
    expect(flattenPrompt({ input: 'embed me' })).toBe('embed me')
    expect(flattenPrompt({})).toBe('')
  })

  it('never throws on tool_calls JSON.stringify cannot walk (nested past the stack)', () => {
    const deep = JSON.parse(`${'['.repeat(20_000)}${']'.repeat(20_000)}`) as unknown
    expect(() => JSON.stringify(deep)).toThrow(RangeError)
    const text = flattenPrompt({
      messages: [{ role: 'assistant', content: 'calling', tool_calls: deep }],
    })
    expect(text).toBe('<|im_start|>assistant\ncalling<|im_end|>\n<|im_start|>assistant\n')
  })

  it('takes the output budget from max_completion_tokens / max_tokens', () => {
    expect(expectedOutputTokens({ max_tokens: 12 })).toBe(12)
    expect(expectedOutputTokens({ max_completion_tokens: 7, max_tokens: 12 })).toBe(7)
    expect(expectedOutputTokens({}, 99)).toBe(99)
    expect(expectedOutputTokens({ max_tokens: -1 }, 99)).toBe(99)
  })
})

describe('blockHashes', () => {
  const seed = chainSeed('m')

  it('chains: prompts share block i iff they share the first i+1 blocks of text', () => {
    const a = blockHashes(`${'x'.repeat(64)}${'y'.repeat(64)}${'z'.repeat(10)}`, 64, 100, seed)
    const b = blockHashes(`${'x'.repeat(64)}${'y'.repeat(64)}${'w'.repeat(10)}`, 64, 100, seed)
    const c = blockHashes(`${'q'.repeat(64)}${'y'.repeat(64)}`, 64, 100, seed)
    expect(a).toHaveLength(3) // the partial tail block counts
    expect(a.slice(0, 2)).toEqual(b.slice(0, 2))
    expect(a[2]).not.toBe(b[2])
    // Same second block after a different first block: different hash.
    expect(c[1]).not.toBe(a[1])
  })

  it('depends on the seed (model or adapter), caps the block count, and stays a small integer', () => {
    const text = 'abc '.repeat(1000)
    const h = blockHashes(text, 16, 10, seed)
    expect(h).toHaveLength(10)
    expect(blockHashes(text, 16, 10, chainSeed('other'))[0]).not.toBe(h[0])
    for (const x of h) expect(Number.isInteger(x) && x >= 0 && x < 2 ** 30).toBe(true)
    expect(blockHashes('', 16, 10, seed)).toHaveLength(0)
  })

  it('has no collisions across many distinct blocks', () => {
    const seen = new Set<number>()
    let total = 0
    for (let i = 0; i < 2000; i++) {
      // Distinct from the 5th character on, so every block of every text is distinct.
      const h = blockHashes(`doc ${i}. `.repeat(80), 64, 8, seed)
      total += h.length
      for (const x of h) seen.add(x)
    }
    expect(total).toBe(2000 * 8)
    expect(seen.size).toBe(total)
  })
})

describe('rendezvous', () => {
  it('ranks endpoints per key consistently and spreads keys evenly', () => {
    const eps = [11, 22, 33, 44]
    const wins = new Map<number, number>()
    for (let k = 0; k < 4000; k++) {
      const key = blockHashes(`key ${k}`, 64, 1, 1)[0] as number
      let best = eps[0] as number
      for (const e of eps) if (rendezvous(key, e) > rendezvous(key, best)) best = e
      expect(rendezvous(key, best)).toBe(rendezvous(key, best))
      wins.set(best, (wins.get(best) ?? 0) + 1)
    }
    for (const e of eps) expect(wins.get(e)).toBeGreaterThan(800)
  })

  it('moves only the keys of a removed endpoint', () => {
    const eps = [1, 2, 3, 4, 5]
    const owner = (key: number, set: number[]) =>
      set.reduce((b, e) => (rendezvous(key, e) > rendezvous(key, b) ? e : b))
    let moved = 0
    for (let k = 0; k < 1000; k++) {
      const key = k * 7919 + 13
      const before = owner(key, eps)
      const after = owner(
        key,
        eps.filter((e) => e !== 3),
      )
      if (before !== 3 && before !== after) moved++
    }
    expect(moved).toBe(0)
  })
})

describe('blockHashes paths', () => {
  it('gives the same values for any split into pieces, and for multi-byte text', () => {
    const text = `${'héllo wörld ✓ '.repeat(40)}tail`
    const whole = blockHashes(text, 64, 100, 9)
    const split = blockHashes([text.slice(0, 7), text.slice(7, 300), text.slice(300)], 64, 100, 9)
    expect(Array.from(split)).toEqual(Array.from(whole))
    // Block size not a multiple of 8 takes the byte path; its full blocks still chain the same way.
    const odd = blockHashes(text, 12, 100, 9)
    expect(odd.length).toBe(Math.ceil(Buffer.byteLength(text) / 12))
  })

  it('distinguishes a partial tail block from the same bytes padded with zeros', () => {
    const a = blockHashes('ab', 64, 10, 1)
    const b = blockHashes('ab\u0000', 64, 10, 1)
    expect(a[0]).not.toBe(b[0])
  })
})

describe('headHash', () => {
  it('is blockHashes(pieces, bytes, 1, seed)[0] ?? 0 for every kind of head', () => {
    const ascii = 'You are a helpful assistant. Answer briefly. '.repeat(20)
    const cases: string[][] = [
      [],
      [''],
      ['a'],
      ['ab', 'c'],
      [ascii.slice(0, 255)],
      [ascii.slice(0, 256)],
      [ascii.slice(0, 257)],
      [ascii],
      ['<|im_start|>', 'system', '\n', ascii, '<|im_end|>'],
      ['', '', ascii.slice(0, 100), '', ascii.slice(100, 130)],
      [`héllo ${ascii}`], // multi-byte in the head: blockHashes' path
      [ascii.slice(0, 250), 'wörld ✓ and more'], // multi-byte crossing the block's end
      [ascii.slice(0, 256), 'ü after the block'], // past the block: never read
      ['\u{1F600}'.repeat(100)],
    ]
    for (const pieces of cases) {
      for (const bytes of [8, 64, 256, 12]) {
        for (const seed of [0, 1, chainSeed('m'), chainSeed('adapter-7')]) {
          expect(headHash(pieces, bytes, seed)).toBe(blockHashes(pieces, bytes, 1, seed)[0] ?? 0)
        }
      }
    }
    // A larger block after a smaller one (its buffer grows), then the smaller again.
    expect(headHash([ascii], 512, 3)).toBe(blockHashes([ascii], 512, 1, 3)[0])
    expect(headHash(['xy'], 64, 3)).toBe(blockHashes(['xy'], 64, 1, 3)[0])
  })
})
