// Where a client puts its gateway credential: `x-api-key: <key>` or `Authorization: Bearer <x>`
// (what the OpenAI SDKs send). Both are removed before the request goes upstream.

export type Presented =
  | { readonly kind: 'none' }
  | { readonly kind: 'malformed' }
  | { readonly kind: 'credential'; readonly value: string }

const NONE: Presented = { kind: 'none' }
const MALFORMED: Presented = { kind: 'malformed' }

/** Credentials are tokens: printable ASCII without spaces (RFC 6750 b64token and API keys). */
const TOKEN = /^[\x21-\x7e]+$/

export function presentedCredential(header: (name: string) => string | undefined): Presented {
  // x-api-key first: it is explicit, while SDKs always send an Authorization header, often a dummy.
  const key = header('x-api-key')
  if (key !== undefined && key !== '') {
    const v = key.trim()
    return TOKEN.test(v) ? { kind: 'credential', value: v } : MALFORMED
  }
  const auth = header('authorization')
  if (auth === undefined || auth === '') return NONE
  const m = /^\s*bearer\s+(\S+)\s*$/i.exec(auth)
  const v = m?.[1]
  if (v === undefined || !TOKEN.test(v)) return MALFORMED
  return { kind: 'credential', value: v }
}

/** Three base64url segments: a JWS compact serialization (what JWT access tokens are). */
export function looksLikeJwt(token: string): boolean {
  return /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(token)
}
