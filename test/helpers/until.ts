// Waiting in tests: poll a condition until it holds, or fail naming what was awaited. One helper
// (on vitest's vi.waitFor, so no test reads the clock itself) instead of a loop per file; a wait
// that runs out always fails the test, it never falls through to the next line.
import { vi } from 'vitest'

export class UntilTimeoutError extends Error {
  readonly code = 'UNTIL_TIMEOUT'
}

/**
 * Resolves once `cond` returns true (it may be async), polled every `interval` ms; rejects with
 * an UntilTimeoutError naming `what` after `ms`. Generous defaults: a pass returns at once, and a
 * loaded CI machine is slow.
 */
export async function until(
  cond: () => boolean | Promise<boolean>,
  ms = 10_000,
  what = 'condition',
  interval = 20,
): Promise<void> {
  await vi.waitFor(
    async () => {
      if (!(await cond()))
        throw new UntilTimeoutError(`timed out after ${ms} ms waiting for ${what}`)
    },
    { timeout: ms, interval },
  )
}
