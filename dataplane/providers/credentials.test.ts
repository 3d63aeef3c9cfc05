import { describe, expect, it } from 'vitest'
import type { SnapshotProvider } from '../../api/snapshot.js'
import { memoryLogger } from '../log.js'
import { ProviderCredentials } from './credentials.js'

function provider(scheme: 'Bearer' | 'APIKey', header: string): SnapshotProvider {
  return {
    key: 'default/p',
    type: 'OpenAI',
    credential: {
      scheme,
      header,
      secretFile: 'provider_default_s_k',
      secretRef: { name: 's', key: 'k' },
    },
  } as SnapshotProvider
}

describe('ProviderCredentials', () => {
  it('builds the header per scheme, trimming the newline kubectl leaves', () => {
    const m = new Map([['provider_default_s_k', 'sk-123\n']])
    const c = new ProviderCredentials({ get: (k) => m.get(k) }, memoryLogger())
    expect(c.get(provider('Bearer', 'authorization'))).toEqual({
      ok: true,
      header: 'authorization',
      value: 'Bearer sk-123',
      raw: 'sk-123',
    })
    expect(c.get(provider('APIKey', 'x-api-key'))).toMatchObject({
      ok: true,
      header: 'x-api-key',
      value: 'sk-123',
    })
    expect(c.get({ key: 'default/none', type: 'OpenAI' } as SnapshotProvider)).toEqual({
      ok: true,
      header: undefined,
    })
  })

  it('reports missing and unusable values once, without the value', () => {
    const m = new Map<string, string>()
    const log = memoryLogger()
    const c = new ProviderCredentials({ get: (k) => m.get(k) }, log)
    expect(c.get(provider('Bearer', 'authorization'))).toEqual({ ok: false, problem: 'missing' })
    expect(c.get(provider('Bearer', 'authorization'))).toEqual({ ok: false, problem: 'missing' })
    m.set('provider_default_s_k', 'bad\r\nInjected: yes')
    expect(c.get(provider('Bearer', 'authorization'))).toEqual({ ok: false, problem: 'invalid' })
    expect(log.records.map((r) => r.msg)).toEqual([
      'credential for provider default/p is missing',
      'credential for provider default/p is invalid',
    ])
    expect(JSON.stringify(log.records)).not.toContain('Injected')
  })

  it('after a rejection, re-reads now and says whether the key changed', async () => {
    let value = 'old'
    let next = 'old'
    const c = new ProviderCredentials(
      {
        get: () => value,
        refresh: async () => {
          const changed = value !== next
          value = next
          return changed
        },
      },
      memoryLogger(),
    )
    const p = provider('Bearer', 'authorization')
    expect(await c.refreshAfterRejection(p, 'old')).toBe(false)
    next = 'new'
    expect(await c.refreshAfterRejection(p, 'old')).toBe(true)
    expect(c.get(p)).toMatchObject({ raw: 'new' })
    expect(
      await new ProviderCredentials({ get: () => 'x' }, memoryLogger()).refreshAfterRejection(
        p,
        'x',
      ),
    ).toBe(false)
  })
})
