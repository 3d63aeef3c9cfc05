import { describe, expect, it } from 'vitest'
import { PROVIDER_TYPES } from '../../api/provider.js'
import type { SnapshotProvider } from '../../api/snapshot.js'
import { adapterFor } from './registry.js'

describe('adapterFor', () => {
  it('has an adapter for every provider type, each serving chat', () => {
    for (const type of PROVIDER_TYPES) {
      const a = adapterFor(type)
      expect(a.supports({ type } as SnapshotProvider, 'chat')).toBe(true)
    }
    expect(
      adapterFor('Anthropic').supports({ type: 'Anthropic' } as SnapshotProvider, 'embeddings'),
    ).toBe(false)
    expect(
      adapterFor('Gemini').supports({ type: 'Gemini' } as SnapshotProvider, 'embeddings'),
    ).toBe(true)
  })
})
