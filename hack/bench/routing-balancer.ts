// Child process of the routing benchmark: the round-robin balancer in front of several data-plane
// replicas, in its own process so its event loop is not the load generator's. Options arrive as
// JSON in ROUTING_BALANCER ({ backends, host, port }); prints `READY "<url>"` (JSON) and stops on
// SIGTERM.
import { type Backend, startBalancer } from './balancer.js'

async function main(): Promise<void> {
  const raw = process.env['ROUTING_BALANCER']
  if (raw === undefined) throw new Error('ROUTING_BALANCER is not set')
  const o = JSON.parse(raw) as { backends: Backend[]; host: string; port: number }
  const lb = await startBalancer(o.backends, { host: o.host, port: o.port })
  process.stdout.write(`READY ${JSON.stringify(lb.url)}\n`)
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', () => resolve())
    process.once('SIGINT', () => resolve())
  })
  process.stdout.write(`COUNTS ${JSON.stringify(lb.counts())}\n`)
  await lb.close()
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`)
  process.exitCode = 1
})
