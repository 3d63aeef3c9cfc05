// Deterministic pseudo-randomness. Everything the simulator "decides" (output words, embedding
// values, injected errors) comes from here so that two runs with the same seed behave identically.

import { seededRandom } from '../../dataplane/seeded-random.js'

/** mulberry32, the data plane's (one generator, dataplane/seeded-random.ts). */
export const createRng = seededRandom

/** 32-bit FNV-1a over a string; cheap, stable across platforms, good enough to derive seeds. */
export function hash32(text: string, seed = 0): number {
  let h = (0x811c9dc5 ^ seed) >>> 0
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i)
    h = Math.imul(h, 0x01000193) >>> 0
  }
  return h >>> 0
}

const WORDS = [
  'the',
  'model',
  'token',
  'cache',
  'gateway',
  'engine',
  'request',
  'stream',
  'batch',
  'prefix',
  'latency',
  'queue',
  'adapter',
  'kernel',
  'tensor',
  'decode',
  'prefill',
  'block',
  'router',
  'pod',
  'cluster',
  'signal',
  'metric',
  'score',
  'policy',
  'budget',
  'tenant',
  'shard',
  'replica',
  'node',
  'fast',
  'slow',
  'warm',
  'cold',
  'busy',
  'idle',
  'small',
  'large',
  'early',
  'late',
  'and',
  'or',
  'with',
  'from',
  'into',
  'over',
  'under',
  'near',
  'after',
  'before',
  'runs',
  'waits',
  'loads',
  'moves',
  'holds',
  'picks',
  'sends',
  'reads',
  'writes',
  'keeps',
  'alpha',
  'beta',
  'gamma',
  'delta',
] as const

/**
 * `count` deterministic words for one request. Each word is one token of the simulator's tokenizer;
 * words after the first carry a leading space so that joining them gives readable text whose
 * token count equals `count`.
 */
export function generateWords(seed: number, key: string, count: number): string[] {
  const rng = createRng(hash32(key, seed))
  const out: string[] = []
  for (let i = 0; i < count; i++) {
    const word = WORDS[Math.floor(rng() * WORDS.length)] ?? 'the'
    out.push(i === 0 ? word : ` ${word}`)
  }
  return out
}

/** A unit-length pseudo-embedding: same (seed, text, dim) gives the same vector. */
export function pseudoEmbedding(seed: number, text: string, dim: number): number[] {
  const rng = createRng(hash32(text, seed))
  const v: number[] = []
  let norm = 0
  for (let i = 0; i < dim; i++) {
    const x = rng() * 2 - 1
    v.push(x)
    norm += x * x
  }
  const scale = norm > 0 ? 1 / Math.sqrt(norm) : 0
  return v.map((x) => x * scale)
}
