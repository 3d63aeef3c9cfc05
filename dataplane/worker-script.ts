// A worker thread's code as one CommonJS script, for `new Worker(code, { eval: true })`: the
// tracing worker (telemetry/tracing-worker.ts) and the scrape worker (engines/scrape-worker.ts)
// start this way. From the sources (tsx, vitest) the entry is bundled here with esbuild on first
// use (a dependency of tsx, so present wherever the sources run); the esbuild bundles and the
// single executable replace each `*-worker-code.ts` module with the script built at build time
// (hack/tracing-worker-plugin.ts), so they need neither esbuild nor a file beside them.

const scripts = new Map<string, Promise<string>>()

/** The worker whose entry is the file `entry` (absolute path), bundled once per process. */
export function workerScript(entry: string): Promise<string> {
  let code = scripts.get(entry)
  if (code === undefined) {
    code = (async () => {
      const { build } = await import('esbuild')
      const r = await build({
        entryPoints: [entry],
        bundle: true,
        platform: 'node',
        target: 'node20',
        format: 'cjs',
        write: false,
        logLevel: 'silent',
      })
      const out = r.outputFiles[0]
      if (out === undefined) throw new Error(`esbuild produced no worker script for ${entry}`)
      return out.text
    })()
    // A failed bundle is not cached: the next start tries again.
    code.catch(() => scripts.delete(entry))
    scripts.set(entry, code)
  }
  return code
}
