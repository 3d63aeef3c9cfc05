// OpenTelemetry traces of inference requests, off by default. With an OTLP endpoint configured
// (--otlp-endpoint, or the standard OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT variables) each sampled
// request gets one SERVER span named after the GenAI semantic conventions ("chat llama-3"), with
// gen_ai.* request/response/usage attributes, the endpoint as server.address/port, the route and
// the caller's tier (never the tenant: tenants are caller-chosen and unbounded), the scheduler's
// decision and any fallbacks as span events. A client's W3C `traceparent` is the parent; the span's
// own context goes to the engine or provider as `traceparent`, so their spans join the trace.
//
// Off, nothing here is called: the request path tests one `undefined`. On, spans are batched and
// exported over OTLP/HTTP (protobuf by default, or JSON) by the maintained OpenTelemetry JS SDK
// (its BatchSpanProcessor and OTLP trace exporters), in a worker thread (span-export.ts,
// otlp-exporter.ts, tracing-worker.ts).
//
// Why the span is recorded here and not by the SDK's Tracer (issue 15: ≤ 50 µs added per request
// at 500 req/s): the gateway records exactly one span per request, explicitly passed along (no
// context manager, no active span), with attributes whose keys and value types it owns. The SDK
// Tracer's generic path (context lookups, propagator and sampler calls, attribute sanitising and
// span-limit checks on every call, ids made even for unsampled requests) cost ~15 µs CPU per
// request in a hot loop, against ~3 µs for this. So the request path keeps a few fields and ends
// with one compact record (span-export.ts SpanRecord: a tuple of strings and numbers plus the
// attribute object). Sampling has the SDK's ParentBased(TraceIdRatio) semantics: a client's sampled
// traceparent is followed, an unsampled one never recorded, new traces are recorded at the ratio;
// an unsampled request costs one random number and nothing more.
//
// Why a worker thread (issue 15): turning a span into OTLP (the SDK's transform, JSON encoding) and
// sending it cost ~60-80 µs of CPU per span on the thread serving requests, and each export of a
// batch stalled its event loop for milliseconds. Now the request path appends the record to a
// batch, and a batch (POST_BATCH records, or whatever waited POST_DELAY_MS) is posted to the worker
// in one structured clone (a few µs per span) from a timer or setImmediate, never inside a
// request's end. The worker owns the SDK's processor and exporter. What is in flight is bounded
// (MAX_QUEUE spans handed over and not yet answered for by the exporter): beyond it, and while a
// dead worker is restarted (at most once per RESTART_MS), spans are dropped — never a queue
// without bound, never a blocked request — and every drop is counted
// (infer_gateway_trace_spans_dropped_total{reason}). Shutdown flushes the worker, then ends it.
// The worker runs its thread at nice 19 (thread-priority.ts): its export work yields the core to
// the thread serving requests whenever both are ready.
import type { Worker } from 'node:worker_threads'
import { SpanStatusCode } from '@opentelemetry/api'
import { Counter, type Registry } from 'prom-client'
import type { Logger } from '../log.js'
import { RANDOM_POOL, takeRandom } from '../random-pool.js'
import { workerWithOwnHeap } from '../worker-heap.js'
import {
  COUNTER_SLOTS,
  type EventRecord,
  EXPORTED,
  FAILED,
  IN_FLIGHT,
  MAX_QUEUE,
  type SpanAttributes,
  SpanExport,
  type SpanExportOptions,
  type SpanRecord,
} from './span-export.js'
import { type ThreadPriority, WORKER_NICE } from './thread-priority.js'
import { TracingConfigError, type TracingOptions, tracesUrl } from './tracing-config.js'
import type {
  TracingWorkerData,
  TracingWorkerReply,
  TracingWorkerRequest,
} from './tracing-worker.js'
import { tracingWorkerCode } from './tracing-worker-code.js'

export { EXPORT_BATCH, MAX_QUEUE, type SpanAttributes } from './span-export.js'

/** GenAI operation names by the gateway's API kind. */
const OPERATION: Readonly<Record<string, string>> = {
  chat: 'chat',
  completions: 'text_completion',
  embeddings: 'embeddings',
  responses: 'chat',
  messages: 'chat',
}

