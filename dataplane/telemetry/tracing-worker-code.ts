// The tracing worker's code (tracing-worker.ts and the SDK parts it imports) as one CommonJS
// script, which telemetry/tracing.ts starts as an eval worker. From the sources (tsx, vitest) it is
// bundled here with esbuild on first use (a dependency of tsx, so present wherever the sources
// run); the esbuild bundles and the single executable replace this module with the script built
// at build time (hack/tracing-worker-plugin.ts), so they need neither esbuild nor a file.
import { fileURLToPath } from 'node:url'

/** The entry the bundles build too (hack/tracing-worker-plugin.ts). */
export const TRACING_WORKER_ENTRY = fileURLToPath(new URL('./tracing-worker.ts', import.meta.url))

let code: Promise<string> | undefined

export function tracingWorkerCode(): Promise<string> {
  code ??= (async () => {
    const { build } = await import('esbuild')
    const r = await build({
      entryPoints: [TRACING_WORKER_ENTRY],
      bundle: true,
      platform: 'node',
      target: 'node20',
      format: 'cjs',
      write: false,
      logLevel: 'silent',
    })
    const out = r.outputFiles[0]
    if (out === undefined) throw new Error('esbuild produced no tracing worker script')
    return out.text
  })()
  return code
}
