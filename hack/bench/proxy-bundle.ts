// Our data plane as the container image runs it: the esbuild bundle (hack/build.ts), not the
// sources through tsx. tsx compiles with esbuild's keepNames, which wraps every named function
// and closure in `__name(fn, "…")` (an Object.defineProperty per closure created: about 4 KiB
// and 1-2 % of the CPU per proxied request in a profile), and its module loader shares the
// process: numbers from it were the development build's, not the product's.
import { join } from 'node:path'
import { DATAPLANE_NODE_ARGS } from '../../cdk8s/dataplane-node.js'
import { buildAll } from '../build.js'
import { type Proc, spawnProc } from './procs.js'

/** Bundles the data plane into `outdir` (no single executable); returns the bundle's path. */
export async function bundleDataplane(outdir: string): Promise<string> {
  await buildAll(outdir, { sea: false })
  return join(outdir, 'dataplane.mjs')
}

/** The bundle did not print its ready line in time (it has been stopped). */
export class BundleStartError extends Error {
  override readonly name = 'BundleStartError'
  readonly code = 'BUNDLE_START_FAILED'
}

/**
 * The flags every proxy benchmark starts our data plane with: loopback, no access log (its cost
 * is measured apart), no drain delay (each run stops the process), then `extra`.
 */
export function benchGatewayArgs(
  config: string,
  port: number,
  extra: readonly string[] = [],
): string[] {
  return [
    '--config',
    config,
    '--host',
    '127.0.0.1',
    '--port',
    String(port),
    '--no-access-log',
    '--drain-delay',
    '0',
    ...extra,
  ]
}

/**
 * The Node flags every proxy benchmark starts our data plane with, before the bundle: the
 * data-plane Deployment's (cdk8s/dataplane-node.ts: its young generation), so that a benchmark
 * measures the heap the pods run with, in every process of `--workers N` (they inherit them).
 * `flags` (space-separated) replaces them: '' for Node's defaults, or others to compare.
 */
export function benchGatewayNodeArgs(flags?: string): string[] {
  if (flags === undefined) return [...DATAPLANE_NODE_ARGS]
  return flags.split(/\s+/).filter((a) => a !== '')
}

/**
 * Starts `node [nodeArgs] <bundle> <args>` (with `env` over this process's environment) and
 * resolves once its output matches `ready`.
 */
export async function spawnBundle(
  bundle: string,
  args: readonly string[],
  ready: RegExp,
  nodeArgs: readonly string[] = [],
  timeoutMs = 30_000,
  env: Readonly<Record<string, string>> = {},
): Promise<Proc> {
  const p = spawnProc(process.execPath, [...nodeArgs, bundle, ...args], env)
  const deadline = performance.now() + timeoutMs
  while (!ready.test(p.output())) {
    const exited = p.child.exitCode !== null || p.child.signalCode !== null
    if (exited || performance.now() > deadline) {
      await p.stop()
      throw new BundleStartError(
        `${exited ? 'exited' : `no ${ready} within ${timeoutMs} ms`}: ${bundle} ${args.join(' ')}; output:\n${p.output()}`,
      )
    }
    await new Promise((r) => setTimeout(r, 50))
  }
  return p
}

/**
 * The proxy benches' request body: a short chat completion for `model` (16 output tokens unless
 * told), streamed or not. One body for every proxy bench, so their figures compare.
 */
export function benchChatBody(model: string, stream: boolean, maxTokens = 16): string {
  return JSON.stringify({
    model,
    messages: [{ role: 'user', content: 'Say hello to the benchmark in a few words.' }],
    max_tokens: maxTokens,
    stream,
  })
}
