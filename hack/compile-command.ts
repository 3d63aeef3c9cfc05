// `infer-gateway compile`: the standalone compiler, for inspecting what the data plane will run.
import { readFile } from 'node:fs/promises'
import { parseArgs } from 'node:util'
import { compileSnapshot, parseManifests } from '../api/index.js'
import { UsageError } from '../dataplane/command.js'
import { listFiles } from '../dataplane/config-source.js'

export const compileHelp = `Usage: infer-gateway compile <file.yaml|dir>... [--version N]

Validates ModelRoute/ModelServer/ExternalModelProvider (networking.matrixinfer.ai/v1alpha1 or
Kthena's networking.serving.volcano.sh/v1alpha1), GatewayPolicy and StaticEndpoints YAML and
prints the routing snapshot JSON.
A directory is read like 'dataplane --config' reads it (its *.yaml, *.yml and *.json files).
Exit code 1 with file:line: field: message on invalid input, and 1 (snapshot still printed) when
any diagnostic has severity error (e.g. ModelServerNotFound).
`

/** Error diagnostics: the snapshot was printed, but the input is not what the user meant. */
export class CompileDiagnosticsError extends Error {
  readonly code = 'COMPILE_DIAGNOSTICS'
}

export async function runCompileCommand(args: readonly string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: [...args],
    options: {
      version: { type: 'string', default: '1' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    allowPositionals: true,
  })
  if (values.help) {
    process.stdout.write(compileHelp)
    return
  }
  if (positionals.length === 0) throw new UsageError('give at least one YAML file')
  // Gzipped files in a directory are published snapshots, not manifests.
  const names = (await listFiles(positionals)).filter((n) => !n.endsWith('.gz'))
  if (names.length === 0) throw new UsageError(`no YAML or JSON files in ${positionals.join(', ')}`)
  const files = await Promise.all(
    names.map(async (name) => ({ name, text: await readFile(name, 'utf8') })),
  )
  const parsed = parseManifests(files)
  if (parsed.issues.length > 0) {
    throw new Error(
      parsed.issues
        .map(
          (i) => `\n  ${i.file}:${i.line}:${i.column}: ${i.path ? `${i.path}: ` : ''}${i.message}`,
        )
        .join(''),
    )
  }
  const { snapshot, diagnostics } = compileSnapshot({
    routes: parsed.routes,
    servers: parsed.servers,
    endpoints: parsed.endpoints,
    policies: parsed.policies,
    providers: parsed.providers,
    inferencePools: parsed.inferencePools,
    objectives: parsed.objectives,
    httpRoutes: parsed.httpRoutes,
    version: Number(values.version),
  })
  for (const d of diagnostics)
    process.stderr.write(`${d.severity}: ${d.kind} ${d.key}: ${d.reason}: ${d.message}\n`)
  process.stdout.write(`${JSON.stringify(snapshot, null, 2)}\n`)
  const errors = diagnostics.filter((d) => d.severity === 'error').length
  if (errors > 0) throw new CompileDiagnosticsError(`${errors} error diagnostic(s), see above`)
}
