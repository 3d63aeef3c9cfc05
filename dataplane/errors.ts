// Every error the gateway itself produces leaves as an OpenAI-shaped body, so SDKs map it to their
// typed errors (openai-node: BadRequestError, NotFoundError, RateLimitError, …). Codes are stable
// strings clients and dashboards can rely on.

export type OpenAIErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'permission_error'
  | 'not_found_error'
  | 'rate_limit_error'
  | 'server_error'
  | 'timeout_error'

export interface OpenAIErrorBody {
  error: { message: string; type: OpenAIErrorType; code: string; param: string | null }
}

export class GatewayError extends Error {
  override readonly name = 'GatewayError'
  readonly status: number
  readonly type: OpenAIErrorType
  readonly code: string
  readonly param: string | null
  readonly headers: Readonly<Record<string, string>>

  constructor(
    status: number,
    code: string,
    message: string,
    opts: { type?: OpenAIErrorType; param?: string; headers?: Record<string, string> } = {},
  ) {
    super(message)
    this.status = status
    this.code = code
    this.type = opts.type ?? defaultType(status)
    this.param = opts.param ?? null
    this.headers = opts.headers ?? {}
  }

  toBody(): OpenAIErrorBody {
    return { error: { message: this.message, type: this.type, code: this.code, param: this.param } }
  }
}

function defaultType(status: number): OpenAIErrorType {
  if (status === 401) return 'authentication_error'
  if (status === 403) return 'permission_error'
  if (status === 404) return 'not_found_error'
  if (status === 429) return 'rate_limit_error'
  if (status === 504) return 'timeout_error'
  if (status >= 500) return 'server_error'
  return 'invalid_request_error'
}

/** Longest client-supplied text echoed in an error message (a 5 MB model name is not sent back). */
export const MAX_ECHO_CHARS = 256

/** `s` cut to MAX_ECHO_CHARS, marked when cut. */
export function clip(s: string): string {
  return s.length <= MAX_ECHO_CHARS ? s : `${s.slice(0, MAX_ECHO_CHARS)}… (${s.length} chars)`
}

/** The gateway's own error catalogue: one constructor per condition, one stable code each. */
export const errors = {
  invalidJson: (detail: string) =>
    new GatewayError(400, 'invalid_json', `request body is not valid JSON: ${detail}`),
  jsonTooDeep: (limit: number) =>
    new GatewayError(
      400,
      'json_too_deep',
      `request body nests JSON objects/arrays deeper than the limit of ${limit} levels`,
    ),
  bodyNotObject: () =>
    new GatewayError(400, 'invalid_request_body', 'request body must be a JSON object'),
  missingModel: () =>
    new GatewayError(400, 'missing_model', 'you must provide a model parameter', {
      param: 'model',
    }),
  modelNotFound: (model: string) =>
    new GatewayError(404, 'model_not_found', `the model \`${clip(model)}\` does not exist`, {
      param: 'model',
    }),
  routeNotFound: (model: string) =>
    new GatewayError(
      404,
      'route_not_found',
      `no rule of the routes for model \`${clip(model)}\` matches this request`,
      { param: 'model' },
    ),
  bodyTooLarge: (limit: number) =>
    new GatewayError(413, 'request_too_large', `request body exceeds the limit of ${limit} bytes`),
  noReadyEndpoint: (server: string) =>
    new GatewayError(503, 'no_ready_endpoint', `no ready endpoint for model server "${server}"`, {
      headers: { 'retry-after': '1' },
    }),
  notReady: () =>
    new GatewayError(503, 'gateway_not_ready', 'the gateway has no routing configuration yet', {
      headers: { 'retry-after': '1' },
    }),
  draining: () =>
    new GatewayError(503, 'gateway_draining', 'the gateway is shutting down', {
      headers: { 'retry-after': '1', connection: 'close' },
    }),
  upstreamTimeout: (what: string) =>
    new GatewayError(504, 'upstream_timeout', `upstream timed out: ${what}`),
  upstreamUnavailable: (detail: string) =>
    new GatewayError(502, 'upstream_unavailable', `could not reach an upstream: ${detail}`),
  upstreamBodyTooLarge: (endpoint: string, limit: number) =>
    new GatewayError(
      502,
      'upstream_body_too_large',
      `${endpoint}: upstream response body exceeds the gateway's limit of ${limit} bytes`,
    ),
  notFound: (path: string) =>
    new GatewayError(404, 'unknown_url', `unknown path ${clip(path)}`, {
      type: 'invalid_request_error',
    }),
  methodNotAllowed: (method: string, path: string, allow: readonly string[]) =>
    new GatewayError(
      405,
      'method_not_allowed',
      `method ${clip(method)} is not allowed on ${path}; use ${allow.join(' or ')}`,
      { type: 'invalid_request_error', headers: { allow: allow.join(', ') } },
    ),
  internal: () => new GatewayError(500, 'internal_error', 'internal gateway error'),
} as const
