// Where one decision's time goes in the running EPP (issue 13), behind `epp --debug-phases`: the
// same code, in the same process, under the real load (grpc-js, node:http2, engine scraping, the
// client on the same cores), which an in-process loop (hack/bench/epp-cost.ts) cannot show.
//
// A decision is timed from the request body's last message reaching the stream (grpc-js's 'data'
// event) to node:http2's write callbacks of the answers it made (the bytes handed to the socket),
// with a mark at each step between. `GET /debug/phases` on the metrics port answers the
// percentiles per step over the decisions recorded so far (`?reset=1` starts over after reading),
// and for the slowest of them what was going on: a V8 collection inside the decision, engine
// scrape messages handled on the deciding thread meanwhile, and the step that took the longest.
//
// Off by default: the marks cost a performance.now() each, a small object per decision and, for
// the encode times, a wrapper around grpc-js's serializers (server.ts).

import { closeSync, openSync, readSync } from 'node:fs'
import { PerformanceObserver } from 'node:perf_hooks'
import { scrapeEvents } from '../engines/scraper.js'

/**
 * Marks of one decision, in the order they are taken. Steps are the differences of consecutive
 * marks, except `decode`, `encode1`, `encode2` (measured around the serializers).
 */
export const Mark = {
  /** grpc-js emitted the body's last message ('data'). */
  DATA: 0,
  /** ExtProcStream.handle entered for it (after the stream's message chain). */
  HANDLE: 1,
  /** Body chunks joined into one buffer. */
  CONCAT: 2,
  /** Depth check, UTF-8 text, JSON.parse. */
  PARSE: 3,
  /** Route table, pool, subset hint, pick context. */
  ROUTE: 4,
  /** Admission (the profile's fairness plugin). */
  ADMIT: 5,
  /** Queued bookkeeping applied, then the scheduler's pick. */
  PICK: 6,
  /** The stream holds the decision (Decision object made, awaits resumed). */
  DECIDED: 7,
  /** The destination answer's message object built. */
  BUILT1: 8,
  /** call.write of it returned (serialized, handed to node:http2). */
  WRITE1: 9,
  /** The body answer(s) built and given to call.write (grpc-js queues them behind the first). */
  WRITE2: 10,
  /** node:http2's write callback of the first answer. */
  SENT1: 11,
  /** ... of the last answer. */
  SENT2: 12,
  /** The bookkeeping after the answers (EppCore.afterAnswer) done. */
  BOOKKEPT: 13,
} as const
const MARKS = 14

/** The steps reported, each `[name, what it is]`, in the order of the decision. */
export const STEPS = [
  ['decode', "protobuf decode of the body's last message (grpc-js, before 'data')"],
  ['queue', "'data' → the stream's handler (its message chain, microtasks)"],
  ['concat', 'body chunks joined (Buffer.concat)'],
  ['parse', 'queued bookkeeping applied, depth check + UTF-8 text + JSON.parse'],
  ['route', 'route table, pool, subset, pick context'],
  ['admit', 'admission'],
  ['pick', "queued bookkeeping applied + the scheduler's pick"],
  ['return', 'Decision object, awaits resumed'],
  ['answer1', 'destination answer built'],
  ['encode1', 'its protobuf encode (grpc-js serializer)'],
  ['write1', 'rest of call.write (grpc-js framing, node:http2 write)'],
  ['answer2', 'body answer built and handed over (its encode apart)'],
  ['flush1', "end of the turn → node:http2's callback of the first answer"],
  ['encode2', 'body answer encode'],
  ['flush2', "→ node:http2's callback of the body answer (its encode apart)"],
  ['decision', "'data' → the first answer handed to node:http2 (queue … write1)"],
  ['waited', 'of it, the thread runnable but off its core (schedstat run_delay)'],
  ['on core', 'decision − waited'],
  ['bookkept', "write1 → the bookkeeping after the answer done (dispatch's accounting, metrics)"],
  ['total waited', "'data' → last write callback, runnable but off its core"],
  ['total', "'data' → the last answer's write callback"],
] as const
export type StepName = (typeof STEPS)[number][0]
const STEP_COUNT = STEPS.length
/** Steps before this one follow each other; the rest are spans and shares of them. */
const SEQUENCE_END = STEPS.findIndex(([name]) => name === 'decision')
const WAITED_TOTAL = STEPS.findIndex(([name]) => name === 'total waited')