/** A remote parent from a W3C `traceparent` (and `tracestate`) header. */
export interface TraceParent {
  readonly traceId: string
  readonly spanId: string
  readonly sampled: boolean
  readonly traceState?: string
}

const TRACEPARENT = /^[ \t]*([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?[ \t]*$/
const ZERO_TRACE = '0'.repeat(32)
const ZERO_SPAN = '0'.repeat(16)

/**
 * The parent of a W3C `traceparent` header, or undefined when it is not a valid one (the request
 * is then a new trace, as OpenTelemetry's W3CTraceContextPropagator treats it): version `ff` and
 * all-zero ids are invalid; version 00 has exactly four fields, later versions may have more.
 */
export function parseTraceparent(value: string, tracestate?: string): TraceParent | undefined {
  const m = TRACEPARENT.exec(value)
  if (m === null) return undefined
  const [, version, traceId, spanId, flags, rest] = m as unknown as [
    string,
    string,
    string,
    string,
    string,
    string | undefined,
  ]
  if (version === 'ff' || (version === '00' && rest !== undefined)) return undefined
  if (traceId === ZERO_TRACE || spanId === ZERO_SPAN) return undefined
  const sampled = (Number.parseInt(flags, 16) & 1) === 1
  return tracestate !== undefined && tracestate !== ''
    ? { traceId, spanId, sampled, traceState: tracestate }
    : { traceId, spanId, sampled }
}

// Span and trace ids from the shared pool of crypto-random bytes (random-pool.ts).
function randomHex(bytes: number): string {
  const from = takeRandom(bytes)
  const s = RANDOM_POOL.toString('hex', from, from + bytes)
  // All zeros is the invalid id (probability 2^-64 for a span id): draw again.
  return /[^0]/.test(s) ? s : randomHex(bytes)
}

/** performance.now() is relative to this; records carry epoch milliseconds. */
const ORIGIN = performance.timeOrigin
/** Records per postMessage to the worker: one structured clone per batch. */
export const POST_BATCH = 64
/**
 * Longest a record waits for its batch to be posted (or the export delay, if shorter). Each post
 * wakes the worker: at low span rates (ratio 0.1 at 500 req/s: 50 spans a second) its wakeups, not
 * its spans, were most of its CPU, and posting every second instead of every 200 ms took ~20 % off
 * it (issue 15). The worker's processor waits up to the export delay again before sending.
 */
export const POST_DELAY_MS = 1000
/** A dead worker is started again at most this often (spans meanwhile are dropped, counted). */
export const RESTART_MS = 1000
/** How long shutdown waits for the worker's last export before ending it anyway. */
const SHUTDOWN_WAIT_MS = 15_000

export type DropReason = 'export_failed' | 'queue_full' | 'worker_exit'

/** Spans exported and dropped since the start (the metrics' source, and tests'). */
export interface TracingStats {
  readonly exported: number
  readonly dropped: Readonly<Record<DropReason, number>>
}

export interface TracingDeps {
  /** Where the span counters go (the data plane's /metrics). */
  readonly registry?: Registry
  /** The worker's failures (it is restarted; spans meanwhile are dropped and counted). */
  readonly log?: Logger
}

export class Tracing {
  readonly #ratio: number
  readonly #sender: SpanSender
  readonly url: string

  constructor(opts: TracingOptions, deps: TracingDeps = {}) {
    this.url = tracesUrl(opts.endpoint)
    const ratio = opts.sampleRatio ?? 1
    if (!(ratio >= 0 && ratio <= 1))
      throw new TracingConfigError(
        'invalid_tracing_sample_ratio',
        `trace sample ratio must be within 0..1, got ${ratio}`,
      )
    this.#ratio = ratio
    const options: SpanExportOptions = {
      url: this.url,
      protocol: opts.protocol ?? 'http/protobuf',
      serviceName: opts.serviceName ?? process.env['OTEL_SERVICE_NAME'] ?? 'infer-gateway',
      exportDelayMs: opts.exportDelayMs ?? 1000,
      ...(opts.exportTimeoutMs !== undefined ? { exportTimeoutMs: opts.exportTimeoutMs } : {}),
    }
    this.#sender = new SpanSender(options, opts.workerNice ?? WORKER_NICE, opts.exporter, deps.log)
    if (deps.registry !== undefined) this.#register(deps.registry)
  }

  /**
   * The span of one inference request, or undefined when it is not sampled (nothing is recorded
   * and the client's own `traceparent`, if any, goes to the engine unchanged).
   */
  start(header: (name: string) => string | undefined, api: string): RequestTrace | undefined {
    const tp = header('traceparent')
    const parent = tp === undefined ? undefined : parseTraceparent(tp, header('tracestate'))
    if (parent !== undefined) {
      // The client decided.
      if (!parent.sampled) return undefined
    } else if (this.#ratio < 1 && !(Math.random() < this.#ratio)) return undefined
    return new RequestTrace(this.#sender.push, OPERATION[api] ?? api, parent)
  }

  stats(): TracingStats {
    return this.#sender.stats()
  }

  /** The exporting worker thread while it runs (diagnostics; tests end it as a crash would). */
  worker(): Worker | undefined {
    return this.#sender.worker()
  }

  /**
   * How the running worker's thread lowered its OS priority (its thread id and nice value, or why
   * it could not), once it has said; undefined before.
   */
  workerPriority(): ThreadPriority | undefined {
    return this.#sender.priority
  }

  /** Exports what is still buffered. */
  flush(): Promise<void> {
    return this.#sender.flush()
  }

  /** Exports what is still buffered and ends the worker; later spans are dropped. */
  shutdown(): Promise<void> {
    return this.#sender.shutdown()
  }

  #register(registry: Registry): void {
    // Cumulative figures from the sender, turned into counter increments at each scrape.
    let seen: TracingStats = {
      exported: 0,
      dropped: { export_failed: 0, queue_full: 0, worker_exit: 0 },
    }
    const sync = (): TracingStats => {
      const now = this.stats()
      const last = seen
      seen = now
      exported.inc(now.exported - last.exported)
      for (const r of Object.keys(now.dropped) as DropReason[])
        dropped.inc({ reason: r }, now.dropped[r] - last.dropped[r])
      return now
    }
    const exported = new Counter({
      name: 'infer_gateway_trace_spans_exported_total',
      help: 'Request spans the OTLP endpoint accepted.',
      registers: [registry],
      collect: () => {
        sync()
      },
    })
    const dropped = new Counter({
      name: 'infer_gateway_trace_spans_dropped_total',
      help: 'Request spans not exported: the OTLP export failed (export_failed), too many waited (queue_full), or the tracing worker ended (worker_exit).',
      labelNames: ['reason'] as const,
      registers: [registry],
      collect: () => {
        sync()
      },
    })
    for (const r of ['export_failed', 'queue_full', 'worker_exit'] as const)
      dropped.inc({ reason: r }, 0)
  }
}

/** One request's span: attributes and events as the request goes, ended (and exported) once. */
export class RequestTrace {
  readonly #sink: (span: SpanRecord) => void
  readonly #operation: string
  readonly #parent: TraceParent | undefined
  readonly traceId: string
  readonly spanId: string
  /** Epoch milliseconds at the start. */
  readonly #start = ORIGIN + performance.now()
  #name: string
  #model: string | undefined
  #events: EventRecord[] | undefined
  #ended = false

  constructor(
    sink: (span: SpanRecord) => void,
    operation: string,
    parent: TraceParent | undefined,
  ) {
    this.#sink = sink
    this.#operation = operation
    this.#name = operation
    this.#parent = parent
    this.traceId = parent?.traceId ?? randomHex(16)
    this.spanId = randomHex(8)
  }

  /** `traceparent` for the upstream request: this span is the engine's (or provider's) parent. */
  traceparent(): string {
    return `00-${this.traceId}-${this.spanId}-01`
  }

  /**
   * The model asked for. The span name becomes "{operation} {model}" only for a model the config
   * routes: span names must stay few, and callers can send any string.
   */
  model(model: string, routed: boolean): void {
    if (routed) this.#name = `${this.#operation} ${model}`
    this.#model = model
  }

  event(name: string, attributes: SpanAttributes): void {
    const e: EventRecord = [name, ORIGIN + performance.now(), attributes]
    if (this.#events === undefined) this.#events = [e]
    else this.#events.push(e)
  }

  /**
   * Ends the span (once) and hands it to the exporter: final attributes, and an error status for
   * 5xx answers. `attributes` becomes the span's (the caller builds it for this call).
   */
  end(status: number, attributes: SpanAttributes, errorType?: string): void {
    if (this.#ended) return
    this.#ended = true
    const a = attributes
    a['gen_ai.operation.name'] = this.#operation
    if (this.#model !== undefined) a['gen_ai.request.model'] = this.#model
    a['http.response.status_code'] = status
    if (errorType !== undefined && errorType !== '') a['error.type'] = errorType
    // Server spans: only 5xx are errors of this service (OpenTelemetry HTTP conventions).
    const error = status >= 500
    const p = this.#parent
    this.#sink([
      this.#name,
      this.traceId,
      this.spanId,
      p?.spanId ?? '',
      p?.traceState ?? '',
      this.#start,
      ORIGIN + performance.now(),
      error ? SpanStatusCode.ERROR : SpanStatusCode.UNSET,
      error ? (errorType ?? '') : '',
      a,
      this.#events,
    ])
  }
}

type WorkerState =
  | { readonly kind: 'starting'; readonly waiting: SpanRecord[][]; readonly ready: Promise<void> }
  | { readonly kind: 'ready'; readonly worker: Worker }
  | { readonly kind: 'dead'; readonly since: number }

/**
 * Batches records and hands them to the exporter: the tracing worker, or (an embedder's own
 * SpanExporter) a SpanExport in this thread. Counts what it had to drop.
 */
class SpanSender {
  /** span-export.ts slots, shared with the worker. */
  readonly #counters = new Int32Array(new SharedArrayBuffer(COUNTER_SLOTS * 4))
  readonly #options: SpanExportOptions
  readonly #nice: number
  readonly #postDelayMs: number
  readonly #local: SpanExport | undefined
  readonly #log: Logger | undefined
  #state: WorkerState | undefined
  #batch: SpanRecord[] = []
  #timer: NodeJS.Timeout | undefined
  #immediate = false
  #closed = false
  #queueFull = 0
  #workerExit = 0
  #nextId = 0
  readonly #replies = new Map<number, () => void>()
  /** What the current worker said about its thread's priority. */
  priority: ThreadPriority | undefined

  constructor(
    options: SpanExportOptions,
    nice: number,
    exporter: TracingOptions['exporter'],
    log: Logger | undefined,
  ) {
    this.#options = options
    this.#nice = nice
    this.#postDelayMs = Math.min(POST_DELAY_MS, options.exportDelayMs)
    this.#log = log
    this.#local =
      exporter !== undefined ? new SpanExport(options, this.#counters, exporter) : undefined
    if (this.#local === undefined) this.#start()
  }

  readonly push = (r: SpanRecord): void => {
    if (this.#closed) {
      this.#workerExit++
      return
    }
    if (Atomics.load(this.#counters, IN_FLIGHT) + this.#batch.length >= MAX_QUEUE) {
      this.#queueFull++
      return
    }
    this.#batch.push(r)
    if (this.#batch.length >= POST_BATCH) {
      if (!this.#immediate) {
        this.#immediate = true
        setImmediate(this.#post)
      }
    } else if (this.#timer === undefined) {
      this.#timer = setTimeout(this.#post, this.#postDelayMs)
      this.#timer.unref()
    }
  }

  readonly #post = (): void => {
    this.#immediate = false
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer)
      this.#timer = undefined
    }
    const b = this.#batch
    if (b.length === 0) return
    this.#batch = []
    const c = this.#counters
    Atomics.add(c, IN_FLIGHT, b.length)
    if (this.#local !== undefined) {
      this.#local.add(b)
      return
    }
    let s = this.#state
    if (s?.kind === 'dead' && performance.now() - s.since >= RESTART_MS && !this.#closed)
      s = this.#start()
    if (s?.kind === 'ready') s.worker.postMessage(b satisfies TracingWorkerRequest)
    else if (s?.kind === 'starting') s.waiting.push(b)
    else {
      Atomics.sub(c, IN_FLIGHT, b.length)
      this.#workerExit += b.length
    }
  }

  #start(): WorkerState {
    let ready: () => void = () => {}
    const s: WorkerState = {
      kind: 'starting',
      waiting: [],
      ready: new Promise<void>((r) => {
        ready = r
      }),
    }
    this.#state = s
    tracingWorkerCode().then(
      (code) => {
        const data: TracingWorkerData = {
          options: this.#options,
          counters: this.#counters.buffer as SharedArrayBuffer,
          nice: this.#nice,
        }
        // V8's own sizing for the worker's heap, not the young generation the process's flags
        // fix for the thread serving requests (cdk8s/dataplane-node.ts).
        const w = workerWithOwnHeap(code, { eval: true, workerData: data })
        // Never what keeps the process alive: shutdown ends it, and without shutdown spans are lost.
        w.unref()
        this.priority = undefined
        w.on('message', (m: TracingWorkerReply) => {
          if ('priority' in m) {
            this.priority = m.priority
            // Spans are exported all the same, at the priority of the thread serving requests.
            if ('error' in m.priority)
              this.#log?.('warn', 'tracing worker could not lower its thread priority', {
                error: m.priority.error,
              })
            return
          }
          this.#replies.get(m.done)?.()
          this.#replies.delete(m.done)
        })
        w.on('error', (e) => this.#log?.('error', 'tracing worker failed', { error: e.message }))
        w.on('exit', () => this.#exited(w))
        this.#state = { kind: 'ready', worker: w }
        for (const b of s.waiting) w.postMessage(b satisfies TracingWorkerRequest)
        ready()
      },
      (e: unknown) => {
        this.#log?.('error', 'tracing worker could not start', {
          error: e instanceof Error ? e.message : String(e),
        })
        this.#died()
        ready()
      },
    )
    return s
  }

  #exited(w: Worker): void {
    const s = this.#state
    if (s?.kind !== 'ready' || s.worker !== w) return
    if (!this.#closed)
      this.#log?.('warn', 'tracing worker ended; restarting it with the next spans')
    this.#died()
  }

  /** Everything handed over and not answered for is lost; waiters are released. */
  #died(): void {
    this.#workerExit += Atomics.exchange(this.#counters, IN_FLIGHT, 0)
    this.#state = { kind: 'dead', since: performance.now() }
    this.priority = undefined
    for (const r of this.#replies.values()) r()
    this.#replies.clear()
  }

  /** Asks the worker (`op`) and resolves on its answer, or when it is gone. */
  async #ask(op: 'flush' | 'shutdown', waitMs?: number): Promise<void> {
    let s = this.#state
    if (s?.kind === 'starting') {
      await s.ready
      s = this.#state
    }
    if (s?.kind !== 'ready') return
    const id = this.#nextId++
    const w = s.worker
    await new Promise<void>((resolve) => {
      let timer: NodeJS.Timeout | undefined
      this.#replies.set(id, () => {
        if (timer !== undefined) clearTimeout(timer)
        resolve()
      })
      if (waitMs !== undefined) {
        timer = setTimeout(() => {
          this.#replies.delete(id)
          resolve()
        }, waitMs)
        timer.unref()
      }
      w.postMessage({ op, id } satisfies TracingWorkerRequest)
    })
  }

  worker(): Worker | undefined {
    const s = this.#state
    return s?.kind === 'ready' ? s.worker : undefined
  }

  stats(): TracingStats {
    const c = this.#counters
    return {
      exported: Atomics.load(c, EXPORTED),
      dropped: {
        export_failed: Atomics.load(c, FAILED),
        queue_full: this.#queueFull,
        worker_exit: this.#workerExit,
      },
    }
  }

  async flush(): Promise<void> {
    this.#post()
    if (this.#local !== undefined) await this.#local.flush()
    else await this.#ask('flush')
  }

  async shutdown(): Promise<void> {
    if (this.#closed) return
    this.#post()
    this.#closed = true
    if (this.#local !== undefined) {
      await this.#local.shutdown()
      return
    }
    await this.#ask('shutdown', SHUTDOWN_WAIT_MS)
    const s = this.#state
    if (s?.kind === 'ready') {
      // Answered (or given up on): whatever it still holds is lost, and counted.
      this.#died()
      await s.worker.terminate()
    }
  }
}
