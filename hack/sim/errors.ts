// The simulator answers like an OpenAI-compatible engine (vLLM), so its errors carry an HTTP status
// and an OpenAI-shaped body. Codes are stable strings: gateway tests match on them.

export type SimErrorType =
  | 'invalid_request_error'
  | 'not_found_error'
  | 'rate_limit_error'
  | 'server_error'
  | 'service_unavailable_error'

export interface SimErrorBody {
  error: { message: string; type: SimErrorType; code: string; param: string | null }
}

export class SimError extends Error {
  override readonly name = 'SimError'
  readonly status: number
  readonly code: string
  readonly type: SimErrorType
  readonly param: string | null

  constructor(status: number, code: string, message: string, param: string | null = null) {
    super(message)
    this.status = status
    this.code = code
    this.type = typeForStatus(status)
    this.param = param
  }

  toBody(): SimErrorBody {
    return { error: { message: this.message, type: this.type, code: this.code, param: this.param } }
  }
}

function typeForStatus(status: number): SimErrorType {
  if (status === 404) return 'not_found_error'
  if (status === 429) return 'rate_limit_error'
  if (status === 503) return 'service_unavailable_error'
  if (status >= 500) return 'server_error'
  return 'invalid_request_error'
}

/** Stable error code for a forced status (failure injection), so tests can tell injected errors apart. */
export function codeForStatus(status: number): string {
  if (status === 429) return 'rate_limit_exceeded'
  if (status === 503) return 'service_unavailable'
  if (status >= 500) return 'internal_server_error'
  return `http_${status}`
}
