// Cluster mode for secrets (pure; the controller does the I/O). The snapshot names credentials
// entries only (api/policy-compile.ts, `secretFileName` in api/provider.ts); this module decides
// which value goes under each entry of the data plane's credentials Secret, read from the source
// Secrets the objects reference, and why an object's references do or do not resolve. Values are
// base64 strings as the API server returns them: they are compared and copied, never logged and
// never put into a message, a condition or the snapshot.
import { createHash } from 'node:crypto'
import { CREDENTIALS_SECRET } from '../api/crd.js'
import {
  type Condition,
  type Diagnostic,
  PROVIDER_CONDITION_REASONS as PR,
  PROVIDER_CONDITION_TYPES as PT,
  type RoutingSnapshot,
} from '../api/index.js'
import { validateGatewayPolicy } from '../api/policy.js'
import { existingConditions, same, withTransitionTimes } from './status.js'

/** Data of a source Secret (`data`, base64 values) or undefined when the cache has no such one. */
export type SecretLookup = (
  namespace: string,
  name: string,
) => Readonly<Record<string, string>> | undefined

export interface RefResolution {
  readonly ok: boolean
  /** CamelCase, stable (PROVIDER_CONDITION_REASONS, plus EntryConflict). */
  readonly reason: string
  /** Names the Secret, key and entry; never a value. */
  readonly message: string
}

export interface CredentialsPlan {
  /** Entry name → base64 value, for the data plane's credentials Secret. */
  readonly entries: ReadonlyMap<string, string>
  /** By provider "namespace/name", for every provider the snapshot carries. */
  readonly providers: ReadonlyMap<string, RefResolution>
  /** The applied GatewayPolicy's references (absent when no policy applies). */
  readonly policy?: { readonly key: string; readonly refs: RefResolution }
}

export interface CredentialsTarget {
  readonly namespace: string
  readonly name: string
}

/** Why a Secret is invisible to us: missing, or missing the label we watch by. */
function notFound(ns: string, name: string, label: string): string {
  return `Secret ${ns}/${name} not found (it must exist and carry the label ${label}=true)`
}

/**
 * The data plane treats an empty entry or one with control characters as unusable (one trailing
 * newline is ignored); refusing it here turns a 503 at request time into a condition now.
 */
function usable(b64: string): boolean {
  const text = Buffer.from(b64, 'base64')
    .toString('utf8')
    .replace(/\r?\n$/, '')
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are the point
  return text.length > 0 && !/[\x00-\x1f\x7f]/.test(text)
}

/** The entries a compiled policy reads (API key hashes, client secrets, Redis password). */
export function policyEntries(snapshot: RoutingSnapshot): string[] {
  const p = snapshot.policy
  if (p === undefined) return []
  const out = new Set<string>()
  for (const k of p.authentication.apiKeys) out.add(k.secretKey)
  for (const o of p.authentication.oauth2) out.add(o.clientSecretKey)
  const shared = p.authentication.trustedHeaders?.sharedSecret
  if (shared !== undefined) out.add(shared.secretKey)
  const pw = p.rateLimit.redis?.passwordSecretKey
  if (pw !== undefined) out.add(pw)
  return [...out].sort()
}

