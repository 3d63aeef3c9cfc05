// Errors on `POST /v1/messages` leave in Anthropic's shape, whatever made them (the gateway, an
// engine, a provider): `{"type":"error","error":{"type":…,"message":…},"request_id":…}` — what the
// Anthropic SDKs parse into their typed errors. The gateway's stable `code` rides along inside
// `error` (clients ignore fields they do not know).
import { GatewayError } from '../../errors.js'

export type AnthropicErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'permission_error'
  | 'not_found_error'
  | 'request_too_large'
  | 'rate_limit_error'
  | 'api_error'
  | 'overloaded_error'
  | 'timeout_error'

export function anthropicErrorType(status: number): AnthropicErrorType {
  if (status === 401) return 'authentication_error'
  if (status === 403) return 'permission_error'
  if (status === 404) return 'not_found_error'
  if (status === 413) return 'request_too_large'
  if (status === 429) return 'rate_limit_error'
  if (status === 503 || status === 529) return 'overloaded_error'
  if (status === 504) return 'timeout_error'
  if (status >= 500) return 'api_error'
  return 'invalid_request_error'
}

export function anthropicErrorBody(
  status: number,
  message: string,
  code: string | undefined,
  requestId: string | undefined,
): Record<string, unknown> {
  return {
    type: 'error',
    error: {
      type: anthropicErrorType(status),
      message,
      ...(code !== undefined && code !== '' ? { code } : {}),
    },
    ...(requestId !== undefined ? { request_id: requestId } : {}),
  }
}

/** A named `error` event (how an Anthropic stream that cannot finish says so). */
export function anthropicErrorEvent(status: number, message: string, code?: string): string {
  return `event: error\ndata: ${JSON.stringify(anthropicErrorBody(status, message, code, undefined))}\n\n`
}

/** A 400 about the client's Messages request, naming the field. */
export function invalidMessages(param: string, why: string): GatewayError {
  return new GatewayError(400, 'invalid_request', `${param}: ${why}`, { param })
}

export function unsupportedMessages(param: string, why: string): GatewayError {
  return new GatewayError(400, 'unsupported_parameter', `${param}: ${why}`, { param })
}
