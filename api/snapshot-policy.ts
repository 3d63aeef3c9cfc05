// The compiled gateway policy as the snapshot carries it: identity sources, tiers, limits and the
// rate-limit backend. Like the rest of the snapshot it holds no secret values: API-key hashes, the
// OAuth2 client secret, the trusted-proxy secret and the Redis password are named by `secretKey`,
// an entry of the credentials Secret the data plane has mounted (standalone: `--secrets-dir`).
// Inline JWKS are public keys only (the policy validation rejects private members).

import { z } from 'zod'
import type { SnapshotStringMatch } from './snapshot.js'

export type LimitMetric = 'requests' | 'inputTokens' | 'outputTokens' | 'tokens'
export type LimitKey = 'subject' | 'tenant' | 'tier'

/** One counter: a token bucket (`periodMs`) or a calendar budget (`calendar`), never both. */
export interface SnapshotLimit {
  readonly metric: LimitMetric
  readonly amount: number
  /** Token bucket of capacity `amount`, refilled continuously at `amount / periodMs`. */
  readonly periodMs?: number
  /** Counter that resets at the start of each UTC day or month. */
  readonly calendar?: 'day' | 'month'
}

export interface SnapshotLimitSet {
  readonly key: LimitKey
  /** Sorted (metric, periodMs, calendar) so equal policies compile to equal bytes. */
  readonly limits: readonly SnapshotLimit[]
}

export interface SnapshotTier extends SnapshotLimitSet {
  readonly name: string
}

export interface SnapshotRouteTierLimits extends SnapshotLimitSet {
  readonly tier: string
}

export interface SnapshotAuthorization {
  readonly allowAnonymous: boolean
  readonly tiers?: readonly string[]
  readonly tenants?: readonly string[]
  readonly roles?: readonly string[]
}

export interface SnapshotApiKey {
  /** Shown in logs as the caller's key id; never the key. */
  readonly name: string
  /** Entry holding the lowercase hex sha256 of the key. */
  readonly secretKey: string
  readonly tenant: string
  readonly tier?: string
  /** Models (names as the client sends them) the key may call; absent = every model. */
  readonly models?: readonly string[]
  readonly roles: readonly string[]
}

/** Claim names (dotted paths into the claims object) that give the identity's attributes. */
export interface SnapshotClaimMap {
  readonly subject: string
  readonly tenant?: string
  readonly tier?: string
  readonly roles?: string
}

export type JwkJson = Readonly<Record<string, string | readonly string[]>>

export interface SnapshotJwtProvider {
  readonly name: string
  readonly issuer: string
  readonly audiences: readonly string[]
  /** Exactly one of jwksUri, jwks, discovery. */
  readonly jwksUri?: string
  readonly jwks?: readonly JwkJson[]
  /** Find `jwks_uri` through `<issuer>/.well-known/openid-configuration`. */
  readonly discovery?: boolean
  readonly algorithms: readonly string[]
  readonly clockSkewMs: number
  readonly maxTokenAgeMs?: number
  readonly claims: SnapshotClaimMap
  readonly jwksCacheMs: number
  readonly jwksCooldownMs: number
  readonly timeoutMs: number
}

export interface SnapshotIntrospection {
  readonly name: string
  readonly url: string
  readonly clientId: string
  readonly clientSecretKey: string
  readonly issuer?: string
  readonly audiences?: readonly string[]
  /** Upper bound for caching an active token (never past its `exp`). */
  readonly cacheMs: number
  readonly negativeCacheMs: number
  readonly timeoutMs: number
  readonly claims: SnapshotClaimMap
}

export interface SnapshotTrustedHeaders {
  /** CIDRs (IPv4/IPv6) of peers allowed to assert identity headers. Empty = any address. */
  readonly sourceAddresses: readonly string[]
  readonly sharedSecret?: { readonly header: string; readonly secretKey: string }
  /** Lower-cased header names. */
  readonly headers: {
    readonly subject: string
    readonly tenant: string
    readonly tier: string
    readonly roles: string
  }
}

export interface SnapshotTokenizer {
  readonly match: SnapshotStringMatch
  /** Exactly one of tiktoken, file, charsPerToken. */
  readonly tiktoken?: string
  /** Path of a Hugging Face `tokenizer.json` on the data plane's filesystem. */
  readonly file?: string
  readonly charsPerToken?: number
}

export interface SnapshotRedis {
  /** host:port */
  readonly address: string
  readonly passwordSecretKey?: string
  readonly db: number
  readonly cluster: boolean
  readonly keyPrefix: string
  readonly timeoutMs: number
}

export interface SnapshotRateLimitConfig {
  readonly backend: 'local' | 'redis'
  readonly redis?: SnapshotRedis
  /** What a request gets when the global backend cannot answer. */
  readonly failureMode: 'open' | 'closed'
  /** Output tokens reserved when the request sets no max_tokens, and the most ever reserved. */
  readonly outputReservation: { readonly default: number; readonly max: number }
  /** Ask engines for usage on streams (`stream_options.include_usage`) to settle exactly. */
  readonly streamUsage: boolean
  readonly tokenizers: readonly SnapshotTokenizer[]
}

