import { describe, expect, it } from 'vitest'
import { scenarioArgs } from './scenario.js'

describe('scenarioArgs', () => {
  it('defaults: full length, report written', () => {
    expect(scenarioArgs([])).toEqual({ quick: false, write: true })
  })
  it('--quick --seconds 3 --no-write', () => {
    expect(scenarioArgs(['--quick', '--seconds', '3', '--no-write'])).toEqual({
      quick: true,
      seconds: 3,
      write: false,
    })
  })
  it('refuses an unknown flag', () => {
    expect(() => scenarioArgs(['--rate', '5'])).toThrow(/--rate/)
  })
})
