import { describe, expect, it } from 'vitest'
import { looksLikeJwt, presentedCredential } from './credentials.js'

const h = (headers: Record<string, string>) => (n: string) => headers[n]

describe('presentedCredential', () => {
  it('reads Bearer tokens (any case of the scheme) and x-api-key, x-api-key first', () => {
    expect(presentedCredential(h({ authorization: 'Bearer abc' }))).toEqual({
      kind: 'credential',
      value: 'abc',
    })
    expect(presentedCredential(h({ authorization: '  bearer   abc  ' }))).toEqual({
      kind: 'credential',
      value: 'abc',
    })
    expect(presentedCredential(h({ 'x-api-key': 'k1', authorization: 'Bearer dummy' }))).toEqual({
      kind: 'credential',
      value: 'k1',
    })
  })
  it('tells none from malformed', () => {
    expect(presentedCredential(h({}))).toEqual({ kind: 'none' })
    expect(presentedCredential(h({ authorization: '' }))).toEqual({ kind: 'none' })
    for (const bad of ['Basic dXNlcjpwYXNz', 'Bearer', 'Bearer a b', 'Bearer tok\u00e9n']) {
      expect(presentedCredential(h({ authorization: bad })).kind).toBe('malformed')
    }
    expect(presentedCredential(h({ 'x-api-key': 'has space' })).kind).toBe('malformed')
  })
  it('recognises the JWS compact form', () => {
    expect(looksLikeJwt('eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln')).toBe(true)
    expect(looksLikeJwt('eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.')).toBe(true)
    expect(looksLikeJwt('sk-abc.def')).toBe(false)
    expect(looksLikeJwt('a.b.c.d')).toBe(false)
  })
})
