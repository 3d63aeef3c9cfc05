import { describe, expect, it } from 'vitest'
import { upstreamHeaders } from './headers.js'

describe('upstreamHeaders', () => {
  it('drops stripped identity headers in their underscore spelling too', () => {
    const out = upstreamHeaders(
      { x_user_id: 'mallory', 'x-tenant-id': 'a', x_tier: 'gold', 'x-other_thing': 'kept' },
      'rid',
      new Set(['x-user-id', 'x-tenant-id', 'x-tier']),
    )
    expect(out).toEqual({
      'x-other_thing': 'kept',
      'x-request-id': 'rid',
      'content-type': 'application/json',
    })
  })

  it('drops headers the Connection header names, and underscore copies of gateway-set headers', () => {
    const out = upstreamHeaders(
      {
        connection: 'keep-alive, X-Secret-Hop, x_other_hop',
        'x-secret-hop': 's',
        'x-other-hop': 'o',
        x_request_id: 'forged',
        content_type: 'text/plain',
        'x-kept': 'k',
      },
      'rid',
    )
    expect(out).toEqual({
      'x-kept': 'k',
      'x-request-id': 'rid',
      'content-type': 'application/json',
    })
  })

  it("appends the peer to the client's X-Forwarded-For, or starts it", () => {
    expect(
      upstreamHeaders({ 'x-forwarded-for': '203.0.113.7' }, 'r', undefined, '10.0.0.2')[
        'x-forwarded-for'
      ],
    ).toBe('203.0.113.7, 10.0.0.2')
    expect(upstreamHeaders({}, 'r', undefined, '10.0.0.2')['x-forwarded-for']).toBe('10.0.0.2')
    // An underscore spelling is not a second, unappended chain.
    expect(
      upstreamHeaders({ x_forwarded_for: '1.2.3.4' }, 'r', undefined, '10.0.0.2'),
    ).not.toHaveProperty('x_forwarded_for')
  })

  it('forwards everything but hop-by-hop headers when Connection names none', () => {
    for (const connection of ['keep-alive', 'close', 'Keep-Alive']) {
      const out = upstreamHeaders({ connection, 'x-kept': 'v', 'keep-alive': 'timeout=5' }, 'r')
      expect(out['x-kept']).toBe('v')
      expect(out['connection']).toBeUndefined()
      expect(out['keep-alive']).toBeUndefined()
    }
  })

  it("takes Node's request headers as they are: multi-valued ones joined, Connection-named ones dropped", () => {
    const out = upstreamHeaders(
      {
        'x-multi': ['a', 'b'],
        connection: 'x-hop',
        'x-hop': 'gone',
        'x-forwarded-for': ['203.0.113.7', '198.51.100.1'],
        absent: undefined,
      },
      'rid',
      undefined,
      '10.0.0.2',
    )
    expect(out).toEqual({
      'x-multi': 'a, b',
      'x-forwarded-for': '203.0.113.7, 198.51.100.1, 10.0.0.2',
      'x-request-id': 'rid',
      'content-type': 'application/json',
    })
  })
})
