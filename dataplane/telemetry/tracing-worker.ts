// The tracing worker thread's entry (started by telemetry/tracing.ts): it owns the SDK's batch
// processor (span-export.ts) and OTLP exporter (otlp-exporter.ts), so their encoding and HTTP run beside the request
// path, not on it. It is bundled on its own as CommonJS and started from that code (eval), so the
// same thing runs from the sources, the esbuild bundles and the single executable (no file of it
// needs to exist on disk: tracing-worker-code.ts).
//
// First it lowers its own thread's OS priority (thread-priority.ts) and says how that went
// ({ priority }). Messages in: a batch of SpanRecords (an array), or { op: 'flush' | 'shutdown',
// id }, answered with { done: id } once the exporter is through (after 'shutdown' the thread ends
// by itself).
import { parentPort, workerData } from 'node:worker_threads'
import { otlpExporter } from './otlp-exporter.js'
import { SpanExport, type SpanExportOptions, type SpanRecord } from './span-export.js'
import { lowerThreadPriority, type ThreadPriority } from './thread-priority.js'

/** What tracing.ts gives the worker. */
export interface TracingWorkerData {
  readonly options: SpanExportOptions
  /** The accounting array's SharedArrayBuffer (span-export.ts slots). */
  readonly counters: SharedArrayBuffer
  /** The nice value the thread sets itself to (thread-priority.ts WORKER_NICE). */
  readonly nice: number
}

export type TracingWorkerRequest =
  | readonly SpanRecord[]
  | { readonly op: 'flush' | 'shutdown'; readonly id: number }

export type TracingWorkerReply = { readonly done: number } | { readonly priority: ThreadPriority }

const port = parentPort
if (port !== null) {
  const data = workerData as TracingWorkerData
  port.postMessage({ priority: lowerThreadPriority(data.nice) } satisfies TracingWorkerReply)
  const exp = new SpanExport(
    data.options,
    new Int32Array(data.counters),
    otlpExporter(data.options),
  )
  port.on('message', (m: TracingWorkerRequest) => {
    if (Array.isArray(m)) {
      exp.add(m)
      return
    }
    const { op, id } = m as { op: 'flush' | 'shutdown'; id: number }
    const done = (): void => {
      port.postMessage({ done: id } satisfies TracingWorkerReply)
      if (op === 'shutdown') port.close()
    }
    ;(op === 'flush' ? exp.flush() : exp.shutdown()).then(done, done)
  })
}
