// Who is calling, as the filters after authentication see it (authorization, limits, access log,
// metrics, the scheduler's fairness plugin). It never holds a credential: `subject` is a key name,
// a token's `sub` or a trusted header's value, prefixed by where it came from.

export type AuthMethod = 'api-key' | 'jwt' | 'oauth2' | 'trusted-header' | 'anonymous'

export interface Identity {
  readonly method: AuthMethod
  /** Unique across methods, e.g. `key:team-a`, `jwt:corp-idp:alice`, `anonymous:10.0.0.7`. */
  readonly subject: string
  readonly tenant: string
  /** A tier the policy defines; undefined = no tier (no tier limits, metrics label `none`). */
  readonly tier?: string
  readonly roles: readonly string[]
  /** API keys: the models the key may call; undefined = all. */
  readonly models?: ReadonlySet<string>
  /** Name of the key or provider that vouched for the identity. */
  readonly source: string
  /** When the credential stops being valid (ms since epoch), if known. */
  readonly expiresAt?: number
}

/** The caller of a gateway without authentication configured. */
export const OPEN_IDENTITY: Identity = {
  method: 'anonymous',
  subject: 'anonymous',
  tenant: 'anonymous',
  roles: [],
  source: 'none',
}

/** Metrics label: bounded by the policy's tiers. */
export function tierLabel(identity: Identity | undefined): string {
  return identity?.tier ?? 'none'
}
