// ExternalModelProvider (`networking.matrixinfer.ai/v1alpha1`): a public AI service a ModelRoute
// can send traffic to, next to or instead of self-hosted ModelServers. Kthena's fields
// (`providerType`, `model`, `baseURL`, `insecureSkipVerify`, `auth.{scheme,secretRef}`, `headers`)
// keep their meaning; ours add provider types beyond OpenAI/Anthropic, per-type settings (Azure
// deployment + api-version, Hugging Face router vs TGI, Anthropic version and default max_tokens,
// Gemini API version), an explicit opt-in for plain-http base URLs, pricing for cost estimates and
// the same traffic policy (timeouts, retries) ModelServers have.
//
// Secret values never appear here or in the snapshot: `auth.secretRef` names a Secret key, and the
// snapshot carries the file name under which the data plane finds it (see `secretFileName`).

import { BlockList, isIP } from 'node:net'
import { z } from 'zod'
import { canonicalJson, sha256Hex } from './canonical-json.js'
import { DurationError, parseDuration } from './duration.js'
import {
  crdJsonSchema,
  type JsonSchema,
  objectMetaSchema,
  ROUTING_API_VERSIONS,
  trafficPolicySchema,
} from './schema.js'
import { conditionSchema } from './status.js'
import {
  formatPath,
  type PathSegment,
  type ValidationIssue,
  type ValidationResult,
  validateWith,
} from './validate.js'

/** Kthena has OpenAI and Anthropic; the others are ours. */
export const PROVIDER_TYPES = [
  'OpenAI',
  'AzureOpenAI',
  'DeepSeek',
  'HuggingFace',
  'Gemini',
  'Anthropic',
  'OpenAICompatible',
] as const
export type ProviderTypeName = (typeof PROVIDER_TYPES)[number]

/** `Bearer`: `Authorization: Bearer <key>`; `APIKey`: the bare key in the provider's key header. */
export const AUTH_SCHEMES = ['Bearer', 'APIKey'] as const
export const HUGGING_FACE_APIS = ['Router', 'TGI'] as const
export const GEMINI_API_VERSIONS = ['v1beta', 'v1'] as const

/**
 * Headers a static `headers` entry may not set, compared case-insensitively: credentials (they
 * come from `auth.secretRef` only), hop-by-hop and framing headers the gateway owns, and the
 * request id the gateway sets itself.
 */
export const RESERVED_PROVIDER_HEADERS: ReadonlySet<string> = new Set([
  'authorization',
  'proxy-authorization',
  'cookie',
  'set-cookie',
  'x-api-key',
  'api-key',
  'x-goog-api-key',
  'host',
  'content-length',
  'content-type',
  'content-encoding',
  'transfer-encoding',
  'connection',
  'keep-alive',
  'te',
  'trailer',
  'upgrade',
  'proxy-connection',
  'expect',
  'x-request-id',
])

/** Where each type lives when `baseURL` is left out (types without one require it). */
export const DEFAULT_BASE_URLS: Readonly<Partial<Record<ProviderTypeName, string>>> = {
  OpenAI: 'https://api.openai.com/v1',
  DeepSeek: 'https://api.deepseek.com',
  Gemini: 'https://generativelanguage.googleapis.com',
  Anthropic: 'https://api.anthropic.com',
}
export const HUGGING_FACE_ROUTER_URL = 'https://router.huggingface.co/v1'

/** Header and scheme each type uses for its key unless `auth` says otherwise. */
export const DEFAULT_AUTH: Readonly<
  Record<ProviderTypeName, { scheme: (typeof AUTH_SCHEMES)[number]; apiKeyHeader: string }>
> = {
  OpenAI: { scheme: 'Bearer', apiKeyHeader: 'x-api-key' },
  AzureOpenAI: { scheme: 'APIKey', apiKeyHeader: 'api-key' },
  DeepSeek: { scheme: 'Bearer', apiKeyHeader: 'x-api-key' },
  HuggingFace: { scheme: 'Bearer', apiKeyHeader: 'x-api-key' },
  Gemini: { scheme: 'APIKey', apiKeyHeader: 'x-goog-api-key' },
  Anthropic: { scheme: 'APIKey', apiKeyHeader: 'x-api-key' },
  OpenAICompatible: { scheme: 'Bearer', apiKeyHeader: 'x-api-key' },
}

/** Azure OpenAI's current GA data-plane version. */
export const DEFAULT_AZURE_API_VERSION = '2024-10-21'
export const DEFAULT_ANTHROPIC_VERSION = '2023-06-01'
/** Anthropic requires max_tokens; OpenAI clients usually leave it out. */
export const DEFAULT_ANTHROPIC_MAX_TOKENS = 4096

