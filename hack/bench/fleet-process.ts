// The simulated fleet (hack/bench/routing-fleet.ts in its own process) and a data plane in front
// of it, as the scenario benchmarks (routing-kv, routing-pd) start them.
import { type ChildProcess, spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import type { SimOptions, SimStats } from '../sim/index.js'
import { type Proc, spawnCli } from './procs.js'
import type { FleetMember, RestartReply, RestartRequest } from './routing-fleet.js'

const FLEET_SCRIPT = fileURLToPath(new URL('./routing-fleet.ts', import.meta.url))

export interface Fleet {
  readonly members: FleetMember[]
  restart(name: string, downMs: number): Promise<SimStats>
  stop(): Promise<void>
}

export async function startFleet(opts: readonly SimOptions[]): Promise<Fleet> {
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', FLEET_SCRIPT], {
    env: { ...process.env, ROUTING_FLEET: JSON.stringify(opts) },
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  })
  let seen = ''
  const members = await new Promise<FleetMember[]>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`fleet did not start: ${seen}`)), 30_000)
    const onData = (b: Buffer): void => {
      seen += b.toString()
      const m = /READY (.*)\n/.exec(seen)
      if (m) {
        clearTimeout(timer)
        resolve(JSON.parse(m[1] as string) as FleetMember[])
      }
    }
    child.stdout?.on('data', onData)
    child.stderr?.on('data', onData)
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`fleet exited with ${code}: ${seen}`))
    })
  })
  child.removeAllListeners('exit')
  child.stdout?.resume()
  child.stderr?.resume()
  let ids = 0
  const waiting = new Map<number, (r: RestartReply) => void>()
  child.on('message', (m: RestartReply) => waiting.get(m.id)?.(m))
  return {
    members,
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
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve()
        child.once('exit', () => resolve())
        child.kill('SIGTERM')
        // A pod still "down" (killed) holds a timer in the fleet process: do not wait for it.
        setTimeout(() => child.kill('SIGKILL'), 1000).unref()
      }),
  }
}

/**
 * `infer-gateway dataplane` (one worker, --explain) on `port` over `file`; resolves once it has a
 * fresh scrape of each of its `pods`.
 */
export async function startGateway(file: string, port: number, pods: number): Promise<Proc> {
  const gw = await spawnCli(
    [
      'dataplane',
      '--config',
      file,
      '--host',
      '127.0.0.1',
      '--port',
      String(port),
      '--no-access-log',
      '--explain',
      '--drain-delay',
      '0',
      '--workers',
      '1',
    ],
    /data plane listening/,
    [],
    60_000,
  )
  const deadline = Date.now() + 10_000
  for (;;) {
    try {
      const res = await fetch(`http://127.0.0.1:${port}/debug/endpoints`)
      const d = (await res.json()) as { endpoints: { scrape: { fresh: boolean } }[] }
      if (d.endpoints.length === pods && d.endpoints.every((e) => e.scrape.fresh)) return gw
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
