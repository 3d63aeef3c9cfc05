// GatewayPolicy (ours, `networking.matrixinfer.ai/v1alpha1`): the gateway-wide half of
// authentication and rate limiting. It says where identities come from (API keys, JWT issuers,
// OAuth2 introspection, a trusted proxy's headers), which tiers exist and what each may use, the
// defaults for routes that say nothing, and where global counters live. Per-route authorization and
// per route × tier limits sit on the ModelRoute (limits-schema.ts).
//
// Secret values never appear here: every secret is an entry name (`secretKey`) of the credentials
// Secret (`spec.credentialsSecretName`), which reaches the data plane as mounted files.

import { isIP } from 'node:net'
import { z } from 'zod'
import { DurationError, parseDuration } from './duration.js'
import {
  budgetEntrySchema,
  limitSetFields,
  rateEntrySchema,
  routeAuthorizationSchema,
  tierNameSchema,
} from './limits-schema.js'
import { regexProblem } from './regex.js'
import { API_VERSION, durationSchema, objectMetaSchema } from './schema.js'
import {
  formatPath,
  type PathSegment,
  type ValidationIssue,
  type ValidationResult,
  validateWith,
} from './validate.js'

/** Kubernetes Secret data keys: what a file name in the mounted Secret can be. */
export const SECRET_KEY_PATTERN = /^[-._a-zA-Z0-9]{1,253}$/
const secretKey = z.string().regex(SECRET_KEY_PATTERN, {
  error: 'must be a Secret key (letters, digits, "-", "_", ".")',
})

function oneOf(values: readonly string[]) {
  return {
    error: (iss: { input?: unknown }) =>
      iss.input === undefined ? undefined : `must be one of ${values.join(', ')}`,
  }
}

const nonEmpty = z.string().min(1, { error: 'must not be empty' })
const httpUrl = z
  .string()
  .refine((s) => /^https?:\/\//.test(s) && URL.canParse(s), { error: 'must be an http(s) URL' })
const headerName = z.string().regex(/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/, {
  error: 'must be an HTTP header name',
})

/** Asymmetric JWS algorithms only: HMAC keys would be secrets, and mixing them invites confusion. */
export const JWT_ALGORITHMS = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
] as const
export const TIKTOKEN_ENCODINGS = ['cl100k_base', 'o200k_base', 'p50k_base', 'r50k_base'] as const

const claimsSchema = z.strictObject({
  /** Claim for the subject (default `sub`). Dotted paths reach nested claims. */
  subject: nonEmpty.optional(),
  tenant: nonEmpty.optional(),
  tier: nonEmpty.optional(),
  /** An array claim or a space-separated string (like `scope`). */
  roles: nonEmpty.optional(),
})
export type ClaimsSpec = z.infer<typeof claimsSchema>

const stringMatchSchema = z
  .strictObject({
    exact: z.string().optional(),
    prefix: z.string().optional(),
    regex: z.string().optional(),
  })
  .refine((m) => [m.exact, m.prefix, m.regex].filter((v) => v !== undefined).length === 1, {
    error: 'exactly one of exact, prefix or regex must be set',
  })

export const apiKeySchema = z.strictObject({
  /** Key id, shown in logs and used as the caller's subject. */
  name: tierNameSchema,
  /** Entry of the credentials Secret holding the lowercase hex sha256 of the key. */
  secretKey,
  tenant: nonEmpty,
  tier: tierNameSchema.optional(),
  /** Models the key may call (as the client names them); absent = every model. */
  models: z.array(nonEmpty).max(256).optional(),
  roles: z.array(nonEmpty).max(64).optional(),
  /** Revokes the key without deleting its entry. */
  disabled: z.boolean().optional(),
})

export const jwtProviderSchema = z.strictObject({
  name: tierNameSchema,
  /** Must equal the token's `iss`. */
  issuer: nonEmpty,
  /** The token's `aud` must contain one of these. */
  audiences: z.array(nonEmpty).min(1, { error: 'must have at least one audience' }),
  /** Exactly one of jwksUri, jwks (inline public keys) or discovery. */
  jwksUri: httpUrl.optional(),
  jwks: z.strictObject({ keys: z.array(z.record(z.string(), z.unknown())).min(1) }).optional(),
  discovery: z.boolean().optional(),
  algorithms: z
    .array(z.enum(JWT_ALGORITHMS, oneOf(JWT_ALGORITHMS)))
    .min(1)
    .optional(),
  /** Allowed clock difference for exp/nbf/iat (default 30s, at most 5m). */
  clockSkew: durationSchema.optional(),
  /** Reject tokens whose `iat` is older than this. */
  maxTokenAge: durationSchema.optional(),
  claims: claimsSchema.optional(),
  /** How long fetched keys are used before a refresh (default 10m). */
  jwksCacheDuration: durationSchema.optional(),
  /** Least time between two fetches triggered by unknown `kid`s (default 30s). */
  jwksRefetchCooldown: durationSchema.optional(),
  timeout: durationSchema.optional(),
})

