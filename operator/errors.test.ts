import { ApiException } from '@kubernetes/client-node'
import { describe, expect, it } from 'vitest'
import { httpStatus, isConflict, isGone, isNotFound, OperatorError } from './errors.js'
import { errorText } from './log.js'

describe('errors', () => {
  it('reads status codes from ApiException, Watch errors and watch Status events', () => {
    expect(httpStatus(new ApiException(404, 'x', '{}', {}))).toBe(404)
    expect(isNotFound(new ApiException(404, 'x', '{}', {}))).toBe(true)
    expect(isConflict(new ApiException(409, 'x', '{}', {}))).toBe(true)
    expect(isGone(Object.assign(new Error('Gone'), { statusCode: 410 }))).toBe(true)
    expect(httpStatus(new Error('plain'))).toBeUndefined()
    expect(httpStatus('text')).toBeUndefined()
  })

  it('OperatorError carries a stable code', () => {
    const e = new OperatorError('SNAPSHOT_TOO_LARGE', 'big')
    expect(e).toBeInstanceOf(Error)
    expect([e.name, e.code, e.message]).toEqual(['OperatorError', 'SNAPSHOT_TOO_LARGE', 'big'])
  })

  it('errorText logs the API server message, not client-node’s header dump', () => {
    const body = JSON.stringify({ kind: 'Status', message: 'pods "x" is forbidden', code: 403 })
    const e = new ApiException(
      403,
      `HTTP-Code: 403\nMessage: Unknown\nBody: ${body}\nHeaders: {}`,
      body,
      {},
    )
    expect(errorText(e)).toBe('HTTP 403: pods "x" is forbidden')
    expect(errorText(new Error('boom'))).toBe('boom')
    expect(errorText('str')).toBe('str')
  })
})
