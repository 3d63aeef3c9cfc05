// Prometheus text exposition (format 0.0.4) parser for engine /metrics scrapes.
//
// It runs on every scrape of every pod, so it works on character codes over the original string
// (no per-character concatenation, no regexes on the hot path) and never throws: a malformed line
// is skipped and reported with its line number, because one bad line from an engine must not blind
// the router to the rest of that pod's signals. Work is bounded by `maxLength`.

export type MetricType = 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped'

export interface Sample {
  /** Full sample name, e.g. `x_bucket` for a bucket of histogram family `x`. */
  readonly name: string
  readonly labels: Readonly<Record<string, string>>
  readonly value: number
  /** Milliseconds since the epoch, when the exposition carried one. */
  readonly timestamp?: number
}

export interface MetricFamily {
  readonly name: string
  readonly type: MetricType
  readonly help?: string
  /** In exposition order. Histogram/summary `_bucket`/`_sum`/`_count` samples live here too. */
  readonly samples: readonly Sample[]
}

export type PromParseErrorCode =
  | 'PROM_INVALID_METRIC_NAME'
  | 'PROM_INVALID_LABEL'
  | 'PROM_DUPLICATE_LABEL'
  | 'PROM_UNTERMINATED_LABEL_VALUE'
  | 'PROM_MISSING_VALUE'
  | 'PROM_INVALID_VALUE'
  | 'PROM_INVALID_TIMESTAMP'
  | 'PROM_TRAILING_GARBAGE'
  | 'PROM_INVALID_COMMENT'
  | 'PROM_INVALID_TYPE'
  | 'PROM_TYPE_CONFLICT'
  | 'PROM_INPUT_TRUNCATED'

export interface PromParseError {
  readonly code: PromParseErrorCode
  /** 1-based line number in the input. */
  readonly line: number
  readonly message: string
}

export interface ParsedMetrics {
  /** Keyed by family name (the `# TYPE` name, or the sample name for untyped samples). */
  readonly families: ReadonlyMap<string, MetricFamily>
  /** The first `maxErrors` problems; `errorCount` has the total. */
  readonly errors: readonly PromParseError[]
  readonly errorCount: number
  readonly sampleCount: number
  /** True when the input exceeded `maxLength` and only its leading complete lines were read. */
  readonly truncated: boolean
}

export interface ParseOptions {
  /** Characters read at most; the rest is dropped at a line boundary. Default 16 Mi. */
  readonly maxLength?: number
  /** Error records kept at most (all are counted). Default 100. */
  readonly maxErrors?: number
  /**
   * false: the `_bucket` samples of a family typed `histogram` are counted (`sampleCount`) but
   * neither parsed nor kept, nor checked for errors. They are most of an engine's lines (87 of
   * the simulator's 113 vLLM samples, 1832 of 1889 in testdata's TGI) and nothing the router computes reads them: adapters take
   * histograms' `_sum`/`_count`, restart detection their `_count`. Default true (every sample).
   */
  readonly histogramBuckets?: boolean
}

export const DEFAULT_MAX_LENGTH = 16 * 1024 * 1024
export const DEFAULT_MAX_ERRORS = 100

const METRIC_TYPES: ReadonlySet<string> = new Set([
  'counter',
  'gauge',
  'histogram',
  'summary',
  'untyped',
])

const CR = 13
const SPACE = 32
const TAB = 9
const HASH = 35
const LBRACE = 123
const RBRACE = 125
const EQUALS = 61
const QUOTE = 34
const BACKSLASH = 92
const COMMA = 44
const LOWER_N = 110
/** An error message quotes at most this much of the offending line. */
const EXCERPT = 80

interface MutableFamily {
  name: string
  type: MetricType
  help?: string
  samples: Sample[]
}

