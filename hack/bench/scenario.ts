// The routing benchmark's scenario modules (routing-pd, routing-spill, routing-kv): the options
// `npm run bench:routing -- --only <scenario>` passes them, and the command line each gets when run
// on its own with tsx.
import { parseArgs } from 'node:util'

export interface ScenarioOptions {
  readonly quick: boolean
  /** Measured seconds (default: the scenario's, shorter with quick). */
  readonly seconds?: number
  /** Write the report section into docs/benchmarks.md (off with --no-write). */
  readonly write: boolean
}

/** `--quick`, `--seconds <n>`, `--no-write` → the scenario's options. */
export function scenarioArgs(args: readonly string[]): ScenarioOptions {
  const { values } = parseArgs({
    args: [...args],
    options: {
      quick: { type: 'boolean', default: false },
      seconds: { type: 'string' },
      'no-write': { type: 'boolean', default: false },
    },
  })
  return {
    quick: values.quick,
    ...(values.seconds !== undefined ? { seconds: Number(values.seconds) } : {}),
    write: !values['no-write'],
  }
}

/** Runs a scenario with `o` and prints its report; a failure is printed and sets exit code 1. */
export function runScenario(
  run: (o: ScenarioOptions) => Promise<string>,
  o: ScenarioOptions,
): Promise<void> {
  return run(o).then(
    (t) => void process.stdout.write(`\n${t}\n`),
    (e: unknown) => {
      process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`)
      process.exitCode = 1
    },
  )
}
