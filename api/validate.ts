// Validation of ModelRoute / ModelServer objects with field paths: the schema first (types,
// enums, bounds), then the semantic checks Kthena's validating webhook does, plus ours. Issues
// carry a path like `spec.rules[1].targetModels[0].weight` so the operator can put it in a
// status condition and the standalone loader can map it back to a line in a YAML file.

import type { z } from 'zod'
import { DurationError, parseDuration } from './duration.js'
import { regexProblem } from './regex.js'
import {
  type ModelRoute,
  type ModelServer,
  modelRouteSchema,
  modelServerSchema,
  type StringMatch,
} from './schema.js'

export interface ValidationIssue {
  /** e.g. `spec.rules[1].targetModels[0].weight`; keys that are not identifiers are `["x-y"]`. */
  path: string
  /** Short, lowercase, human: `must be 0..100`. */
  message: string
  /** Stable machine-readable code, e.g. `OUT_OF_RANGE`, `INVALID_REGEX`. */
  code: string
}

export type ValidationResult<T> = { ok: true; value: T } | { ok: false; issues: ValidationIssue[] }

export type PathSegment = string | number

const IDENT = /^[A-Za-z_$][\w$]*$/

/** `['spec','rules',1,'name']` → `spec.rules[1].name`. */
export function formatPath(segments: readonly PathSegment[]): string {
  let out = ''
  for (const seg of segments) {
    if (typeof seg === 'number') out += `[${seg}]`
    else if (IDENT.test(seg)) out += out === '' ? seg : `.${seg}`
    else out += `[${JSON.stringify(seg)}]`
  }
  return out
}

/** Inverse of `formatPath`, for callers that need to walk the path (e.g. into a YAML document). */
export function parsePath(path: string): PathSegment[] {
  const out: PathSegment[] = []
  const re = /\.?([A-Za-z_$][\w$]*)|\[(\d+)\]|\[("(?:[^"\\]|\\.)*")\]/gy
  let m: RegExpExecArray | null = re.exec(path)
  while (m !== null) {
    if (m[1] !== undefined) out.push(m[1])
    else if (m[2] !== undefined) out.push(Number(m[2]))
    else if (m[3] !== undefined) out.push(String(JSON.parse(m[3])))
    m = re.exec(path)
  }
  return out
}

export function formatIssue(i: ValidationIssue): string {
  return i.path === '' ? i.message : `${i.path}: ${i.message}`
}

// ---------------------------------------------------------------------------------------------
// schema issues

type ZodIssue = z.core.$ZodIssue

function describeType(v: unknown): string {
  if (v === null) return 'null'
  if (Array.isArray(v)) return 'a list'
  return typeof v === 'object' ? 'an object' : `a ${typeof v}`
}

const EXPECTED: Readonly<Record<string, string>> = {
  string: 'a string',
  number: 'a number',
  int: 'an integer',
  boolean: 'a boolean',
  object: 'an object',
  array: 'a list',
  record: 'an object',
}

/** Default wording for zod issues that the schema did not word itself. */
function errorMap(iss: z.core.$ZodRawIssue): string | undefined {
  // A missing required field shows up as a type or enum mismatch against `undefined`.
  if (iss.input === undefined && (iss.code === 'invalid_type' || iss.code === 'invalid_value')) {
    return 'is required'
  }
  switch (iss.code) {
    case 'invalid_type': {
      return `must be ${EXPECTED[iss.expected] ?? iss.expected}, not ${describeType(iss.input)}`
    }
    case 'too_small':
      if (iss.origin === 'string') return `must be at least ${iss.minimum} characters`
      if (iss.origin === 'array') return `must have at least ${iss.minimum} items`
      return `must be >= ${iss.minimum}`
    case 'too_big':
      if (iss.origin === 'string') return `must be at most ${iss.maximum} characters`
      if (iss.origin === 'array') return `must have at most ${iss.maximum} items`
      return `must be <= ${iss.maximum}`
    case 'invalid_value':
      return `must be one of ${iss.values.map(String).join(', ')}`
    case 'invalid_format':
      return 'has an invalid format'
    default:
      return undefined
  }
}

