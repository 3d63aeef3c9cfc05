// Canonical JSON: object keys sorted, `undefined` members dropped. Every operator replica must
// turn the same inputs into byte-identical snapshot text, so nothing may depend on the order in
// which objects were built or arrived.

import { createHash } from 'node:crypto'

export type JsonValue = null | boolean | number | string | JsonValue[] | { [k: string]: JsonValue }

/** Deep copy with object keys in sorted order (so `JSON.stringify` of it is canonical). */
export function canonicalize(value: unknown): JsonValue {
  if (value === null || typeof value === 'boolean' || typeof value === 'string') return value
  if (typeof value === 'number') {
    // JSON has no NaN/Infinity; failing loudly beats a silently different hash.
    if (!Number.isFinite(value))
      throw new TypeError(`cannot canonicalize non-finite number ${value}`)
    return value
  }
  if (Array.isArray(value)) return value.map((v) => (v === undefined ? null : canonicalize(v)))
  if (typeof value === 'object') {
    const out: { [k: string]: JsonValue } = {}
    const obj = value as Record<string, unknown>
    for (const key of Object.keys(obj).sort()) {
      const v = obj[key]
      if (v !== undefined) out[key] = canonicalize(v)
    }
    return out
  }
  throw new TypeError(`cannot canonicalize a ${typeof value}`)
}

/**
 * `canonicalize` for values that are already plain JSON data of type T: same shape, sorted keys.
 * The cast is sound because canonicalize only reorders keys and drops `undefined` members.
 */
export function canonicalCopy<T>(value: T): T {
  return canonicalize(value) as T
}

export function canonicalJson(value: unknown): string {
  return JSON.stringify(canonicalize(value))
}

export function sha256Hex(text: string): string {
  return createHash('sha256').update(text).digest('hex')
}