export const introspectionSchema = z.strictObject({
  name: tierNameSchema,
  /** RFC 7662 endpoint; the gateway authenticates with client_secret_basic. */
  introspectionUrl: httpUrl,
  clientId: nonEmpty,
  clientSecretKey: secretKey,
  /** When set, the response's `iss` must equal it. */
  issuer: nonEmpty.optional(),
  /** When set, the response's `aud` must contain one of them. */
  audiences: z.array(nonEmpty).optional(),
  /** Upper bound for caching an active token; never past its `exp` (default 5m). */
  cacheDuration: durationSchema.optional(),
  /** How long an inactive answer is remembered (default 10s). */
  negativeCacheDuration: durationSchema.optional(),
  timeout: durationSchema.optional(),
  claims: claimsSchema.optional(),
})

export const trustedHeadersSchema = z.strictObject({
  /** Peers (CIDR) allowed to assert identity headers. */
  sourceAddresses: z.array(nonEmpty).max(256).optional(),
  /** A header carrying a secret only the trusted proxy knows. */
  sharedSecret: z.strictObject({ header: headerName, secretKey }).optional(),
  headers: z
    .strictObject({
      subject: headerName.optional(),
      tenant: headerName.optional(),
      tier: headerName.optional(),
      roles: headerName.optional(),
    })
    .optional(),
})

export const tierSchema = z.strictObject({ name: tierNameSchema, ...limitSetFields })

const rateLimitConfigSchema = z.strictObject({
  /** `local`: counters in each data-plane process; `redis`: shared by all replicas. */
  backend: z.enum(['local', 'redis'], oneOf(['local', 'redis'])).optional(),
  redis: z
    .strictObject({
      /** host:port */
      address: nonEmpty,
      passwordSecretKey: secretKey.optional(),
      db: z.number().int().min(0).max(15).optional(),
      /** Talk Redis Cluster (keys carry hash tags either way). */
      cluster: z.boolean().optional(),
      keyPrefix: z
        .string()
        .regex(/^[-_:.a-zA-Z0-9]*$/, { error: 'must be letters, digits, "-", "_", ":", "."' })
        .optional(),
      /** Per command (default 100ms); a slower answer counts as a failure. */
      timeout: durationSchema.optional(),
    })
    .optional(),
  /** When Redis cannot answer: `open` admits (and charges later), `closed` answers 503. */
  failureMode: z.enum(['open', 'closed'], oneOf(['open', 'closed'])).optional(),
  outputTokens: z
    .strictObject({
      /** Reserved when a request sets no max_tokens (default 1024). */
      defaultReservation: z.number().int().min(1).optional(),
      /** The most reserved for one request (default 32768). */
      maxReservation: z.number().int().min(1).optional(),
    })
    .optional(),
  /** Ask engines for stream usage so streams settle exactly (default true). */
  streamUsage: z.boolean().optional(),
  tokenizers: z
    .array(
      z.strictObject({
        models: stringMatchSchema,
        tiktoken: z.enum(TIKTOKEN_ENCODINGS, oneOf(TIKTOKEN_ENCODINGS)).optional(),
        /** Path of a Hugging Face tokenizer.json on the data plane. */
        file: nonEmpty.optional(),
        /** Calibrated estimate for models without a tokenizer. */
        charsPerToken: z.number().min(0.5).max(16).optional(),
      }),
    )
    .max(64)
    .optional(),
})

export const gatewayPolicySpecSchema = z.strictObject({
  /** Secret (same namespace) holding every `secretKey` entry (default infer-gateway-credentials). */
  credentialsSecretName: z.string().max(253).optional(),
  authentication: z
    .strictObject({
      apiKeys: z.array(apiKeySchema).max(10_000).optional(),
      jwt: z.array(jwtProviderSchema).max(16).optional(),
      oauth2: z.array(introspectionSchema).max(16).optional(),
      trustedHeaders: trustedHeadersSchema.optional(),
    })
    .optional(),
  /** Identity of callers without credentials, on routes that allow them. */
  anonymous: z
    .strictObject({ tenant: nonEmpty.optional(), tier: tierNameSchema.optional() })
    .optional(),
  defaults: z.strictObject({ authorization: routeAuthorizationSchema.optional() }).optional(),
  /** Tier of identities that name none, or one this policy does not define. */
  defaultTier: tierNameSchema.optional(),
  tiers: z.array(tierSchema).max(64).optional(),
  rateLimit: rateLimitConfigSchema.optional(),
})
export type GatewayPolicySpec = z.infer<typeof gatewayPolicySpecSchema>