function codeOf(iss: ZodIssue): string {
  if (iss.message === 'is required') return 'REQUIRED'
  switch (iss.code) {
    case 'invalid_type':
      return 'INVALID_TYPE'
    case 'too_small':
    case 'too_big':
      return 'OUT_OF_RANGE'
    case 'invalid_value':
      return 'INVALID_VALUE'
    case 'invalid_format':
      return 'INVALID_FORMAT'
    case 'not_multiple_of':
      return 'OUT_OF_RANGE'
    default:
      return 'INVALID'
  }
}

function schemaIssues(error: z.core.$ZodError): ValidationIssue[] {
  const out: ValidationIssue[] = []
  for (const iss of error.issues) {
    const path = iss.path.filter((p): p is PathSegment => typeof p !== 'symbol')
    if (iss.code === 'unrecognized_keys') {
      // One issue per key, pointing at the key itself: that is where a typo is.
      for (const key of iss.keys) {
        out.push({
          path: formatPath([...path, key]),
          message: 'unknown field',
          code: 'UNKNOWN_FIELD',
        })
      }
      continue
    }
    // Number ranges come as int/min/max checks; an integer message for a fractional number is
    // the one the schema gave, so it reads the same as the bound.
    out.push({ path: formatPath(path), message: iss.message, code: codeOf(iss) })
  }
  return out
}

/** Schema-only validation with the same paths and wording, for documents beyond the CRDs. */
export function validateWith<T>(schema: z.ZodType<T>, obj: unknown): ValidationResult<T> {
  const r = schema.safeParse(obj, { error: errorMap })
  if (!r.success) return { ok: false, issues: schemaIssues(r.error) }
  return { ok: true, value: r.data }
}

// ---------------------------------------------------------------------------------------------
// semantic checks

/** RFC 9110 token: the characters an HTTP header name may use. */
const HEADER_TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/

function nonEmpty(s: string | undefined): s is string {
  return s !== undefined && s !== ''
}

function checkStringMatch(m: StringMatch, at: PathSegment[], out: ValidationIssue[]): void {
  const set = (['exact', 'prefix', 'regex'] as const).filter((k) => m[k] !== undefined)
  if (set.length !== 1) {
    out.push({
      path: formatPath(at),
      message: 'exactly one of exact, prefix or regex must be set',
      code: 'STRING_MATCH_ONE_OF',
    })
  }
  if (m.regex !== undefined) {
    // The data plane runs regexes on a linear-time engine (api/regex.ts): what it cannot compile
    // (backreferences, lookaround) is refused here, not at the first request.
    const why = regexProblem(m.regex)
    if (why !== undefined) {
      out.push({
        path: formatPath([...at, 'regex']),
        message: `invalid regex (RE2 syntax): ${why}`,
        code: 'INVALID_REGEX',
      })
    }
  }
}

