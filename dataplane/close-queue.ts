// Closing many client sockets without stalling the event loop. Node enforces headersTimeout and
// requestTimeout by sweeping its connection list every `connectionsCheckingInterval` and reports
// every connection that expired since the last sweep in the same turn ('clientError' for each).
// Under an idle-connection flood at 5,000/s that is ~5,000 sockets per sweep; answering and closing
// them all before yielding (a write, a shutdown and a timer each) blocked the loop for hundreds of
// milliseconds once a second, and real clients' requests waited it out (p99 ~1 s for p50 ~10 ms).
// Queued here instead, they are closed `perTurn` at a time with setImmediate between batches, so
// the poll phase (real clients' I/O) runs between batches.

/** Sockets closed per event-loop turn by default: a few ms of work at most. */
export const CLOSES_PER_TURN = 64

export class CloseQueue<T> {
  private items: T[] = []
  private head = 0
  private scheduled = false
  private turns = 0
  private readonly close: (item: T) => void
  readonly perTurn: number

  /** `close` is called once per pushed item, at most `perTurn` times per event-loop turn. */
  constructor(close: (item: T) => void, perTurn: number = CLOSES_PER_TURN) {
    this.close = close
    this.perTurn = perTurn
    if (!Number.isInteger(perTurn) || perTurn < 1) {
      throw new RangeError(`perTurn must be an integer >= 1, got ${perTurn}`)
    }
  }

  push(item: T): void {
    this.items.push(item)
    if (!this.scheduled) {
      this.scheduled = true
      setImmediate(this.drain)
    }
  }

  /** Items waiting to be closed. */
  pending(): number {
    return this.items.length - this.head
  }

  /** Batches run so far (for tests: a sweep of n items takes ceil(n / perTurn) turns). */
  batches(): number {
    return this.turns
  }

  private readonly drain = (): void => {
    this.turns++
    const end = Math.min(this.items.length, this.head + this.perTurn)
    while (this.head < end) {
      const item = this.items[this.head] as T
      this.head++
      try {
        this.close(item)
      } catch {
        // One socket that cannot be closed cleanly must not keep the others open.
      }
    }
    // Drop the consumed prefix (amortised O(1) per item) so the array does not grow forever.
    if (this.head === this.items.length) {
      this.items = []
      this.head = 0
    } else if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head)
      this.head = 0
    }
    if (this.pending() > 0) setImmediate(this.drain)
    else this.scheduled = false
  }
}