/** One decision's marks (ms, performance.now()). */
export class DecisionTrace {
  readonly marks = new Float64Array(MARKS).fill(Number.NaN)
  decodeMs = 0
  /** Serializer time of the first answer and of the rest, and when the rest's began. */
  readonly encodeMs = [0, 0]
  encode2At = Number.NaN
  /** Scrape events on this thread at DATA. */
  scrape0 = 0
  /** The thread's run_delay (ns) at the trace's start, at WRITE1 and at the end. */
  readonly waited = [0, 0, 0]
  /** Answers handed to call.write, and their write callbacks seen. */
  #writes = 0
  #sent = 0
  #closed = false
  readonly #rec: PhaseRecorder

  constructor(rec: PhaseRecorder, dataAt: number) {
    this.#rec = rec
    this.marks[Mark.DATA] = dataAt
    this.decodeMs = rec.lastDecodeMs
    this.scrape0 = scrapeEvents.count
    this.waited[0] = rec.runDelayNs()
  }

  mark(m: number): void {
    this.marks[m] = performance.now()
    if (m === Mark.WRITE1) this.waited[1] = this.#rec.runDelayNs()
  }

  /** `msg` (an answer) goes to call.write: returns its write callback. */
  wrote(msg: object): () => void {
    const k = this.#writes++
    this.#rec.tag(msg, this, k)
    return () => {
      this.#sent++
      if (k === 0) this.marks[Mark.SENT1] = performance.now()
      this.marks[Mark.SENT2] = performance.now()
      this.#maybeDone()
    }
  }

  /** The stream made its last answer of the decision. */
  close(): void {
    this.#closed = true
    this.#maybeDone()
  }

  /** Serializer time of the answer `k` (0 = destination, 1.. = body). */
  encoded(k: number, startedAt: number, ms: number): void {
    const i = Math.min(k, 1)
    if (i === 1 && Number.isNaN(this.encode2At)) this.encode2At = startedAt
    this.encodeMs[i] = (this.encodeMs[i] as number) + ms
  }

  #maybeDone(): void {
    if (this.#closed && this.#sent === this.#writes && this.#writes > 0) {
      this.#closed = false
      this.waited[2] = this.#rec.runDelayNs()
      this.#rec.record(this, scrapeEvents.count - this.scrape0)
    }
  }
}

/** Percentiles of one step over the recorded decisions, µs. */
export interface StepSummary {
  readonly step: StepName
  readonly what: string
  readonly p50Us: number
  readonly p90Us: number
  readonly p99Us: number
  readonly meanUs: number
}

export interface PhaseSummary {
  readonly decisions: number
  readonly steps: StepSummary[]
  /**
   * The slowest 1 % of decisions by `total`: how many had a V8 collection inside them, how many
   * had engine scrape events handled on this thread meanwhile, and which step was the longest in
   * how many (`decision` and `total` left out).
   */
  readonly slowest: {
    readonly decisions: number
    readonly minTotalUs: number
    readonly withGc: number
    readonly withScrape: number
    /** Their median time runnable but off the core, µs. */
    readonly waitedP50Us: number
    readonly longestStep: Record<string, number>
  }
  /** Over all decisions: the share with a collection inside, and with scrape events. */
  readonly withGcShare: number
  readonly withScrapeShare: number
  /** `total` p50 / p99 of the decisions without either, µs. */
  readonly clean: { readonly decisions: number; readonly p50Us: number; readonly p99Us: number }
}

const CAPACITY = 50_000

/** The decisions' steps (µs) in a ring; GC intervals seen meanwhile. */
export class PhaseRecorder {
  /** Duration of the last request message decoded (grpc-js decodes just before 'data'). */
  lastDecodeMs = 0
  readonly #steps = new Float64Array(CAPACITY * STEP_COUNT)
  readonly #window = new Float64Array(CAPACITY * 2)
  readonly #scrape = new Uint32Array(CAPACITY)
  #n = 0
  readonly #gc: number[] = []
  readonly #observer: PerformanceObserver
  /** /proc/thread-self/schedstat of the thread that made the recorder (the deciding thread). */
  #schedstat: number | undefined
  readonly #statBuf = Buffer.alloc(128)