function oneOf(values: readonly string[]) {
  return {
    error: (iss: { input?: unknown }) =>
      iss.input === undefined ? undefined : `must be one of ${values.join(', ')}`,
  }
}

const nonEmpty = z.string().min(1, { error: 'must not be empty' })
const HEADER_TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/
const headerName = z.string().regex(HEADER_TOKEN, { error: 'must be an HTTP header name' })
/** Kubernetes Secret data keys. */
const secretKeyName = z.string().regex(/^[-._a-zA-Z0-9]{1,253}$/, {
  error: 'must be a Secret key (letters, digits, "-", "_", ".")',
})
/** A price as a decimal string (CRDs avoid floats): "0.15", "3", "15.00". */
const decimal = z
  .string()
  .regex(/^\d{1,9}(\.\d{1,9})?$/, { error: 'must be a decimal number as a string, e.g. "0.15"' })

export const providerAuthSchema = z.strictObject({
  /** Default per type: Bearer for OpenAI-style APIs, APIKey for Azure, Anthropic and Gemini. */
  scheme: z.enum(AUTH_SCHEMES, oneOf(AUTH_SCHEMES)).optional(),
  /** Ours: header for the APIKey scheme (default per type: api-key, x-api-key, x-goog-api-key). */
  header: headerName.optional(),
  /** corev1.SecretKeySelector in the provider's namespace. */
  secretRef: z
    .strictObject({
      name: nonEmpty.max(253, { error: 'must be at most 253 characters' }),
      key: secretKeyName,
      optional: z.boolean().optional(),
    })
    .meta({
      'x-kubernetes-validations': [
        {
          rule: '!has(self.optional) || !self.optional',
          message: 'secretRef.optional must be false or unset',
        },
      ],
    }),
})

export const providerPricingSchema = z.strictObject({
  /** Price of 1M input (prompt) tokens. */
  inputPerMillion: decimal,
  /** Price of 1M output (completion) tokens. */
  outputPerMillion: decimal,
  /** Price of 1M input tokens served from the provider's prompt cache (default: inputPerMillion). */
  cachedInputPerMillion: decimal.optional(),
  /** ISO 4217 code, only a label on the cost metric (default USD). */
  currency: z
    .string()
    .regex(/^[A-Z]{3}$/, { error: 'must be a 3-letter currency code' })
    .optional(),
})

export const externalModelProviderSpecSchema = z
  .strictObject({
    providerType: z.enum(PROVIDER_TYPES, oneOf(PROVIDER_TYPES)).default('OpenAI'),
    /** Replaces the request's `model` (Azure: informational, the deployment decides). */
    model: z.string().max(256, { error: 'must be at most 256 characters' }).optional(),
    /**
     * The API root as the provider's own SDK takes it (OpenAI-style: ends in /v1; Anthropic and
     * Gemini: the host; Azure: https://<resource>.openai.azure.com). Required for AzureOpenAI,
     * OpenAICompatible and HuggingFace TGI; the others default to the public endpoint.
     */
    baseURL: z.string().max(2048, { error: 'must be at most 2048 characters' }).optional(),
    /** Ours: allow an http:// baseURL (local testing, an in-cluster sidecar). Never for the internet. */
    allowInsecureHTTP: z.boolean().default(false),
    insecureSkipVerify: z.boolean().default(false),
    auth: providerAuthSchema.optional(),
    /** Static, non-secret headers added to every upstream request. */
    headers: z.record(z.string(), z.string()).optional(),
    azure: z
      .strictObject({
        deployment: nonEmpty.max(256, { error: 'must be at most 256 characters' }),
        apiVersion: z
          .string()
          .regex(/^\d{4}-\d{2}-\d{2}(-preview)?$/, {
            error: 'must be an api-version like 2024-10-21 or 2025-04-01-preview',
          })
          .optional(),
      })
      .optional(),
    huggingFace: z
      .strictObject({
        /** Router: the Inference Providers router; TGI: a dedicated (TGI) Inference Endpoint. */
        api: z.enum(HUGGING_FACE_APIS, oneOf(HUGGING_FACE_APIS)),
      })
      .optional(),
    anthropic: z
      .strictObject({
        /** `anthropic-version` header (default 2023-06-01). */
        version: nonEmpty.max(64).optional(),
        /** max_tokens sent when the client gives none (Anthropic requires one). */
        defaultMaxTokens: z
          .number()
          .int({ error: 'must be 1..1000000' })
          .min(1, { error: 'must be 1..1000000' })
          .max(1_000_000, { error: 'must be 1..1000000' })
          .optional(),
      })
      .optional(),
    gemini: z
      .strictObject({
        apiVersion: z.enum(GEMINI_API_VERSIONS, oneOf(GEMINI_API_VERSIONS)).optional(),
      })
      .optional(),
    pricing: providerPricingSchema.optional(),
    /** Same meaning as on a ModelServer; retries stay on this provider, fallback moves on. */
    trafficPolicy: trafficPolicySchema.optional(),
  })
  .meta({
    'x-kubernetes-validations': [
      {
        rule: "!has(self.baseURL) || self.baseURL.startsWith('https://') || (has(self.allowInsecureHTTP) && self.allowInsecureHTTP && self.baseURL.startsWith('http://'))",
        message: 'baseURL must be https:// (http:// only with allowInsecureHTTP: true)',
      },
      {
        rule: "!has(self.azure) || self.providerType == 'AzureOpenAI'",
        message: 'azure is only valid with providerType AzureOpenAI',
      },
    ],
  })
