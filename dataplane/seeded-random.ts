// mulberry32: a tiny deterministic PRNG with a 32-bit state, floats in [0, 1). One generator for
// everything that must replay the same sequence from a seed: the scheduler's start-up warm-up
// (the same synthetic prompts in every process), the scheduler's tests and the engine simulator.

export function seededRandom(seed: number): () => number {
  // The state as a signed int32 (`| 0`): the same bits as a uint32, but a small integer V8 keeps
  // unboxed in the closure, where `>>> 0` made a heap number on every draw past 2^31.
  let a = seed | 0
  return () => {
    a = (a + 0x6d2b79f5) | 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296
  }
}