export function planCredentials(input: {
  readonly snapshot: RoutingSnapshot
  readonly policies: readonly unknown[]
  readonly lookup: SecretLookup
  readonly target: CredentialsTarget
  readonly label: string
}): CredentialsPlan {
  const { snapshot, lookup, target, label } = input
  const entries = new Map<string, string>()
  /** Entry → who set it, to report two sources fighting over one entry. */
  const owner = new Map<string, string>()
  const put = (entry: string, value: string, who: string): string | undefined => {
    const prev = entries.get(entry)
    if (prev !== undefined && prev !== value) return owner.get(entry)
    entries.set(entry, value)
    owner.set(entry, who)
    return undefined
  }

  const providers = new Map<string, RefResolution>()
  for (const [key, p] of Object.entries(snapshot.providers ?? {}).sort(([a], [b]) =>
    a < b ? -1 : a > b ? 1 : 0,
  )) {
    const cred = p.credential
    if (cred === undefined) {
      providers.set(key, { ok: true, reason: PR.noCredentialsRequired, message: 'no auth' })
      continue
    }
    const ns = key.slice(0, key.indexOf('/'))
    const { name, key: dataKey } = cred.secretRef
    const data = lookup(ns, name)
    let r: RefResolution
    if (data === undefined) {
      r = { ok: false, reason: PR.secretNotFound, message: notFound(ns, name, label) }
    } else if (data[dataKey] === undefined) {
      r = {
        ok: false,
        reason: PR.secretKeyNotFound,
        message: `Secret ${ns}/${name} has no key "${dataKey}"`,
      }
    } else if (!usable(data[dataKey])) {
      r = {
        ok: false,
        reason: PR.secretValueInvalid,
        message: `Secret ${ns}/${name} key "${dataKey}" is empty or contains control characters`,
      }
    } else {
      const clash = put(cred.secretFile, data[dataKey], `ExternalModelProvider ${key}`)
      r =
        clash === undefined
          ? {
              ok: true,
              reason: PR.secretResolved,
              message: `Secret ${ns}/${name} key "${dataKey}" is entry "${cred.secretFile}"`,
            }
          : {
              ok: false,
              reason: 'EntryConflict',
              message: `entry "${cred.secretFile}" is already filled by ${clash}`,
            }
    }
    providers.set(key, r)
  }

  const chosen = snapshot.policy?.key
  if (chosen === undefined) return { entries, providers }
  const raw = input.policies.find((o) => {
    const m = (o as { metadata?: { namespace?: string; name?: string } }).metadata
    return `${m?.namespace ?? 'default'}/${m?.name ?? ''}` === chosen
  })
  const v = raw === undefined ? undefined : validateGatewayPolicy(raw)
  const ns = chosen.slice(0, chosen.indexOf('/'))
  const name =
    (v?.ok === true ? v.value.spec.credentialsSecretName : undefined) ?? CREDENTIALS_SECRET
  const needed = policyEntries(snapshot)
  if (needed.length === 0)
    return { entries, providers, policy: { key: chosen, refs: resolved('no secret entries') } }
  // Pointing the policy at the data plane's own Secret: the entries are already where the data
  // plane reads them, and copying a Secret onto itself would make us co-owner of its keys.
  if (ns === target.namespace && name === target.name)
    return {
      entries,
      providers,
      policy: {
        key: chosen,
        refs: resolved(`entries are read from the credentials Secret ${ns}/${name} directly`),
      },
    }
  const data = lookup(ns, name)
  if (data === undefined)
    return {
      entries,
      providers,
      policy: {
        key: chosen,
        refs: { ok: false, reason: PR.secretNotFound, message: notFound(ns, name, label) },
      },
    }
  const missing: string[] = []
  const invalid: string[] = []
  const clashes: string[] = []
  for (const e of needed) {
    const val = data[e]
    if (val === undefined) missing.push(e)
    else if (!usable(val)) invalid.push(e)
    else {
      const clash = put(e, val, `GatewayPolicy ${chosen}`)
      if (clash !== undefined) clashes.push(`"${e}" (filled by ${clash})`)
    }
  }
  // The data plane refuses only the entries that are bad; the others are copied regardless.
  const refs: RefResolution =
    missing.length > 0
      ? {
          ok: false,
          reason: PR.secretKeyNotFound,
          message: `Secret ${ns}/${name} has no key ${missing.map((m) => `"${m}"`).join(', ')}`,
        }
      : invalid.length > 0
        ? {
            ok: false,
            reason: PR.secretValueInvalid,
            message: `Secret ${ns}/${name} key ${invalid.map((m) => `"${m}"`).join(', ')} is empty or contains control characters`,
          }
        : clashes.length > 0
          ? { ok: false, reason: 'EntryConflict', message: `entries ${clashes.join(', ')}` }
          : resolved(`${needed.length} entries from Secret ${ns}/${name}`)
  return { entries, providers, policy: { key: chosen, refs } }
}

