import { describe, expect, it } from 'vitest'
import type { SnapshotProvider } from '../../api/snapshot.js'
import { mapProviderError, openAIStyleErrorDetail } from './errors.js'

const P = { key: 'default/p', type: 'OpenAI' } as SnapshotProvider

describe('mapProviderError', () => {
  it('keeps the status class and Retry-After of 429 and 5xx', () => {
    const e = mapProviderError(P, 429, { message: 'slow down', code: 'rate_limit_exceeded' }, '4')
    expect([e.status, e.code, e.headers['retry-after'], e.type]).toEqual([
      429,
      'rate_limit_exceeded',
      '4',
      'rate_limit_error',
    ])
    expect(mapProviderError(P, 500, {}, undefined).status).toBe(500)
    expect(mapProviderError(P, 529, { message: 'Overloaded' }, undefined)).toMatchObject({
      status: 503,
      code: 'provider_overloaded',
    })
  })

  it("turns the gateway's account problems into 502s without the provider's words", () => {
    for (const [status, detail, code] of [
      [401, { message: 'Incorrect API key provided: sk-ab***yz' }, 'provider_credentials_rejected'],
      [403, {}, 'provider_credentials_rejected'],
      [
        400,
        { credentialRejected: true, message: 'API key not valid' },
        'provider_credentials_rejected',
      ],
      [402, {}, 'provider_payment_required'],
      [429, { code: 'insufficient_quota' }, 'provider_payment_required'],
    ] as const) {
      const e = mapProviderError(P, status, detail, undefined)
      expect([e.status, e.code]).toEqual([502, code])
      expect(e.message).not.toContain('sk-')
      expect(e.message).not.toContain('API key not valid')
    }
  })

  it('keeps client-side 4xx codes and params', () => {
    const e = mapProviderError(
      P,
      400,
      {
        message: 'too long',
        code: 'context_length_exceeded',
        param: 'messages',
        type: 'invalid_request_error',
      },
      undefined,
    )
    expect(e.toBody()).toEqual({
      error: {
        message: 'too long',
        type: 'invalid_request_error',
        code: 'context_length_exceeded',
        param: 'messages',
      },
    })
  })
})

describe('openAIStyleErrorDetail', () => {
  it('reads OpenAI, Azure, TGI and list-wrapped bodies', () => {
    expect(
      openAIStyleErrorDetail('{"error":{"message":"m","type":"t","code":"c","param":"p"}}'),
    ).toEqual({ message: 'm', type: 't', code: 'c', param: 'p' })
    expect(openAIStyleErrorDetail('{"error":{"code":"429","message":"m"}}')).toEqual({
      message: 'm',
    })
    expect(
      openAIStyleErrorDetail('{"error":"Input validation error","error_type":"validation"}'),
    ).toEqual({ message: 'Input validation error' })
    expect(openAIStyleErrorDetail('[{"error":{"message":"x"}}]')).toEqual({ message: 'x' })
    expect(openAIStyleErrorDetail('upstream connect error')).toEqual({
      message: 'upstream connect error',
    })
  })
})
