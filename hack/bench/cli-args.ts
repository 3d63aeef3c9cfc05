// Numeric options of the bench scripts, checked one way: a bad value stops the script with the
// option named, before any process is started.

/** A bench script was called with options it cannot use (the script prints its usage). */
export class BenchUsageError extends Error {
  override readonly name = 'BenchUsageError'
  readonly code = 'BENCH_USAGE'
}

/** `--name`'s value as a number > 0 (parseArgs gives strings). */
export function positiveArg(name: string, v: string | undefined): number {
  const n = Number(v)
  if (!Number.isFinite(n) || n <= 0)
    throw new BenchUsageError(`--${name} must be a positive number`)
  return n
}
