// Entry of the data-plane-only bundle (dist/dataplane.mjs): `node dist/dataplane.mjs --config …`.
import { runDataplaneCommand } from './command.js'

runDataplaneCommand(process.argv.slice(2)).catch((e: unknown) => {
  process.stderr.write(`dataplane: ${e instanceof Error ? e.message : String(e)}\n`)
  process.exitCode = 1
})
