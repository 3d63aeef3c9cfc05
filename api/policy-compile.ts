// Compiles the GatewayPolicy and our ModelRoute additions (authorization, tierLimits) into their
// snapshot form: defaults filled in, durations in ms, lists sorted where order carries no meaning,
// so equal inputs give byte-equal snapshots on every operator replica. Secret entries stay names.

import type { Diagnostic } from './compile.js'
import { parseDuration } from './duration.js'
import type { BudgetEntry, RateEntry, RouteAuthorization, RouteTierLimit } from './limits-schema.js'
import { type ClaimsSpec, type GatewayPolicy, validateGatewayPolicy } from './policy.js'
import type {
  LimitMetric,
  SnapshotAuthorization,
  SnapshotClaimMap,
  SnapshotLimit,
  SnapshotPolicy,
  SnapshotRouteTierLimits,
  SnapshotTokenizer,
} from './snapshot-policy.js'
import { formatIssue } from './validate.js'

export const DEFAULT_JWT_ALGORITHMS = ['ES256', 'RS256'] as const
export const DEFAULT_TRUSTED_HEADERS = {
  subject: 'x-user-id',
  tenant: 'x-tenant-id',
  tier: 'x-tier',
  roles: 'x-user-roles',
} as const
export const DEFAULT_OUTPUT_RESERVATION = 1024
export const DEFAULT_MAX_OUTPUT_RESERVATION = 32_768

const UNIT_MS = {
  second: 1_000,
  minute: 60_000,
  hour: 3_600_000,
  day: 86_400_000,
  // Kthena's `month` unit for its token buckets is 30 days.
  month: 30 * 86_400_000,
} as const

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}

function ms(s: string | undefined, fallback: number): number {
  return s === undefined ? fallback : Math.ceil(parseDuration(s))
}

function metricOf(e: RateEntry | BudgetEntry): { metric: LimitMetric; amount: number } {
  if (e.requests !== undefined) return { metric: 'requests', amount: e.requests }
  if (e.inputTokens !== undefined) return { metric: 'inputTokens', amount: e.inputTokens }
  if (e.outputTokens !== undefined) return { metric: 'outputTokens', amount: e.outputTokens }
  return { metric: 'tokens', amount: e.tokens ?? 0 }
}

export function sortLimits(limits: SnapshotLimit[]): SnapshotLimit[] {
  return limits.sort(
    (a, b) =>
      cmp(a.metric, b.metric) ||
      (a.periodMs ?? Number.MAX_SAFE_INTEGER) - (b.periodMs ?? Number.MAX_SAFE_INTEGER) ||
      cmp(a.calendar ?? '', b.calendar ?? '') ||
      a.amount - b.amount,
  )
}

export function compileLimits(
  rate: readonly RateEntry[] | undefined,
  budget: readonly BudgetEntry[] | undefined,
): SnapshotLimit[] {
  const out: SnapshotLimit[] = []
  for (const r of rate ?? []) out.push({ ...metricOf(r), periodMs: UNIT_MS[r.per] })
  for (const b of budget ?? []) out.push({ ...metricOf(b), calendar: b.per })
  return sortLimits(out)
}

/** Kthena's `spec.rateLimit` as limits (buckets per unit); used by the data plane. */
export function kthenaRateLimits(rl: {
  readonly inputTokensPerUnit?: number
  readonly outputTokensPerUnit?: number
  readonly unit: keyof typeof UNIT_MS
}): SnapshotLimit[] {
  const periodMs = UNIT_MS[rl.unit]
  const out: SnapshotLimit[] = []
  if (rl.inputTokensPerUnit !== undefined)
    out.push({ metric: 'inputTokens', amount: rl.inputTokensPerUnit, periodMs })
  if (rl.outputTokensPerUnit !== undefined)
    out.push({ metric: 'outputTokens', amount: rl.outputTokensPerUnit, periodMs })
  return out
}

const sorted = (l: readonly string[] | undefined) => (l === undefined ? undefined : [...l].sort())

export function compileAuthorization(a: RouteAuthorization): SnapshotAuthorization {
  const tiers = sorted(a.tiers)
  const tenants = sorted(a.tenants)
  const roles = sorted(a.roles)
  return {
    allowAnonymous: a.allowAnonymous ?? false,
    ...(tiers !== undefined ? { tiers } : {}),
    ...(tenants !== undefined ? { tenants } : {}),
    ...(roles !== undefined ? { roles } : {}),
  }
}

export function compileRouteTierLimits(list: readonly RouteTierLimit[]): SnapshotRouteTierLimits[] {
  return list
    .map((t) => ({
      tier: t.tier,
      key: t.key ?? 'subject',
      limits: compileLimits(t.rate, t.budget),
    }))
    .sort((a, b) => cmp(a.tier, b.tier))
}

