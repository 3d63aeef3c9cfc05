// The simulated fleet (hack/bench/routing-fleet.ts in its own process) and a data plane in front
// of it, as the routing benchmarks (routing, routing-kv, routing-pd, routing-spill) start them.
import { fileURLToPath } from 'node:url'
import { DATAPLANE_NODE_ARGS } from '../../cdk8s/dataplane-node.js'
import type { SimOptions, SimStats } from '../sim/index.js'
import { type Proc, spawnScript, startDataplane } from './procs.js'
import { benchGatewayArgs, spawnBundle } from './proxy-bundle.js'
import type { FleetMember, RestartReply, RestartRequest } from './routing-fleet.js'

const FLEET_SCRIPT = fileURLToPath(new URL('./routing-fleet.ts', import.meta.url))

export interface Fleet {
  readonly members: FleetMember[]
  restart(name: string, downMs: number): Promise<SimStats>
  stop(): Promise<void>
}

export async function startFleet(
  opts: readonly SimOptions[],
  { killAfterMs = 1000 }: { readonly killAfterMs?: number } = {},
): Promise<Fleet> {
  // A pod still "down" (killed) holds a timer in the fleet process: stop() does not wait for it
  // longer than killAfterMs.
  const proc = await spawnScript<FleetMember[]>(
    FLEET_SCRIPT,
    { ROUTING_FLEET: JSON.stringify(opts) },
    { ipc: true, killAfterMs },
  )
  const { child } = proc
  let ids = 0
  const waiting = new Map<number, (r: RestartReply) => void>()
  child.on('message', (m: RestartReply) => waiting.get(m.id)?.(m))
  return {
    members: proc.ready,
    restart: (name, downMs) =>
      new Promise<SimStats>((resolve, reject) => {
        const id = ++ids
        waiting.set(id, (r) => {
          waiting.delete(id)
          if (r.error !== undefined) reject(new Error(`restart ${name}: ${r.error}`))
          else resolve(r.before)
        })
        const req: RestartRequest = { type: 'restart', id, name, downMs }
        child.send(req)
      }),
    stop: proc.stop,
  }
}

export interface GatewayProcOptions {
  /** More `dataplane` flags (secrets, provider addresses, …). */
  readonly args?: readonly string[]
  /** --workers (default 1). */
  readonly workers?: number
  /** How long to wait for every pod's first fresh scrape (default 10 s). */
  readonly freshWithinMs?: number
  /**
   * An esbuild bundle (dataplane.mjs, hack/build.ts) to run as the image does, with the same flags
   * and Node flags; default the sources through tsx (bin/infer-gateway.js).
   */
  readonly bundle?: string
  /** Wait for a fresh scrape of every pod (default true; false for `--scrape off`). */
  readonly fresh?: boolean
}

/**
 * `infer-gateway dataplane` (--explain, no access log) on `port` over `file`; resolves once it is
 * ready (start-up warm-up done) and has a fresh scrape of each of its `pods`, as a long-running
 * gateway would.
 */
export async function startGateway(
  file: string,
  port: number,
  pods: number,
  o: GatewayProcOptions = {},
): Promise<Proc> {
  const workers = o.workers ?? 1
  const extra = [...(o.args ?? []), '--explain', '--workers', String(workers)]
  // Each worker loads the whole data plane too: on a busy machine that takes a while.
  const timeoutMs = 60_000 * workers
  const gw =
    o.bundle !== undefined
      ? await spawnBundle(
          o.bundle,
          benchGatewayArgs(file, port, extra),
          /"msg":"data plane listening"/,
          DATAPLANE_NODE_ARGS,
          timeoutMs,
        )
      : await startDataplane({ args: ['--config', file, ...extra], port, timeoutMs })
  const deadline = Date.now() + (o.freshWithinMs ?? 10_000)
  for (;;) {
    try {
      const res = await fetch(`http://127.0.0.1:${port}/debug/endpoints`)
      const d = (await res.json()) as { endpoints: { scrape: { fresh: boolean } }[] }
      // /readyz also waits for the start-up warm-up: load sent before it ends shares the core.
      const ready = (await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200
      const fresh = o.fresh === false || d.endpoints.every((e) => e.scrape.fresh)
      if (ready && d.endpoints.length === pods && fresh) return gw
    } catch {
      // not yet
    }
    if (Date.now() > deadline) {
      await gw.stop()
      throw new Error('gateway never saw fresh metrics')
    }
    await new Promise((r) => setTimeout(r, 50))
  }
}
