import { describe, expect, it } from 'vitest'
import { canonicalize, canonicalJson, sha256Hex } from './canonical-json.js'

describe('canonicalJson', () => {
  it('sorts keys at every depth and drops undefined members', () => {
    const a = { b: 1, a: { d: [{ z: 1, y: 2 }], c: undefined } }
    expect(canonicalJson(a)).toBe('{"a":{"d":[{"y":2,"z":1}]},"b":1}')
  })

  it('is independent of insertion order', () => {
    const x = { one: 1, two: { a: 'x', b: 'y' } }
    const y = { two: { b: 'y', a: 'x' }, one: 1 }
    expect(canonicalJson(x)).toBe(canonicalJson(y))
    expect(sha256Hex(canonicalJson(x))).toBe(sha256Hex(canonicalJson(y)))
  })

  it('refuses values JSON cannot carry', () => {
    expect(() => canonicalize({ n: Number.NaN })).toThrow(TypeError)
    expect(() => canonicalize({ f: () => 1 })).toThrow(TypeError)
  })

  it('hashes as sha256 hex', () => {
    expect(sha256Hex('')).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855')
  })
})
