// The scheduler of one simulated engine: a FIFO waiting queue, at most `maxNumSeqs` running
// sequences, KV blocks reserved for each running sequence, LoRA slots, and a latency model driven
// by timers on an absolute "engine clock" (each token has a due time; a late timer catches up
// instead of drifting, so sub-millisecond time scales stay accurate in aggregate).
//
// Admission follows vLLM v1's FCFS loop: a request whose adapter cannot get a slot is skipped
// (later requests may go first), a request that does not fit in the KV cache stops admission
// (head-of-line, nothing overtakes it).

import { performance } from 'node:perf_hooks'
import { SimError } from './errors.js'
import { blockHashes, type KvAllocation, KvCache, type KvCacheStats } from './kv-cache.js'
import { LoraSlots } from './lora.js'

export interface EngineConfig {
  timeScale: number
  zeroLatency: boolean
  prefillOverheadMs: number
  prefillMsPerToken: number
  decodeMsPerToken: number
  batchSlowdown: number
  maxNumSeqs: number
  numGpuBlocks: number
  blockSize: number
  maxModelLen: number
  loras: readonly string[]
  maxLoras: number
  loraLoadMs: number
  /**
   * Prefill stalls decode (PD study): prompts are computed one after another on the GPU, and a
   * running sequence's next token waits for the prefill work scheduled before it, as in an
   * engine that interleaves prefill and decode steps. Off = the original model (decode pace
   * depends on batch size only). Optional so existing configurations keep their behaviour.
   */
  prefillInterference?: boolean
  /** KV cache received from a prefill pod: ms per transferred token (PD study). */
  kvTransferMsPerToken?: number
}

export type FinishReason = 'length' | 'stop'

export interface GenerationSpec {
  /** Adapter name, or null for the base model. */
  lora: string | null
  promptTokens: readonly string[]
  /** The full output, decided up front (deterministic); the engine paces its delivery. */
  outputTokens: readonly string[]
  finishReason: FinishReason
  streaming: boolean
  /**
   * The prompt's KV cache arrives from a prefill pod (PD): no prefill compute here, only the
   * transfer of the prompt tokens this engine does not already cache. Absent = computed here.
   */
  kvTransfer?: boolean
}

export interface GenerationResult {
  finishReason: FinishReason
  promptTokens: number
  completionTokens: number
  cachedTokens: number
  /** Engine-clock milliseconds from arrival. */
  queueMs: number
  ttftMs: number
  e2eMs: number
}

export interface GenerationSink {
  token(text: string, index: number): void
  finish(result: GenerationResult): void
}

/** Hooks for metrics; all times in seconds of the engine clock. */
export interface EngineObserver {
  prefix(queriedTokens: number, hitTokens: number): void
  firstToken(ttftSeconds: number, queueSeconds: number, streaming: boolean): void
  interToken(seconds: number): void
  finished(result: GenerationResult, streaming: boolean): void
  aborted(): void
}

export interface EngineTicket {
  cancel(): void
}

export interface EngineGauges {
  running: number
  waiting: number
  kvUsage: number
  kv: KvCacheStats
  blockSize: number
  /** Prompt + max output tokens reserved by running sequences (TGI's batch max tokens). */
  reservedTokens: number
  /** Prompt + generated-so-far tokens of running sequences (SGLang decode_sum_seq_lens). */
  seqLenSum: number
  runningLoras: string[]
  waitingLoras: string[]
  loadedLoras: string[]
  maxLoras: number
}

interface Seq {
  readonly spec: GenerationSpec
  readonly sink: GenerationSink
  readonly hashes: string[]
  readonly arrival: number
  state: 'waiting' | 'running' | 'done'
  alloc: KvAllocation | null
  loraHeld: boolean
  timer: NodeJS.Timeout | null
  emitted: number
  admittedAt: number
  firstDue: number
  lastDue: number
  nextDue: number
}

export const noopObserver: EngineObserver = {
  prefix: () => {},
  firstToken: () => {},
  interToken: () => {},
  finished: () => {},
  aborted: () => {},
}

export class Engine {
  readonly config: EngineConfig
  readonly kv: KvCache
  readonly lora: LoraSlots
  private readonly observer: EngineObserver
  private readonly waiting: Seq[] = []
  private readonly running = new Set<Seq>()
  private pumping = false
  private repump = false
  private closed = false
  /** Prefill work scheduled on the GPU (prefillInterference): [start, end) engine-clock ms. */
  private windows: { a: number; b: number }[] = []
  private gpuFreeAt = 0

  constructor(config: EngineConfig, observer: EngineObserver = noopObserver) {
    this.config = config
    this.kv = new KvCache(config.numGpuBlocks, config.blockSize)
    this.lora = new LoraSlots(config.loras, config.maxLoras)
    this.observer = observer
  }

