// Go / metav1.Duration strings ("500ms", "30s", "1m30s", "1h"), the format Kthena's
// trafficPolicy uses. Kubernetes stores them as plain strings, so both the CRD schema (as a
// pattern) and the compiler (as milliseconds) need the same grammar.

/** Thrown by `parseDuration`; `code` is stable for callers that map it to a field issue. */
export class DurationError extends Error {
  readonly code = 'DURATION_INVALID'
  override readonly name = 'DurationError'
}

const UNIT_MS: Readonly<Record<string, number>> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  μs: 1e-3,
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
}

/**
 * The accepted grammar as a regex source, for the CRD `pattern`. Negative durations are left out
 * on purpose: every duration we accept is a timeout or a backoff, where a sign is a mistake.
 * A bare "0" is allowed because Go's time.ParseDuration allows it.
 */
export const DURATION_PATTERN = '^(0|(([0-9]+(\\.[0-9]*)?|\\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$'

const DURATION_RE = new RegExp(DURATION_PATTERN)
const PART_RE = /([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h)/g

/** Parse a duration into milliseconds (may be fractional for ns/us parts). */
export function parseDuration(s: string): number {
  if (s === '0') return 0
  if (s === '' || !DURATION_RE.test(s)) {
    throw new DurationError(
      `invalid duration "${s}": use a number and unit, like 500ms, 30s, 1m30s`,
    )
  }
  let total = 0
  for (const m of s.matchAll(PART_RE)) {
    const value = Number(m[1])
    const unit = UNIT_MS[m[2] ?? '']
    if (unit === undefined || !Number.isFinite(value)) {
      throw new DurationError(`invalid duration "${s}"`)
    }
    total += value * unit
  }
  // Go caps durations at ~292 years (int64 ns); anything near that is a typo, not a timeout.
  if (!Number.isFinite(total) || total > Number.MAX_SAFE_INTEGER) {
    throw new DurationError(`duration "${s}" is too large`)
  }
  return total
}
