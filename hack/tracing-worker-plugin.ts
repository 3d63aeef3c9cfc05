// esbuild plugin for every bundle of the data plane (hack/build.ts, hack/sea/build-sea.ts): the
// tracing worker's code (dataplane/telemetry/tracing-worker.ts with the OpenTelemetry SDK parts it
// needs) is bundled once as CommonJS and put into the bundle as a string, replacing
// telemetry/tracing-worker-code.ts (which bundles it with esbuild at run time from the sources).
// The worker then starts from that string (an eval worker): the ESM bundles, the single executable
// and the image need no worker file beside them, nor esbuild.
import { build, type Plugin } from 'esbuild'

const ENTRY = 'dataplane/telemetry/tracing-worker.ts'

const scripts = new Map<string, Promise<string>>()

/** The worker as one CommonJS script (built once per repository root and process). */
export function tracingWorkerScript(root: string): Promise<string> {
  let s = scripts.get(root)
  if (s === undefined) {
    s = build({
      entryPoints: [ENTRY],
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
        throw new Error(`tracing worker bundle: ${r.warnings.map((w) => w.text).join('; ')}`)
      const out = r.outputFiles[0]
      if (out === undefined) throw new Error('tracing worker bundle: no output')
      return out.text
    })
    scripts.set(root, s)
  }
  return s
}

export function tracingWorkerPlugin(root: string): Plugin {
  return {
    name: 'tracing-worker',
    setup(b) {
      b.onLoad({ filter: /[\\/]telemetry[\\/]tracing-worker-code\.ts$/ }, async () => ({
        contents: `export function tracingWorkerCode() { return Promise.resolve(${JSON.stringify(
          await tracingWorkerScript(root),
        )}) }`,
        loader: 'js',
      }))
    },
  }
}
