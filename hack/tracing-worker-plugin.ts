// esbuild plugin for every bundle of the data plane (hack/build.ts, hack/sea/build-sea.ts): the
// tracing worker's code (dataplane/telemetry/tracing-worker.ts with the OpenTelemetry SDK parts it
// needs) is bundled once as CommonJS and put into the bundle as a string, replacing
// telemetry/tracing-worker-code.ts (which bundles it with esbuild at run time from the sources).
// The worker then starts from that string (an eval worker): the ESM bundles, the single executable
// and the image need no worker file beside them, nor esbuild.
// The engine scrape worker (dataplane/engines/scrape-worker.ts, replacing scrape-worker-code.ts)
// is built and put in the same way.
import { build, type Plugin } from 'esbuild'

const ENTRY = 'dataplane/telemetry/tracing-worker.ts'

/** Every worker started from code: the module replaced, its exported function, the entry. */
const WORKERS = [
  { module: /[\\/]telemetry[\\/]tracing-worker-code\.ts$/, fn: 'tracingWorkerCode', entry: ENTRY },
  {
    module: /[\\/]engines[\\/]scrape-worker-code\.ts$/,
    fn: 'scrapeWorkerCode',
    entry: 'dataplane/engines/scrape-worker.ts',
  },
]

const scripts = new Map<string, Promise<string>>()

/** The worker as one CommonJS script (built once per repository root and process). */
export function tracingWorkerScript(root: string): Promise<string> {
  return workerScript(root, ENTRY)
}

/** The worker whose entry is `entry` as one CommonJS script (built once per root and process). */
function workerScript(root: string, entry: string): Promise<string> {
  const key = `${root}\0${entry}`
  let s = scripts.get(key)
  if (s === undefined) {
    s = build({
      entryPoints: [entry],
      absWorkingDir: root,
      bundle: true,
      platform: 'node',
      target: 'node20',
      format: 'cjs',
      write: false,
      minifyWhitespace: true,
      legalComments: 'eof',
      logLevel: 'silent',
    }).then((r) => {
      if (r.warnings.length > 0)
        throw new Error(`${entry} bundle: ${r.warnings.map((w) => w.text).join('; ')}`)
      const out = r.outputFiles[0]
      if (out === undefined) throw new Error(`${entry} bundle: no output`)
      return out.text
    })
    scripts.set(key, s)
  }
  return s
}

export function tracingWorkerPlugin(root: string): Plugin {
  return {
    name: 'tracing-worker',
    setup(b) {
      for (const w of WORKERS)
        b.onLoad({ filter: w.module }, async () => ({
          contents: `export function ${w.fn}() { return Promise.resolve(${JSON.stringify(
            await workerScript(root, w.entry),
          )}) }`,
          loader: 'js',
        }))
    },
  }
}
