// The Endpoint Picker's own cost per ext_proc stream, in process and without a network: the same
// messages `npm run bench:epp` sends (request headers with protocol_config, a ~32 KiB chat body in
// 16 KiB chunks, response headers with the served endpoint, a response body with usage) decoded by
// the service's proto-loader deserializer, handled by ExtProcStream against the real scheduler
// (default profile, 8 endpoints), every answer encoded by the service's serializer. What that
// leaves out (grpc-js and HTTP/2 per stream, the kernel, engine scraping) is what bench:epp's
// floor rows measure. Reported: CPU µs per stream and V8 heap bytes allocated per stream, for the
// whole stream and for each step alone (decode, body buffering, the decision, encode, response
// phases), so a change is judged by numbers that do not depend on how busy the machine is.
//
//   npx tsx hack/bench/epp-cost.ts [--streams 4000] [--rounds 5]
//
// Allocation is read from V8's own GC statistics (v8.GCProfiler: heap used before each collection
// minus after the previous one), so it counts what the JavaScript heap took, not Buffers' backing
// stores (counted apart as `external` from the ArrayBuffer total, approximately).

import { parseArgs } from 'node:util'
import { GCProfiler } from 'node:v8'
import type { MethodDefinition } from '@grpc/proto-loader'
import { parseJsonObject } from '../../dataplane/body.js'
import { EppCore } from '../../dataplane/epp/core.js'
import { PhaseRecorder, type PhaseSummary } from '../../dataplane/epp/phases.js'
import {
  BodyMode,
  extProcPackage,
  type ProcessingRequest,
  type ProcessingResponse,
} from '../../dataplane/epp/proto.js'
import { ExtProcStream } from '../../dataplane/epp/stream.js'
import { Scheduler } from '../../dataplane/scheduler/index.js'
import { SnapshotStore } from '../../dataplane/snapshot-store.js'
import { endpoint, server, snapshot } from '../../test/helpers/snapshot.js'

export interface CostRow {
  readonly step: string
  /** CPU (user + system) per stream, µs: the median of the rounds. */
  readonly cpuUs: number
  /** V8 heap bytes allocated per stream: the median of the rounds. */
  readonly heapBytes: number
}

export interface CostOptions {
  readonly streams: number
  readonly rounds: number
  readonly promptTokens: number
  /** Only the steps whose names contain this. */
  readonly only?: string
}

type Method = MethodDefinition<ProcessingRequest, ProcessingResponse>

function method(): Method {
  const def = extProcPackage()['envoy.service.ext_proc.v3.ExternalProcessor'] as Record<
    string,
    Method
  >
  return def['Process'] as Method
}

/** The bench's chat body: an ~8k-token system prompt (bench:epp builds the same one). */
export function benchBody(promptTokens: number): string {
  const words = 'the quarterly report shows revenue growth across every region and segment '
  const content = words.repeat(Math.ceil((promptTokens * 4) / words.length))
  return JSON.stringify({
    model: 'bench-model',
    messages: [
      { role: 'system', content: content.slice(0, promptTokens * 4) },
      { role: 'user', content: 'Summarise it.' },
    ],
    max_tokens: 16,
  })
}

const hv = (key: string, value: string) => ({ key, raw_value: Buffer.from(value) })

/** A stream's request-phase messages, as the Go client (and Envoy in full duplex) sends them. */
function requestMessages(body: string): ProcessingRequest[] {
  const raw = Buffer.from(body)
  const msgs: ProcessingRequest[] = [
    {
      request: 'request_headers',
      protocol_config: {
        request_body_mode: BodyMode.FULL_DUPLEX_STREAMED,
        response_body_mode: BodyMode.FULL_DUPLEX_STREAMED,
      },
      request_headers: {
        headers: {
          headers: [
            hv(':method', 'POST'),
            hv(':path', '/v1/chat/completions'),
            hv(':scheme', 'http'),
            hv(':authority', 'gateway'),
            hv('content-type', 'application/json'),
            hv('content-length', String(raw.length)),
          ],
        },
      },
    },
  ]
  for (let at = 0; at < raw.length; at += 16 * 1024) {
    const end = Math.min(at + 16 * 1024, raw.length)
    msgs.push({
      request: 'request_body',
      request_body: { body: raw.subarray(at, end), end_of_stream: end === raw.length },
    })
  }
  return msgs
}

/** The response phases, Envoy reporting the endpoint that served (the primary: no retry). */
function responseMessages(served: string): ProcessingRequest[] {
  const msgs: ProcessingRequest[] = []
  msgs.push({
    request: 'response_headers',
    metadata_context: {
      filter_metadata: {
        'envoy.lb': {
          fields: { 'x-gateway-destination-endpoint-served': { string_value: served } },
        },
      },
    },
    response_headers: {
      headers: { headers: [hv(':status', '200'), hv('content-type', 'application/json')] },
    },
  })
  msgs.push({
    request: 'response_body',
    response_body: {
      body: Buffer.from('{"choices":[],"usage":{"prompt_tokens":8000,"completion_tokens":1}}'),
      end_of_stream: true,
    },
  })
  return msgs
}

