// The soak's prompt-cache fill: its bodies, hashed as the gateway hashes them, bring a fresh cache
// to its byte cap (and not one of them alone: the cache admits a piece on its second sighting).
import { describe, expect, it } from 'vitest'
import { chainSeed, promptPieces } from '../../dataplane/scheduler/prompt.js'
import { MAX_BYTES, PromptHasher } from '../../dataplane/scheduler/prompt-hasher.js'
import { fillText, promptCacheFillBodies } from './prompt-cache-fill.js'

function hashAll(h: PromptHasher, bodies: readonly string[]): void {
  for (const b of bodies) {
    const pieces = promptPieces(JSON.parse(b) as Record<string, unknown>)
    h.hash(pieces, 64, 2048, chainSeed('upstream-model'))
  }
}

describe('prompt cache fill', () => {
  it('fills a fresh cache to its byte cap, each text held at 2 bytes a character', () => {
    const bodies = promptCacheFillBodies('chat')
    const h = new PromptHasher()
    hashAll(h, bodies)
    const s = h.stats()
    // Full: within one prompt of the cap (8192 characters: 16 KiB of text plus its hashes).
    expect(s.bytes).toBeLessThanOrEqual(MAX_BYTES)
    expect(s.bytes).toBeGreaterThan(MAX_BYTES - 20_000)
    expect(s.texts).toBe(s.entries)
    // Each body is there twice in a row; sent once each, nothing would be admitted.
    expect(bodies[0]).toBe(bodies[1])
    const once = new PromptHasher()
    hashAll(
      once,
      bodies.filter((_, i) => i % 2 === 0),
    )
    expect(once.stats().entries).toBe(0)
  })

  it('texts are two-byte strings distinct from one another', () => {
    const a = fillText(1, 8192)
    const b = fillText(2, 8192)
    expect(a).not.toBe(b)
    expect(a.length).toBe(8192)
    // Outside Latin-1 everywhere: V8 stores it at 2 bytes a character.
    expect([...a].every((c) => (c.codePointAt(0) as number) > 0xff)).toBe(true)
  })
})
