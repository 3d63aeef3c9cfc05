// One engine's KV-event stream applied to its block index, with the sequence bookkeeping that keeps
// the index honest: vLLM numbers every batch (0, 1, 2, … per publisher process).
//  - next number: apply.
//  - a jump ahead: batches were lost (PUB drops when a subscriber is slow or reconnecting). The
//    caller asks the engine's replay socket for the missing ones; if it cannot, the index is reset
//    and rebuilt from what follows (a stale index sends requests to blocks that are gone).
//  - a number at or below the last: the publisher started over, i.e. the engine restarted with an
//    empty cache; reset and apply.
// Only GPU-resident blocks count (medium null or "GPU"): blocks offloaded to CPU are reported with
// their own medium and must not make a removed GPU block look resident.

import { BlockIndex } from './block-index.js'
import { type ScanSink, scanBatch } from './scan.js'
import { KvWireError } from './wire.js'

export type ApplyResult = 'applied' | 'gap' | 'restarted' | 'malformed'

export interface EndpointKvStats {
  batches: number
  events: number
  gaps: number
  replays: number
  resets: number
  malformed: number
}

function gpu(medium: string | null): boolean {
  return medium === null || medium === 'GPU' || medium === 'gpu'
}

export class EndpointKvIndex {
  readonly index: BlockIndex
  /** Last applied sequence number; null before the first batch and after a reset. */
  lastSeq: bigint | null = null
  /** Block size seen in BlockStored events (0 until one arrives). */
  blockSize = 0
  readonly stats: EndpointKvStats = {
    batches: 0,
    events: 0,
    gaps: 0,
    replays: 0,
    resets: 0,
    malformed: 0,
  }

  constructor(maxBlocks: number) {
    this.index = new BlockIndex(maxBlocks)
  }

  /**
   * A live message. 'gap' means nothing was applied: the caller replays (lastSeq+1 …) and then
   * calls `applyPayload` for each replayed batch and this one, or calls `reset` and retries.
   */
  onMessage(seq: bigint, payload: Uint8Array): ApplyResult {
    if (this.lastSeq !== null) {
      if (seq > this.lastSeq + 1n) {
        this.stats.gaps++
        return 'gap'
      }
      if (seq <= this.lastSeq) {
        this.reset()
        return this.applyPayload(seq, payload) === 'applied' ? 'restarted' : 'malformed'
      }
    }
    return this.applyPayload(seq, payload)
  }

  applyPayload(seq: bigint, payload: Uint8Array): ApplyResult {
    try {
      this.stats.events += scanBatch(payload, this.#sink)
    } catch (e) {
      if (!(e instanceof KvWireError)) throw e
      this.stats.malformed++
      // The batch's events are unknown (some may be applied): treat like a gap without replay.
      this.reset()
      this.lastSeq = seq
      return 'malformed'
    }
    this.stats.batches++
    this.lastSeq = seq
    return 'applied'
  }

  readonly #sink: ScanSink = {
    stored: (h, n, medium, blockSize) => {
      if (!gpu(medium)) return
      if (blockSize > 0) this.blockSize = blockSize
      const ix = this.index
      for (let i = 0; i < 2 * n; i += 2) ix.add(h[i] as number, h[i + 1] as number)
    },
    removed: (h, n, medium) => {
      if (!gpu(medium)) return
      const ix = this.index
      for (let i = 0; i < 2 * n; i += 2) ix.delete(h[i] as number, h[i + 1] as number)
    },
    cleared: () => this.index.clear(),
  }

  reset(): void {
    this.index.clear()
    this.lastSeq = null
    this.stats.resets++
  }
}
