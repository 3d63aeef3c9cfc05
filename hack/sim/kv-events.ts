// The simulator's KV-event publisher, in vLLM's wire format (vllm/distributed/kv_events.py):
// a ZMQ PUB socket sending [topic, seq (8 bytes big-endian), msgpack KVEventBatch] and a ROUTER
// replay socket answering [client, empty, start seq] with every buffered batch from there on and
// then seq -1. Events come from the simulator's real cache (kv-cache.ts): a block is stored when
// its sequence commits it and removed when it is evicted for reuse, as in vLLM's block pool.
//
// Block hashes are vLLM's (sha256_cbor chain over token ids, NONE_HASH from the seed string, the
// LoRA name as extra key; the low 8 bytes on the wire), token ids those of the `words` tokenizer
// (dataplane/kv-events/tokens.ts), so a router hashing prompts as it would for vLLM finds them.
// Events of one tick go out as one batch, as vLLM batches per engine step. For SGLang-typed pods
// (`engine: 'sglang'`) the same sockets carry SGLang's variant: its page-hash chain and shapes.

import {
  blockHashesFull,
  head64n,
  type KvEngine,
  noneHash,
  sglangHashesFull,
  tail64n,
} from '../../dataplane/kv-events/block-hash.js'
import { wordId } from '../../dataplane/kv-events/tokens.js'
import { encodeBatch, encodeSeq, type WireEvent } from '../../dataplane/kv-events/wire.js'
import { blockHashes, type KvCache, type KvCacheListener } from './kv-cache.js'
import { tokenize } from './tokenizer.js'

/** What one engine's cache holds of a prompt right now (POST /sim/kv/peek; the bench's oracle). */
export interface KvPeek {
  readonly promptTokens: number
  /** Leading prompt tokens resident, as the engine would count them if it admitted it now. */
  readonly cachedTokens: number
}

/** Prompt → (token count, block hashes), shared by every simulator of the process (bounded). */
const peekMemo = new Map<string, { tokens: number; hashes: string[] }>()

/**
 * Read-only: the engine's own lookup (same hashes, same cap of one computed token), so an oracle
 * router sees exactly the hit the engine would give. No real engine offers this; only the
 * benchmark uses it, to bound what any router could reach. The oracle asks every pod about every
 * request and the pods of a benchmark fleet share one process, so a prompt is hashed once there.
 */
export function peekPrompt(kv: KvCache, prompt: string, lora: string | null): KvPeek {
  const key = `${kv.blockSize}\u0000${lora ?? ''}\u0000${prompt}`
  let m = peekMemo.get(key)
  if (m === undefined) {
    const tokens = tokenize(prompt)
    m = { tokens: tokens.length, hashes: blockHashes(tokens, kv.blockSize, lora ?? '') }
    if (peekMemo.size >= 4096) peekMemo.clear()
    peekMemo.set(key, m)
  }
  return { promptTokens: m.tokens, cachedTokens: kv.peekCachedTokens(m.hashes, m.tokens) }
}

export interface KvEventsOptions {
  /** PUB port on the simulator's host (0 = ephemeral). */
  readonly port: number
  /** ROUTER replay port; absent = no replay socket. */
  readonly replayPort?: number
  readonly topic?: string
  /** PYTHONHASHSEED of the "engine". */
  readonly hashSeed?: string
  /** Batches kept for replay (vLLM's buffer_steps). */
  readonly bufferSteps?: number
  /**
   * Whose format and hashes: vLLM's (default) or SGLang's (the server picks it for
   * `metricsFormat: 'sglang'` pods): one BlockStored per page, SGLang's page-hash chain, signed
   * int64 hashes, `medium` omitted.
   */
  readonly engine?: KvEngine
}

export interface KvEventsPublisher {
  readonly port: number
  readonly replayPort: number | undefined
  /** Sequence number of the next batch. */
  readonly nextSeq: bigint
  /** Drop the next `n` batches instead of sending them (tests of gap handling). */
  dropNext(n: number): void
  close(): Promise<void>
}

function boundPort(endpoint: string | null): number {
  const m = /:(\d+)$/.exec(endpoint ?? '')
  return m === null ? 0 : Number(m[1])
}

/**
 * The listener that turns `kv`'s stores and evictions into vLLM's (or SGLang's) wire events, handed
 * to `queue` one by one: the publisher below batches and sends them; the virtual-time fleet
 * (hack/bench/virtual-fleet.ts) applies them to routers' indexes without sockets.
 */