function isMetricNameStart(c: number): boolean {
  return (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || c === 95 || c === 58
}

function isMetricNameChar(c: number): boolean {
  return isMetricNameStart(c) || (c >= 48 && c <= 57)
}

function isLabelNameStart(c: number): boolean {
  return (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || c === 95
}

function isLabelNameChar(c: number): boolean {
  return isLabelNameStart(c) || (c >= 48 && c <= 57)
}

function isBlank(c: number): boolean {
  return c === SPACE || c === TAB
}

/**
 * Go's strconv.ParseFloat forms that Prometheus clients emit (`NaN`, `+Inf`, `-Inf`, decimals,
 * exponents); JavaScript's Number() would also accept hex/octal/binary literals and `Infinity`
 * spellings, which are not exposition values, so those are screened out here.
 */
function parseFloatToken(tok: string): number | undefined {
  const c0 = tok.charCodeAt(0)
  const signed = c0 === 43 || c0 === 45
  const first = signed ? tok.charCodeAt(1) : c0
  if ((first >= 48 && first <= 57) || first === 46) {
    // Number() accepts `0x1f`, `0o7`, `0b1` (unsigned only); the format does not.
    if (!signed && first === 48 && tok.length > 1) {
      const c1 = tok.charCodeAt(1) | 0x20
      if (c1 === 120 || c1 === 111 || c1 === 98) return undefined
    }
    const v = Number(tok)
    return Number.isNaN(v) ? undefined : v
  }
  const rest = (signed ? tok.slice(1) : tok).toLowerCase()
  if (rest === 'nan') return Number.NaN
  if (rest === 'inf' || rest === 'infinity') return c0 === 45 ? -Infinity : Infinity
  return undefined
}

function parseTimestampToken(tok: string): number | undefined {
  let i = tok.charCodeAt(0) === 45 ? 1 : 0
  if (i >= tok.length || tok.length > 20) return undefined
  for (; i < tok.length; i++) {
    const c = tok.charCodeAt(i)
    if (c < 48 || c > 57) return undefined
  }
  return Number(tok)
}

/** Resolves `\\` and `\n` in HELP text; other backslashes are kept as written. */
function unescapeHelp(raw: string): string {
  if (raw.indexOf('\\') < 0) return raw
  const parts: string[] = []
  let start = 0
  for (let i = 0; i < raw.length; i++) {
    if (raw.charCodeAt(i) !== BACKSLASH || i + 1 >= raw.length) continue
    const next = raw.charCodeAt(i + 1)
    if (next === BACKSLASH || next === LOWER_N) {
      parts.push(raw.slice(start, i), next === BACKSLASH ? '\\' : '\n')
      i++
      start = i + 1
    }
  }
  parts.push(raw.slice(start))
  return parts.join('')
}

/** Which family a `_bucket`/`_sum`/`_count`/`_total`/`_created` sample belongs to, by base type. */
function suffixAccepts(suffix: string, type: MetricType): boolean {
  switch (suffix) {
    case '_bucket':
      return type === 'histogram'
    case '_sum':
    case '_count':
      return type === 'histogram' || type === 'summary'
    case '_total':
      return type === 'counter'
    case '_created':
      return type === 'counter' || type === 'histogram' || type === 'summary'
    default:
      return false
  }
}

const BUCKET = '_bucket'
const SUFFIXES = ['_bucket', '_sum', '_count', '_total', '_created'] as const

class Parser {
  readonly families = new Map<string, MutableFamily>()
  readonly errors: PromParseError[] = []
  errorCount = 0
  sampleCount = 0
  readonly #text: string
  readonly #maxErrors: number
  readonly #skipBuckets: boolean
  // One-entry cache: consecutive samples almost always share a name (a family's series).
  #lastName = ''
  #lastFamily: MutableFamily | undefined
  /** The last sample name found to be a skipped histogram bucket (a histogram's buckets run on). */
  #lastBucket = ''

  constructor(text: string, maxErrors: number, skipBuckets: boolean) {
    this.#text = text
    this.#maxErrors = maxErrors
    this.#skipBuckets = skipBuckets
  }

  error(code: PromParseErrorCode, line: number, message: string): void {
    this.errorCount++
    if (this.errors.length < this.#maxErrors) this.errors.push({ code, line, message })
  }

  #fail(code: PromParseErrorCode, lineNo: number, start: number, end: number, what: string): void {
    const excerpt = this.#text.slice(start, Math.min(end, start + EXCERPT))
    this.error(code, lineNo, `${what}: ${JSON.stringify(excerpt)}`)
  }

  /** Parses one line `[start, end)` (newline and CR already excluded). */
  line(start: number, end: number, lineNo: number): void {
    const text = this.#text
    let i = start
    while (i < end && isBlank(text.charCodeAt(i))) i++
    if (i >= end) return
    if (text.charCodeAt(i) === HASH) {
      this.#comment(i + 1, end, lineNo, start)
      return
    }
    this.#sample(i, end, lineNo, start)
  }

  #family(name: string): MutableFamily {
    let f = this.families.get(name)
    if (f === undefined) {
      f = { name, type: 'untyped', samples: [] }
      this.families.set(name, f)
    }
    return f
  }

  #comment(pos: number, end: number, lineNo: number, lineStart: number): void {
    const text = this.#text
    let i = pos
    while (i < end && isBlank(text.charCodeAt(i))) i++
    const kwStart = i
    while (i < end && !isBlank(text.charCodeAt(i))) i++
    const kw = text.slice(kwStart, i)
    if (kw !== 'HELP' && kw !== 'TYPE') return // any other comment is ignored by the format
    // A HELP/TYPE line may change which family a sample name resolves to.
    this.#lastFamily = undefined
    this.#lastName = ''
    this.#lastBucket = ''
    while (i < end && isBlank(text.charCodeAt(i))) i++
    const nameStart = i
    if (i >= end || !isMetricNameStart(text.charCodeAt(i))) {
      this.#fail('PROM_INVALID_COMMENT', lineNo, lineStart, end, `${kw} without a metric name`)
      return
    }
    i++
    while (i < end && isMetricNameChar(text.charCodeAt(i))) i++
    const name = text.slice(nameStart, i)
    if (i < end && !isBlank(text.charCodeAt(i))) {
      this.#fail('PROM_INVALID_COMMENT', lineNo, lineStart, end, `invalid metric name in ${kw}`)
      return
    }
    if (i < end) i++ // exactly one separator; HELP text keeps any further leading blanks
    if (kw === 'HELP') {
      const f = this.#family(name)
      // Duplicate HELP happens in the wild (TGI); the first text wins, as in the exporters.
      if (f.help === undefined) f.help = unescapeHelp(text.slice(i, end))
      return
    }
    while (i < end && isBlank(text.charCodeAt(i))) i++
    let typeEnd = end
    while (typeEnd > i && isBlank(text.charCodeAt(typeEnd - 1))) typeEnd--
    const type = text.slice(i, typeEnd)
    if (!METRIC_TYPES.has(type)) {
      this.#fail('PROM_INVALID_TYPE', lineNo, lineStart, end, `unknown metric type "${type}"`)
      return
    }
    const f = this.#family(name)
    if (f.type === 'untyped') f.type = type as MetricType
    else if (f.type !== type) {
      this.#fail('PROM_TYPE_CONFLICT', lineNo, lineStart, end, `${name} already has type ${f.type}`)
    }
  }

  /** The family a sample belongs to: an exactly named typed family, else a histogram/summary/counter base. */
  #resolve(name: string): MutableFamily {
    if (name === this.#lastName && this.#lastFamily !== undefined) return this.#lastFamily
    const exact = this.families.get(name)
    let found: MutableFamily | undefined =
      exact !== undefined && exact.type !== 'untyped' ? exact : undefined
    if (found === undefined) {
      for (const suffix of SUFFIXES) {
        if (name.length <= suffix.length || !name.endsWith(suffix)) continue
        const base = this.families.get(name.slice(0, name.length - suffix.length))
        if (base !== undefined && suffixAccepts(suffix, base.type)) found = base
        break
      }
    }
    found ??= exact ?? this.#family(name)
    this.#lastName = name
    this.#lastFamily = found
    return found
  }

  /** `name` is a `_bucket` sample of a family typed `histogram` so far. */
  #isBucket(name: string): boolean {
    if (name === this.#lastBucket) return true
    const n = name.length - BUCKET.length
    if (n <= 0 || !name.endsWith(BUCKET)) return false
    if (this.families.get(name.slice(0, n))?.type !== 'histogram') return false
    this.#lastBucket = name
    return true
  }

  #sample(pos: number, end: number, lineNo: number, lineStart: number): void {
    const text = this.#text
    let i = pos
    if (!isMetricNameStart(text.charCodeAt(i))) {
      this.#fail('PROM_INVALID_METRIC_NAME', lineNo, lineStart, end, 'invalid metric name')
      return
    }
    i++
    while (i < end && isMetricNameChar(text.charCodeAt(i))) i++
    const name = text.slice(pos, i)
    if (this.#skipBuckets && this.#isBucket(name)) {
      this.sampleCount++
      return
    }
    let labels: Record<string, string> = EMPTY_LABELS
    if (i < end && text.charCodeAt(i) === LBRACE) {
      const parsed = this.#labels(i + 1, end, lineNo, lineStart)
      if (parsed === undefined) return
      labels = parsed.labels
      i = parsed.next
    } else if (i < end && !isBlank(text.charCodeAt(i))) {
      this.#fail('PROM_INVALID_METRIC_NAME', lineNo, lineStart, end, 'invalid metric name')
      return
    }
    while (i < end && isBlank(text.charCodeAt(i))) i++
    const valueStart = i
    while (i < end && !isBlank(text.charCodeAt(i))) i++
    if (i === valueStart) {
      this.#fail('PROM_MISSING_VALUE', lineNo, lineStart, end, 'sample without a value')
      return
    }
    const value = parseFloatToken(text.slice(valueStart, i))
    if (value === undefined) {
      this.#fail('PROM_INVALID_VALUE', lineNo, lineStart, end, 'invalid sample value')
      return
    }
    while (i < end && isBlank(text.charCodeAt(i))) i++
    let timestamp: number | undefined
    if (i < end) {
      const tsStart = i
      while (i < end && !isBlank(text.charCodeAt(i))) i++
      timestamp = parseTimestampToken(text.slice(tsStart, i))
      if (timestamp === undefined) {
        this.#fail('PROM_INVALID_TIMESTAMP', lineNo, lineStart, end, 'invalid timestamp')
        return
      }
      while (i < end && isBlank(text.charCodeAt(i))) i++
      if (i < end) {
        this.#fail('PROM_TRAILING_GARBAGE', lineNo, lineStart, end, 'unexpected text after sample')
        return
      }
    }
    const sample: Sample =
      timestamp === undefined ? { name, labels, value } : { name, labels, value, timestamp }
    this.#resolve(name).samples.push(sample)
    this.sampleCount++
  }

  /** Parses `name="value",…}` starting after `{`; undefined (error recorded) when malformed. */
  #labels(
    pos: number,
    end: number,
    lineNo: number,
    lineStart: number,
  ): { labels: Record<string, string>; next: number } | undefined {
    const text = this.#text
    const labels: Record<string, string> = {}
    let i = pos
    for (;;) {
      while (i < end && isBlank(text.charCodeAt(i))) i++
      if (i >= end) {
        this.#fail('PROM_INVALID_LABEL', lineNo, lineStart, end, 'unterminated label set')
        return undefined
      }
      if (text.charCodeAt(i) === RBRACE) return { labels, next: i + 1 }
      const nameStart = i
      if (!isLabelNameStart(text.charCodeAt(i))) {
        this.#fail('PROM_INVALID_LABEL', lineNo, lineStart, end, 'invalid label name')
        return undefined
      }
      i++
      while (i < end && isLabelNameChar(text.charCodeAt(i))) i++
      const labelName = text.slice(nameStart, i)
      while (i < end && isBlank(text.charCodeAt(i))) i++
      if (i >= end || text.charCodeAt(i) !== EQUALS) {
        this.#fail('PROM_INVALID_LABEL', lineNo, lineStart, end, `expected "=" after ${labelName}`)
        return undefined
      }
      i++
      while (i < end && isBlank(text.charCodeAt(i))) i++
      if (i >= end || text.charCodeAt(i) !== QUOTE) {
        this.#fail('PROM_INVALID_LABEL', lineNo, lineStart, end, `expected '"' for ${labelName}`)
        return undefined
      }
      i++
      // Fast path: no escapes, one slice. Escapes collect chunks and join once.
      let chunks: string[] | undefined
      let chunkStart = i
      let closed = false
      while (i < end) {
        const c = text.charCodeAt(i)
        if (c === QUOTE) {
          closed = true
          break
        }
        if (c === BACKSLASH && i + 1 < end) {
          const next = text.charCodeAt(i + 1)
          const replacement =
            next === BACKSLASH ? '\\' : next === QUOTE ? '"' : next === LOWER_N ? '\n' : undefined
          if (replacement !== undefined) {
            chunks ??= []
            chunks.push(text.slice(chunkStart, i), replacement)
            i += 2
            chunkStart = i
            continue
          }
          // Unknown escapes are kept verbatim rather than dropping the whole series.
        }
        i++
      }
      if (!closed) {
        this.#fail('PROM_UNTERMINATED_LABEL_VALUE', lineNo, lineStart, end, 'unterminated value')
        return undefined
      }
      let value: string
      if (chunks === undefined) value = text.slice(chunkStart, i)
      else {
        chunks.push(text.slice(chunkStart, i))
        value = chunks.join('')
      }
      i++
      if (Object.hasOwn(labels, labelName)) {
        this.#fail('PROM_DUPLICATE_LABEL', lineNo, lineStart, end, `duplicate label ${labelName}`)
        return undefined
      }
      if (labelName === '__proto__') {
        // A legal label name that plain assignment would turn into a prototype change.
        Object.defineProperty(labels, labelName, {
          value,
          enumerable: true,
          writable: true,
          configurable: true,
        })
      } else labels[labelName] = value
      while (i < end && isBlank(text.charCodeAt(i))) i++
      if (i < end && text.charCodeAt(i) === COMMA) {
        i++
        continue
      }
      if (i < end && text.charCodeAt(i) === RBRACE) return { labels, next: i + 1 }
      this.#fail('PROM_INVALID_LABEL', lineNo, lineStart, end, 'expected "," or "}"')
      return undefined
    }
  }
}