function claims(c: ClaimsSpec | undefined): SnapshotClaimMap {
  return {
    subject: c?.subject ?? 'sub',
    ...(c?.tenant !== undefined ? { tenant: c.tenant } : {}),
    ...(c?.tier !== undefined ? { tier: c.tier } : {}),
    ...(c?.roles !== undefined ? { roles: c.roles } : {}),
  }
}

function compileOne(key: string, p: GatewayPolicy): SnapshotPolicy {
  const spec = p.spec
  const auth = spec.authentication ?? {}
  const rl = spec.rateLimit ?? {}
  const th = auth.trustedHeaders
  const tokenizers: SnapshotTokenizer[] = (rl.tokenizers ?? []).map((t) => {
    const m = t.models
    const match =
      m.exact !== undefined
        ? ({ kind: 'exact', value: m.exact } as const)
        : m.prefix !== undefined
          ? ({ kind: 'prefix', value: m.prefix } as const)
          : ({ kind: 'regex', value: m.regex ?? '' } as const)
    return {
      match,
      ...(t.tiktoken !== undefined ? { tiktoken: t.tiktoken } : {}),
      ...(t.file !== undefined ? { file: t.file } : {}),
      ...(t.charsPerToken !== undefined ? { charsPerToken: t.charsPerToken } : {}),
    }
  })
  const defaultAuth = spec.defaults?.authorization
  return {
    key,
    authentication: {
      apiKeys: (auth.apiKeys ?? [])
        // A disabled key is revoked: it does not reach the data plane at all.
        .filter((k) => k.disabled !== true)
        .map((k) => ({
          name: k.name,
          secretKey: k.secretKey,
          tenant: k.tenant,
          ...(k.tier !== undefined ? { tier: k.tier } : {}),
          ...(k.models !== undefined ? { models: [...new Set(k.models)].sort() } : {}),
          roles: [...new Set(k.roles ?? [])].sort(),
        }))
        .sort((a, b) => cmp(a.name, b.name)),
      jwt: (auth.jwt ?? []).map((j) => ({
        name: j.name,
        issuer: j.issuer,
        audiences: [...j.audiences],
        ...(j.jwksUri !== undefined ? { jwksUri: j.jwksUri } : {}),
        ...(j.jwks !== undefined
          ? { jwks: j.jwks.keys.map((k) => k as Record<string, string | string[]>) }
          : {}),
        ...(j.discovery === true ? { discovery: true } : {}),
        algorithms: [...new Set(j.algorithms ?? DEFAULT_JWT_ALGORITHMS)].sort(),
        clockSkewMs: ms(j.clockSkew, 30_000),
        ...(j.maxTokenAge !== undefined ? { maxTokenAgeMs: ms(j.maxTokenAge, 0) } : {}),
        claims: claims(j.claims),
        jwksCacheMs: ms(j.jwksCacheDuration, 600_000),
        jwksCooldownMs: ms(j.jwksRefetchCooldown, 30_000),
        timeoutMs: Math.max(1, ms(j.timeout, 5_000)),
      })),
      oauth2: (auth.oauth2 ?? []).map((o) => ({
        name: o.name,
        url: o.introspectionUrl,
        clientId: o.clientId,
        clientSecretKey: o.clientSecretKey,
        ...(o.issuer !== undefined ? { issuer: o.issuer } : {}),
        ...(o.audiences !== undefined ? { audiences: [...o.audiences] } : {}),
        cacheMs: ms(o.cacheDuration, 300_000),
        negativeCacheMs: ms(o.negativeCacheDuration, 10_000),
        timeoutMs: Math.max(1, ms(o.timeout, 2_000)),
        claims: claims(o.claims),
      })),
      ...(th !== undefined
        ? {
            trustedHeaders: {
              sourceAddresses: [...(th.sourceAddresses ?? [])],
              ...(th.sharedSecret !== undefined
                ? {
                    sharedSecret: {
                      header: th.sharedSecret.header.toLowerCase(),
                      secretKey: th.sharedSecret.secretKey,
                    },
                  }
                : {}),
              headers: {
                subject: (th.headers?.subject ?? DEFAULT_TRUSTED_HEADERS.subject).toLowerCase(),
                tenant: (th.headers?.tenant ?? DEFAULT_TRUSTED_HEADERS.tenant).toLowerCase(),
                tier: (th.headers?.tier ?? DEFAULT_TRUSTED_HEADERS.tier).toLowerCase(),
                roles: (th.headers?.roles ?? DEFAULT_TRUSTED_HEADERS.roles).toLowerCase(),
              },
            },
          }
        : {}),
    },
    anonymous: {
      tenant: spec.anonymous?.tenant ?? 'anonymous',
      ...(spec.anonymous?.tier !== undefined ? { tier: spec.anonymous.tier } : {}),
    },
    ...(defaultAuth !== undefined
      ? { defaultAuthorization: compileAuthorization(defaultAuth) }
      : {}),
    ...(spec.defaultTier !== undefined ? { defaultTier: spec.defaultTier } : {}),
    tiers: (spec.tiers ?? [])
      .map((t) => ({
        name: t.name,
        key: t.key ?? 'subject',
        limits: compileLimits(t.rate, t.budget),
      }))
      .sort((a, b) => cmp(a.name, b.name)),
    rateLimit: {
      backend: rl.backend ?? 'local',
      ...(rl.redis !== undefined
        ? {
            redis: {
              address: rl.redis.address,
              ...(rl.redis.passwordSecretKey !== undefined
                ? { passwordSecretKey: rl.redis.passwordSecretKey }
                : {}),
              db: rl.redis.db ?? 0,
              cluster: rl.redis.cluster ?? false,
              keyPrefix: rl.redis.keyPrefix ?? 'igw',
              timeoutMs: Math.max(1, ms(rl.redis.timeout, 100)),
            },
          }
        : {}),
      failureMode: rl.failureMode ?? 'open',
      outputReservation: {
        default: rl.outputTokens?.defaultReservation ?? DEFAULT_OUTPUT_RESERVATION,
        max: Math.max(
          rl.outputTokens?.maxReservation ?? DEFAULT_MAX_OUTPUT_RESERVATION,
          rl.outputTokens?.defaultReservation ?? 1,
        ),
      },
      streamUsage: rl.streamUsage ?? true,
      tokenizers,
    },
  }
}

