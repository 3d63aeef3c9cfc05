// Upstream Gateway API Inference Extension and Gateway API files, read at test time from the Go
// module cache (hack/gaie-modules.sh downloads them; CI runs it from hack/ensure-test-deps.sh).
// Nothing upstream is copied into the repository.
import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { parseAllDocuments } from 'yaml'

const ROOT = join(
  process.env['INFER_GATEWAY_CACHE'] ?? join(homedir(), '.cache', 'infer-gateway'),
  'go',
  'pkg',
  'mod',
  'sigs.k8s.io',
)

export const GAIE_V160 = join(ROOT, 'gateway-api-inference-extension@v1.6.0')
export const GAIE_V120 = join(ROOT, 'gateway-api-inference-extension@v1.2.0')
export const GATEWAY_API = join(ROOT, 'gateway-api@v1.6.3')

/** Makes sure the modules are there (a no-op when cached). */
export function ensureGaieModules(): void {
  if ([GAIE_V160, GAIE_V120, GATEWAY_API].every((d) => existsSync(d))) return
  execFileSync('bash', [join(import.meta.dirname, '..', '..', 'hack', 'gaie-modules.sh')], {
    stdio: 'inherit',
  })
}

/** The YAML documents of an upstream file (comments and empty documents dropped). */
export async function upstreamDocs(path: string): Promise<Record<string, unknown>[]> {
  const text = await readFile(path, 'utf8')
  return parseAllDocuments(text)
    .map((d) => d.toJS() as unknown)
    .filter((d): d is Record<string, unknown> => typeof d === 'object' && d !== null)
}