function resolved(message: string): RefResolution {
  return { ok: true, reason: 'Resolved', message }
}

/**
 * Content hash of the entries (to skip writes that change nothing). Only kept in memory; a hash
 * of a high-entropy key reveals nothing, but it is still never logged.
 */
export function entriesHash(entries: ReadonlyMap<string, string>): string {
  const h = createHash('sha256')
  for (const [k, v] of [...entries].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
    h.update(`${k}\0${v}\0`)
  return h.digest('hex')
}

// ---------------------------------------------------------------------------------------------
// status of GatewayPolicy and ExternalModelProvider

type Desired = Omit<Condition, 'lastTransitionTime'>

function c(
  type: string,
  ok: boolean | 'Unknown',
  reason: string,
  message: string,
  g: number,
): Desired {
  const status = ok === 'Unknown' ? 'Unknown' : ok ? 'True' : 'False'
  return { type, status, observedGeneration: g, reason, message }
}

export interface PolicyStatusInput {
  readonly key: string
  readonly generation: number
  readonly snapshot: RoutingSnapshot
  readonly diagnostics: readonly Diagnostic[]
  readonly plan: CredentialsPlan
}

export function policyConditions(i: PolicyStatusInput): Desired[] {
  const ds = i.diagnostics.filter((d) => d.kind === 'GatewayPolicy' && d.key === i.key)
  const g = i.generation
  const refs = i.plan.policy?.key === i.key ? i.plan.policy.refs : undefined
  if (i.snapshot.policy?.key !== i.key || refs === undefined) {
    const first = ds[0]
    return [
      c(
        'Accepted',
        false,
        first?.reason ?? 'NotApplied',
        first === undefined ? 'not in the routing snapshot' : ds.map((d) => d.message).join('; '),
        g,
      ),
      c(
        'ResolvedRefs',
        'Unknown',
        'NotAccepted',
        'references are checked for the applied policy',
        g,
      ),
    ]
  }
  return [
    c('Accepted', true, 'Accepted', 'applied to the gateway', g),
    c('ResolvedRefs', refs.ok, refs.reason, refs.message, g),
  ]
}

export interface ProviderStatusInput {
  readonly key: string
  readonly generation: number
  readonly diagnostics: readonly Diagnostic[]
  readonly plan: CredentialsPlan
  /** The snapshot carrying it could not be published. */
  readonly publishError?: { readonly reason: string; readonly message: string } | undefined
}

export function providerConditions(i: ProviderStatusInput): Desired[] {
  const g = i.generation
  const r = i.plan.providers.get(i.key)
  if (r === undefined) {
    const ds = i.diagnostics.filter((d) => d.kind === 'ExternalModelProvider' && d.key === i.key)
    const msg = ds.map((d) => d.message).join('; ') || 'not in the routing snapshot'
    return [
      c(PT.ready, false, PR.invalid, msg, g),
      c(PT.credentialsResolved, 'Unknown', PR.invalid, 'the provider is invalid', g),
    ]
  }
  const ready: Desired = !r.ok
    ? c(PT.ready, false, PR.credentialsNotResolved, r.message, g)
    : i.publishError !== undefined
      ? c(PT.ready, false, i.publishError.reason, i.publishError.message, g)
      : c(PT.ready, true, PR.ready, 'in the routing snapshot with its credentials', g)
  return [ready, c(PT.credentialsResolved, r.ok, r.reason, r.message, g)]
}

/** Merge patch `{status}` for observedGeneration + conditions, or undefined when nothing differs. */
export function conditionsPatch(
  existing: unknown,
  desired: readonly Desired[],
  generation: number,
  now: string,
): { status: { observedGeneration: number; conditions: Condition[] } } | undefined {
  const old = existingConditions(existing)
  const conditions = withTransitionTimes(desired, old, now)
  const storedGen = (existing as { observedGeneration?: unknown } | undefined)?.observedGeneration
  if (storedGen === generation && same(old, conditions)) return undefined
  return { status: { observedGeneration: generation, conditions } }
}
