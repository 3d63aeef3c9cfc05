// The tracing worker's code (tracing-worker.ts and the SDK parts it imports) as one CommonJS
// script, which telemetry/tracing.ts starts as an eval worker. From the sources (tsx, vitest) it is
// bundled with esbuild on first use (worker-script.ts); the esbuild bundles and the single
// executable replace this module with the script built at build time
// (hack/tracing-worker-plugin.ts), so they need neither esbuild nor a file.
import { fileURLToPath } from 'node:url'
import { workerScript } from '../worker-script.js'

/** The entry the bundles build too (hack/tracing-worker-plugin.ts). */
export const TRACING_WORKER_ENTRY = fileURLToPath(new URL('./tracing-worker.ts', import.meta.url))

export function tracingWorkerCode(): Promise<string> {
  return workerScript(TRACING_WORKER_ENTRY)
}