export interface SnapshotPolicy {
  /** "namespace/name" of the GatewayPolicy. */
  readonly key: string
  readonly authentication: {
    readonly apiKeys: readonly SnapshotApiKey[]
    readonly jwt: readonly SnapshotJwtProvider[]
    readonly oauth2: readonly SnapshotIntrospection[]
    readonly trustedHeaders?: SnapshotTrustedHeaders
  }
  readonly anonymous: { readonly tenant: string; readonly tier?: string }
  /** Applies to routes without their own `authorization`. */
  readonly defaultAuthorization?: SnapshotAuthorization
  /** Tier of identities that name none (or one the policy does not define). */
  readonly defaultTier?: string
  /** Sorted by name. */
  readonly tiers: readonly SnapshotTier[]
  readonly rateLimit: SnapshotRateLimitConfig
}

// ---------------------------------------------------------------------------------------------
// zod schemas for the receiving side (snapshot-validate.ts)

const posInt = z.number().int().min(1)
const ms = z.number().int().min(0)
const strings = z.array(z.string())

export const snapshotLimitSchema = z
  .strictObject({
    metric: z.enum(['requests', 'inputTokens', 'outputTokens', 'tokens']),
    amount: posInt,
    periodMs: posInt.exactOptional(),
    calendar: z.enum(['day', 'month']).exactOptional(),
  })
  .refine((l) => (l.periodMs === undefined) !== (l.calendar === undefined), {
    error: 'exactly one of periodMs or calendar',
  }) satisfies z.ZodType<SnapshotLimit>

const limitSetFields = {
  key: z.enum(['subject', 'tenant', 'tier']),
  limits: z.array(snapshotLimitSchema),
}

export const snapshotAuthorizationSchema = z.strictObject({
  allowAnonymous: z.boolean(),
  tiers: strings.exactOptional(),
  tenants: strings.exactOptional(),
  roles: strings.exactOptional(),
}) satisfies z.ZodType<SnapshotAuthorization>

export const snapshotRouteTierLimitsSchema = z.array(
  z.strictObject({ tier: z.string().min(1), ...limitSetFields }),
) satisfies z.ZodType<readonly SnapshotRouteTierLimits[]>

const claims = z.strictObject({
  subject: z.string().min(1),
  tenant: z.string().min(1).exactOptional(),
  tier: z.string().min(1).exactOptional(),
  roles: z.string().min(1).exactOptional(),
})

const stringMatch = z.strictObject({
  kind: z.enum(['exact', 'prefix', 'regex']),
  value: z.string(),
})

export const snapshotPolicySchema = z.strictObject({
  key: z.string().min(1),
  authentication: z.strictObject({
    apiKeys: z.array(
      z.strictObject({
        name: z.string().min(1),
        secretKey: z.string().min(1),
        tenant: z.string().min(1),
        tier: z.string().min(1).exactOptional(),
        models: strings.exactOptional(),
        roles: strings,
      }),
    ),
    jwt: z.array(
      z.strictObject({
        name: z.string().min(1),
        issuer: z.string().min(1),
        audiences: strings.min(1),
        jwksUri: z.string().min(1).exactOptional(),
        jwks: z
          .array(z.record(z.string(), z.union([z.string(), z.array(z.string())])))
          .exactOptional(),
        discovery: z.boolean().exactOptional(),
        algorithms: strings.min(1),
        clockSkewMs: ms,
        maxTokenAgeMs: ms.exactOptional(),
        claims,
        jwksCacheMs: ms,
        jwksCooldownMs: ms,
        timeoutMs: posInt,
      }),
    ),
    oauth2: z.array(
      z.strictObject({
        name: z.string().min(1),
        url: z.string().min(1),
        clientId: z.string().min(1),
        clientSecretKey: z.string().min(1),
        issuer: z.string().min(1).exactOptional(),
        audiences: strings.exactOptional(),
        cacheMs: ms,
        negativeCacheMs: ms,
        timeoutMs: posInt,
        claims,
      }),
    ),
    trustedHeaders: z
      .strictObject({
        sourceAddresses: strings,
        sharedSecret: z
          .strictObject({ header: z.string().min(1), secretKey: z.string().min(1) })
          .exactOptional(),
        headers: z.strictObject({
          subject: z.string().min(1),
          tenant: z.string().min(1),
          tier: z.string().min(1),
          roles: z.string().min(1),
        }),
      })
      .exactOptional(),
  }),
  anonymous: z.strictObject({
    tenant: z.string().min(1),
    tier: z.string().min(1).exactOptional(),
  }),
  defaultAuthorization: snapshotAuthorizationSchema.exactOptional(),
  defaultTier: z.string().min(1).exactOptional(),
  tiers: z.array(z.strictObject({ name: z.string().min(1), ...limitSetFields })),
  rateLimit: z.strictObject({
    backend: z.enum(['local', 'redis']),
    redis: z
      .strictObject({
        address: z.string().min(1),
        passwordSecretKey: z.string().min(1).exactOptional(),
        db: z.number().int().min(0),
        cluster: z.boolean(),
        keyPrefix: z.string(),
        timeoutMs: posInt,
      })
      .exactOptional(),
    failureMode: z.enum(['open', 'closed']),
    outputReservation: z.strictObject({ default: posInt, max: posInt }),
    streamUsage: z.boolean(),
    tokenizers: z.array(
      z.strictObject({
        match: stringMatch,
        tiktoken: z.string().min(1).exactOptional(),
        file: z.string().min(1).exactOptional(),
        charsPerToken: z.number().positive().exactOptional(),
      }),
    ),
  }),
}) satisfies z.ZodType<SnapshotPolicy>