function rawKey(obj: unknown): string {
  const meta =
    typeof obj === 'object' && obj !== null ? (obj as { metadata?: unknown }).metadata : undefined
  const m: { namespace?: unknown; name?: unknown } =
    typeof meta === 'object' && meta !== null ? meta : {}
  const ns = typeof m.namespace === 'string' ? m.namespace : 'default'
  const name = typeof m.name === 'string' ? m.name : '<unnamed>'
  return `${ns}/${name}`
}

/**
 * Validates every GatewayPolicy and compiles the one in force. There is one policy per gateway:
 * when several are valid the oldest wins (then by key, as routes) and the others get an error.
 */
export function compilePolicies(
  policies: readonly unknown[],
  diagnostics: Diagnostic[],
): SnapshotPolicy | undefined {
  const valid: { key: string; created: number; policy: GatewayPolicy }[] = []
  for (const obj of policies) {
    const r = validateGatewayPolicy(obj)
    if (!r.ok) {
      const first = r.issues[0]
      diagnostics.push({
        kind: 'GatewayPolicy',
        key: rawKey(obj),
        severity: 'error',
        reason: 'Invalid',
        message: r.issues.map(formatIssue).join('; '),
        ...(first !== undefined && first.path !== '' ? { path: first.path } : {}),
      })
      continue
    }
    const meta = r.value.metadata
    const ts = meta.creationTimestamp
    valid.push({
      key: `${meta.namespace ?? 'default'}/${meta.name}`,
      created: ts === undefined ? Number.POSITIVE_INFINITY : Date.parse(ts),
      policy: r.value,
    })
  }
  valid.sort((a, b) =>
    a.created === b.created ? cmp(a.key, b.key) : a.created < b.created ? -1 : 1,
  )
  const [chosen, ...rest] = valid
  for (const other of rest) {
    diagnostics.push({
      kind: 'GatewayPolicy',
      key: other.key,
      severity: 'error',
      reason: 'PolicyConflict',
      message: `only one GatewayPolicy applies; "${chosen?.key ?? ''}" is older and is used`,
    })
  }
  return chosen === undefined ? undefined : compileOne(chosen.key, chosen.policy)
}

/** Warnings for route additions that refer to tiers the policy lacks, or need a policy. */
export function checkRouteAccess(
  routeKey: string,
  route: {
    readonly authorization?: SnapshotAuthorization
    readonly tierLimits?: readonly SnapshotRouteTierLimits[]
  },
  policy: SnapshotPolicy | undefined,
  diagnostics: Diagnostic[],
): void {
  if (policy === undefined) {
    if (route.authorization !== undefined || route.tierLimits !== undefined) {
      diagnostics.push({
        kind: 'ModelRoute',
        key: routeKey,
        severity: 'warning',
        reason: 'NoGatewayPolicy',
        message:
          'authorization/tierLimits need a GatewayPolicy for identities; every caller is anonymous',
      })
    }
    return
  }
  const tiers = new Set(policy.tiers.map((t) => t.name))
  const unknown = [
    ...(route.authorization?.tiers ?? []),
    ...(route.tierLimits ?? []).map((t) => t.tier),
  ].filter((t) => !tiers.has(t))
  for (const t of [...new Set(unknown)].sort()) {
    diagnostics.push({
      kind: 'ModelRoute',
      key: routeKey,
      severity: 'warning',
      reason: 'UnknownTier',
      message: `tier "${t}" is not defined by GatewayPolicy "${policy.key}"`,
    })
  }
}
