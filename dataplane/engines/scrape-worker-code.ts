// The scrape worker's code (scrape-worker.ts and what it imports) as one CommonJS script, which
// scrape-thread.ts starts as an eval worker (worker-script.ts: bundled from the sources on first
// use; the bundles replace this module with the script built at build time).
import { fileURLToPath } from 'node:url'
import { workerScript } from '../worker-script.js'

/** The entry the bundles build too (hack/tracing-worker-plugin.ts). */
export const SCRAPE_WORKER_ENTRY = fileURLToPath(new URL('./scrape-worker.ts', import.meta.url))

export function scrapeWorkerCode(): Promise<string> {
  return workerScript(SCRAPE_WORKER_ENTRY)
}
