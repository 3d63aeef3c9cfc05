import { describe, expect, it } from 'vitest'
import { authErrors, limitErrors } from './errors.js'

describe('filter errors', () => {
  it('are OpenAI-shaped with the types the SDK maps to its error classes', () => {
    expect(authErrors.missingCredentials().toBody().error).toMatchObject({
      type: 'authentication_error',
      code: 'missing_credentials',
    })
    expect(authErrors.invalidApiKey().status).toBe(401)
    expect(authErrors.forbidden('m', 'why').toBody().error).toMatchObject({
      type: 'permission_error',
      param: 'model',
    })
    expect(limitErrors.rateLimited('x', { 'retry-after': '2' }).toBody().error.type).toBe(
      'rate_limit_error',
    )
    expect(limitErrors.budgetExhausted('x', {}).code).toBe('insufficient_quota')
    expect(limitErrors.unavailable().headers['retry-after']).toBe('1')
    expect(authErrors.missingCredentials().headers['www-authenticate']).toContain('Bearer')
  })
})
