// Child process of the routing benchmark: runs a fleet of simulated engines so their timers do
// not share an event loop with the load generator or the gateway. Options arrive as JSON in the
// ROUTING_FLEET environment variable (SimOptions[]); the process prints one `READY <json>` line
// with each engine's name and URL, and stops its fleet on SIGTERM.
import { type SimOptions, startFleet } from '../sim/index.js'

export interface FleetMember {
  readonly name: string
  readonly url: string
  readonly host: string
  readonly port: number
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
  process.stdout.write(`READY ${JSON.stringify(members)}\n`)
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', () => resolve())
    process.once('SIGINT', () => resolve())
  })
  await fleet.close()
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`)
  process.exitCode = 1
})
