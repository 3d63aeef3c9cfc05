// A non-streamed answer's `usage` object read from its bytes without decoding or parsing it, for
// the plain shape engines send (vLLM, SGLang, the sim: `{"prompt_tokens":12,...,
// "prompt_tokens_details":{"cached_tokens":0}}`). `JSON.parse` of that object (and the string it
// needs first) was the largest self time of our non-stream path in a CPU profile (issue 11); this
// scan is a strict parser of a JSON subset, so whatever it accepts reads as `JSON.parse` would
// read it, and whatever it does not (escapes in a key, fractions, negatives, arrays, string
// values, malformed text) it hands back for `JSON.parse` to decide.

/** The object's counts: prompt and completion tokens, as `parseUsage` reads them. */
export interface UsageCounts {
  readonly promptTokens: number
  readonly completionTokens: number
}

/** `usageCounts` could not read the object: parse it with `JSON.parse`. */
export const NOT_PLAIN = 'not-plain'

// A key's value as far as `parseUsage` cares: absent, null, another kind (not a number), or the
// number itself (only unsigned integers are accepted, so the sentinels below cannot collide).
const ABSENT = -1
const NULL = -2
const OTHER = -3
/** Deeper objects than this inside `usage` are left to JSON.parse (engines nest one level). */
const MAX_NESTING = 4
/** Longest integer read here: 15 digits stay exact in a double. */
const MAX_DIGITS = 15

// The four keys `parseUsage` reads, as bytes. The scan's results go to module state, not to a
// result object per call: the caller reads them right after.
const PROMPT = Buffer.from('prompt_tokens')
const INPUT = Buffer.from('input_tokens')
const COMPLETION = Buffer.from('completion_tokens')
const OUTPUT = Buffer.from('output_tokens')
let prompt = ABSENT
let input = ABSENT
let completion = ABSENT
let output = ABSENT
/** The value just read (scanValue's result besides the index). */
let value = ABSENT

/**
 * The counts of the JSON object opening at `b[start]`: undefined when it has no prompt count (as
 * `parseUsage` says), NOT_PLAIN when the scan does not accept the text. The scan finds the
 * object's end itself: an accepted object's brackets are balanced and its strings hold no escapes,
 * so that end is the one a bracket count would find.
 */
export function usageCounts(
  b: Uint8Array,
  start: number,
): UsageCounts | undefined | typeof NOT_PLAIN {
  prompt = ABSENT
  input = ABSENT
  completion = ABSENT
  output = ABSENT
  if (scanObject(b, start, b.length, 0) < 0) return NOT_PLAIN
  // `a ?? b` of parseUsage: a null or absent first key gives the second.
  const p = prompt === ABSENT || prompt === NULL ? input : prompt
  const c = completion === ABSENT || completion === NULL ? output : completion
  if (p < 0) return undefined
  return { promptTokens: p, completionTokens: Math.max(c, 0) }
}

function skipSpace(b: Uint8Array, i: number, end: number): number {
  while (i < end) {
    const c = b[i]
    if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) break
    i++
  }
  return i
}

function sameBytes(b: Uint8Array, from: number, to: number, key: Buffer): boolean {
  if (to - from !== key.length) return false
  for (let k = 0; k < key.length; k++) if (b[from + k] !== key[k]) return false
  return true
}

/** Index after the object opening at `i`, or -1 if it is not of the accepted subset. */
function scanObject(b: Uint8Array, i: number, end: number, depth: number): number {
  if (b[i] !== 0x7b || depth > MAX_NESTING) return -1
  i = skipSpace(b, i + 1, end)
  if (b[i] === 0x7d) return i + 1
  for (;;) {
    if (i >= end || b[i] !== 0x22) return -1
    const ks = i + 1
    let ke = ks
    for (; ke < end; ke++) {
      const c = b[ke] as number
      if (c === 0x22) break
      // An escape (or a control byte, which JSON refuses): JSON.parse decides.
      if (c === 0x5c || c < 0x20) return -1
    }
    if (ke >= end) return -1
    i = skipSpace(b, ke + 1, end)
    if (b[i] !== 0x3a) return -1
    i = scanValue(b, skipSpace(b, i + 1, end), end, depth)
    if (i < 0) return -1
    if (depth === 0) {
      const n = ke - ks
      if (n === 13) {
        if (sameBytes(b, ks, ke, PROMPT)) prompt = value
        else if (sameBytes(b, ks, ke, OUTPUT)) output = value
      } else if (n === 12) {
        if (sameBytes(b, ks, ke, INPUT)) input = value
      } else if (n === 17 && sameBytes(b, ks, ke, COMPLETION)) completion = value
    }
    i = skipSpace(b, i, end)
    const c = b[i]
    if (c === 0x7d) return i + 1
    if (c !== 0x2c) return -1
    i = skipSpace(b, i + 1, end)
  }
}

/** Index after the value at `i` (its kind in `value`), or -1 if it is not of the subset. */
function scanValue(b: Uint8Array, i: number, end: number, depth: number): number {
  const c = b[i]
  if (c === undefined || i >= end) return -1
  if (c >= 0x30 && c <= 0x39) {
    // JSON: `0` or a digit 1-9 and more digits; a fraction or exponent is left to JSON.parse.
    let n = c - 0x30
    let j = i + 1
    if (c !== 0x30)
      for (; j < end; j++) {
        const d = b[j] as number
        if (d < 0x30 || d > 0x39) break
        n = n * 10 + (d - 0x30)
      }
    const next = b[j]
    if (j - i > MAX_DIGITS || next === 0x2e || next === 0x65 || next === 0x45) return -1
    if (next !== undefined && next >= 0x30 && next <= 0x39) return -1 // a leading zero
    value = n
    return j
  }
  if (c === 0x7b) {
    const j = scanObject(b, i, end, depth + 1)
    value = OTHER
    return j
  }
  if (c === 0x6e && b[i + 1] === 0x75 && b[i + 2] === 0x6c && b[i + 3] === 0x6c) {
    value = NULL
    return i + 4 <= end ? i + 4 : -1
  }
  if (c === 0x74 && b[i + 1] === 0x72 && b[i + 2] === 0x75 && b[i + 3] === 0x65) {
    value = OTHER
    return i + 4 <= end ? i + 4 : -1
  }
  if (
    c === 0x66 &&
    b[i + 1] === 0x61 &&
    b[i + 2] === 0x6c &&
    b[i + 3] === 0x73 &&
    b[i + 4] === 0x65
  ) {
    value = OTHER
    return i + 5 <= end ? i + 5 : -1
  }
  return -1
}