/** Per primary endpoint, memoised: the messages decoded and on the wire. */
function responsePhases(m: Method) {
  const memo = new Map<string, { wire: Buffer[]; decoded: ProcessingRequest[] }>()
  return (served: string) => {
    let e = memo.get(served)
    if (e === undefined) {
      const wire = responseMessages(served).map((x) => m.requestSerialize(x))
      e = { wire, decoded: wire.map((b) => m.requestDeserialize(b)) }
      memo.set(served, e)
    }
    return e
  }
}

function setup() {
  const eps = Array.from({ length: 8 }, (_, i) => endpoint(`pod-${i}`, `127.0.0.${120 + i}`, 8000))
  const srv = server('pool', eps)
  const store = new SnapshotStore()
  const scheduler = new Scheduler({ scrape: false })
  store.onSwap((s) => scheduler.onSnapshot(s))
  store.swap(snapshot([], [srv]))
  const core = new EppCore({ store, picker: scheduler, pool: { kind: 'server', key: srv.key } })
  return { core, scheduler }
}

/** Runs `fn` `n` times; CPU µs and heap bytes per call. */
async function measure(n: number, fn: (i: number) => Promise<void> | void) {
  const gc = new GCProfiler()
  const v8 = await import('node:v8')
  gc.start()
  const heap0 = v8.getHeapStatistics().used_heap_size
  const cpu0 = process.cpuUsage()
  for (let i = 0; i < n; i++) {
    const r = fn(i)
    if (r !== undefined) await r
  }
  const cpu = process.cpuUsage(cpu0)
  const heap1 = v8.getHeapStatistics().used_heap_size
  const stats = gc.stop()?.statistics ?? []
  // Allocated = what the heap grew by between collections, plus what it grew by since the last.
  let allocated = 0
  let from = heap0
  for (const s of stats) {
    allocated += s.beforeGC.heapStatistics.usedHeapSize - from
    from = s.afterGC.heapStatistics.usedHeapSize
  }
  allocated += heap1 - from
  return { cpuUs: (cpu.user + cpu.system) / n, heapBytes: allocated / n }
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)] as number
}

export async function eppCost(o: CostOptions): Promise<CostRow[]> {
  const m = method()
  const { core } = setup()
  const body = benchBody(o.promptTokens)
  const wire = requestMessages(body).map((x) => m.requestSerialize(x))
  const decoded = wire.map((b) => m.requestDeserialize(b))
  const response = responsePhases(m)
  const primary = (s: ExtProcStream): string => s.decision?.endpoints[0] ?? ''
  const sink: ProcessingResponse[] = []
  const raw = Buffer.from(body)
  const headers = new Map([
    [':method', 'POST'],
    [':path', '/v1/chat/completions'],
    ['content-type', 'application/json'],
  ])
  const never = new AbortController().signal
  const opts = { bodyMode: BodyMode.FULL_DUPLEX_STREAMED, maxBodyBytes: 10 << 20 }
  const steps: Record<string, (i: number) => Promise<void> | void> = {
    // Everything the EPP's code does for one stream (what grpc-js does around it left out).
    'whole stream': async () => {
      const out: Buffer[] = []
      const s = new ExtProcStream(core, (r) => out.push(m.responseSerialize(r)), opts)
      for (const b of wire) await s.handle(m.requestDeserialize(b))
      for (const b of response(primary(s)).wire) await s.handle(m.requestDeserialize(b))
      s.close(false)
    },
    'decode requests': () => {
      for (const b of wire) m.requestDeserialize(b)
      for (const b of response('127.0.0.120:8000').wire) m.requestDeserialize(b)
    },
    'phases, no coding': async () => {
      sink.length = 0
      const s = new ExtProcStream(core, (r) => sink.push(r), opts)
      for (const r of decoded) await s.handle(r)
      for (const r of response(primary(s)).decoded) await s.handle(r)
      s.close(false)
    },
    'encode answers': () => {
      for (const r of sink) m.responseSerialize(r)
    },
    // The decision alone (body parse included), then its release: core + scheduler.
    'decide + finish': async () => {
      const d = await core.decide({ headers, body: raw, subset: undefined, signal: never })
      d.finish({ status: 200 })
    },
    'parse body': () => {
      parseJsonObject(raw)
    },
  }
  // One stream first, so the answers to encode exist and every path is compiled.
  await steps['phases, no coding']?.(0)
  const only = o.only
  if (only !== undefined)
    for (const name of Object.keys(steps)) if (!name.includes(only)) delete steps[name]
  const rows: CostRow[] = []
  for (let round = 0; round < 2; round++)
    for (const fn of Object.values(steps)) await measure(300, fn)
  const per: Record<string, { cpu: number[]; heap: number[] }> = {}
  for (let r = 0; r < o.rounds; r++) {
    for (const [name, fn] of Object.entries(steps)) {
      const x = await measure(o.streams, fn)
      const e = per[name] ?? { cpu: [], heap: [] }
      per[name] = e
      e.cpu.push(x.cpuUs)
      e.heap.push(x.heapBytes)
    }
  }
  for (const [step, e] of Object.entries(per))
    rows.push({ step, cpuUs: median(e.cpu), heapBytes: median(e.heap) })
  return rows
}

