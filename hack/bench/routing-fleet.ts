// Child process of the routing benchmark: runs a fleet of simulated engines so their timers do
// not share an event loop with the load generator or the gateway. Options arrive as JSON in the
// ROUTING_FLEET environment variable (SimOptions[]); the process prints one `READY <json>` line
// with each engine's name and URL, and stops its fleet on SIGTERM.
//
// Over the IPC channel the parent can restart an engine as a container restart would
// (`{ type: 'restart', id, name, downMs }`): the reply carries the engine's counters from just
// before it went down, since the fresh engine's /sim/stats start again from zero.
import { type SimOptions, type SimStats, startFleet } from '../sim/index.js'

export interface FleetMember {
  readonly name: string
  readonly url: string
  readonly host: string
  readonly port: number
}

export interface RestartRequest {
  readonly type: 'restart'
  readonly id: number
  readonly name: string
  readonly downMs: number
}

export interface RestartReply {
  readonly type: 'restarted'
  readonly id: number
  readonly name: string
  /** Counters of the engine that went down (final). */
  readonly before: SimStats
  readonly error?: string
}

async function main(): Promise<void> {
  const raw = process.env['ROUTING_FLEET']
  if (raw === undefined) throw new Error('ROUTING_FLEET is not set')
  const opts = JSON.parse(raw) as SimOptions[]
  const fleet = await startFleet(opts)
  const members: FleetMember[] = fleet.sims.map((s) => ({
    name: s.name,
    url: s.url,
    host: s.host,
    port: s.port,
  }))
  process.on('message', (m: RestartRequest) => {
    if (m.type !== 'restart') return
    const sim = fleet.sims.find((s) => s.name === m.name)
    const before = sim?.stats()
    fleet.restart(m.name, m.downMs).then(
      () => process.send?.({ type: 'restarted', id: m.id, name: m.name, before }),
      (e: unknown) =>
        process.send?.({ type: 'restarted', id: m.id, name: m.name, before, error: String(e) }),
    )
  })
  process.stdout.write(`READY ${JSON.stringify(members)}\n`)
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', () => resolve())
    process.once('SIGINT', () => resolve())
  })
  await fleet.close()
  process.disconnect?.()
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`)
  process.exitCode = 1
})