export function kvEventListener(
  kv: KvCache,
  opts: Pick<KvEventsOptions, 'hashSeed' | 'engine'>,
  queue: (e: WireEvent) => void,
): KvCacheListener {
  const seed = noneHash(opts.hashSeed ?? '0')
  const sglang = opts.engine === 'sglang'
  /** Wire hash of each cached block, by the simulator's own hash. */
  const wire = new Map<string, bigint>()
  return {
    stored(hashes, stored, tokens, lora) {
      if (tokens === undefined) return
      const ids = tokens.map(wordId)
      if (sglang) {
        // SGLang's radix cache reports each page on its own, parented on the page before it.
        const full = sglangHashesFull(ids, kv.blockSize, (stored[stored.length - 1] as number) + 1)
        for (const b of stored) {
          const h = head64n(full[b] as Buffer)
          wire.set(hashes[b] as string, h)
          queue({
            type: 'BlockStored',
            hashes: [h],
            parent: b > 0 ? head64n(full[b - 1] as Buffer) : null,
            tokenIds: ids.slice(b * kv.blockSize, (b + 1) * kv.blockSize),
            blockSize: kv.blockSize,
            loraId: null,
            medium: null,
          })
        }
        return
      }
      const last = stored[stored.length - 1] as number
      const full = blockHashesFull(
        ids,
        kv.blockSize,
        seed,
        lora === undefined ? null : [lora],
        last + 1,
      )
      // One event per run of consecutive blocks, parented on the block before the run (as vLLM).
      let i = 0
      while (i < stored.length) {
        let j = i
        while (j + 1 < stored.length && stored[j + 1] === (stored[j] as number) + 1) j++
        const first = stored[i] as number
        const out: bigint[] = []
        for (let b = first; b <= (stored[j] as number); b++) {
          const h = tail64n(full[b] as Buffer)
          wire.set(hashes[b] as string, h)
          out.push(h)
        }
        const parent = first > 0 ? tail64n(full[first - 1] as Buffer) : null
        queue({
          type: 'BlockStored',
          hashes: out,
          parent,
          tokenIds: ids.slice(first * kv.blockSize, ((stored[j] as number) + 1) * kv.blockSize),
          blockSize: kv.blockSize,
          loraId: null,
          medium: 'GPU',
        })
        i = j + 1
      }
    },
    removed(hash) {
      const h = wire.get(hash)
      if (h === undefined) return
      wire.delete(hash)
      queue({ type: 'BlockRemoved', hashes: [h], medium: sglang ? null : 'GPU' })
    },
  }
}

export async function startKvEvents(
  kv: KvCache,
  host: string,
  opts: KvEventsOptions,
): Promise<KvEventsPublisher> {
  const zmq = await import('zeromq')
  const pub = new zmq.Publisher({ linger: 0 })
  await pub.bind(`tcp://${host}:${opts.port}`)
  let router: InstanceType<typeof zmq.Router> | undefined
  if (opts.replayPort !== undefined) {
    router = new zmq.Router({ linger: 0 })
    await router.bind(`tcp://${host}:${opts.replayPort}`)
  }
  const topic = Buffer.from(opts.topic ?? '')
  const sglang = opts.engine === 'sglang'
  const bufferSteps = opts.bufferSteps ?? 10_000
  const buffer: { seq: bigint; payload: Uint8Array }[] = []
  let pending: WireEvent[] = []
  let seq = 0n
  let drop = 0
  let closed = false
  let flushQueued = false
  // One send at a time: zeromq's send() is async and refuses a second concurrent call.
  let sending: Promise<void> = Promise.resolve()

  const flush = () => {
    flushQueued = false
    if (pending.length === 0 || closed) return
    const payload = encodeBatch(Date.now() / 1000, pending, sglang ? 'sglang' : 'vllm')
    pending = []
    const s = seq++
    buffer.push({ seq: s, payload })
    if (buffer.length > bufferSteps) buffer.shift()
    if (drop > 0) {
      drop--
      return
    }
    sending = sending
      .then(() => (closed ? undefined : pub.send([topic, encodeSeq(s), payload])))
      .catch(() => undefined)
  }
  const queue = (e: WireEvent) => {
    pending.push(e)
    if (!flushQueued) {
      flushQueued = true
      setImmediate(flush)
    }
  }

  kv.listener = kvEventListener(kv, opts, queue)

  const serveReplay = async () => {
    if (router === undefined) return
    try {
      for await (const frames of router) {
        if (frames.length !== 3) continue
        const [client, , start] = frames as [Buffer, Buffer, Buffer]
        if (start.length !== 8) continue
        const from = start.readBigInt64BE(0)
        for (const b of buffer) {
          if (b.seq >= from)
            await router.send([client, Buffer.alloc(0), encodeSeq(b.seq), b.payload])
        }
        await router.send([client, Buffer.alloc(0), encodeSeq(-1n), Buffer.alloc(0)])
      }
    } catch {
      // closed
    }
  }
  const replayLoop = serveReplay()

  return {
    port: boundPort(pub.lastEndpoint),
    replayPort: router === undefined ? undefined : boundPort(router.lastEndpoint),
    get nextSeq() {
      return seq
    },
    dropNext(n) {
      drop += n
    },
    async close() {
      if (closed) return
      flush()
      await sending
      closed = true
      kv.listener = null
      pub.close()
      router?.close()
      await replayLoop
    },
  }
}
