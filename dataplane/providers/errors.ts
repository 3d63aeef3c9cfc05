// Errors of the provider path, OpenAI-shaped like every gateway error, each with a stable code.
// Provider answers keep their status class (a 429 stays a 429 with its Retry-After, a 5xx stays a
// 5xx) except where the client is not the one at fault: the provider rejecting the gateway's own
// key (401/403), its billing (402) or a model/deployment it does not know (404) become 502s that
// name the provider but never echo what it said (OpenAI's 401 text quotes part of the key).
import type { SnapshotProvider } from '../../api/snapshot.js'
import { GatewayError, type OpenAIErrorType } from '../errors.js'

function who(p: SnapshotProvider): string {
  return `provider "${p.key}" (${p.type})`
}

/** What an adapter could read from a provider's error body. */
export interface ProviderErrorDetail {
  readonly message?: string
  readonly type?: string
  readonly code?: string
  readonly param?: string
  /** The body says the key is invalid even though the status is not 401 (Gemini: 400 API_KEY_INVALID). */
  readonly credentialRejected?: boolean
  /** The body says the provider is overloaded (Anthropic overloaded_error). */
  readonly overloaded?: boolean
}

const OPENAI_TYPES: ReadonlySet<string> = new Set([
  'invalid_request_error',
  'authentication_error',
  'permission_error',
  'not_found_error',
  'rate_limit_error',
  'server_error',
  'timeout_error',
])

export const providerErrors = {
  unsupportedParameter: (p: SnapshotProvider, param: string, why: string) =>
    new GatewayError(
      400,
      'unsupported_parameter',
      `\`${param}\` is not supported by ${who(p)}: ${why}`,
      { param },
    ),
  invalidParameter: (p: SnapshotProvider, param: string, why: string) =>
    new GatewayError(400, 'invalid_parameter', `\`${param}\` cannot be sent to ${who(p)}: ${why}`, {
      param,
    }),
  unsupportedApi: (p: SnapshotProvider, path: string) =>
    new GatewayError(400, 'unsupported_api', `${who(p)} does not serve ${path}`),
  credentialsUnavailable: (p: SnapshotProvider) =>
    new GatewayError(
      503,
      'provider_credentials_unavailable',
      `the gateway has no credential for ${who(p)} (secret "${p.credential?.secretRef.name}" key "${p.credential?.secretRef.key}" is not mounted)`,
      { headers: { 'retry-after': '1' } },
    ),
  credentialsRejected: (p: SnapshotProvider, status: number) =>
    new GatewayError(
      502,
      'provider_credentials_rejected',
      `${who(p)} rejected the gateway's credential (HTTP ${status}); the gateway operator must fix its secret`,
    ),
  paymentRequired: (p: SnapshotProvider) =>
    new GatewayError(
      502,
      'provider_payment_required',
      `${who(p)} refused the gateway's account (HTTP 402: billing or quota of the provider account)`,
    ),
  providerNotFound: (p: SnapshotProvider, detail: string) =>
    new GatewayError(
      502,
      'provider_model_not_found',
      `${who(p)} answered 404: its model or deployment is not configured correctly${detail ? ` (${detail})` : ''}`,
    ),
  redirected: (p: SnapshotProvider, status: number) =>
    new GatewayError(
      502,
      'provider_redirect',
      `${who(p)} answered with a redirect (HTTP ${status}); redirects are never followed`,
    ),
  unreachable: (p: SnapshotProvider, detail: string) =>
    new GatewayError(502, 'provider_unreachable', `could not reach ${who(p)}: ${detail}`),
  timeout: (p: SnapshotProvider, what: string) =>
    new GatewayError(504, 'provider_timeout', `${who(p)} timed out: ${what}`),
  badResponse: (p: SnapshotProvider, detail: string) =>
    new GatewayError(
      502,
      'provider_bad_response',
      `${who(p)} sent a response the gateway cannot read: ${detail}`,
    ),
} as const

