// Public surface of api/: CRD schemas and types, validation, the snapshot contract, the pure
// compiler and the standalone manifest parser. Other folders import from here.

export type { JsonValue } from './canonical-json.js'
export { canonicalize, canonicalJson, sha256Hex } from './canonical-json.js'
export type { CompileInput, CompileResult, Diagnostic, EndpointInput } from './compile.js'
export { compileSnapshot, compileTrafficPolicy, DEFAULT_NAMESPACE } from './compile.js'
export * from './crd.js'
export { DURATION_PATTERN, DurationError, parseDuration } from './duration.js'
export * from './fallback-schema.js'
export * from './limits-schema.js'
export type { ManifestFile, ManifestIssue, ParsedManifests } from './manifest.js'
export { parseManifests, STANDALONE_API_VERSION } from './manifest.js'
export type { ClaimsSpec, GatewayPolicy, GatewayPolicySpec } from './policy.js'
export {
  gatewayPolicyJsonSchema,
  gatewayPolicySchema,
  JWT_ALGORITHMS,
  SECRET_KEY_PATTERN,
  TIKTOKEN_ENCODINGS,
  validateGatewayPolicy,
} from './policy.js'
export { compileLimits, compilePolicies, kthenaRateLimits } from './policy-compile.js'
export * from './provider.js'
export * from './schema.js'
export * from './snapshot.js'
export { SnapshotInvalidError, snapshotHash, validateSnapshot } from './snapshot-validate.js'
export * from './status.js'
export type { PathSegment, ValidationIssue, ValidationResult } from './validate.js'
export {
  formatIssue,
  formatPath,
  parsePath,
  validateModelRoute,
  validateModelServer,
  validateWith,
} from './validate.js'
