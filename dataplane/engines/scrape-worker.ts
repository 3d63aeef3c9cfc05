// The scrape worker thread's entry (started by scrape-thread.ts): it runs the scraper's loops
// (scraper.ts: HTTP, reading and parsing each pod's /metrics, the adapters' interval state) and
// posts each scrape's start and result to the thread that schedules. It is bundled on its own as
// CommonJS and started from that code (eval), like the tracing worker, so the same thing runs from
// the sources, the esbuild bundles and the single executable (scrape-worker-code.ts).
//
// Messages in: { op: 'sync', targets } (the snapshot's endpoints), { op: 'close' } (stop the
// loops, then the thread ends by itself). Out: { t: 'ready' } once listening, then
// { t: 'start', id } and { t: 'result', id, r } per scrape (plain data: structured clone).
import { parentPort, workerData } from 'node:worker_threads'
import { MetricsScraper, type ScrapeResult, type ScrapeTarget } from './scraper.js'

/** What scrape-thread.ts gives the worker: the scraper's options that are data. */
export interface ScrapeWorkerData {
  readonly intervalMs?: number
  readonly timeoutMs?: number
  readonly concurrency?: number
  readonly maxBytes?: number
  readonly maxBackoffMs?: number
}

export type ScrapeWorkerRequest =
  | { readonly op: 'sync'; readonly targets: readonly ScrapeTarget[] }
  | { readonly op: 'close' }

export type ScrapeWorkerReply =
  | { readonly t: 'ready' }
  | { readonly t: 'start'; readonly id: string }
  | { readonly t: 'result'; readonly id: string; readonly r: ScrapeResult }

const port = parentPort
if (port !== null) {
  const data = (workerData ?? {}) as ScrapeWorkerData
  const scraper = new MetricsScraper({
    ...data,
    onStart: (id) => port.postMessage({ t: 'start', id } satisfies ScrapeWorkerReply),
    onResult: (id, r) => port.postMessage({ t: 'result', id, r } satisfies ScrapeWorkerReply),
  })
  port.on('message', (m: ScrapeWorkerRequest) => {
    if (m.op === 'sync') scraper.sync(m.targets)
    else void scraper.close().finally(() => port.close())
  })
  port.postMessage({ t: 'ready' } satisfies ScrapeWorkerReply)
}