function checkRoute(route: ModelRoute): ValidationIssue[] {
  const out: ValidationIssue[] = []
  const spec = route.spec
  const loras = spec.loraAdapters ?? []
  if (!nonEmpty(spec.modelName) && loras.length === 0) {
    out.push({
      path: 'spec',
      message: 'modelName or loraAdapters must be set',
      code: 'MODEL_NAME_REQUIRED',
    })
  }
  const seenLora = new Set<string>()
  loras.forEach((name, i) => {
    const at = formatPath(['spec', 'loraAdapters', i])
    if (name.trim() === '') {
      out.push({ path: at, message: 'must not be empty', code: 'EMPTY_LORA_NAME' })
    } else if (seenLora.has(name)) {
      out.push({ path: at, message: `duplicate lora adapter "${name}"`, code: 'DUPLICATE_LORA' })
    }
    seenLora.add(name)
  })

  const ruleNames = new Set<string>()
  spec.rules.forEach((rule, r) => {
    const rulePath: PathSegment[] = ['spec', 'rules', r]
    if (rule.name !== undefined) {
      if (ruleNames.has(rule.name)) {
        out.push({
          path: formatPath([...rulePath, 'name']),
          message: `duplicate rule name "${rule.name}"`,
          code: 'DUPLICATE_RULE_NAME',
        })
      }
      ruleNames.add(rule.name)
    }
    const match = rule.modelMatch
    if (match !== undefined) {
      for (const [header, m] of Object.entries(match.headers ?? {})) {
        const at = [...rulePath, 'modelMatch', 'headers', header]
        if (!HEADER_TOKEN.test(header)) {
          out.push({
            path: formatPath(at),
            message: `invalid header name "${header}"`,
            code: 'INVALID_HEADER_NAME',
          })
        }
        checkStringMatch(m, at, out)
      }
      if (match.uri !== undefined)
        checkStringMatch(match.uri, [...rulePath, 'modelMatch', 'uri'], out)
    }

    const targets = rule.targetModels
    targets.forEach((t, i) => {
      const at: PathSegment[] = [...rulePath, 'targetModels', i]
      const server = nonEmpty(t.modelServerName)
      const provider = nonEmpty(t.externalModelProviderName)
      const pool = nonEmpty(t.inferencePoolName)
      if ((server ? 1 : 0) + (provider ? 1 : 0) + (pool ? 1 : 0) !== 1) {
        out.push({
          path: formatPath(at),
          message:
            'exactly one of modelServerName or externalModelProviderName (or inferencePoolName) must be set',
          code: 'TARGET_ONE_OF',
        })
      } else if (provider && loras.length > 0) {
        // Providers cannot load adapters; Kthena's webhook rejects this too.
        out.push({
          path: formatPath([...at, 'externalModelProviderName']),
          message: 'lora routes must target a modelServerName',
          code: 'LORA_NEEDS_SERVER',
        })
      }
    })
    // Ours: fallback targets follow the same rules as targetModels (the one-of is in the schema).
    rule.fallback?.targets.forEach((t, i) => {
      if (nonEmpty(t.externalModelProviderName) && loras.length > 0) {
        out.push({
          path: formatPath([...rulePath, 'fallback', 'targets', i, 'externalModelProviderName']),
          message: 'lora routes must fall back to a modelServerName',
          code: 'LORA_NEEDS_SERVER',
        })
      }
    })
    // An unset weight is 100 (Kthena's default), so only all-zero rules cannot be picked.
    if (targets.every((t) => (t.weight ?? 100) === 0)) {
      out.push({
        path: formatPath([...rulePath, 'targetModels']),
        message: 'total weight must be greater than 0',
        code: 'WEIGHTS_ZERO',
      })
    }
  })
  return out
}

function checkServer(server: ModelServer): ValidationIssue[] {
  const out: ValidationIssue[] = []
  const tp = server.spec.trafficPolicy
  if (tp === undefined) return out
  const durations: [PathSegment[], string | undefined][] = [
    [['timeout'], tp.timeout],
    [['timeouts', 'connect'], tp.timeouts?.connect],
    [['timeouts', 'responseHeader'], tp.timeouts?.responseHeader],
    [['timeouts', 'idle'], tp.timeouts?.idle],
    [['timeouts', 'request'], tp.timeouts?.request],
    [['retry', 'retryInterval'], tp.retry?.retryInterval],
    [['retry', 'maxRetryInterval'], tp.retry?.maxRetryInterval],
  ]
  const ms = new Map<string, number>()
  for (const [sub, value] of durations) {
    if (value === undefined) continue
    const path = formatPath(['spec', 'trafficPolicy', ...sub])
    try {
      ms.set(path, parseDuration(value))
    } catch (err) {
      if (!(err instanceof DurationError)) throw err
      out.push({ path, message: err.message, code: 'INVALID_DURATION' })
    }
  }
  const interval = ms.get('spec.trafficPolicy.retry.retryInterval')
  const max = ms.get('spec.trafficPolicy.retry.maxRetryInterval')
  if (interval !== undefined && max !== undefined && max < interval) {
    out.push({
      path: 'spec.trafficPolicy.retry.maxRetryInterval',
      message: 'must not be less than retryInterval',
      code: 'OUT_OF_RANGE',
    })
  }
  return out
}

function withSemantics<T>(r: ValidationResult<T>, check: (v: T) => ValidationIssue[]) {
  if (!r.ok) return r
  const issues = check(r.value)
  return issues.length === 0 ? r : ({ ok: false, issues } as const)
}

export function validateModelRoute(obj: unknown): ValidationResult<ModelRoute> {
  return withSemantics(validateWith(modelRouteSchema, obj), checkRoute)
}

export function validateModelServer(obj: unknown): ValidationResult<ModelServer> {
  return withSemantics(validateWith(modelServerSchema, obj), checkServer)
}