export type ExternalModelProviderSpec = z.infer<typeof externalModelProviderSpecSchema>

export const externalModelProviderSchema = z.looseObject({
  apiVersion: z.enum(ROUTING_API_VERSIONS, oneOf(ROUTING_API_VERSIONS)).optional(),
  kind: z.literal('ExternalModelProvider', oneOf(['ExternalModelProvider'])).optional(),
  metadata: objectMetaSchema,
  spec: externalModelProviderSpecSchema,
  status: z.record(z.string(), z.unknown()).optional(),
})
export type ExternalModelProvider = z.infer<typeof externalModelProviderSchema>

// ---------------------------------------------------------------------------------------------
// status (written by the operator)

export const PROVIDER_CONDITION_TYPES = {
  /** Valid, credentials resolved, taken into the snapshot: traffic can be sent to it. */
  ready: 'Ready',
  /** The referenced Secret and key exist (True also when no auth is configured). */
  credentialsResolved: 'CredentialsResolved',
} as const

/** Reasons for the two conditions (CamelCase, stable). */
export const PROVIDER_CONDITION_REASONS = {
  ready: 'Ready',
  invalid: 'Invalid',
  credentialsNotResolved: 'CredentialsNotResolved',
  secretResolved: 'SecretResolved',
  noCredentialsRequired: 'NoCredentialsRequired',
  secretNotFound: 'SecretNotFound',
  secretKeyNotFound: 'SecretKeyNotFound',
  secretValueInvalid: 'SecretValueInvalid',
} as const

export const externalModelProviderStatusSchema = z.object({
  observedGeneration: z.number().int().min(0).optional(),
  conditions: z.array(conditionSchema).optional(),
  /** Version of the snapshot that last included this object. */
  snapshotVersion: z.number().int().min(0).optional(),
})
export type ExternalModelProviderStatus = z.infer<typeof externalModelProviderStatusSchema>

