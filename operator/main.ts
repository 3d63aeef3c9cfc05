// Entry of an operator-only bundle: `node operator.mjs --kubeconfig …` (wiring only).
import { runOperatorCommand } from './command.js'

runOperatorCommand(process.argv.slice(2)).catch((e: unknown) => {
  process.stderr.write(`operator: ${e instanceof Error ? e.message : String(e)}\n`)
  process.exitCode = 1
})
