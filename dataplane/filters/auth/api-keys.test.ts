import { describe, expect, it } from 'vitest'
import { staticSecrets } from '../secrets.js'
import { ApiKeyTable, sha256Hex } from './api-keys.js'

const tierOf = (t: string | undefined) => (t === 'gold' ? 'gold' : 'free')

describe('ApiKeyTable', () => {
  const secrets = staticSecrets({
    'k.a': `${sha256Hex('key-a')}\n`,
    'k.b': `sha256:${sha256Hex('key-b').toUpperCase()}`,
    'k.plain': 'key-c-stored-in-plaintext',
    'k.dup': sha256Hex('key-a'),
  })
  const table = new ApiKeyTable(
    [
      { name: 'a', secretKey: 'k.a', tenant: 'ta', tier: 'gold', roles: ['admin'] },
      { name: 'b', secretKey: 'k.b', tenant: 'tb', models: ['m1'], roles: [] },
      { name: 'c', secretKey: 'k.plain', tenant: 'tc', roles: [] },
      { name: 'd', secretKey: 'k.missing', tenant: 'td', roles: [] },
      { name: 'e', secretKey: 'k.dup', tenant: 'te', roles: [] },
    ],
    secrets,
    tierOf,
  )

  it('maps a key to its identity by its sha256 digest', () => {
    expect(table.authenticate('key-a')).toMatchObject({
      method: 'api-key',
      subject: 'key:a',
      tenant: 'ta',
      tier: 'gold',
      roles: ['admin'],
      source: 'a',
    })
    const b = table.authenticate('key-b')
    expect(b?.tier).toBe('free')
    expect(b?.models?.has('m1')).toBe(true)
    expect(table.authenticate('key-x')).toBeUndefined()
    expect(table.authenticate('')).toBeUndefined()
  })

  it('refuses entries that are not digests, missing entries and duplicates, naming only the entry', () => {
    expect(table.size).toBe(2)
    expect(table.problems).toEqual([
      { key: 'c', entry: 'k.plain', problem: 'not-a-sha256-digest' },
      { key: 'd', entry: 'k.missing', problem: 'missing' },
      { key: 'e', entry: 'k.dup', problem: 'duplicate-digest' },
    ])
    // A plaintext key stored by mistake does not work as a key either.
    expect(table.authenticate('key-c-stored-in-plaintext')).toBeUndefined()
    expect(JSON.stringify(table.problems)).not.toContain('key-c')
  })
})
