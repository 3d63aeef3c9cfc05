// May this identity call this model on this route? The route's `authorization` (or the policy's
// default) restricts by tier, tenant and role; an API key may restrict to listed models. An
// anonymous caller passes only where anonymous access is allowed (401 otherwise: credentials
// would help); an identified caller that is not allowed gets 403 (they would not).
import type { SnapshotAuthorization } from '../../../api/snapshot.js'
import type { GatewayError } from '../../errors.js'
import { authErrors } from '../errors.js'
import type { Identity } from '../identity.js'

export function authorize(
  identity: Identity,
  rule: SnapshotAuthorization | undefined,
  model: string,
): GatewayError | undefined {
  if (identity.models !== undefined && !identity.models.has(model))
    return authErrors.forbidden(model, 'the API key is not allowed to use it')
  if (rule === undefined) return undefined
  if (identity.method === 'anonymous')
    return rule.allowAnonymous ? undefined : authErrors.missingCredentials()
  if (
    rule.tiers !== undefined &&
    (identity.tier === undefined || !rule.tiers.includes(identity.tier))
  )
    return authErrors.forbidden(model, `tier "${identity.tier ?? 'none'}" may not use it`)
  if (rule.tenants !== undefined && !rule.tenants.includes(identity.tenant))
    return authErrors.forbidden(model, 'your tenant may not use it')
  if (rule.roles !== undefined && !rule.roles.some((r) => identity.roles.includes(r)))
    return authErrors.forbidden(model, 'a role that may use it is required')
  return undefined
}
