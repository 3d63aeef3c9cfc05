// A ZMQ SUB connection to one engine's KV-event publisher (vLLM `--kv-events-config
// '{"enable_kv_cache_events": true, "publisher": "zmq", "endpoint": "tcp://*:5557",
// "replay_endpoint": "tcp://*:5558", "topic": ""}'`), feeding an EndpointKvIndex.
//
// Missing batches are fetched from the replay socket (a ROUTER: we send [empty, start seq] from a
// DEALER and get [empty, seq, payload] per buffered batch, then seq -1 as the end), so a short
// disconnect does not cost the index. Without a replay socket, or when it no longer holds the
// missing batches, the index is reset and rebuilt from the following events.
//
// zeromq is a native addon: imported lazily so the data-plane bundle (hack/build.ts) keeps it
// external and servers that never use kv-cache never load it.

import { EndpointKvIndex } from './endpoint-index.js'
import { decodeSeq, encodeSeq } from './wire.js'

type Zmq = typeof import('zeromq')

let zmqModule: Promise<Zmq> | undefined
function loadZmq(): Promise<Zmq> {
  zmqModule ??= import('zeromq')
  return zmqModule
}

export interface KvSubscriberOptions {
  /** e.g. tcp://10.0.0.7:5557 */
  readonly endpoint: string
  /** e.g. tcp://10.0.0.7:5558; absent: gaps reset the index. */
  readonly replayEndpoint?: string
  /** Topic prefix to subscribe to ('' = all, vLLM's default). */
  readonly topic: string
  readonly maxBlocks: number
  /** How long to wait for replay answers before giving up and resetting (ms). */
  readonly replayTimeoutMs?: number
}

export class KvEventSubscriber {
  readonly opts: KvSubscriberOptions
  readonly state: EndpointKvIndex
  #sub: InstanceType<Zmq['Subscriber']> | undefined
  #closed = false
  /** Resolves when the receive loop has ended (after close). */
  readonly done: Promise<void>
  /** Last error of the receive loop or of a replay, for /debug. */
  lastError: string | undefined

  constructor(opts: KvSubscriberOptions) {
    this.opts = opts
    this.state = new EndpointKvIndex(opts.maxBlocks)
    this.done = this.#run().catch((e: unknown) => {
      this.lastError = (e as Error).message
    })
  }

  async #run(): Promise<void> {
    const zmq = await loadZmq()
    if (this.#closed) return
    const sub = new zmq.Subscriber({ linger: 0, reconnectInterval: 200 })
    this.#sub = sub
    sub.connect(this.opts.endpoint)
    sub.subscribe(this.opts.topic)
    try {
      for await (const frames of sub) {
        if (frames.length < 3) continue
        const seqFrame = frames[frames.length - 2] as Buffer
        const payload = frames[frames.length - 1] as Buffer
        let seq: bigint
        try {
          seq = decodeSeq(seqFrame)
        } catch {
          this.state.stats.malformed++
          continue
        }
        if (this.state.lastSeq === null && seq > 0n && this.opts.replayEndpoint !== undefined) {
          // First message of a publisher that ran before we connected: what it stored earlier is
          // still cached, so take whatever its replay buffer holds before this batch.
          await this.#recover(zmq, seq, true)
        }
        if (this.state.onMessage(seq, payload) !== 'gap') continue
        await this.#recover(zmq, seq, false)
        this.state.applyPayload(seq, payload)
      }
    } catch (e) {
      if (!this.#closed) throw e
    }
  }

  /**
   * Replays (lastSeq, upTo) from the engine's buffer; resets the index when that fails. Catching up
   * (nothing applied yet) takes the buffer from wherever it starts, as there is nothing to be
   * consistent with.
   */
  async #recover(zmq: Zmq, upTo: bigint, catchUp: boolean): Promise<void> {
    const from = (this.state.lastSeq ?? -1n) + 1n
    const ep = this.opts.replayEndpoint
    if (ep === undefined) {
      this.state.reset()
      return
    }
    const dealer = new zmq.Dealer({
      linger: 0,
      receiveTimeout: this.opts.replayTimeoutMs ?? 1000,
    })
    let next = from
    try {
      dealer.connect(ep)
      await dealer.send([Buffer.alloc(0), encodeSeq(from)])
      for (;;) {
        const frames = await dealer.receive()
        const seq = decodeSeq(frames[frames.length - 2] as Buffer)
        if (seq < 0n) break
        if (seq >= upTo) continue
        if (catchUp && seq > next) next = seq
        // The buffer starts after what we need: the first missing batches are gone.
        if (seq !== next) break
        this.state.applyPayload(seq, frames[frames.length - 1] as Buffer)
        next++
      }
    } catch (e) {
      this.lastError = `replay: ${(e as Error).message}`
    } finally {
      dealer.close()
    }
    if (catchUp) return
    if (next === upTo) this.state.stats.replays++
    else this.state.reset()
  }

  close(): void {
    this.#closed = true
    this.#sub?.close()
  }
}
