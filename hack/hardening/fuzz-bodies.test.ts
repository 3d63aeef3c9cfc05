import { describe, expect, it } from 'vitest'
import { fuzzCase } from './fuzz-bodies.js'

const opts = { model: 'fuzz-model' }

function depthOf(text: string): number {
  // Bracket depth outside strings: what a parser has to hold.
  let depth = 0
  let max = 0
  let inString = false
  for (let i = 0; i < text.length; i++) {
    const c = text[i]
    if (inString) {
      if (c === '\\') i++
      else if (c === '"') inString = false
    } else if (c === '"') inString = true
    else if (c === '[' || c === '{') max = Math.max(max, ++depth)
    else if (c === ']' || c === '}') depth--
  }
  return max
}

describe('fuzz bodies', () => {
  it('is deterministic per (seed, index) and differs across seeds', () => {
    const a = fuzzCase(7, 123, opts)
    const b = fuzzCase(7, 123, opts)
    expect(b.body.equals(a.body)).toBe(true)
    expect(b.kinds).toEqual(a.kinds)
    const differs = [0, 1, 2, 3, 4].some(
      (i) => !fuzzCase(8, i, opts).body.equals(fuzzCase(7, i, opts).body),
    )
    expect(differs).toBe(true)
  })

  it('covers every mutation kind and leaves some bodies valid', () => {
    const seen = new Set<string>()
    let valid = 0
    for (let i = 0; i < 2000; i++) {
      const c = fuzzCase(1, i, opts)
      for (const k of c.kinds) seen.add(k.split(':')[0] === 'bytes' ? k : (k.split(':')[0] ?? k))
      if (c.kinds[0] === 'valid') {
        valid++
        const parsed = JSON.parse(c.body.toString('utf8')) as { model: unknown }
        expect(parsed.model).toBe('fuzz-model')
      }
    }
    for (const k of ['deep', 'swap', 'huge', 'odd', 'key', 'drop', 'wide'])
      expect(seen).toContain(k)
    for (const k of ['truncate', 'insert', 'flip', 'utf8', 'wrap', 'duplicate'])
      expect(seen).toContain(`bytes:${k}`)
    expect(valid).toBeGreaterThan(100)
    expect(valid).toBeLessThan(500)
  })

  it('nests as deep as it says, beyond what JSON.stringify could write', () => {
    let found = 0
    for (let i = 0; i < 3000 && found < 5; i++) {
      const c = fuzzCase(3, i, opts)
      const deep = c.kinds.find((k) => k.startsWith('deep:'))
      // Alone: a later mutation may replace or drop the nested value.
      if (deep === undefined || c.kinds.length !== 1) continue
      const claimed = Number(deep.split(':')[1])
      if (claimed < 10_000) continue
      expect(depthOf(c.body.toString('utf8'))).toBeGreaterThanOrEqual(claimed)
      found++
    }
    expect(found).toBeGreaterThan(0)
  })

  it('keeps bodies below the size limit given', () => {
    let max = 0
    for (let i = 0; i < 2000; i++)
      max = Math.max(max, fuzzCase(2, i, { model: 'm', maxStringBytes: 64 * 1024 }).body.length)
    // Three mutations at most, each bounded: far below the gateway's 10 MiB body limit.
    expect(max).toBeLessThan(4 * 1024 * 1024)
  })
})