  /**
   * Queue a generation. Throws SimError(400) when it can never fit (model length or KV capacity),
   * because queueing it would block the FIFO forever.
   */
  submit(spec: GenerationSpec, sink: GenerationSink): EngineTicket {
    if (this.closed) throw new SimError(503, 'engine_closed', 'The engine is shutting down.')
    const promptLen = spec.promptTokens.length
    const total = promptLen + spec.outputTokens.length
    if (total > this.config.maxModelLen || this.kv.blocksFor(total) > this.kv.numBlocks) {
      const limit = Math.min(this.config.maxModelLen, this.kv.numBlocks * this.kv.blockSize)
      throw new SimError(
        400,
        'context_length_exceeded',
        `This model's maximum context length is ${limit} tokens. However, you requested ${total} tokens (${promptLen} in the messages, ${spec.outputTokens.length} in the completion). Please reduce the length of the messages or completion.`,
        'messages',
      )
    }
    const seq: Seq = {
      spec,
      sink,
      // The adapter name is part of the hash chain: KV computed under one adapter is useless to another.
      hashes: blockHashes(spec.promptTokens, this.config.blockSize, spec.lora ?? ''),
      arrival: performance.now(),
      state: 'waiting',
      alloc: null,
      loraHeld: false,
      timer: null,
      emitted: 0,
      admittedAt: 0,
      firstDue: 0,
      lastDue: 0,
      nextDue: 0,
    }
    this.waiting.push(seq)
    this.pump()
    return { cancel: () => this.cancel(seq) }
  }

  gauges(): EngineGauges {
    let reserved = 0
    let seqLen = 0
    const runningLoras = new Set<string>()
    for (const s of this.running) {
      reserved += s.spec.promptTokens.length + s.spec.outputTokens.length
      seqLen += s.spec.promptTokens.length + s.emitted
      if (s.spec.lora !== null) runningLoras.add(s.spec.lora)
    }
    const waitingLoras = new Set<string>()
    for (const s of this.waiting) if (s.spec.lora !== null) waitingLoras.add(s.spec.lora)
    return {
      running: this.running.size,
      waiting: this.waiting.length,
      kvUsage: this.kv.usage(),
      kv: this.kv.stats(),
      blockSize: this.config.blockSize,
      reservedTokens: reserved,
      seqLenSum: seqLen,
      runningLoras: [...runningLoras],
      waitingLoras: [...waitingLoras],
      loadedLoras: this.lora.loaded(),
      maxLoras: this.lora.maxLoras,
    }
  }

  /** Cancel everything (server shutdown); sinks are not called. */
  close(): void {
    this.closed = true
    for (const s of [...this.waiting, ...this.running]) this.cancel(s)
  }

  private scaled(ms: number): number {
    return this.config.zeroLatency ? 0 : ms * this.config.timeScale
  }

  private pump(): void {
    if (this.closed) return
    if (this.pumping) {
      this.repump = true
      return
    }
    this.pumping = true
    try {
      do {
        this.repump = false
        let i = 0
        while (i < this.waiting.length && this.running.size < this.config.maxNumSeqs) {
          const s = this.waiting[i]
          if (s === undefined) break
          if (s.spec.lora !== null && !this.lora.canAcquire(s.spec.lora)) {
            i++
            continue
          }
          const promptLen = s.spec.promptTokens.length
          const alloc = this.kv.allocate(
            s.hashes,
            promptLen,
            promptLen + s.spec.outputTokens.length,
          )
          if (alloc === null) break
          this.waiting.splice(i, 1)
          this.start(s, alloc)
        }
      } while (this.repump)
    } finally {
      this.pumping = false
    }
  }

  private start(s: Seq, alloc: KvAllocation): void {
    const t = performance.now()
    s.state = 'running'
    s.alloc = alloc
    s.admittedAt = t
    this.running.add(s)
    let readyAt = t
    if (s.spec.lora !== null) {
      const got = this.lora.acquire(s.spec.lora, t, this.scaled(this.config.loraLoadMs))
      // canAcquire() was checked just before, so 'blocked' cannot happen; stay defensive anyway.
      if (got.kind === 'ready') readyAt = Math.max(t, got.readyAt)
      s.loraHeld = got.kind === 'ready'
    }
    const promptLen = s.spec.promptTokens.length
    this.observer.prefix(promptLen, alloc.cachedTokens)
    if (s.spec.kvTransfer === true) {
      // Pulled over the network while the GPU keeps decoding: no window, no interference.
      const ms = (promptLen - alloc.cachedTokens) * (this.config.kvTransferMsPerToken ?? 0)
      s.nextDue = readyAt + this.scaled(ms)
    } else {
      // Cached blocks another prefill is still computing are hits, but usable only once it ends.
      readyAt = Math.max(readyAt, alloc.readyAt)
      const prefill =
        this.config.prefillOverheadMs +
        (promptLen - alloc.cachedTokens) * this.config.prefillMsPerToken
      s.nextDue =
        this.config.prefillInterference === true && !this.config.zeroLatency
          ? this.prefillWindow(s, readyAt, this.scaled(prefill))
          : readyAt + this.scaled(prefill)
      // vLLM v1 registers a prompt's full blocks when it schedules them (allocate_slots ->
      // cache_blocks, before the forward pass; BlockStored is published then), not when the
      // prefill ends: a request for the same prefix arriving meanwhile hits them and waits.
      this.kv.commit(alloc, s.hashes, s.spec.promptTokens, s.spec.lora ?? undefined, s.nextDue)
    }
    if (this.config.zeroLatency) {
      // No timers at all: the benchmark mode must not add event-loop hops.
      this.emitDue(s, Number.POSITIVE_INFINITY)
    } else {
      this.arm(s)
    }
  }