  constructor() {
    try {
      this.#schedstat = openSync('/proc/thread-self/schedstat', 'r')
    } catch {
      // Not Linux: no wait times (0).
    }
    this.#observer = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) {
        this.#gc.push(e.startTime, e.startTime + e.duration)
        if (this.#gc.length > 20_000) this.#gc.splice(0, this.#gc.length - 20_000)
      }
    })
    this.#observer.observe({ entryTypes: ['gc'] })
  }

  /** Answers on their way to the serializer: whose, and which of its answers. */
  readonly #encoding = new WeakMap<object, { trace: DecisionTrace; k: number }>()

  /**
   * Time this thread has spent runnable but not running, ns (Linux schedstat run_delay: accounted
   * when the thread gets a core back, so exact between two reads made while it runs). ~3-5 µs.
   */
  runDelayNs(): number {
    if (this.#schedstat === undefined) return 0
    const n = readSync(this.#schedstat, this.#statBuf, 0, this.#statBuf.length, 0)
    const text = this.#statBuf.toString('latin1', 0, n)
    const a = text.indexOf(' ')
    const b = text.indexOf(' ', a + 1)
    return Number(text.slice(a + 1, b))
  }

  begin(dataAt: number): DecisionTrace {
    return new DecisionTrace(this, dataAt)
  }

  tag(msg: object, trace: DecisionTrace, k: number): void {
    this.#encoding.set(msg, { trace, k })
  }

  /** grpc-js's request deserializer, timed (the last one's duration is the next trace's decode). */
  deserializer<T>(f: (b: Buffer) => T): (b: Buffer) => T {
    return (b) => {
      const t0 = performance.now()
      const r = f(b)
      this.lastDecodeMs = performance.now() - t0
      return r
    }
  }

  /** grpc-js's response serializer, timed for the answers of traced decisions. */
  serializer<T extends object>(f: (m: T) => Buffer): (m: T) => Buffer {
    return (m) => {
      const tagged = this.#encoding.get(m)
      if (tagged === undefined) return f(m)
      const t0 = performance.now()
      const r = f(m)
      tagged.trace.encoded(tagged.k, t0, performance.now() - t0)
      return r
    }
  }

  record(t: DecisionTrace, scrapeEvents: number): void {
    const m = t.marks
    // One answer only (BUFFERED): nothing queued behind it.
    if (Number.isNaN(m[Mark.WRITE2])) m[Mark.WRITE2] = m[Mark.WRITE1] as number
    const d = (a: number, b: number): number => {
      const v = ((m[b] as number) - (m[a] as number)) * 1000
      return Number.isFinite(v) ? v : 0
    }
    const enc1 = (t.encodeMs[0] as number) * 1000
    const enc2 = (t.encodeMs[1] as number) * 1000
    // The body answer is encoded when grpc-js writes it: in the decision's turn, or once the
    // first answer's write has completed (one message at a time).
    const enc2Inside = t.encode2At < (m[Mark.WRITE2] as number)
    const vals = [
      t.decodeMs * 1000,
      d(Mark.DATA, Mark.HANDLE),
      d(Mark.HANDLE, Mark.CONCAT),
      d(Mark.CONCAT, Mark.PARSE),
      d(Mark.PARSE, Mark.ROUTE),
      d(Mark.ROUTE, Mark.ADMIT),
      d(Mark.ADMIT, Mark.PICK),
      d(Mark.PICK, Mark.DECIDED),
      d(Mark.DECIDED, Mark.BUILT1),
      enc1,
      Math.max(0, d(Mark.BUILT1, Mark.WRITE1) - enc1),
      Math.max(0, d(Mark.WRITE1, Mark.WRITE2) - (enc2Inside ? enc2 : 0)),
      d(Mark.WRITE2, Mark.SENT1),
      enc2,
      Math.max(0, d(Mark.SENT1, Mark.SENT2) - (enc2Inside ? 0 : enc2)),
      d(Mark.DATA, Mark.WRITE1),
      ((t.waited[1] as number) - (t.waited[0] as number)) / 1000,
      d(Mark.DATA, Mark.WRITE1) - ((t.waited[1] as number) - (t.waited[0] as number)) / 1000,
      d(Mark.WRITE1, Mark.BOOKKEPT),
      ((t.waited[2] as number) - (t.waited[0] as number)) / 1000,
      d(Mark.DATA, Mark.SENT2),
    ]
    const at = this.#n % CAPACITY
    this.#steps.set(vals, at * STEP_COUNT)
    this.#window[at * 2] = m[Mark.DATA] as number
    this.#window[at * 2 + 1] = m[Mark.SENT2] as number
    this.#scrape[at] = scrapeEvents
    this.#n++
  }

  reset(): void {
    this.#n = 0
    this.#gc.length = 0
  }

  stop(): void {
    this.#observer.disconnect()
    if (this.#schedstat !== undefined) closeSync(this.#schedstat)
    this.#schedstat = undefined
  }

  summary(): PhaseSummary {
    const n = Math.min(this.#n, CAPACITY)
    const col = (s: number): Float64Array => {
      const out = new Float64Array(n)
      for (let i = 0; i < n; i++) out[i] = this.#steps[i * STEP_COUNT + s] as number
      return out
    }
    const steps: StepSummary[] = STEPS.map(([step, what], s) => {
      const c = col(s)
      let sum = 0
      for (const v of c) sum += v
      c.sort()
      return {
        step,
        what,
        p50Us: pct(c, 0.5),
        p90Us: pct(c, 0.9),
        p99Us: pct(c, 0.99),
        meanUs: n > 0 ? sum / n : 0,
      }
    })
    const totalAt = STEP_COUNT - 1
    const gcInside = (i: number): boolean => {
      const from = this.#window[i * 2] as number
      const to = this.#window[i * 2 + 1] as number
      for (let g = 0; g < this.#gc.length; g += 2)
        if ((this.#gc[g] as number) < to && (this.#gc[g + 1] as number) > from) return true
      return false
    }
    const order = Array.from({ length: n }, (_, i) => i).sort(
      (a, b) =>
        (this.#steps[b * STEP_COUNT + totalAt] as number) -
        (this.#steps[a * STEP_COUNT + totalAt] as number),
    )
    const slow = order.slice(0, Math.max(1, Math.ceil(n / 100)))
    const longestStep: Record<string, number> = {}
    let withGc = 0
    let withScrape = 0
    const slowWaited = new Float64Array(slow.length)
    for (const [k, i] of slow.entries()) {
      slowWaited[k] = this.#steps[i * STEP_COUNT + WAITED_TOTAL] as number
      if (gcInside(i)) withGc++
      if ((this.#scrape[i] as number) > 0) withScrape++
      let best = 0
      // `decision` and `total` span other steps: the longest single step only.
      for (let s = 1; s < SEQUENCE_END; s++)
        if (
          (this.#steps[i * STEP_COUNT + s] as number) >
          (this.#steps[i * STEP_COUNT + best] as number)
        )
          best = s
      const name = (STEPS[best] as (typeof STEPS)[number])[0]
      longestStep[name] = (longestStep[name] ?? 0) + 1
    }
    let gcAll = 0
    let scrapeAll = 0
    const clean: number[] = []
    for (let i = 0; i < n; i++) {
      const g = gcInside(i)
      const sc = (this.#scrape[i] as number) > 0
      if (g) gcAll++
      if (sc) scrapeAll++
      if (!g && !sc) clean.push(this.#steps[i * STEP_COUNT + totalAt] as number)
    }
    const cleanSorted = Float64Array.from(clean).sort()
    const last = slow[slow.length - 1]
    return {
      decisions: n,
      steps,
      slowest: {
        decisions: n > 0 ? slow.length : 0,
        minTotalUs:
          n > 0 && last !== undefined ? (this.#steps[last * STEP_COUNT + totalAt] as number) : 0,
        withGc,
        withScrape,
        waitedP50Us: pct(slowWaited.sort(), 0.5),
        longestStep: n > 0 ? longestStep : {},
      },
      withGcShare: n > 0 ? gcAll / n : 0,
      withScrapeShare: n > 0 ? scrapeAll / n : 0,
      clean: {
        decisions: cleanSorted.length,
        p50Us: pct(cleanSorted, 0.5),
        p99Us: pct(cleanSorted, 0.99),
      },
    }
  }
}

function pct(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return 0
  return sorted[
    Math.min(sorted.length - 1, Math.max(0, Math.ceil(sorted.length * p) - 1))
  ] as number
}