export const PROVIDER_PRINTER_COLUMNS = [
  { name: 'Type', type: 'string', jsonPath: '.spec.providerType' },
  { name: 'Model', type: 'string', jsonPath: '.spec.model' },
  { name: 'Ready', type: 'string', jsonPath: '.status.conditions[?(@.type=="Ready")].status' },
  { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
] as const

/** JSON Schema (OpenAPI 3.0 flavour) of `ExternalModelProvider.spec` for the CRD. */
export function externalModelProviderJsonSchema(): JsonSchema {
  return crdJsonSchema(externalModelProviderSpecSchema)
}

export function externalModelProviderStatusJsonSchema(): Record<string, unknown> {
  return z.toJSONSchema(externalModelProviderStatusSchema, { target: 'openapi-3.0' }) as Record<
    string,
    unknown
  >
}

// ---------------------------------------------------------------------------------------------
// semantic checks

/** Types that have no public default endpoint. */
function needsBaseURL(spec: ExternalModelProviderSpec): boolean {
  return (
    spec.providerType === 'AzureOpenAI' ||
    spec.providerType === 'OpenAICompatible' ||
    (spec.providerType === 'HuggingFace' && spec.huggingFace?.api === 'TGI')
  )
}

const TYPE_BLOCKS: readonly [keyof ExternalModelProviderSpec, ProviderTypeName][] = [
  ['azure', 'AzureOpenAI'],
  ['huggingFace', 'HuggingFace'],
  ['anthropic', 'Anthropic'],
  ['gemini', 'Gemini'],
]

function checkProvider(p: ExternalModelProvider): ValidationIssue[] {
  const out: ValidationIssue[] = []
  const spec = p.spec
  const at = (...path: PathSegment[]) => formatPath(['spec', ...path])
  if (spec.baseURL === undefined) {
    if (needsBaseURL(spec)) {
      out.push({
        path: at('baseURL'),
        message: `is required for providerType ${spec.providerType}${spec.providerType === 'HuggingFace' ? ' with huggingFace.api TGI' : ''}`,
        code: 'REQUIRED',
      })
    }
  } else {
    checkBaseURL(spec, at('baseURL'), out)
  }
  for (const [field, type] of TYPE_BLOCKS) {
    if (spec[field] !== undefined && spec.providerType !== type) {
      out.push({
        path: at(field),
        message: `is only valid with providerType ${type}`,
        code: 'FIELD_NOT_ALLOWED',
      })
    }
  }
  if (spec.providerType === 'AzureOpenAI' && spec.azure === undefined) {
    out.push({
      path: at('azure'),
      message: 'is required for providerType AzureOpenAI (deployment)',
      code: 'REQUIRED',
    })
  }
  const auth = spec.auth
  if (auth !== undefined) {
    if (auth.secretRef.optional === true) {
      out.push({
        path: at('auth', 'secretRef', 'optional'),
        message: 'must be false or unset: a missing credential must not silently send no key',
        code: 'FIELD_NOT_ALLOWED',
      })
    }
    const scheme = auth.scheme ?? DEFAULT_AUTH[spec.providerType].scheme
    if (auth.header !== undefined) {
      if (scheme !== 'APIKey') {
        out.push({
          path: at('auth', 'header'),
          message: 'is only valid with scheme APIKey (Bearer always uses Authorization)',
          code: 'FIELD_NOT_ALLOWED',
        })
      } else if (HOP_OR_FRAMING.has(auth.header.toLowerCase())) {
        out.push({
          path: at('auth', 'header'),
          message: `"${auth.header}" cannot carry a credential`,
          code: 'RESERVED_HEADER',
        })
      }
    }
  }
  for (const [name, value] of Object.entries(spec.headers ?? {})) {
    const path = at('headers', name)
    if (!HEADER_TOKEN.test(name)) {
      out.push({ path, message: `invalid header name "${name}"`, code: 'INVALID_HEADER_NAME' })
    } else if (RESERVED_PROVIDER_HEADERS.has(name.toLowerCase())) {
      out.push({
        path,
        message: `"${name}" is reserved: credentials come from auth.secretRef, framing and request id from the gateway`,
        code: 'RESERVED_HEADER',
      })
    }
    // CR/LF would split the header (request smuggling); other controls are rejected by HTTP stacks.
    // biome-ignore lint/suspicious/noControlCharactersInRegex: that is exactly what is checked
    if (/[\u0000-\u0008\u000a-\u001f\u007f]/.test(value)) {
      out.push({
        path,
        message: 'must not contain control characters (CR, LF, NUL, …)',
        code: 'INVALID_HEADER_VALUE',
      })
    }
  }
  const tp = spec.trafficPolicy
  if (tp !== undefined) {
    const durations: [PathSegment[], string | undefined][] = [
      [['timeout'], tp.timeout],
      [['timeouts', 'connect'], tp.timeouts?.connect],
      [['timeouts', 'responseHeader'], tp.timeouts?.responseHeader],
      [['timeouts', 'idle'], tp.timeouts?.idle],
      [['timeouts', 'request'], tp.timeouts?.request],
      [['retry', 'retryInterval'], tp.retry?.retryInterval],
      [['retry', 'maxRetryInterval'], tp.retry?.maxRetryInterval],
    ]
    for (const [sub, value] of durations) {
      if (value === undefined) continue
      try {
        parseDuration(value)
      } catch (err) {
        if (!(err instanceof DurationError)) throw err
        out.push({
          path: at('trafficPolicy', ...sub),
          message: err.message,
          code: 'INVALID_DURATION',
        })
      }
    }
  }
  return out
}

/** Never a credential carrier, even when a user names it as the APIKey header. */
const HOP_OR_FRAMING = new Set([
  'host',
  'content-length',
  'content-type',
  'content-encoding',
  'transfer-encoding',
  'connection',
  'keep-alive',
  'te',
  'trailer',
  'upgrade',
  'proxy-connection',
  'expect',
  'cookie',
  'set-cookie',
  'x-request-id',
])

function checkBaseURL(spec: ExternalModelProviderSpec, path: string, out: ValidationIssue[]): void {
  const raw = spec.baseURL ?? ''
  if (!URL.canParse(raw)) {
    out.push({ path, message: 'must be an absolute URL', code: 'INVALID_URL' })
    return
  }
  const u = new URL(raw)
  if (u.protocol === 'http:') {
    if (!spec.allowInsecureHTTP) {
      out.push({
        path,
        message:
          'must be https:// (set allowInsecureHTTP: true to allow http:// for local testing)',
        code: 'INSECURE_URL',
      })
    } else if (spec.insecureSkipVerify) {
      out.push({
        path: formatPath(['spec', 'insecureSkipVerify']),
        message: 'only applies to https:// base URLs',
        code: 'FIELD_NOT_ALLOWED',
      })
    }
  } else if (u.protocol !== 'https:') {
    out.push({ path, message: 'must be an https:// URL', code: 'INVALID_URL' })
  }
  // Userinfo would be a credential outside the Secret; query and fragment would be silently
  // combined with the paths the adapters append.
  if (u.username !== '' || u.password !== '') {
    out.push({ path, message: 'must not contain user:password@', code: 'INVALID_URL' })
  }
  if (u.search !== '' || raw.includes('?')) {
    out.push({ path, message: 'must not contain a query string', code: 'INVALID_URL' })
  }
  if (u.hash !== '' || raw.includes('#')) {
    out.push({ path, message: 'must not contain a fragment', code: 'INVALID_URL' })
  }
}

export function validateExternalModelProvider(
  obj: unknown,
): ValidationResult<ExternalModelProvider> {
  const r = validateWith(externalModelProviderSchema, obj)
  if (!r.ok) return r
  const issues = checkProvider(r.value)
  return issues.length === 0 ? r : { ok: false, issues }
}

// ---------------------------------------------------------------------------------------------
// helpers shared by the compiler, the operator and the data plane

/**
 * Addresses a provider baseURL may not name unless the data plane allows it explicitly
 * (`--allow-private-provider-addresses`, the compiler's `allowPrivateProviderAddresses`): loopback
 * (the gateway's own ports and sidecars), link-local (169.254.169.254 is every cloud's metadata
 * service, with the node's credentials) and "this host" (0.0.0.0/8 reaches loopback on Linux).
 * IPv4-mapped IPv6 forms are covered; the URL parser already normalizes decimal/hex IPv4 forms.
 * Only literal addresses and `localhost` names are checked: a DNS name is resolved later, by the
 * transport, and pointing one at these addresses is the DNS owner's decision.
 */
const PRIVATE_ADDRESSES = (() => {
  const b = new BlockList()
  b.addSubnet('127.0.0.0', 8, 'ipv4')
  b.addSubnet('169.254.0.0', 16, 'ipv4')
  b.addSubnet('0.0.0.0', 8, 'ipv4')
  b.addAddress('::1', 'ipv6')
  b.addAddress('::', 'ipv6')
  b.addSubnet('fe80::', 10, 'ipv6')
  return b
})()

/** Why `baseURL` points at a loopback/link-local address, or undefined when it does not. */
export function privateAddressProblem(baseURL: string): string | undefined {
  if (!URL.canParse(baseURL)) return undefined
  const host = new URL(baseURL).hostname
    .replace(/^\[|\]$/g, '')
    .replace(/\.+$/, '')
    .toLowerCase()
  if (host === 'localhost' || host.endsWith('.localhost')) return `"${host}" is loopback`
  const family = isIP(host)
  if (family === 0) return undefined
  if (PRIVATE_ADDRESSES.check(host, family === 4 ? 'ipv4' : 'ipv6'))
    return `${host} is a loopback or link-local address`
  return undefined
}

/** The effective base URL: given or the type's public default; no trailing slash. */
export function effectiveBaseURL(spec: ExternalModelProviderSpec): string | undefined {
  const base =
    spec.baseURL ??
    (spec.providerType === 'HuggingFace'
      ? spec.huggingFace?.api === 'TGI'
        ? undefined
        : HUGGING_FACE_ROUTER_URL
      : DEFAULT_BASE_URLS[spec.providerType])
  return base?.replace(/\/+$/, '')
}

/**
 * Name of the file (an entry of the data plane's mounted credentials Secret; standalone: a file in
 * `--secrets-dir`) that holds the provider's key. Namespaces and Secret names cannot contain "_",
 * so the name is unambiguous; names too long for a Secret key fall back to a hash.
 */
export function secretFileName(namespace: string, secretName: string, key: string): string {
  const plain = `provider_${namespace}_${secretName}_${key}`
  if (plain.length <= 253) return plain
  return `provider_${sha256Hex(canonicalJson([namespace, secretName, key])).slice(0, 48)}`
}