function retryAfterHeaders(retryAfter: string | undefined): Record<string, string> {
  return retryAfter !== undefined && retryAfter !== '' ? { 'retry-after': retryAfter } : {}
}

/**
 * The client's error for a provider's non-2xx answer. `detail` comes from the adapter's reading of
 * the body; the message is the provider's own (it is about the request) except for the statuses
 * that are about the gateway's account.
 */
export function mapProviderError(
  p: SnapshotProvider,
  status: number,
  detail: ProviderErrorDetail,
  retryAfter: string | undefined,
): GatewayError {
  if (status === 401 || status === 403 || detail.credentialRejected === true)
    return providerErrors.credentialsRejected(p, status)
  // OpenAI reports an exhausted account as 429 insufficient_quota: the gateway's account, not the
  // caller's rate.
  if (status === 402 || detail.code === 'insufficient_quota')
    return providerErrors.paymentRequired(p)
  if (status === 404) return providerErrors.providerNotFound(p, clip(detail.message ?? ''))
  if (status >= 300 && status < 400) return providerErrors.redirected(p, status)
  const message = clip(detail.message ?? `HTTP ${status}`)
  if (status === 429) {
    return new GatewayError(429, detail.code ?? 'provider_rate_limited', `${who(p)}: ${message}`, {
      type: 'rate_limit_error',
      headers: retryAfterHeaders(retryAfter),
    })
  }
  // Anthropic's 529 is not an HTTP status clients know; overload is a 503 with Retry-After.
  if (status === 529 || detail.overloaded === true) {
    return new GatewayError(503, 'provider_overloaded', `${who(p)} is overloaded: ${message}`, {
      headers: retryAfterHeaders(retryAfter ?? '1'),
    })
  }
  if (status >= 500) {
    return new GatewayError(
      status > 599 ? 502 : status,
      detail.code ?? 'provider_error',
      `${who(p)}: ${message}`,
      {
        type: 'server_error',
        headers: retryAfterHeaders(retryAfter),
      },
    )
  }
  // 4xx about the request: keep the provider's code and param (clients match on e.g.
  // context_length_exceeded), with an OpenAI type.
  const type: OpenAIErrorType | undefined =
    detail.type !== undefined && OPENAI_TYPES.has(detail.type)
      ? (detail.type as OpenAIErrorType)
      : undefined
  return new GatewayError(status, detail.code ?? 'provider_bad_request', message, {
    ...(type !== undefined ? { type } : {}),
    ...(detail.param !== undefined ? { param: detail.param } : {}),
  })
}

/** Provider messages are shown to clients and logged: keep them bounded. */
function clip(s: string): string {
  return s.length > 500 ? `${s.slice(0, 500)}…` : s
}

/** Reads `{"error": {...}}`, `{"error": "..."}` (TGI) and `[{"error": {...}}]` bodies. */
export function openAIStyleErrorDetail(text: string): ProviderErrorDetail {
  let v: unknown
  try {
    v = JSON.parse(text)
  } catch {
    return text.trim() === '' ? {} : { message: text.trim() }
  }
  if (Array.isArray(v)) v = v[0]
  if (typeof v !== 'object' || v === null) return {}
  const e = (v as Record<string, unknown>)['error']
  if (typeof e === 'string') return { message: e }
  if (typeof e !== 'object' || e === null) {
    const m = (v as Record<string, unknown>)['message']
    return typeof m === 'string' ? { message: m } : {}
  }
  const o = e as Record<string, unknown>
  const out: { -readonly [K in keyof ProviderErrorDetail]: ProviderErrorDetail[K] } = {}
  if (typeof o['message'] === 'string') out.message = o['message']
  if (typeof o['type'] === 'string') out.type = o['type']
  if (typeof o['param'] === 'string') out.param = o['param']
  // Azure puts the HTTP status in `code` ("429"): not a code clients can use.
  if (typeof o['code'] === 'string' && !/^\d+$/.test(o['code'])) out.code = o['code']
  return out
}
