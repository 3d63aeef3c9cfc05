import { describe, expect, it } from 'vitest'
import { createRng } from '../sim/rng.js'
import { words } from './words.js'

describe('words', () => {
  it('gives n words, the same for the same seed and different for another', () => {
    const a = words(50, createRng(3))
    expect(a.split(' ')).toHaveLength(50)
    expect(words(50, createRng(3))).toBe(a)
    expect(words(50, createRng(4))).not.toBe(a)
  })
})
