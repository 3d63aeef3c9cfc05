// Reads a request body with a hard byte limit, so a client cannot make the gateway buffer an
// unbounded upload (Kthena reads bodies without any limit).
import { errors } from './errors.js'

export async function readBodyLimited(req: Request, limit: number): Promise<Uint8Array> {
  const declared = req.headers.get('content-length')
  if (declared !== null && Number(declared) > limit) throw errors.bodyTooLarge(limit)
  if (!req.body) return new Uint8Array(0)
  const reader = req.body.getReader()
  const chunks: Uint8Array[] = []
  let total = 0
  for (;;) {
    const { value, done } = await reader.read()
    if (done) break
    total += value.byteLength
    if (total > limit) {
      await reader.cancel().catch(() => {})
      throw errors.bodyTooLarge(limit)
    }
    chunks.push(value)
  }
  if (chunks.length === 1 && chunks[0]) return chunks[0]
  return Buffer.concat(chunks)
}

export type JsonObject = Record<string, unknown>

/**
 * Nesting allowed in a request body by default. Real requests stay far below it (a tool's JSON
 * schema nested twenty properties deep is about 45 levels); thousands of levels only serve to make
 * a recursive walk (`JSON.stringify`, a template) overflow its stack, and parsing them is not free
 * either (V8 takes seconds for a few million levels).
 */
export const DEFAULT_MAX_JSON_DEPTH = 128

const QUOTE = 0x22
const BACKSLASH = 0x5c
const OPEN_BRACE = 0x7b
const OPEN_BRACKET = 0x5b
const CLOSE_BRACE = 0x7d
const CLOSE_BRACKET = 0x5d

/**
 * True when the JSON text nests objects/arrays deeper than `limit`. Runs before `JSON.parse`, so a
 * hostile body is refused after reading `limit` brackets instead of being parsed whole. String
 * contents are skipped with the native `indexOf` (prose dominates real bodies), so the cost is
 * in the structural bytes only. Malformed JSON is left for `JSON.parse` to report.
 */
export function jsonDepthExceeds(bytes: Uint8Array, limit: number): boolean {
  const b = Buffer.isBuffer(bytes)
    ? bytes
    : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const n = b.length
  let depth = 0
  for (let i = 0; i < n; i++) {
    const c = b[i] as number
    if (c === QUOTE) {
      // Find the closing quote: one preceded by an even number of backslashes.
      let j = i
      for (;;) {
        j = b.indexOf(QUOTE, j + 1)
        if (j < 0) return false
        let k = j - 1
        while (b[k] === BACKSLASH) k--
        if ((j - 1 - k) % 2 === 0) break
      }
      i = j
    } else if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      if (++depth > limit) return true
    } else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) {
      depth--
    }
  }
  return false
}

export function parseJsonObject(bytes: Uint8Array, maxDepth = DEFAULT_MAX_JSON_DEPTH): JsonObject {
  if (jsonDepthExceeds(bytes, maxDepth)) throw errors.jsonTooDeep(maxDepth)
  let parsed: unknown
  try {
    parsed = JSON.parse(
      Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'),
    )
  } catch (e) {
    throw errors.invalidJson(e instanceof Error ? e.message : String(e))
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw errors.bodyNotObject()
  }
  return parsed as JsonObject
}
