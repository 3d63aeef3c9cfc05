// `infer-gateway <command>`: one entry, thin wiring to each part's command module.
import { UsageError } from '../dataplane/command.js'

interface Command {
  readonly summary: string
  readonly run: (args: readonly string[]) => Promise<void>
}

const commands: Record<string, Command> = {
  dataplane: {
    summary: 'run the data plane (standalone from YAML, or from a compiled snapshot)',
    run: async (args) => (await import('../dataplane/command.js')).runDataplaneCommand(args),
  },
  operator: {
    summary: 'run the operator: watch CRDs and Pods, publish routing snapshots, write status',
    run: async (args) => (await import('../operator/command.js')).runOperatorCommand(args),
  },
  sim: {
    summary: 'run simulated inference engines (vLLM/SGLang/TGI-like) on 127.0.0.x',
    run: async (args) => (await import('./sim/command.js')).runSimCommand(args),
  },
  demo: {
    summary: 'start 4 simulated engines and the gateway on :8080 with an example config',
    run: async (args) => (await import('./demo.js')).runDemoCommand(args),
  },
  'dev-cluster': {
    summary: 'start a local kube-apiserver + etcd on 127.0.0.1 (hack/cluster/build.sh builds them)',
    run: async (args) => (await import('./cluster/dev-cluster.js')).runDevClusterCommand(args),
  },
  epp: {
    summary: 'run the Endpoint Picker (Envoy ext_proc) of an InferencePool with our scheduler',
    run: async (args) => (await import('../dataplane/epp/command.js')).runEppCommand(args),
  },
  compile: {
    summary: 'compile ModelRoute/ModelServer YAML into a routing snapshot (JSON on stdout)',
    run: async (args) => (await import('./compile-command.js')).runCompileCommand(args),
  },
}

export const rootHelp = `Usage: infer-gateway <command> [options]

Infer Gateway: a Kubernetes-native LLM inference gateway.

Commands:
${Object.entries(commands)
  .map(([name, c]) => `  ${name.padEnd(12)} ${c.summary}`)
  .join('\n')}

Run 'infer-gateway <command> --help' for a command's options.
`

export async function main(argv: readonly string[]): Promise<number> {
  const [name, ...rest] = argv
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(rootHelp)
    return name === undefined ? 1 : 0
  }
  const cmd = commands[name]
  if (!cmd) {
    process.stderr.write(`infer-gateway: unknown command "${name}"\n\n${rootHelp}`)
    return 2
  }
  try {
    await cmd.run(rest)
    return 0
  } catch (e) {
    // Usage errors of every command carry code 'USAGE' (operator/ cannot import the data
    // plane's class); node's parseArgs throws ERR_PARSE_ARGS_* TypeErrors.
    const code = typeof e === 'object' && e !== null && 'code' in e ? String(e.code) : ''
    const usage = e instanceof UsageError || code === 'USAGE' || code.startsWith('ERR_PARSE_ARGS')
    process.stderr.write(`infer-gateway ${name}: ${e instanceof Error ? e.message : String(e)}\n`)
    return usage ? 2 : 1
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code
    },
    (e: unknown) => {
      process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`)
      process.exitCode = 1
    },
  )
}
