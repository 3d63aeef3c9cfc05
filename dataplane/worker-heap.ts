// Worker threads and the process's young-generation flags. V8 applies `--max-semi-space-size` and
// `--min-semi-space-size` (meant for the thread that serves or decides: the EPP's NODE_OPTIONS,
// the data plane's flags in cdk8s/dataplane-node.ts) to every isolate created while they are set,
// over a worker's own resourceLimits; the scrape and tracing workers are made with them lifted.
import { setFlagsFromString } from 'node:v8'
import { Worker, type WorkerOptions } from 'node:worker_threads'

/**
 * `--max-semi-space-size` (or with `bound` 'min', `--min-semi-space-size`) as given to this
 * process (command line or NODE_OPTIONS, the last one wins), MB; undefined when not given.
 */
export function semiSpaceFlag(
  execArgv: readonly string[],
  nodeOptions: string | undefined,
  bound: 'max' | 'min' = 'max',
): number | undefined {
  const args = [...(nodeOptions ?? '').split(/\s+/).filter((a) => a !== ''), ...execArgv]
  const flag = new RegExp(`^--${bound}[-_]semi[-_]space[-_]size(?:=(.*))?$`)
  let mb: number | undefined
  for (let i = 0; i < args.length; i++) {
    const m = flag.exec(args[i] as string)
    if (m === null) continue
    const v = Number(m[1] ?? args[++i])
    if (Number.isFinite(v)) mb = v
  }
  return mb
}

/**
 * Takes this process's `--max-semi-space-size` and `--min-semi-space-size` out of V8's flags until
 * the returned function (idempotent) puts them back (the minimum too: V8 does not hold it to a
 * worker's cap). workerWithOwnHeap creates a worker between the two calls.
 */
function liftSemiSpaceFlags(): () => void {
  const env = process.env['NODE_OPTIONS']
  const bounds = (['max', 'min'] as const)
    .map((b) => ({ b, mb: semiSpaceFlag(process.execArgv, env, b) }))
    .filter((x) => x.mb !== undefined)
  for (const { b } of bounds) setFlagsFromString(`--${b}-semi-space-size=0`)
  let lifted = bounds.length > 0
  return () => {
    if (lifted) for (const { b, mb } of bounds) setFlagsFromString(`--${b}-semi-space-size=${mb}`)
    lifted = false
  }
}

/**
 * `new Worker(script, options)` with the process's young-generation flags lifted while its isolate
 * is made: V8's own sizing or the worker's resourceLimits apply, not the serving thread's fixed
 * young generation. The flags are back once the isolate exists ('online', or 'exit' if it never
 * got that far), or at once when the constructor throws (rethrown).
 */
export function workerWithOwnHeap(script: string, options: WorkerOptions): Worker {
  const restore = liftSemiSpaceFlags()
  let w: Worker
  try {
    w = new Worker(script, options)
  } catch (e) {
    restore()
    throw e
  }
  w.once('online', restore)
  w.once('exit', restore)
  return w
}
