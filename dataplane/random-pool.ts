// Crypto-random bytes for ids made per request or per span (request ids, trace and span ids):
// one randomFillSync fills 4 KiB (256 UUIDs, ~170 spans' worth), not a system call per id. The
// bytes are read in place, right after taking them, and never handed out twice.
import { randomFillSync } from 'node:crypto'

export const RANDOM_POOL = Buffer.allocUnsafe(4096)
let at = RANDOM_POOL.length

/**
 * Where `n` fresh random bytes start in RANDOM_POOL (n ≤ its length). Valid until the next call:
 * read them at once.
 */
export function takeRandom(n: number): number {
  if (at + n > RANDOM_POOL.length) {
    randomFillSync(RANDOM_POOL)
    at = 0
  }
  const start = at
  at += n
  return start
}