/** Shared by every unlabelled sample; frozen so no consumer can leak labels into another sample. */
const EMPTY_LABELS: Record<string, string> = Object.freeze({}) as Record<string, string>

export function parsePrometheusText(text: string, options: ParseOptions = {}): ParsedMetrics {
  const maxLength = Math.max(0, options.maxLength ?? DEFAULT_MAX_LENGTH)
  const parser = new Parser(
    text,
    Math.max(0, options.maxErrors ?? DEFAULT_MAX_ERRORS),
    options.histogramBuckets === false,
  )
  let end = text.length
  let truncated = false
  if (end > maxLength) {
    truncated = true
    // Only complete lines: a cut in the middle of a sample would invent a wrong value.
    const cut = maxLength > 0 ? text.lastIndexOf('\n', maxLength - 1) : -1
    end = Math.max(cut, 0)
  }
  let pos = 0
  let lineNo = 0
  while (pos < end) {
    let nl = text.indexOf('\n', pos)
    if (nl < 0 || nl > end) nl = end
    lineNo++
    const lineEnd = nl > pos && text.charCodeAt(nl - 1) === CR ? nl - 1 : nl
    parser.line(pos, lineEnd, lineNo)
    pos = nl + 1
  }
  if (truncated) {
    parser.error(
      'PROM_INPUT_TRUNCATED',
      lineNo + 1,
      `input of ${text.length} characters exceeds maxLength ${maxLength}; the rest was not read`,
    )
  }
  return {
    families: parser.families,
    errors: parser.errors,
    errorCount: parser.errorCount,
    sampleCount: parser.sampleCount,
    truncated,
  }
}
