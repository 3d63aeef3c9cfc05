// The errors authentication and rate limiting answer with: OpenAI-shaped (so SDKs raise
// AuthenticationError / PermissionDeniedError / RateLimitError), each with a stable code, and
// never echoing the credential that was presented.
import { GatewayError } from '../errors.js'

const BEARER = 'Bearer realm="infer-gateway"'

export const authErrors = {
  missingCredentials: () =>
    new GatewayError(
      401,
      'missing_credentials',
      'authentication required: send an API key (Authorization: Bearer <key> or x-api-key) or a bearer token',
      { headers: { 'www-authenticate': BEARER } },
    ),
  malformedAuthorization: () =>
    new GatewayError(
      401,
      'invalid_authorization_header',
      'the Authorization header must be "Bearer <credential>"',
      { headers: { 'www-authenticate': `${BEARER}, error="invalid_request"` } },
    ),
  invalidApiKey: () =>
    new GatewayError(401, 'invalid_api_key', 'incorrect API key or token provided', {
      headers: { 'www-authenticate': `${BEARER}, error="invalid_token"` },
    }),
  invalidToken: (code: string, message: string) =>
    new GatewayError(401, code, message, {
      type: 'authentication_error',
      headers: { 'www-authenticate': `${BEARER}, error="invalid_token"` },
    }),
  unavailable: (what: string) =>
    new GatewayError(503, 'authentication_unavailable', `cannot verify credentials: ${what}`, {
      headers: { 'retry-after': '1' },
    }),
  forbidden: (model: string, why: string) =>
    new GatewayError(
      403,
      'model_not_allowed',
      `you are not allowed to use the model \`${model}\`: ${why}`,
      {
        param: 'model',
      },
    ),
} as const

export const limitErrors = {
  rateLimited: (message: string, headers: Record<string, string>) =>
    new GatewayError(429, 'rate_limit_exceeded', message, { headers }),
  budgetExhausted: (message: string, headers: Record<string, string>) =>
    new GatewayError(429, 'insufficient_quota', message, { headers }),
  unavailable: () =>
    new GatewayError(
      503,
      'rate_limit_unavailable',
      'the rate-limit backend is unavailable and the gateway is configured to fail closed',
      { headers: { 'retry-after': '1' } },
    ),
} as const