  /**
   * Schedule `ms` of prefill after the GPU's earlier prefills; running sequences whose next token
   * was due after the window's start wait for it. Returns when the prompt is computed.
   */
  private prefillWindow(s: Seq, readyAt: number, ms: number): number {
    const a = Math.max(readyAt, this.gpuFreeAt)
    const b = a + ms
    this.gpuFreeAt = b
    const now = performance.now()
    this.windows = this.windows.filter((w) => w.b > now)
    this.windows.push({ a, b })
    for (const r of this.running) {
      if (r === s || r.emitted === 0 || r.state !== 'running' || r.nextDue <= a) continue
      r.nextDue += b - a
      if (r.timer !== null) {
        clearTimeout(r.timer)
        this.arm(r)
      }
    }
    return b
  }

  /**
   * When a decode step from `due` taking `itl` ends: it waits out a prefill window it starts in,
   * and pauses for one that starts while it runs (windows are in start order, never overlapping).
   */
  private afterWindows(due: number, itl: number): number {
    let start = due
    let left = itl
    for (const w of this.windows) {
      if (w.b <= start) continue
      if (w.a <= start) {
        start = w.b
        continue
      }
      if (w.a >= start + left) break
      left -= w.a - start
      start = w.b
    }
    return start + left
  }

  private arm(s: Seq): void {
    const delay = Math.max(0, s.nextDue - performance.now())
    s.timer = setTimeout(() => {
      s.timer = null
      this.emitDue(s, performance.now())
    }, delay)
  }

  /** Emit every token due by `now` (engine clock), then re-arm or finish. */
  private emitDue(s: Seq, now: number): void {
    const out = s.spec.outputTokens
    while (s.state === 'running' && s.nextDue <= now && s.emitted < out.length) {
      const due = s.nextDue
      const index = s.emitted
      s.emitted++
      if (index === 0) {
        s.firstDue = due
        // A prompt whose KV came from a prefill pod is registered once it has arrived (vLLM delays
        // caching blocks received from remote); computed prompts were registered at start.
        if (s.alloc !== null && s.spec.kvTransfer === true)
          this.kv.commit(s.alloc, s.hashes, s.spec.promptTokens, s.spec.lora ?? undefined)
        this.observer.firstToken(
          (due - s.arrival) / 1000,
          (s.admittedAt - s.arrival) / 1000,
          s.spec.streaming,
        )
      } else {
        this.observer.interToken((due - s.lastDue) / 1000)
      }
      s.lastDue = due
      s.sink.token(out[index] ?? '', index)
      const itl =
        this.config.decodeMsPerToken *
        (1 + this.config.batchSlowdown * Math.max(0, this.running.size - 1))
      s.nextDue =
        this.windows.length > 0 ? this.afterWindows(due, this.scaled(itl)) : due + this.scaled(itl)
    }
    if (s.state !== 'running') return
    if (s.emitted >= out.length) this.finish(s)
    else this.arm(s)
  }

  private finish(s: Seq): void {
    const result: GenerationResult = {
      finishReason: s.spec.finishReason,
      promptTokens: s.spec.promptTokens.length,
      completionTokens: s.spec.outputTokens.length,
      cachedTokens: s.alloc?.cachedTokens ?? 0,
      queueMs: s.admittedAt - s.arrival,
      ttftMs: s.firstDue - s.arrival,
      e2eMs: s.lastDue - s.arrival,
    }
    if (s.alloc !== null) {
      // Generated tokens are cached too (vLLM caches every full block), so the next turn of a
      // conversation, whose prompt contains this answer, can hit them.
      const all = [...s.spec.promptTokens, ...s.spec.outputTokens]
      const hashes = blockHashes(all, this.config.blockSize, s.spec.lora ?? '', s.hashes)
      this.kv.commit(s.alloc, hashes, all, s.spec.lora ?? undefined)
    }
    this.retire(s)
    this.observer.finished(result, s.spec.streaming)
    s.sink.finish(result)
    this.pump()
  }

  private cancel(s: Seq): void {
    if (s.state === 'done') return
    if (s.state === 'waiting') {
      const i = this.waiting.indexOf(s)
      if (i >= 0) this.waiting.splice(i, 1)
      s.state = 'done'
    } else {
      this.retire(s)
    }
    this.observer.aborted()
    this.pump()
  }

  private retire(s: Seq): void {
    s.state = 'done'
    if (s.timer !== null) clearTimeout(s.timer)
    s.timer = null
    this.running.delete(s)
    if (s.alloc !== null) this.kv.release(s.alloc)
    if (s.loraHeld && s.spec.lora !== null) this.lora.release(s.spec.lora)
    s.loraHeld = false
  }
}
