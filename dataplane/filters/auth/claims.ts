// Maps token claims (a verified JWT payload or an introspection response) to an Identity, as the
// provider's `claims` mapping says.
import type { SnapshotClaimMap } from '../../../api/snapshot.js'
import type { AuthMethod, Identity } from '../identity.js'

/** A claim by name; a name that is not a key is tried as a dotted path (`org.id`). */
export function claim(claims: Readonly<Record<string, unknown>>, name: string): unknown {
  if (name in claims) return claims[name]
  let cur: unknown = claims
  for (const part of name.split('.')) {
    if (typeof cur !== 'object' || cur === null || Array.isArray(cur)) return undefined
    cur = (cur as Record<string, unknown>)[part]
  }
  return cur
}

function str(v: unknown): string | undefined {
  if (typeof v === 'string' && v !== '') return v
  if (typeof v === 'number' && Number.isFinite(v)) return String(v)
  return undefined
}

/** An array of strings, or a space-separated string (the `scope` convention). */
export function roleList(v: unknown): string[] {
  if (typeof v === 'string') return v.split(/\s+/).filter((s) => s !== '')
  if (Array.isArray(v)) return v.filter((s): s is string => typeof s === 'string' && s !== '')
  return []
}

export function identityFromClaims(
  method: Extract<AuthMethod, 'jwt' | 'oauth2'>,
  provider: string,
  claims: Readonly<Record<string, unknown>>,
  map: SnapshotClaimMap,
  tierOf: (tier: string | undefined) => string | undefined,
  fallbackSubject?: string,
): Identity | undefined {
  const sub = str(claim(claims, map.subject)) ?? fallbackSubject
  if (sub === undefined) return undefined
  const tenant = map.tenant !== undefined ? str(claim(claims, map.tenant)) : undefined
  const tier = tierOf(map.tier !== undefined ? str(claim(claims, map.tier)) : undefined)
  const exp = claims['exp']
  return {
    method,
    subject: `${method}:${provider}:${sub}`,
    // Without a tenant claim every caller of the provider is one tenant: the provider.
    tenant: tenant ?? provider,
    ...(tier !== undefined ? { tier } : {}),
    roles: map.roles !== undefined ? roleList(claim(claims, map.roles)) : [],
    source: provider,
    ...(typeof exp === 'number' ? { expiresAt: exp * 1000 } : {}),
  }
}