export interface PhaseCostOptions {
  readonly streams: number
  readonly promptTokens: number
  /**
   * Between two streams, write one byte per cache line of a buffer this large (KiB): the caches
   * the next decision finds hold that buffer, not the last decision's data (0 = hot loop).
   */
  readonly sweepKiB: number
}

/**
 * The running EPP's step timings (`epp --debug-phases`, phases.ts) for the same stream in this
 * loop: decoded messages handled by ExtProcStream, answers encoded by the service's serializer
 * (timed), written at once; one turn of the event loop per stream for the bookkeeping after the
 * answers. Hot, or with the caches swept between streams: how much of a step's time in the
 * running EPP a cold cache explains.
 */
export async function eppPhases(o: PhaseCostOptions): Promise<PhaseSummary> {
  const m = method()
  const { core } = setup()
  const body = benchBody(o.promptTokens)
  const wire = requestMessages(body).map((x) => m.requestSerialize(x))
  const response = responsePhases(m)
  const phases = new PhaseRecorder()
  const decode = phases.deserializer(m.requestDeserialize)
  const encode = phases.serializer(m.responseSerialize)
  const opts = { bodyMode: BodyMode.FULL_DUPLEX_STREAMED, maxBodyBytes: 10 << 20, phases }
  const sweep = new Uint8Array(o.sweepKiB * 1024)
  let sink = 0
  const turn = () => new Promise((r) => setImmediate(r))
  const written: (() => void)[] = []
  const one = async (): Promise<void> => {
    const s = new ExtProcStream(
      core,
      (r, done) => {
        sink += encode(r).length
        if (done !== undefined) written.push(done)
      },
      opts,
    )
    for (const b of wire) {
      const req = decode(b)
      await s.handle(req, performance.now())
    }
    // "Written" once the request phase's handling is over, as node:http2 reports it at the
    // earliest (no socket here).
    for (const w of written.splice(0)) w()
    for (const b of response(s.decision?.endpoints[0] ?? '').wire) await s.handle(decode(b))
    s.close(false)
    await turn()
  }
  try {
    for (let i = 0; i < 300; i++) await one()
    phases.reset()
    for (let i = 0; i < o.streams; i++) {
      for (let at = 0; at < sweep.length; at += 64) sweep[at] = (sweep[at] as number) + 1
      await one()
    }
    if (sink === 0) throw new Error('no answer was encoded')
    return phases.summary()
  } finally {
    phases.stop()
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({
    options: {
      streams: { type: 'string', default: '2000' },
      rounds: { type: 'string', default: '5' },
      'prompt-tokens': { type: 'string', default: '8192' },
      /** Measure only the steps whose names contain this (profiling one step). */
      only: { type: 'string' },
      /**
       * Instead: the running EPP's step timings (phases.ts) in this loop, hot and with the caches
       * swept by a buffer of this many KiB between streams.
       */
      'sweep-kib': { type: 'string' },
    },
  })
  if (values['sweep-kib'] !== undefined) {
    const runs = [0, Number(values['sweep-kib'])]
    const sums = []
    for (const sweepKiB of runs)
      sums.push(
        await eppPhases({
          streams: Number(values.streams),
          promptTokens: Number(values['prompt-tokens']),
          sweepKiB,
        }),
      )
    process.stdout.write(
      `${'step'.padEnd(14)} ${runs.map((k) => `sweep ${k} KiB p50/p90`.padStart(24)).join(' ')}\n`,
    )
    for (const [i, st] of (sums[0] as PhaseSummary).steps.entries())
      process.stdout.write(
        `${st.step.padEnd(14)} ${sums
          .map((x) => {
            const v = x.steps[i]
            return `${(v?.p50Us ?? 0).toFixed(1)} / ${(v?.p90Us ?? 0).toFixed(1)}`.padStart(24)
          })
          .join(' ')}\n`,
      )
    process.exit(0)
  }
  const rows = await eppCost({
    streams: Number(values.streams),
    rounds: Number(values.rounds),
    promptTokens: Number(values['prompt-tokens']),
    ...(values.only !== undefined ? { only: values.only } : {}),
  })
  for (const r of rows)
    process.stdout.write(
      `${r.step.padEnd(20)} ${r.cpuUs.toFixed(1).padStart(8)} µs CPU  ${Math.round(r.heapBytes)
        .toString()
        .padStart(8)} heap bytes / stream\n`,
    )
}
