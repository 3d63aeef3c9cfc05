// Pseudo-text for the routing benchmarks: one simulator token per word, from a fixed vocabulary
// so every router gets the very same prompts for a seed.
import { createRng } from '../sim/rng.js'

const VOCAB = (() => {
  const r = createRng(7)
  const letters = 'abcdefghijklmnopqrstuvwxyz'
  return Array.from({ length: 4000 }, () => {
    const n = 2 + Math.floor(r() * 7)
    let w = ''
    for (let i = 0; i < n; i++) w += letters[Math.floor(r() * 26)]
    return w
  })
})()

/** `n` words of pseudo-text (one simulator token each), drawn with `r`. */
export function words(n: number, r: () => number): string {
  const out: string[] = []
  for (let i = 0; i < n; i++) out.push(VOCAB[Math.floor(r() * VOCAB.length)] as string)
  return out.join(' ')
}