export const gatewayPolicySchema = z.looseObject({
  apiVersion: z.literal(API_VERSION, oneOf([API_VERSION])).optional(),
  kind: z.literal('GatewayPolicy', oneOf(['GatewayPolicy'])).optional(),
  metadata: objectMetaSchema,
  spec: gatewayPolicySpecSchema,
  status: z.record(z.string(), z.unknown()).optional(),
})
export type GatewayPolicy = z.infer<typeof gatewayPolicySchema>

// Keep the entry schemas reachable for docs and CRD generation.
export { budgetEntrySchema, rateEntrySchema }

// ---------------------------------------------------------------------------------------------
// semantic checks

/** JWK members that only private or symmetric keys have. */
const PRIVATE_JWK_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k', 'oth'] as const

export function isCidr(s: string): boolean {
  const [addr, bits, extra] = s.split('/')
  if (addr === undefined || extra !== undefined) return false
  const family = isIP(addr)
  if (family === 0) return false
  if (bits === undefined) return true
  if (!/^\d{1,3}$/.test(bits)) return false
  return Number(bits) <= (family === 4 ? 32 : 128)
}

function checkPolicy(p: GatewayPolicy): ValidationIssue[] {
  const out: ValidationIssue[] = []
  const issue = (path: PathSegment[], message: string, code: string) =>
    out.push({ path: formatPath(['spec', ...path]), message, code })
  const spec = p.spec

  const durations: [PathSegment[], string | undefined, number?][] = []
  const tiers = new Set<string>()
  ;(spec.tiers ?? []).forEach((t, i) => {
    if (tiers.has(t.name))
      issue(['tiers', i, 'name'], `duplicate tier "${t.name}"`, 'DUPLICATE_NAME')
    tiers.add(t.name)
  })
  const needTier = (path: PathSegment[], tier: string | undefined) => {
    if (tier !== undefined && !tiers.has(tier))
      issue(path, `tier "${tier}" is not defined in spec.tiers`, 'UNKNOWN_TIER')
  }
  needTier(['defaultTier'], spec.defaultTier)
  needTier(['anonymous', 'tier'], spec.anonymous?.tier)

  const auth = spec.authentication ?? {}
  const keyNames = new Set<string>()
  const entries = new Map<string, string>()
  ;(auth.apiKeys ?? []).forEach((k, i) => {
    if (keyNames.has(k.name))
      issue(['authentication', 'apiKeys', i, 'name'], `duplicate key "${k.name}"`, 'DUPLICATE_NAME')
    keyNames.add(k.name)
    const other = entries.get(k.secretKey)
    if (other !== undefined) {
      issue(
        ['authentication', 'apiKeys', i, 'secretKey'],
        `entry "${k.secretKey}" is already used by key "${other}"`,
        'DUPLICATE_SECRET',
      )
    }
    entries.set(k.secretKey, k.name)
    needTier(['authentication', 'apiKeys', i, 'tier'], k.tier)
  })

  const providerNames = new Set<string>()
  const issuers = new Set<string>()
  ;(auth.jwt ?? []).forEach((j, i) => {
    const at: PathSegment[] = ['authentication', 'jwt', i]
    if (providerNames.has(j.name))
      issue([...at, 'name'], `duplicate provider "${j.name}"`, 'DUPLICATE_NAME')
    providerNames.add(j.name)
    // The unverified `iss` picks the provider, so two providers for one issuer are ambiguous.
    if (issuers.has(j.issuer))
      issue([...at, 'issuer'], `another provider has issuer "${j.issuer}"`, 'DUPLICATE_ISSUER')
    issuers.add(j.issuer)
    const sources = [j.jwksUri, j.jwks, j.discovery === true ? true : undefined].filter(
      (v) => v !== undefined,
    )
    if (sources.length !== 1)
      issue(at, 'exactly one of jwksUri, jwks or discovery must be set', 'JWKS_ONE_OF')
    if (j.discovery === true && !/^https?:\/\//.test(j.issuer))
      issue([...at, 'issuer'], 'must be an http(s) URL for discovery', 'INVALID_URL')
    j.jwks?.keys.forEach((k, ki) => {
      const priv = PRIVATE_JWK_MEMBERS.filter((m) => k[m] !== undefined)
      if (priv.length > 0) {
        issue(
          [...at, 'jwks', 'keys', ki],
          `must be a public key (has private member ${priv.join(', ')})`,
          'PRIVATE_KEY',
        )
      }
      if (typeof k['kty'] !== 'string')
        issue([...at, 'jwks', 'keys', ki, 'kty'], 'is required', 'REQUIRED')
      for (const [m, v] of Object.entries(k)) {
        const ok =
          typeof v === 'string' || (Array.isArray(v) && v.every((x) => typeof x === 'string'))
        if (!ok)
          issue(
            [...at, 'jwks', 'keys', ki, m],
            'must be a string or a list of strings',
            'INVALID_TYPE',
          )
      }
    })
    durations.push(
      [[...at, 'clockSkew'], j.clockSkew, 300_000],
      [[...at, 'maxTokenAge'], j.maxTokenAge],
      [[...at, 'jwksCacheDuration'], j.jwksCacheDuration],
      [[...at, 'jwksRefetchCooldown'], j.jwksRefetchCooldown],
      [[...at, 'timeout'], j.timeout],
    )
  })
  ;(auth.oauth2 ?? []).forEach((o, i) => {
    const at: PathSegment[] = ['authentication', 'oauth2', i]
    if (providerNames.has(o.name))
      issue([...at, 'name'], `duplicate provider "${o.name}"`, 'DUPLICATE_NAME')
    providerNames.add(o.name)
    durations.push(
      [[...at, 'cacheDuration'], o.cacheDuration],
      [[...at, 'negativeCacheDuration'], o.negativeCacheDuration],
      [[...at, 'timeout'], o.timeout],
    )
  })
  const th = auth.trustedHeaders
  if (th !== undefined) {
    if ((th.sourceAddresses ?? []).length === 0 && th.sharedSecret === undefined) {
      issue(
        ['authentication', 'trustedHeaders'],
        'sourceAddresses or sharedSecret must be set: identity headers need a trusted source',
        'UNTRUSTED_SOURCE',
      )
    }
    th.sourceAddresses?.forEach((a, i) => {
      if (!isCidr(a))
        issue(
          ['authentication', 'trustedHeaders', 'sourceAddresses', i],
          'must be an IP address or CIDR',
          'INVALID_CIDR',
        )
    })
  }

  const rl = spec.rateLimit
  if (rl?.backend === 'redis' && rl.redis === undefined)
    issue(['rateLimit', 'redis'], 'is required when backend is redis', 'REQUIRED')
  if (rl?.redis !== undefined && !/^[^:\s]+:\d{1,5}$/.test(rl.redis.address))
    issue(['rateLimit', 'redis', 'address'], 'must be host:port', 'INVALID_ADDRESS')
  durations.push([['rateLimit', 'redis', 'timeout'], rl?.redis?.timeout])
  const res = rl?.outputTokens
  if (
    res?.defaultReservation !== undefined &&
    res.maxReservation !== undefined &&
    res.defaultReservation > res.maxReservation
  ) {
    issue(
      ['rateLimit', 'outputTokens', 'defaultReservation'],
      'must not exceed maxReservation',
      'OUT_OF_RANGE',
    )
  }
  rl?.tokenizers?.forEach((t, i) => {
    const at: PathSegment[] = ['rateLimit', 'tokenizers', i]
    const set = [t.tiktoken, t.file, t.charsPerToken].filter((v) => v !== undefined)
    if (set.length !== 1)
      issue(at, 'exactly one of tiktoken, file or charsPerToken must be set', 'TOKENIZER_ONE_OF')
    if (t.models.regex !== undefined) {
      const why = regexProblem(t.models.regex)
      if (why !== undefined)
        issue([...at, 'models', 'regex'], `invalid regex (RE2 syntax): ${why}`, 'INVALID_REGEX')
    }
  })

  for (const [path, value, max] of durations) {
    if (value === undefined) continue
    try {
      const v = parseDuration(value)
      if (max !== undefined && v > max)
        issue(path, `must be at most ${max / 1000}s`, 'OUT_OF_RANGE')
    } catch (e) {
      if (!(e instanceof DurationError)) throw e
      issue(path, e.message, 'INVALID_DURATION')
    }
  }
  return out
}

export function validateGatewayPolicy(obj: unknown): ValidationResult<GatewayPolicy> {
  const r = validateWith(gatewayPolicySchema, obj)
  if (!r.ok) return r
  const issues = checkPolicy(r.value)
  return issues.length === 0 ? r : { ok: false, issues }
}

/** JSON Schema of `GatewayPolicy.spec` for the CRD (same generator options as the others). */
export function gatewayPolicyJsonSchema(): z.core.JSONSchema.JSONSchema {
  return z.toJSONSchema(gatewayPolicySpecSchema, {
    target: 'openapi-3.0',
    io: 'input',
    unrepresentable: 'any',
    override: ({ jsonSchema }) => {
      if (jsonSchema.additionalProperties === false) delete jsonSchema.additionalProperties
    },
  })
}
