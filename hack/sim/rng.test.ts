import { describe, expect, it } from 'vitest'
import { createRng, generateWords, hash32, pseudoEmbedding } from './rng.js'
import { countTokens } from './tokenizer.js'

describe('rng', () => {
  it('is deterministic per seed and differs across seeds', () => {
    const a = createRng(7)
    const b = createRng(7)
    const c = createRng(8)
    const sa = [a(), a(), a()]
    expect([b(), b(), b()]).toEqual(sa)
    expect([c(), c(), c()]).not.toEqual(sa)
    for (const x of sa) expect(x >= 0 && x < 1).toBe(true)
    expect(hash32('abc')).toBe(hash32('abc'))
    expect(hash32('abc', 1)).not.toBe(hash32('abc', 2))
  })

  it('generates words whose token count is the requested length', () => {
    const w = generateWords(42, 'prompt', 25)
    expect(w).toHaveLength(25)
    expect(countTokens(w.join(''))).toBe(25)
    expect(generateWords(42, 'prompt', 25)).toEqual(w)
    expect(generateWords(43, 'prompt', 25)).not.toEqual(w)
  })

  it('produces unit-length, deterministic embeddings', () => {
    const v = pseudoEmbedding(1, 'text', 64)
    expect(v).toHaveLength(64)
    expect(Math.hypot(...v)).toBeCloseTo(1, 9)
    expect(pseudoEmbedding(1, 'text', 64)).toEqual(v)
    expect(pseudoEmbedding(1, 'other', 64)).not.toEqual(v)
  })
})
