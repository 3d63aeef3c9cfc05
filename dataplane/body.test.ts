import { describe, expect, it } from 'vitest'
import { DEFAULT_MAX_JSON_DEPTH, jsonDepthExceeds, parseJsonObject } from './body.js'
import { GatewayError } from './errors.js'

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s)
const nested = (n: number): string => `{"model":"m","x":${'['.repeat(n - 1)}${']'.repeat(n - 1)}}`

describe('jsonDepthExceeds', () => {
  it('counts object and array nesting, the top-level object being level 1', () => {
    expect(jsonDepthExceeds(bytes(nested(3)), 3)).toBe(false)
    expect(jsonDepthExceeds(bytes(nested(4)), 3)).toBe(true)
    expect(jsonDepthExceeds(bytes('{"a":{"b":{"c":1}},"d":[1,[2]]}'), 3)).toBe(false)
    expect(jsonDepthExceeds(bytes('{"a":{"b":{"c":{}}}}'), 3)).toBe(true)
  })

  it('ignores brackets inside strings, escaped quotes included', () => {
    const s = `{"model":"m","content":"[[[[{{{{ \\" [[[[ \\\\","z":"\\\\\\"[[[["}`
    expect(JSON.parse(s)).toBeTypeOf('object')
    expect(jsonDepthExceeds(bytes(s), 1)).toBe(false)
    // A string ending in an escaped backslash closes there: the brackets after it count.
    expect(jsonDepthExceeds(bytes('{"a":"x\\\\","b":[[1]]}'), 2)).toBe(true)
  })

  it('stops at the first level past the limit (a 10 MB bracket run is refused at once)', () => {
    const hostile = bytes(`{"model":"m","x":${'['.repeat(10_000_000)}`)
    expect(jsonDepthExceeds(hostile, DEFAULT_MAX_JSON_DEPTH)).toBe(true)
  })
})

describe('parseJsonObject', () => {
  it('refuses nesting past the limit with a 400 naming the limit', () => {
    let err: unknown
    try {
      parseJsonObject(bytes(nested(4_000)))
    } catch (e) {
      err = e
    }
    expect(err).toBeInstanceOf(GatewayError)
    const g = err as GatewayError
    expect(g.status).toBe(400)
    expect(g.type).toBe('invalid_request_error')
    expect(g.code).toBe('json_too_deep')
    expect(g.message).toContain(`${DEFAULT_MAX_JSON_DEPTH} levels`)
  })

  it('accepts bodies at the limit and honours a configured one', () => {
    expect(parseJsonObject(bytes(nested(DEFAULT_MAX_JSON_DEPTH)))['model']).toBe('m')
    expect(() => parseJsonObject(bytes(nested(10)), 9)).toThrow(/9 levels/)
  })
})
