import { describe, expect, it } from 'vitest'
import { UntilTimeoutError, until } from './until.js'

describe('until', () => {
  it('resolves once the condition holds, sync or async', async () => {
    let n = 0
    await until(() => ++n >= 3)
    expect(n).toBe(3)
    let m = 0
    await until(async () => ++m >= 2)
    expect(m).toBe(2)
  })

  it('fails, naming what it waited for, when the condition never holds', async () => {
    const err = await until(() => false, 100, 'the moon').then(
      () => undefined,
      (e: unknown) => e,
    )
    expect(err).toBeInstanceOf(UntilTimeoutError)
    expect((err as UntilTimeoutError).code).toBe('UNTIL_TIMEOUT')
    expect((err as Error).message).toBe('timed out after 100 ms waiting for the moon')
  })
})
