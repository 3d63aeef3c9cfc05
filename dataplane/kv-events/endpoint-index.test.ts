import { describe, expect, it } from 'vitest'
import { EndpointKvIndex } from './endpoint-index.js'
import { encodeBatch, type WireEvent } from './wire.js'

const stored = (...h: bigint[]): WireEvent => ({
  type: 'BlockStored',
  hashes: h,
  parent: null,
  tokenIds: [],
  blockSize: 16,
  loraId: null,
  medium: null,
})
const removed = (...h: bigint[]): WireEvent => ({ type: 'BlockRemoved', hashes: h, medium: 'GPU' })

describe('EndpointKvIndex', () => {
  it('applies stores, removals, clears; ignores CPU-offloaded blocks', () => {
    const x = new EndpointKvIndex(100)
    expect(x.onMessage(0n, encodeBatch(0, [stored(1n, 2n, 3n)]))).toBe('applied')
    expect(x.onMessage(1n, encodeBatch(0, [removed(2n)]))).toBe('applied')
    expect(x.index.has(0, 1)).toBe(true)
    expect(x.index.has(0, 2)).toBe(false)
    const cpu: WireEvent = {
      type: 'BlockStored',
      hashes: [9n],
      parent: null,
      tokenIds: [],
      blockSize: 16,
      loraId: null,
      medium: 'CPU',
    }
    x.onMessage(2n, encodeBatch(0, [cpu]))
    expect(x.index.has(0, 9)).toBe(false)
    expect(x.blockSize).toBe(16)
    x.onMessage(3n, encodeBatch(0, [{ type: 'AllBlocksCleared' }]))
    expect(x.index.size).toBe(0)
    expect(x.stats.events).toBe(4)
  })

  it('reports a gap without applying, and a restart (numbering starts over) resets first', () => {
    const x = new EndpointKvIndex(100)
    x.onMessage(0n, encodeBatch(0, [stored(1n)]))
    expect(x.onMessage(5n, encodeBatch(0, [stored(2n)]))).toBe('gap')
    expect(x.index.has(0, 2)).toBe(false)
    expect(x.stats.gaps).toBe(1)
    expect(x.lastSeq).toBe(0n)
    expect(x.onMessage(0n, encodeBatch(0, [stored(3n)]))).toBe('restarted')
    expect(x.index.has(0, 1)).toBe(false)
    expect(x.index.has(0, 3)).toBe(true)
    expect(x.stats.resets).toBe(1)
  })

  it('a malformed batch resets the index (its events are unknown) and counts', () => {
    const x = new EndpointKvIndex(100)
    x.onMessage(0n, encodeBatch(0, [stored(1n)]))
    expect(x.onMessage(1n, new Uint8Array([0x91, 0xc1]))).toBe('malformed')
    expect(x.index.size).toBe(0)
    expect(x.stats.malformed).toBe(1)
    expect(x.onMessage(2n, encodeBatch(0, [stored(4n)]))).toBe('applied')
  })
})
